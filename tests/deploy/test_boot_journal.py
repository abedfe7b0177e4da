"""The journal records of boot configuration writes and of pulls (MESSAGE_IDs
BOOT_CONFIG_ID and PULL_ID, SYSROOT_* fields), as journald would receive them.

journald does not run here: as tests/health/test_journal.py does, the commands run in
a mount namespace of their own with a datagram socket bound at
/run/systemd/journal/socket (tests/helpers/journal.py), and the test decodes the
native-protocol datagrams the real CLI sent. The VM suite reads the same records back
with `journalctl -o json` on a booted system (vm-tests, scenario 6).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sysroot.util.journal import BOOT_CONFIG_ID, PULL_ID
from tests.helpers.journal import SOCKET_PRELUDE, entries_of
from tests.helpers.sysroots import OSNAME, Sysroot, make_os_tree
from tests.pull.serve_helpers import RepoServer, make_served_repo, new_repo

OS = f"--os={OSNAME}"
REF = f"{OSNAME}/x"

# Runs each argv of the JSON list in argv[1]; an argv starting with "!" must fail.
RUNNER = (
    SOCKET_PRELUDE
    + r"""
import json, sys
for argv in json.loads(sys.argv[1]):
    must_fail = argv[0] == "!"
    argv = argv[1:] if must_fail else argv
    r = subprocess.run(argv, capture_output=True)
    if (r.returncode != 0) != must_fail:
        sys.exit(f"{argv}: exit {r.returncode}: {r.stderr.decode()}")
    if r.stderr and not must_fail:
        sys.exit(f"{argv} printed on stderr: {r.stderr.decode()}")
print_datagrams()
"""
)


def run_logged(commands: list[list[str]]) -> list[dict[str, str]]:
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", RUNNER]
        + [json.dumps(commands)],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return entries_of(proc.stdout)


def of(entries: list[dict[str, str]], message_id: str) -> list[dict[str, str]]:
    return [e for e in entries if e.get("MESSAGE_ID") == message_id]


@pytest.fixture
def sr(make_sysroot, tmp_path, sysroot) -> Sysroot:
    s = make_sysroot("sr", by="sysroot")
    s.commit(make_os_tree(tmp_path / "t1"), version="1")
    return s


def test_every_boot_configuration_write_is_recorded(sr, tmp_path, sysroot):
    admin = [*sysroot.argv0, "admin"]
    at = f"--sysroot={sr.path}"
    boot = str(sr.path / "boot")
    entries = run_logged(
        [
            [*admin, "deploy", at, OS, REF],
            [*admin, "deploy", at, OS, REF],
            [*admin, "set-default", at, "1"],
            # /boot read-only: the write fails and leaves the old configuration
            ["mount", "--bind", boot, boot],
            ["mount", "-o", "remount,ro,bind", boot],
            ["!", *admin, "undeploy", at, "1"],
            ["umount", boot],
            [*admin, "undeploy", at, "1"],
        ]
    )
    records = of(entries, BOOT_CONFIG_ID)
    assert [(r["SYSROOT_OPERATION"], r["SYSROOT_RESULT"]) for r in records] == [
        ("deploy", "ok"),
        ("deploy", "ok"),
        ("set-default", "ok"),
        ("undeploy", "failed"),
        ("undeploy", "ok"),
    ]
    status = sr.admin("status").stdout.decode()
    csum = sr.tool.out("rev-parse", f"--repo={sr.repo}", REF)
    first, second, default, failed, last = records
    assert first["SYSROOT_DEFAULT"] == f"{OSNAME}/{csum}.0"
    assert "SYSROOT_PREVIOUS_DEFAULT" not in first
    assert first["SYSROOT_DEPLOYMENTS"] == f"{OSNAME}/{csum}.0"
    assert first["SYSROOT_DEPLOYMENT_COUNT"] == "1"
    assert first["MESSAGE"] == (
        f"Boot configuration written by deploy: new default {OSNAME}/{csum}.0, 1 deployment"
    )
    assert second["SYSROOT_DEFAULT"] == f"{OSNAME}/{csum}.1"
    assert second["SYSROOT_PREVIOUS_DEFAULT"] == f"{OSNAME}/{csum}.0"
    assert second["SYSROOT_DEPLOYMENTS"] == f"{OSNAME}/{csum}.1 {OSNAME}/{csum}.0"
    assert default["SYSROOT_DEFAULT"] == f"{OSNAME}/{csum}.0"
    assert default["SYSROOT_DEPLOYMENTS"] == f"{OSNAME}/{csum}.0 {OSNAME}/{csum}.1"
    # the failure names the configuration that stays, and why
    assert failed["PRIORITY"] == "3"
    assert failed["SYSROOT_DEFAULT"] == f"{OSNAME}/{csum}.0"
    assert "Read-only file system" in failed["SYSROOT_ERROR"]
    assert "SYSROOT_DEPLOYMENTS" not in failed
    assert last["SYSROOT_DEPLOYMENTS"] == f"{OSNAME}/{csum}.0"
    for r in records:
        assert r["SYSLOG_IDENTIFIER"] == "sysroot"
        assert r["SYSROOT_BOOTLOADER"] in ("none", "grub2", "systemd-boot")
    assert f"{csum}.0" in status and f"{csum}.1" not in status


def test_kernel_argument_edits_in_place_are_recorded(sr, sysroot):
    sr.admin("deploy", OS, REF)
    entries = run_logged(
        [
            [*sysroot.argv0, "admin", "kargs", "edit-in-place"]
            + [f"--sysroot={sr.path}", "--append-if-missing=quiet"]
        ]
    )
    (record,) = of(entries, BOOT_CONFIG_ID)
    assert record["SYSROOT_OPERATION"] == "kargs" and record["SYSROOT_RESULT"] == "ok"


def test_pulls_are_recorded(tmp_path, sysroot, ostree):
    """One record per ref a pull moved; one naming the error of a failed pull."""
    served = make_served_repo(ostree, tmp_path / "served")
    with RepoServer(served["repo"]) as server:
        client = new_repo(ostree, tmp_path / "client", "archive", server.url)
        pull = [*sysroot.argv0, "pull", f"--repo={client}", "origin"]
        entries = run_logged([[*pull, "main"], ["!", *pull, "no/such/ref"]])
    ok, failed = of(entries, PULL_ID)
    assert ok["SYSROOT_REMOTE"] == "origin" and ok["SYSROOT_RESULT"] == "ok"
    assert ok["SYSROOT_REF"] == "origin:main"
    assert ok["SYSROOT_COMMIT"] == served["c2"]
    assert ok["MESSAGE"].startswith(f"Pulled origin:main from origin: {served['c2']}, ")
    assert int(ok["SYSROOT_BYTES"]) > 0 and int(ok["SYSROOT_OBJECTS"]) > 0
    assert failed["SYSROOT_RESULT"] == "failed" and failed["PRIORITY"] == "3"
    assert failed["SYSROOT_REF"] == "no/such/ref" and failed["SYSROOT_ERROR"]
    assert "SYSROOT_COMMIT" not in failed
