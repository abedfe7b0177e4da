"""Commits that failed to boot are remembered per stateroot (deploy/failedcommits.py)
and `admin upgrade` does not deploy one again unless --allow-failed.

Real sysroots and repositories (tests/boot/test_boot_counting.py builds them, and its
systemd-boot model boots them); the upgrade follows a local ref, moved by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysroot.boot.backends import CountStatus
from sysroot.deploy import failedcommits
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.layout import SysrootLayout
from sysroot.util import fsutil
from tests.boot.test_boot_counting import (
    deploy,
    dname,
    make_permanent,
    make_sysroot,
    mark_bad,
    names,
    sd_boot,
    status,
)
from tests.conftest import one_error_line
from tests.helpers.sysroots import OSNAME, make_os_tree
from tests.pull.serve_helpers import RepoServer, object_names, refs_of

X = f"{OSNAME}/x"


def record_path(sr) -> Path:
    return Path(sr.path) / "ostree/deploy" / OSNAME / failedcommits.NAME


def move_ref(sr, ref: str, checksum: str) -> None:
    with sr.open_repo() as repo:
        repo.write_ref(ref, checksum)


def upgrade(sysroot, sr, *args: str):
    return sysroot("admin", "upgrade", f"--sysroot={sr.path}", f"--os={OSNAME}", *args, check=False)


def refusal(checksum: str, when: str) -> str:
    return (
        f"error: Commit {checksum} failed to boot in stateroot {OSNAME} ({when}); "
        "use --allow-failed to deploy it anyway"
    )


@pytest.fixture
def fell_back(tmp_path, ostree, sysroot):
    """testos/1 deployed, upgraded to c2 (armed), c2 failed 3 boots, fall-back made
    permanent: the record holds c2; the ref still points at it."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)
    deploy(sr, 1)
    move_ref(sr, f"{OSNAME}/1", c[2])
    proc = upgrade(sysroot, sr)
    assert proc.returncode == 0, proc.stderr
    assert names(sr) == [dname(c, 2), dname(c, 1)]
    for _ in range(4):
        sd_boot(Path(sr.path))
    assert status(sr).status is CountStatus.FELL_BACK
    assert make_permanent(sr, dname(c, 1)) is not None
    return sr, c


def test_fallback_records_and_upgrade_refuses_then_allows(fell_back, sysroot):
    sr, c = fell_back
    found, warning = failedcommits.read(sr.layout, OSNAME)
    assert list(found) == [c[2]] and warning is None
    before = names(sr)
    entries = sorted(os.listdir(Path(sr.path) / "boot/loader/entries"))
    for extra in ((), ("--stage",), ("--deploy-only",)):
        proc = upgrade(sysroot, sr, *extra)
        assert proc.returncode == 1
        assert one_error_line(proc) == refusal(c[2], found[c[2]])
        assert names(sr) == before  # nothing changed
        assert sorted(os.listdir(Path(sr.path) / "boot/loader/entries")) == entries
    proc = upgrade(sysroot, sr, "--allow-failed")
    assert proc.returncode == 0, proc.stderr
    assert names(sr)[0] == dname(c, 2).replace(".0", ".1")  # c2 again, a new serial
    assert status(sr).status is CountStatus.ARMED  # and counted again


def test_record_outlives_the_failed_deployment(fell_back, sysroot):
    """Cleanup (here undeploy) deletes the failed deployment with its origin; the
    stateroot's record stays, and so does the refusal."""
    sr, c = fell_back
    sr.undeploy("1")
    assert names(sr) == [dname(c, 1)]
    assert not list((Path(sr.path) / "ostree/deploy" / OSNAME / "deploy").glob(f"{c[2]}.*"))
    proc = upgrade(sysroot, sr)
    assert one_error_line(proc).startswith(f"error: Commit {c[2]} failed to boot")
    # a commit that did not fail is deployed as ever
    move_ref(sr, f"{OSNAME}/1", c[3])
    proc = upgrade(sysroot, sr)
    assert proc.returncode == 0, proc.stderr
    assert names(sr)[0] == dname(c, 3)


