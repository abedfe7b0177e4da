"""sysroot/health/config.py: greenboot.conf read without bash, compared with what bash's
`source` (greenboot's way of reading it) makes of the same file."""

from __future__ import annotations

import os
import subprocess

import pytest

from sysroot.health import load_config
from sysroot.health.config import MAX_CONFIG_SIZE, parse_assignments
from tests.util.test_run_streaming import within

# greenboot's shipped /etc/greenboot/greenboot.conf (fedora-iot/greenboot)
SHIPPED = """\
# Greenboot configuration file

## Generic
# GREENBOOT_MAX_BOOT_ATTEMPTS=3

## Watchdog
### This value can be "true, TRUE, True..." as it will be lowercased.
GREENBOOT_WATCHDOG_CHECK_ENABLED=true

### It has to be a positive integer. Defaults to 24 (hours).
# GREENBOOT_WATCHDOG_GRACE_PERIOD=24

## Service monitor
# GREENBOOT_MONITOR_SERVICES="sshd NetworkManager"
"""

# Files bash can source without running anything: bash is the oracle for each.
BASH_CASES = [
    SHIPPED,
    'GREENBOOT_MAX_BOOT_ATTEMPTS=5\nDISABLED_HEALTHCHECKS=("a.sh" "b.sh")\n',
    'DISABLED_HEALTHCHECKS=( "with space.sh" \'single "q".sh\' plain.sh # a comment\n'
    '  "esc\\"aped\\\\.sh" mixed"quo"ted.sh\n)\n',
    "export GREENBOOT_MAX_BOOT_ATTEMPTS='7'  # trailing comment\n",
    "GREENBOOT_MAX_BOOT_ATTEMPTS=2\nGREENBOOT_MAX_BOOT_ATTEMPTS=4\n",  # the last one wins
    'DISABLED_HEALTHCHECKS=(a.sh)\nDISABLED_HEALTHCHECKS+=("b.sh" c.sh)\n',
    "DISABLED_HEALTHCHECKS=(a.sh b.sh)\nDISABLED_HEALTHCHECKS=z.sh\n",  # sets element 0 only
    'DISABLED_HEALTHCHECKS="one two.sh"\n',  # a scalar: one name with a space in it
    "DISABLED_HEALTHCHECKS=()\n",
    "A=1; GREENBOOT_MAX_BOOT_ATTEMPTS=6;\n",
    "GREENBOOT_MAX_BOOT_ATTEMPTS=\\\n9\n",  # a line continuation
    "DISABLED_HEALTHCHECKS=(x.sh#not-a-comment y.sh)\n",
    "DISABLED_HEALTHCHECKS=('a\nb.sh')\n",  # a newline inside quotes
]


def bash_arrays(path: str) -> dict[str, list[str]]:
    script = (
        'source "$1"\n'
        "for v in DISABLED_HEALTHCHECKS GREENBOOT_MAX_BOOT_ATTEMPTS; do\n"
        '  if declare -p "$v" >/dev/null 2>&1; then\n'
        '    declare -n ref="$v"; printf "%s\\0" "$v" "${#ref[@]}" "${ref[@]}"; unset -n ref\n'
        "  fi\n"
        "done\n"
    )
    out = subprocess.run(
        ["bash", "-c", script, "bash", path], capture_output=True, check=True
    ).stdout.decode()
    fields = out.split("\0")[:-1]
    values: dict[str, list[str]] = {}
    while fields:
        name, n = fields[0], int(fields[1])
        values[name] = fields[2 : 2 + n]
        fields = fields[2 + n :]
    return values


@pytest.mark.parametrize("text", BASH_CASES)
def test_same_values_as_bash_source(tmp_path, text):
    path = tmp_path / "greenboot.conf"
    path.write_text(text)
    warnings: list[str] = []
    ours = parse_assignments(text, warnings, str(path))
    assert warnings == []
    theirs = bash_arrays(str(path))
    for name in ("DISABLED_HEALTHCHECKS", "GREENBOOT_MAX_BOOT_ATTEMPTS"):
        assert ours.get(name) == theirs.get(name), name


def test_defaults_without_a_file(tmp_path):
    c = load_config(str(tmp_path))
    assert (c.max_boot_attempts, c.disabled, c.timeout, c.warnings) == (3, (), 900.0, ())


def test_shipped_file_gives_the_defaults(tmp_path):
    (tmp_path / "etc/greenboot").mkdir(parents=True)
    (tmp_path / "etc/greenboot/greenboot.conf").write_text(SHIPPED)
    c = load_config(str(tmp_path))
    assert (c.max_boot_attempts, c.disabled, c.warnings) == (3, (), ())  # unknown keys: silent


def write(tmp_path, text: str) -> str:
    (tmp_path / "etc/greenboot").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/greenboot/greenboot.conf").write_text(text)
    return str(tmp_path)


