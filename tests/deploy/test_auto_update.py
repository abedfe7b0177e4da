"""Automatic updates: `sysroot admin auto-update` by the policy in
/etc/sysroot/updates.conf, run in a faked booted system (test_staged.py's harness: a
mount and PID namespace, chroot'ed into the booted deployment), and the timer and
service units that run it. The VM suite has the timer fire on a real boot and the
reboot apply the staged update (vm-tests, scenario 6).

The booted deployment tracks the local ref testos/x, which already points at a newer
commit (v2): an update is available without a server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sysroot.deploy import autoupdate, failedcommits
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.autoupdate import Policy, UpdatesConfig
from sysroot.util.run import clean_env
from tests.conftest import one_error_line
from tests.deploy.test_staged import Booted, make_booted  # noqa: F401 (a fixture)
from tests.helpers.sysroots import OSNAME, make_os_tree

UNITS = Path(__file__).resolve().parents[2] / "units"
RECORD = Path("ostree/deploy") / OSNAME / "var/lib/sysroot/auto-update.json"


def policy_file(b: Booted, text: str) -> Path:
    """/etc/sysroot/updates.conf of the running system."""
    path = b.etc / "sysroot/updates.conf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def record_of(b: Booted) -> dict:
    return json.loads((b.path / RECORD).read_text())


def test_stage_policy_stages_the_update_once(make_booted):  # noqa: F811
    b = make_booted()
    policy_file(b, "[Updates]\nPolicy=stage\n")
    r = b("sysroot", "admin", "auto-update")
    line = r.stdout.decode().strip()
    assert line.startswith("AutomaticUpdates: stage; last run ")
    assert line.endswith(f": staged {b.v2} (version 2)")
    assert b.staged_file.exists()
    rec = record_of(b)
    assert (rec["policy"], rec["outcome"], rec["commit"], rec["version"]) == (
        "stage",
        "staged",
        b.v2,
        "2",
    )
    assert rec["deployed"] == b.booted.split(".")[0] and rec["error"] is None
    # both tools see the staged deployment; ours adds the record's line at the end
    theirs = b.out("ostree", "admin", "status")
    ours = b.out("sysroot", "admin", "status")
    assert f"{OSNAME} {b.v2}.0 (staged)" in theirs.splitlines()[0]
    assert ours == theirs + line + "\n"
    # a second run finds it staged already: no new deployment, the same record file
    staged = b.staged_file.read_bytes()
    deployments = b.deployments()
    again = b("sysroot", "admin", "auto-update")
    assert again.stdout.decode().strip().endswith(f"staged {b.v2} (version 2)")
    assert b.staged_file.read_bytes() == staged
    assert b.deployments() == deployments


def test_check_policy_records_and_stages_nothing(make_booted):  # noqa: F811
    b = make_booted()
    policy_file(b, "[Updates]\nPolicy=check\nRandomizedDelaySec=0\n")
    before = b.deployments()
    r = b("sysroot", "admin", "auto-update")
    assert r.stdout.decode().strip().endswith(f": update available: {b.v2} (version 2)")
    assert not b.staged_file.exists() and b.deployments() == before
    data = json.loads(b.out("sysroot", "admin", "status", "--json"))
    (rec,) = data["auto_updates"]
    assert (rec["outcome"], rec["commit"], rec["osname"]) == ("available", b.v2, OSNAME)


def test_no_update_exits_77_and_says_so(make_booted, ostree):  # noqa: F811
    b = make_booted()
    ostree("reset", f"--repo={b.path / 'ostree/repo'}", f"{OSNAME}/x", b.booted.split(".")[0])
    policy_file(b, "[Updates]\nPolicy=stage\n")
    r = b("sysroot", "admin", "auto-update", check=False)
    assert r.returncode == 77
    assert r.stdout.decode().strip().endswith(": no update available")
    assert not b.staged_file.exists() and record_of(b)["outcome"] == "no-update"


def test_no_policy_file_does_nothing(make_booted):  # noqa: F811
    b = make_booted()
    r = b("sysroot", "admin", "auto-update")
    assert r.stdout.decode().strip().endswith(": disabled")
    assert not b.staged_file.exists() and not (b.path / RECORD).exists()
    # and status says nothing more than ostree's
    assert b.out("sysroot", "admin", "status") == b.out("ostree", "admin", "status")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[Updates]\nPolicy=sometimes\n", "Policy=sometimes: expected one of none, check"),
        ("[Updates]\nPolicy=stage\nRandomizedDelaySec=-5\n", "RandomizedDelaySec=-5: expected"),
        ("[Updates]\nPolicy=stage\nRandomizedDelaySec=soon\n", "RandomizedDelaySec"),
        ("Policy=stage\n", "updates.conf"),  # a key outside any group
    ],
)
def test_a_bad_policy_file_is_one_line_and_changes_nothing(make_booted, text, message):  # noqa: F811
    b = make_booted()
    policy_file(b, text)
    before = b.deployments()
    r = b("sysroot", "admin", "auto-update", check=False)
    assert r.returncode == 1
    assert message in one_error_line(r)
    assert b.deployments() == before and not b.staged_file.exists()
    assert not (b.path / RECORD).exists()


def test_a_failed_run_is_recorded(make_booted):  # noqa: F811
    """An update recorded as failed to boot is never staged automatically."""
    b = make_booted()
    policy_file(b, "[Updates]\nPolicy=stage\n")
    r = b("sysroot", "admin", "auto-update", "--policy=check")  # the command line wins
    assert r.stdout.decode().startswith("AutomaticUpdates: check;")
    failedcommits.record(Sysroot(str(b.path)).layout, OSNAME, b.v2, fsync=False)
    r = b("sysroot", "admin", "auto-update", check=False)
    assert r.returncode == 1 and "failed to boot" in one_error_line(r)
    rec = record_of(b)
    assert rec["outcome"] == "failed" and "failed to boot" in rec["error"]
    assert not b.staged_file.exists()
    status = b.out("sysroot", "admin", "status").splitlines()[-1]
    assert status.startswith("AutomaticUpdates: stage; last run ") and ": failed: " in status


def test_a_hostile_record_is_ignored_or_made_printable(make_booted):  # noqa: F811
    b = make_booted()
    path = b.path / RECORD
    path.parent.mkdir(parents=True)
    theirs = b.out("ostree", "admin", "status")
    for junk in (b"\xff\xfe", b"[1, 2]", b'{"policy": 5}', json.dumps({"outcome": "x"}).encode()):
        path.write_bytes(junk)
        assert b.out("sysroot", "admin", "status") == theirs
    fields = {"policy": "stage", "outcome": "failed", "time": "t", "osname": OSNAME}
    path.write_text(json.dumps({**fields, "error": "bad\n\x1b[31mred"}))
    last = b.out("sysroot", "admin", "status").splitlines()[-1]
    assert last == "AutomaticUpdates: stage; last run t: failed: bad  [31mred"


def test_randomized_delay_waits_up_to_the_configured_time(monkeypatch, make_sysroot, tmp_path):
    """The timer's run (--randomized-delay) first sleeps a random time below the limit;
    a manual run does not."""
    sr = make_sysroot("sr", by="sysroot")
    sr.commit(make_os_tree(tmp_path / "t1"), version="1")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    slept: list[float] = []
    monkeypatch.setattr(autoupdate.time, "sleep", slept.append)
    config = UpdatesConfig(Policy.CHECK, randomized_delay=600)
    for delay in (False, True, True, True):
        rec = autoupdate.auto_update(Sysroot(str(sr.path)), config, OSNAME, delay=delay)
        assert rec.outcome == "no-update"
    assert len(slept) == 3 and all(0 <= s <= 600 for s in slept)
    assert len(set(slept)) == 3  # random, not a fixed wait


def test_units_verify_and_the_timer_is_enabled(tmp_path):
    subprocess.run(["sh", str(UNITS / "install"), str(tmp_path)], check=True)
    unitdir = tmp_path / "usr/lib/systemd/system"
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/sysroot").write_text("#!/bin/sh\n")
    (tmp_path / "usr/bin/sysroot").chmod(0o755)
    for name in ("sysinit.target", "shutdown.target", "network-online.target", "timers.target"):
        shutil.copy(f"/usr/lib/systemd/system/{name}", unitdir / name)
    names = ["sysroot-auto-update.service", "sysroot-auto-update.timer"]
    r = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", *(str(unitdir / n) for n in names)],
        capture_output=True,
        env=clean_env(),
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    link = unitdir / "timers.target.wants/sysroot-auto-update.timer"
    assert link.resolve() == unitdir / "sysroot-auto-update.timer"
    # systemctl reads the timer's [Install] and wants the same link
    oracle = tmp_path / "oracle"
    (oracle / "usr/lib/systemd/system").mkdir(parents=True)
    for name in names:
        shutil.copy(UNITS / name, oracle / "usr/lib/systemd/system" / name)
    subprocess.run(
        ["systemctl", f"--root={oracle}", "enable", names[1]],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    assert (
        oracle / "etc/systemd/system/timers.target.wants/sysroot-auto-update.timer"
    ).is_symlink()
