"""sysroot/health/runner.py: greenboot's order and semantics with real scripts run from a
temp root; the listing compared with greenboot's own (`find DIR -name '*.sh' | sort`)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from sysroot.health import CheckKind, Outcome, load_config, run_checks, run_hooks
from sysroot.health.discovery import discover
from sysroot.health.runner import parse_line
from tests.health.conftest import ETC_REQUIRED, ETC_WANTED, USR_REQUIRED, USR_WANTED
from tests.util.test_run_streaming import wait_dead, within


def greenboot_listing(root, reldir: str) -> list[str]:
    """What greenboot's script_runner iterates over, by running its own pipeline."""
    out = subprocess.run(
        ["bash", "-c", f"cd {root} && find {reldir} -name '*.sh' | LC_ALL=C sort"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return out.splitlines()


def test_order_across_the_two_dirs(root, config):
    for reldir in (ETC_WANTED, ETC_REQUIRED, USR_WANTED, USR_REQUIRED):
        root.script(reldir, "50_same.sh")  # the same name everywhere: all of them run
        root.script(reldir, "10_first.sh")
    root.script(USR_REQUIRED, "B_upper.sh")  # C order: upper case before lower case
    root.script(USR_REQUIRED, "a_lower.sh", mode=0o600)  # not executable: runs (bash FILE)
    root.script(USR_REQUIRED, "a_lower/z.sh")  # subdirectories count, sorted by full path
    root.script(USR_REQUIRED, "99_exec", mode=0o755)  # no .sh: not run, even executable
    root.script(USR_REQUIRED, "98_off.sh.disabled", mode=0o755)
    (root.path / USR_REQUIRED / "dir.sh").mkdir()  # a directory named *.sh: left out

    report = run_checks(str(root), config)

    expected = [
        f"{USR_REQUIRED}/10_first.sh",
        f"{USR_REQUIRED}/50_same.sh",
        f"{USR_REQUIRED}/B_upper.sh",
        f"{USR_REQUIRED}/a_lower.sh",
        f"{USR_REQUIRED}/a_lower/z.sh",
        f"{USR_WANTED}/10_first.sh",
        f"{USR_WANTED}/50_same.sh",
        f"{ETC_REQUIRED}/10_first.sh",
        f"{ETC_REQUIRED}/50_same.sh",
        f"{ETC_WANTED}/10_first.sh",
        f"{ETC_WANTED}/50_same.sh",
    ]
    assert root.ran() == expected
    assert [r.check.path for r in report.results] == expected
    assert all(r.outcome is Outcome.PASSED for r in report.results) and report.healthy
    assert [r.check.kind for r in report.results][:6] == [CheckKind.REQUIRED] * 5 + [
        CheckKind.WANTED
    ]
    # greenboot's own listing, less the directory it would hand to bash and fail on
    theirs = [p for p in greenboot_listing(root, USR_REQUIRED) if not p.endswith("dir.sh")]
    assert theirs == expected[:5]
    assert any("dir.sh: a directory, not a script" in w for w in report.warnings)


def test_required_stops_at_the_first_failure(root, config):
    root.script(USR_REQUIRED, "01_ok.sh")
    root.script(USR_REQUIRED, "02_fail.sh", "exit 7")
    root.script(USR_REQUIRED, "03_after.sh")
    root.script(USR_WANTED, "01_w.sh")
    root.script(ETC_REQUIRED, "01_r.sh")
    report = run_checks(str(root), config)
    assert root.ran() == [f"{USR_REQUIRED}/01_ok.sh", f"{USR_REQUIRED}/02_fail.sh"]
    assert [(r.check.name, r.outcome, r.exit_status) for r in report.results] == [
        ("01_ok.sh", Outcome.PASSED, 0),
        ("02_fail.sh", Outcome.FAILED, 7),
        ("03_after.sh", Outcome.SKIPPED, None),
        ("01_w.sh", Outcome.SKIPPED, None),
        ("01_r.sh", Outcome.SKIPPED, None),
    ]
    assert not report.healthy


def test_etc_required_failure_also_fails(root, config):
    root.script(USR_REQUIRED, "01_ok.sh")
    root.script(ETC_REQUIRED, "01_fail.sh", "exit 1")
    root.script(ETC_WANTED, "01_w.sh")
    report = run_checks(str(root), config)
    assert not report.healthy
    assert [r.outcome for r in report.results] == [Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED]


def test_wanted_failures_continue_and_stay_healthy(root, config):
    root.script(USR_WANTED, "01_fail.sh", "exit 3")
    root.script(USR_WANTED, "02_killed.sh", "kill -9 $$")
    root.script(USR_WANTED, "03_ok.sh")
    root.script(ETC_REQUIRED, "01_ok.sh")
    report = run_checks(str(root), config)
    assert len(root.ran()) == 4
    assert [(r.outcome, r.exit_status) for r in report.results] == [
        (Outcome.FAILED, 3),
        (Outcome.FAILED, -9),
        (Outcome.PASSED, 0),
        (Outcome.PASSED, 0),
    ]
    assert report.healthy and len(report.failures()) == 2


def test_disabled_healthchecks(root):
    root.conf('DISABLED_HEALTHCHECKS=("02_fail.sh" "misspeled.sh")\n')
    root.script(USR_REQUIRED, "02_fail.sh", "exit 1")
    root.script(ETC_REQUIRED, "02_fail.sh", "exit 1")  # by name: in every directory
    root.script(ETC_REQUIRED, "03_ok.sh")
    report = run_checks(str(root), load_config(str(root)))
    assert root.ran() == [f"{ETC_REQUIRED}/03_ok.sh"]
    assert [r.outcome for r in report.results] == [
        Outcome.DISABLED,
        Outcome.DISABLED,
        Outcome.PASSED,
    ]
    assert report.healthy
    assert report.warnings == ("WARNING: misspeled.sh was not found and may be misspelled",)


def test_timeout_kills_a_hanging_check_and_its_children(root, pidfile):
    root.conf("SYSROOT_HEALTHCHECK_TIMEOUTS=( 01_hang.sh=0.5 )\n")
    root.script(
        USR_REQUIRED,
        "01_hang.sh",
        f"trap '' TERM; (trap '' TERM; exec sleep 1000) & echo $! > {pidfile}; echo waiting;"
        " sleep 1000",
    )
    root.script(USR_REQUIRED, "02_next.sh")
    config = dataclasses.replace(load_config(str(root)), kill_grace=0.5)
    report = within(20, lambda: run_checks(str(root), config))
    hang = report.results[0]
    assert (hang.outcome, hang.exit_status) == (Outcome.TIMED_OUT, -9)  # ignored SIGTERM
    assert 1.0 <= hang.duration < 10
    assert [line.text for line in hang.tail] == ["waiting"]
    assert wait_dead(int(pidfile.read_text()))
    # a timed-out required check is a failure: strict mode stops
    assert report.results[1].outcome is Outcome.SKIPPED and not report.healthy


def test_default_timeout_applies_to_wanted_too(root, config):
    root.script(USR_WANTED, "01_hang.sh", "sleep 1000")
    root.script(USR_WANTED, "02_ok.sh")
    report = within(20, lambda: run_checks(str(root), dataclasses.replace(config, timeout=0.3)))
    assert [r.outcome for r in report.results] == [Outcome.TIMED_OUT, Outcome.PASSED]
    assert report.healthy


def test_priority_prefixes():
    cases = {
        b"<0>emerg": (0, "emerg"),
        b"<3>err": (3, "err"),
        b"<7>debug": (7, "debug"),
        b"<03>padded": (3, "padded"),  # journald takes up to three digits without facility
        b"<8>no such level": (6, "<8>no such level"),
        b"<13>a facility": (6, "<13>a facility"),
        b"< 3>space": (6, "< 3>space"),
        b"plain": (6, "plain"),
        b"x<2>inside": (6, "x<2>inside"),
        b"<2>\xff bytes": (2, "\ufffd bytes"),
    }
    for raw, (priority, text) in cases.items():
        line = parse_line(raw)
        assert (line.priority, line.text) == (priority, text), raw


def test_priority_prefixes_from_a_script(root, config):
    root.script(USR_REQUIRED, "01.sh", "echo '<2>critical'; echo '<5>notice' >&2; echo plain")
    tail = run_checks(str(root), config).results[0].tail
    assert [(x.priority, x.text) for x in tail] == [(2, "critical"), (5, "notice"), (6, "plain")]


def test_output_tail_is_bounded(root, config):
    root.script(USR_REQUIRED, "01.sh", "for i in $(seq 1 1000); do echo line $i; done")
    result = run_checks(str(root), dataclasses.replace(config, tail_lines=5)).results[0]
    assert [x.text for x in result.tail] == [f"line {i}" for i in range(996, 1001)]
    assert result.lines == 1000


HUGE = """
import sys
from sysroot.health import HealthConfig, run_checks
report = run_checks(sys.argv[1], HealthConfig(timeout=120))
r = report.results[0]
print(r.outcome.value, r.lines, max(len(x.text) for x in r.tail), len(r.tail))
# VmHWM: this process's own peak (ru_maxrss would also count the forking parent's)
print(next(x.split()[1] for x in open("/proc/self/status") if x.startswith("VmHWM:")))
"""


def test_huge_output_is_bounded_in_memory(root):
    # 256 MiB in one line, then 200000 short lines
    root.script(
        USR_REQUIRED,
        "01_flood.sh",
        "head -c 268435456 /dev/zero | tr '\\0' x; echo; seq 1 200000",
    )
    proc = subprocess.run(
        [sys.executable, "-c", HUGE, str(root)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    summary, maxrss_kib = proc.stdout.splitlines()
    outcome, lines, longest, kept = summary.split()
    assert (outcome, int(lines), int(kept)) == ("passed", 268435456 // 2048 + 200000, 20)
    assert int(longest) <= 2048
    assert int(maxrss_kib) < 100 * 1024  # the output was 257 MiB


def test_hooks_are_relaxed_and_run_from_both_dirs(root, config):
    root.script("usr/lib/greenboot/red.d", "01_fail.sh", "exit 2")
    root.script("usr/lib/greenboot/red.d", "02_ok.sh")
    root.script("etc/greenboot/red.d", "01_etc.sh")
    root.script("etc/greenboot/green.d", "01_green.sh")
    report = run_hooks(str(root), config, CheckKind.RED)
    assert root.ran() == [
        "usr/lib/greenboot/red.d/01_fail.sh",
        "usr/lib/greenboot/red.d/02_ok.sh",
        "etc/greenboot/red.d/01_etc.sh",
    ]
    assert [r.outcome for r in report.results] == [Outcome.FAILED, Outcome.PASSED, Outcome.PASSED]
    report = run_hooks(
        str(root), dataclasses.replace(config, disabled=("01_green.sh",)), CheckKind.GREEN
    )
    assert [r.outcome for r in report.results] == [Outcome.DISABLED]  # as greenboot: all modes


def test_scripts_run_with_the_root_as_cwd_and_no_stdin(root, config):
    root.script(USR_REQUIRED, "01.sh", "pwd; cat; echo read-done")
    tail = run_checks(str(root), config).results[0].tail
    assert [x.text for x in tail] == [str(root.path), "read-done"]


def test_missing_directories_mean_no_checks(root, config):
    report = run_checks(str(root), config)
    assert report.results == () and report.healthy


def test_a_file_in_place_of_a_directory_holds_no_checks(root, config):
    d = root.path / USR_REQUIRED
    d.parent.mkdir(parents=True)
    d.write_text("echo not a directory\n")
    warnings: list[str] = []
    assert discover(str(root), USR_REQUIRED, CheckKind.REQUIRED, warnings) == []
    assert warnings == []