def test_values_reach_the_config(tmp_path):
    root = write(
        tmp_path,
        "GREENBOOT_MAX_BOOT_ATTEMPTS=5\n"
        "DISABLED_HEALTHCHECKS=( 'x.sh' \"y.sh\" )\n"
        "SYSROOT_HEALTHCHECK_TIMEOUT=30\n"
        "SYSROOT_HEALTHCHECK_TIMEOUTS=( slow.sh=600 hang.sh=infinity slow.sh=1.5 )\n",
    )
    c = load_config(root)
    assert (c.max_boot_attempts, c.disabled, c.timeout, c.warnings) == (5, ("x.sh", "y.sh"), 30, ())
    assert c.timeout_for("slow.sh") == 1.5  # the last setting wins
    assert c.timeout_for("hang.sh") is None
    assert c.timeout_for("other.sh") == 30


@pytest.mark.parametrize("value", ["three", "0", "-1", "3x", "''", "1.5"])
def test_bad_attempts_give_the_default_and_a_warning(tmp_path, value):
    c = load_config(write(tmp_path, f"GREENBOOT_MAX_BOOT_ATTEMPTS={value}\n"))
    assert c.max_boot_attempts == 3
    assert len(c.warnings) == 1 and "GREENBOOT_MAX_BOOT_ATTEMPTS" in c.warnings[0]
    assert "using 3" in c.warnings[0]


def test_bad_timeouts_give_the_default_and_a_warning(tmp_path):
    c = load_config(
        write(
            tmp_path,
            "SYSROOT_HEALTHCHECK_TIMEOUT=soon\n"
            "SYSROOT_HEALTHCHECK_TIMEOUTS=(a.sh=-1 b.sh c.sh=nan d.sh=5)\n",
        )
    )
    assert c.timeout == 900.0 and c.timeouts == (("d.sh", 5.0),)
    assert len(c.warnings) == 4


def test_environment_when_the_file_is_silent(tmp_path):
    env = {"GREENBOOT_MAX_BOOT_ATTEMPTS": "4"}
    assert load_config(str(tmp_path), env).max_boot_attempts == 4
    # greenboot sources the file after the environment: the file wins
    assert (
        load_config(write(tmp_path, "GREENBOOT_MAX_BOOT_ATTEMPTS=6\n"), env).max_boot_attempts == 6
    )


def test_nothing_is_executed(tmp_path):
    marker = tmp_path / "marker"
    root = write(
        tmp_path,
        f"GREENBOOT_MAX_BOOT_ATTEMPTS=$(touch {marker}; echo 9)\n"
        f"DISABLED_HEALTHCHECKS=(`touch {marker}`)\n"
        f'GREENBOOT_MAX_BOOT_ATTEMPTS="$HOME"\n'
        f"touch {marker}\n"
        "GREENBOOT_MAX_BOOT_ATTEMPTS=5 reboot\n"
        "DISABLED_HEALTHCHECKS=(kept.sh)\n",
    )
    c = load_config(root)
    assert not marker.exists()
    assert c.max_boot_attempts == 3  # every attempt to set it needed bash: default
    assert c.disabled == ("kept.sh",)  # the lines after them still count
    assert len(c.warnings) == 5
    assert all(w.startswith(f"{root}/etc/greenboot/greenboot.conf line ") for w in c.warnings)
    assert [w.split(" line ")[1].split(":")[0] for w in c.warnings] == ["1", "2", "3", "4", "5"]


def test_unterminated_quote_ignores_the_rest(tmp_path):
    c = load_config(
        write(tmp_path, "DISABLED_HEALTHCHECKS=(a.sh)\nX='oops\nGREENBOOT_MAX_BOOT_ATTEMPTS=5\n")
    )
    assert (c.disabled, c.max_boot_attempts) == (("a.sh",), 3)
    assert len(c.warnings) == 1 and "line 2: unterminated '" in c.warnings[0]


def test_hostile_files_do_not_hang_or_raise(tmp_path):
    conf = tmp_path / "etc/greenboot/greenboot.conf"
    conf.parent.mkdir(parents=True)
    os.mkfifo(conf)  # opening a FIFO for reading would block without O_NONBLOCK
    c = within(10, lambda: load_config(str(tmp_path)))
    assert c.max_boot_attempts == 3 and c.warnings == (
        f"{conf}: not a regular file; using the defaults",
    )
    conf.unlink()
    conf.write_bytes(b"#" * (MAX_CONFIG_SIZE + 1))
    assert "larger than" in load_config(str(tmp_path)).warnings[0]
    conf.write_bytes(b"DISABLED_HEALTHCHECKS=(\xff\xfe.sh)\n\x00\x01\n")  # not UTF-8, NUL
    c = load_config(str(tmp_path))
    assert c.disabled == (os.fsdecode(b"\xff\xfe.sh"),)  # as os.listdir() would name it
    assert len(c.warnings) == 1
