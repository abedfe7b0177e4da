"""The health-check units (greenboot's wiring, our names), as units/install installs them.

systemd itself judges them: `systemd-analyze verify --root` on the installed tree (with
a stand-in /usr/bin/sysroot, since verify wants every ExecStart binary to exist, and the
few systemd units ours depend on copied from the host), and `systemctl --root enable`
on the same files, whose links must be the ones units/install makes. The ordering
facts that make a failed check a failed boot are asserted from the files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sysroot.health import HealthConfig
from sysroot.util.run import clean_env

UNITS = Path(__file__).resolve().parents[2] / "units"
HEALTH_UNITS = [
    "sysroot-health-check.service",
    "sysroot-health-green.service",
    "sysroot-health-red.service",
    "sysroot-health-red.target",
]
# what [Install] of our units asks for, as units/install creates it
LINKS = {
    "boot-complete.target.requires/sysroot-health-check.service",
    "multi-user.target.wants/sysroot-health-check.service",
    "multi-user.target.wants/sysroot-health-green.service",
    "sysroot-health-red.target.requires/sysroot-health-red.service",
}
# systemd's own units ours need to load: default dependencies, and Requires=
HOST_UNITS = ["sysinit.target", "shutdown.target", "boot-complete.target"]


def install(dest: Path) -> Path:
    subprocess.run(["sh", str(UNITS / "install"), str(dest)], check=True)
    return dest / "usr/lib/systemd/system"


def directives(path: Path) -> dict[str, list[str]]:
    """Section.Key -> every word of every assignment (systemd's list settings)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(f"{section}.{key}", []).extend(value.split() or [""])
    return out


def test_installed_units_pass_systemd_analyze_verify(tmp_path):
    unitdir = install(tmp_path)
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/sysroot").write_text("#!/bin/sh\n")  # what the units run
    (tmp_path / "usr/bin/sysroot").chmod(0o755)
    for name in HOST_UNITS:
        shutil.copy(f"/usr/lib/systemd/system/{name}", unitdir / name)
    r = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            f"--root={tmp_path}",
            *(str(unitdir / n) for n in HEALTH_UNITS),
        ],
        capture_output=True,
        env=clean_env(),
    )
    # default log level: an unknown or misspelled setting is a warning line here
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    for name in HEALTH_UNITS:
        assert (unitdir / name).read_bytes() == (UNITS / name).read_bytes()