def test_mark_bad_records(tmp_path, ostree):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)
    deploy(sr, 1)
    deploy(sr, 2)
    assert sd_boot(Path(sr.path)) == dname(c, 2)
    assert mark_bad(sr, dname(c, 1)) is False  # not the counted one: nothing recorded
    assert not record_path(sr).exists()
    assert mark_bad(sr, dname(c, 2)) is True
    assert list(failedcommits.read(sr.layout, OSNAME)[0]) == [c[2]]


def test_ostree_reads_a_sysroot_with_a_record(tmp_path, ostree):
    """The record beside deploy/ and var/ is nothing ostree 2022.7 trips over."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "grub2", 0)
    deploy(sr, 1)
    failedcommits.record(sr.layout, OSNAME, c[2])
    out = ostree.out("admin", "status", f"--sysroot={sr.path}")
    assert c[1] in out
    assert record_path(sr).exists()


# ---------------------------------------------------------------- the record file
def test_corrupt_record_is_one_warning_and_keeps_the_good_lines(tmp_path, ostree, sysroot):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 0)
    deploy(sr, 1)
    p = record_path(sr)
    p.write_bytes(b"garbage\xff\n" + f"{c[2]} 2026-01-01T00:00:00Z\n".encode() + b"x" * 70)
    move_ref(sr, f"{OSNAME}/1", c[2])
    proc = upgrade(sysroot, sr)
    err = proc.stderr.decode().splitlines()
    assert err[0] == f"warning: {p}: 2 unreadable line(s) ignored"
    assert err[1:] == [refusal(c[2], "2026-01-01T00:00:00Z")]
    # a record written now drops what it could not read
    failedcommits.record(sr.layout, OSNAME, c[3])
    lines = p.read_text().splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == [c[2], c[3]]


@pytest.mark.parametrize("what", ["directory", "huge", "binary"])
def test_unusable_record_is_ignored_with_one_warning(tmp_path, ostree, sysroot, what):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 0)
    deploy(sr, 1)
    p = record_path(sr)
    if what == "directory":
        p.mkdir()
        why = "not a regular file"
    elif what == "huge":
        p.write_text(f"{c[2]} 2026-01-01T00:00:00Z\n" * 2000)
        why = f"larger than {failedcommits.MAX_SIZE} bytes"
    else:
        p.write_bytes(bytes(range(256)) * 4)
        why = None
    move_ref(sr, f"{OSNAME}/1", c[2])
    proc = upgrade(sysroot, sr)
    assert proc.returncode == 0, proc.stderr  # nothing readable says c2 failed
    (line,) = [ln for ln in proc.stderr.decode().splitlines() if "warning" in ln]
    assert line.startswith(f"warning: {p}: ")
    if why is not None:
        assert line == f"warning: {p}: {why}; ignored"
    assert names(sr)[0] == dname(c, 2)


def test_record_is_bounded_and_last_wins(tmp_path):
    layout = SysrootLayout(str(tmp_path))
    os.makedirs(layout.stateroot(OSNAME))
    sums = [f"{i:064x}" for i in range(failedcommits.MAX_ENTRIES + 5)]
    for s in sums:
        failedcommits.record(layout, OSNAME, s, fsync=False)
    failedcommits.record(layout, OSNAME, sums[10], fsync=False)  # again: now the newest
    found, warning = failedcommits.read(layout, OSNAME)
    assert warning is None
    assert list(found) == [s for s in sums[5:] if s != sums[10]] + [sums[10]]
    assert len(found) == failedcommits.MAX_ENTRIES


def test_record_write_is_atomic(tmp_path, monkeypatch):
    """Temp name, fsync, rename: a crash before the rename (here the rename fails)
    leaves the old record whole and no temp file."""
    layout = SysrootLayout(str(tmp_path))
    os.makedirs(layout.stateroot(OSNAME))
    failedcommits.record(layout, OSNAME, "a" * 64)
    before = Path(failedcommits.path(layout, OSNAME)).read_bytes()
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        calls.append("fsync")
        return real_fsync(fd)

    def rename(src, dst, **kw):
        calls.append(f"rename {src} {dst}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        failedcommits.record(layout, OSNAME, "b" * 64)
    monkeypatch.setattr(os, "rename", real_rename)
    assert calls[0] == "fsync"  # the data is on disk before the name points at it
    _, src, dst = calls[1].split()
    assert fsutil.is_temp_name(src) and dst == failedcommits.NAME
    assert Path(failedcommits.path(layout, OSNAME)).read_bytes() == before
    assert os.listdir(layout.stateroot(OSNAME)) == [failedcommits.NAME]


# ---------------------------------------------------------------- from a remote
def test_remote_upgrade_refuses_before_fetching_content(make_sysroot, ostree, tmp_path):
    """With a remote, the failed head is refused after the commit object alone is
    fetched: the content is not, and the ref does not move; --pull-only and --check
    are not deployments and go on; --allow-failed deploys it."""
    served = tmp_path / "served"
    ostree("init", f"--repo={served}", "--mode=archive")
    sr = make_sysroot("b", by="sysroot")
    with RepoServer(served) as server:

        def commit(n: int, ts: str) -> str:
            tree = make_os_tree(tmp_path / f"tree{n}", extra={"usr/share/serial": f"{n}\n"})
            out = ostree.out(
                f"--repo={served}",
                "commit",
                f"--branch={X}",
                f"--timestamp={ts}",
                f"--tree=dir={tree}",
            )
            ostree(f"--repo={served}", "summary", "-u")
            return out

        c1 = commit(1, "2023-01-02 03:04:05")
        ostree("remote", "add", f"--repo={sr.repo}", "--no-gpg-verify", "origin", server.url)
        ostree("pull", f"--repo={sr.repo}", "origin", X)
        sr.admin("deploy", f"--os={OSNAME}", f"origin:{X}")
        c2 = commit(2, "2023-01-03 03:04:05")
        layout = SysrootLayout(str(sr.path))
        failedcommits.record(layout, OSNAME, c2)
        before = (refs_of(sr.repo), object_names(sr.repo))
        proc = sr.admin("upgrade", f"--os={OSNAME}", check=False)
        assert one_error_line(proc) == refusal(c2, failedcommits.load(layout, OSNAME)[c2])
        refs, objects = refs_of(sr.repo), object_names(sr.repo)
        assert refs == before[0] and refs[f"refs/remotes/origin/{X}"] == c1
        new = objects - before[1]
        assert all(n.endswith((".commit", ".commitmeta")) for n in new), new  # no content
        assert [d.csum for d in Sysroot(str(sr.path)).load().deployments] == [c1]
        proc = sr.admin("upgrade", f"--os={OSNAME}", "--check", check=False)
        assert proc.returncode == 0 and f"Commit: {c2}" in proc.stdout.decode()
        when = failedcommits.load(layout, OSNAME)[c2]
        assert (
            f"  Failed to boot: {when} (upgrade refuses it without --allow-failed)\n"
            in proc.stdout.decode()
        )
        proc = sr.admin("upgrade", f"--os={OSNAME}", "--pull-only", check=False)
        assert proc.returncode == 0, proc.stderr  # a pull deploys nothing
        assert refs_of(sr.repo)[f"refs/remotes/origin/{X}"] == c2
        assert [d.csum for d in Sysroot(str(sr.path)).load().deployments] == [c1]
        proc = sr.admin("upgrade", f"--os={OSNAME}", check=False)  # --deploy-only alike
        assert one_error_line(proc).startswith(f"error: Commit {c2} failed to boot")
        proc = sr.admin("upgrade", f"--os={OSNAME}", "--allow-failed", check=False)
        assert proc.returncode == 0, proc.stderr
        assert refs_of(sr.repo)[f"refs/remotes/origin/{X}"] == c2
        assert [d.csum for d in Sysroot(str(sr.path)).load().deployments] == [c2, c1]
        # the deployed (failed) commit again: no update, not a refusal
        proc = sr.admin("upgrade", f"--os={OSNAME}", check=False)
        assert proc.returncode == 0 and proc.stdout.decode() == "No update available.\n"


def test_switch_is_not_refused(tmp_path, ostree, sysroot):
    """`admin switch REF` names what to follow explicitly (and has no --allow-failed):
    a failed head of the new ref is deployed."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 0)
    deploy(sr, 1)
    failedcommits.record(sr.layout, OSNAME, c[2])
    proc = sysroot(
        "admin", "switch", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/2", check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert names(sr)[0] == dname(c, 2)