def test_install_enables_them_as_systemctl_would(tmp_path):
    unitdir = install(tmp_path / "dest")
    made = {
        str(p.relative_to(unitdir))
        for p in unitdir.rglob("*")
        if p.is_symlink() and "sysroot-health" in p.name
    }
    assert made == LINKS
    for link in LINKS:
        assert os.readlink(unitdir / link) == "../" + link.split("/")[1]
        assert (unitdir / link).resolve() == unitdir / link.split("/")[1]
    # systemctl reads the [Install] sections and must want the same links
    oracle = tmp_path / "oracle"
    (oracle / "usr/lib/systemd/system").mkdir(parents=True)
    for name in HEALTH_UNITS:
        shutil.copy(UNITS / name, oracle / "usr/lib/systemd/system" / name)
    subprocess.run(
        ["systemctl", f"--root={oracle}", "enable", *HEALTH_UNITS],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    etc = oracle / "etc/systemd/system"
    assert {str(p.relative_to(etc)) for p in etc.rglob("*") if p.is_symlink()} == LINKS
    # installing twice (an upgrade of the tree) is fine and changes nothing
    before = sorted(str(p) for p in unitdir.rglob("*"))
    install(tmp_path / "dest")
    assert sorted(str(p) for p in unitdir.rglob("*")) == before


def test_a_failed_check_is_a_failed_boot():
    check = directives(UNITS / "sysroot-health-check.service")
    assert check["Unit.Before"] == ["boot-complete.target"]
    assert check["Install.RequiredBy"] == ["boot-complete.target"]
    assert check["Install.WantedBy"] == ["multi-user.target"]
    assert check["Unit.OnFailure"] == ["sysroot-health-red.target"]
    assert check["Unit.OnFailureJobMode"] == ["fail"]
    assert check["Unit.ConditionPathExists"] == ["/run/ostree-booted"]
    assert check["Service.Type"] == ["oneshot"]
    assert check["Service.ExecStart"][:4] == ["/usr/bin/sysroot", "admin", "health", "check"]
    red_target = directives(UNITS / "sysroot-health-red.target")
    assert red_target["Unit.Conflicts"] == ["boot-complete.target"]
    red = directives(UNITS / "sysroot-health-red.service")
    assert red["Unit.Before"] == ["sysroot-health-red.target"]
    assert red["Install.RequiredBy"] == ["sysroot-health-red.target"]
    assert red["Service.ExecStart"] == [
        "/usr/bin/sysroot",
        "admin",
        "health",
        "red",
        "--reboot",
    ]
    green = directives(UNITS / "sysroot-health-green.service")
    assert green["Unit.Requires"] == green["Unit.After"] == ["boot-complete.target"]
    assert green["Install.WantedBy"] == ["multi-user.target"]
    assert green["Service.ExecStart"][:4] == ["/usr/bin/sysroot", "admin", "health", "green"]


def test_boot_counting_runs_in_the_units_that_gate_and_follow_the_boot():
    """check-fallback in the check unit's process, before the checks (greenboot's
    check-fallback unit is required by its checks); mark-good in the green unit's, so
    only once boot-complete.target is reached. Each needs /boot mounted."""
    check = directives(UNITS / "sysroot-health-check.service")
    assert check["Service.ExecStart"] == [
        "/usr/bin/sysroot",
        "admin",
        "health",
        "check",
        "--check-fallback",
    ]
    assert check["Unit.Before"] == ["boot-complete.target"]
    green = directives(UNITS / "sysroot-health-green.service")
    assert green["Unit.Requires"] == green["Unit.After"] == ["boot-complete.target"]
    assert green["Install.WantedBy"] == ["multi-user.target"]
    assert green["Unit.ConditionPathExists"] == ["/run/ostree-booted"]
    assert green["Service.ExecStart"] == [
        "/usr/bin/sysroot",
        "admin",
        "health",
        "green",
        "--mark-good",
    ]
    for unit in ("check", "green", "red"):
        d = directives(UNITS / f"sysroot-health-{unit}.service")
        assert d["Unit.RequiresMountsFor"] == ["/boot"], unit


def _seconds(value: str) -> float:
    """A systemd time span of the forms we use: "90", "90s", "15min", "1h"."""
    m = re.fullmatch(r"([0-9]+)(s|min|h)?", value)
    assert m, value
    return int(m.group(1)) * {None: 1, "s": 1, "min": 60, "h": 3600}[m.group(2)]


def test_the_unit_timeout_leaves_room_for_the_check_timeouts():
    """The unit's limit must not cut a check short before the check's own limit (and
    kill grace) does: then the result and its record would be lost."""
    (value,) = directives(UNITS / "sysroot-health-check.service")["Service.TimeoutStartSec"]
    default = HealthConfig()
    assert default.timeout is not None
    assert _seconds(value) >= 3 * (default.timeout + default.kill_grace)


def _expand(pattern: str) -> list[str]:
    """Shell brace expansion of one {a,b} group (all the header uses)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    return [
        x
        for alt in m.group(1).split(",")
        for x in _expand(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def test_install_header_lists_what_it_installs(tmp_path):
    """units/install's header comment names every file it installs, and only those."""
    listed = {
        path
        for line in (UNITS / "install").read_text().splitlines()
        if (m := re.fullmatch(r"#   (/\S+)( \(enabled\))?", line))
        for path in _expand(m.group(1))
    }
    install(tmp_path)
    installed = {"/" + str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir()}
    assert listed == installed


def test_the_loop_breaker_fails_the_red_unit():
    """red --reboot exits 1 when it does not reboot (greenboot's redboot-auto-reboot:
    "Manual intervention necessary"); the unit must let that fail it."""
    red = directives(UNITS / "sysroot-health-red.service")
    assert red["Service.Type"] == ["oneshot"]
    assert red["Service.ExecStart"][0] == "/usr/bin/sysroot"  # no "-": failure counts
    assert "Service.SuccessExitStatus" not in red
    assert "Service.RestartPreventExitStatus" not in red
