"""`sysroot admin` on bad input and failing systems.

Every case must end in one `error: ...` line on stderr, a non-zero exit, no traceback,
and the sysroot exactly as before: every path, symlink target, mode and file content
(the repo's tmp/ and the lock files aside). Where the real ostree refuses the same
thing, that is checked too (after our run: ostree may leave debris when it fails).
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.sysroots import OSNAME, Sysroot, init_sysroot, make_os_tree, snapshot

OS = f"--os={OSNAME}"
REF = f"{OSNAME}/x"


@pytest.fixture
def sr(make_sysroot, tmp_path, sysroot) -> Sysroot:
    """An ostree-made sysroot with two deployments (kargs set), driven by sysroot."""
    s = make_sysroot("sr", by="ostree")
    s.commit(make_os_tree(tmp_path / "t1"), version="1")
    s.oadmin("deploy", OS, "--karg=root=/dev/sda1", REF)
    s.commit(make_os_tree(tmp_path / "t2", extra={"usr/share/v": "2"}), version="2")
    s.oadmin("deploy", OS, REF)
    s.tool = sysroot
    return s


def expect_error(sr: Sysroot, *args, contains: str, oracle_fails: bool = True) -> str:
    """Run `sysroot admin ARGS` on sr: it must fail cleanly and change nothing."""
    before = snapshot(sr.path)
    r = sr.admin(*args, check=False)
    err = r.stderr.decode()
    assert r.returncode != 0, (args, r.stdout, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert contains in lines[0], err
    after = snapshot(sr.path)
    assert after == before, {
        k: (before.get(k), after.get(k))
        for k in set(before) | set(after)
        if before.get(k) != after.get(k)
    }
    if oracle_fails:
        o = sr.oadmin(*args, check=False)
        assert o.returncode != 0, (args, o.stdout, o.stderr)
    return lines[0]


def deployment_dirs(sr: Sysroot) -> list[Path]:
    d = sr.path / "ostree/deploy" / OSNAME / "deploy"
    return sorted(p for p in d.iterdir() if not p.name.endswith(".origin"))


# ---------------------------------------------------------------------- bad names
def test_unknown_stateroot(sr):
    expect_error(sr, "deploy", "--os=nosuch", REF, contains="nosuch")


def test_unknown_ref_or_checksum(sr):
    expect_error(sr, "deploy", OS, "no/such/ref", contains="no/such/ref")
    expect_error(sr, "deploy", OS, "ab" * 32, contains="ab" * 32)


def test_tree_without_kernel(sr, tmp_path):
    sr.commit(make_os_tree(tmp_path / "nk", no_kernel=True), "testos/nk")
    expect_error(sr, "deploy", OS, "testos/nk", contains="kernel")


def test_undeploy_index_out_of_range(sr):
    expect_error(sr, "undeploy", "2", contains="Out of range deployment index 2")
    expect_error(sr, "undeploy", "-1", contains="-1", oracle_fails=False)
    expect_error(sr, "undeploy", "two", contains="two", oracle_fails=False)
    expect_error(sr, "pin", "7", contains="Out of range deployment index 7")
    expect_error(
        sr, "set-default", "9", contains="Out of range deployment index 9", oracle_fails=False
    )  # (no set-default in ostree 2022.7)


# ---------------------------------------------------------------------- damaged state
def test_malformed_origin(sr):
    origin = sorted((sr.path / "ostree/deploy" / OSNAME / "deploy").glob("*.origin"))[0]
    origin.write_text("[origin\nrefspec=testos/x\n")
    for args in (("status",), ("deploy", OS, REF), ("undeploy", "1"), ("pin", "0")):
        expect_error(sr, *args, contains=origin.name)


@pytest.mark.parametrize(
    "damage", ["no-options", "no-ostree-karg", "bad-ostree-path", "dangling-ostree-path"]
)
def test_hand_edited_boot_entry(sr, damage):
    entry = sr.path / "boot/loader/entries/ostree-2-testos.conf"
    lines = entry.read_text().splitlines()
    options = next(i for i, line in enumerate(lines) if line.startswith("options "))
    if damage == "no-options":
        del lines[options]
    elif damage == "no-ostree-karg":
        lines[options] = "options root=/dev/sda1 quiet"
    elif damage == "bad-ostree-path":
        lines[options] = "options root=/dev/sda1 ostree=/ostree/boot.0/testos/nothex/0"
    else:
        lines[options] = lines[options][:-1] + "7"
    entry.write_text("\n".join(lines) + "\n")
    for args in (("status",), ("deploy", OS, REF), ("undeploy", "1")):
        expect_error(sr, *args, contains=entry.name)


def test_not_initialised(tmp_path, ostree, sysroot):
    empty = Sysroot(tmp_path / "empty", sysroot, ostree)
    empty.path.mkdir()
    for args in (
        ("status",),
        ("deploy", OS, REF),
        ("undeploy", "0"),
        ("cleanup",),
        ("pin", "0"),
        ("set-default", "0"),
        ("config-diff", OS),
    ):
        expect_error(
            empty,
            *args,
            contains="not an initialized sysroot",
            oracle_fails=args[0] != "set-default",
        )
    missing = Sysroot(tmp_path / "missing", sysroot, ostree)
    r = missing.admin("status", check=False)
    assert r.returncode != 0 and r.stderr.decode().startswith("error: ")
    assert not missing.path.exists()


# ---------------------------------------------------------------------- failing systems
def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def read_only_boot(sr: Sysroot):
    boot = str(sr.path / "boot")
    _sh("mount", "--bind", boot, boot)
    try:
        _sh("mount", "-o", "remount,ro,bind", boot)
        yield
    finally:
        _sh("umount", boot)


def test_boot_read_only(sr, tmp_path):
    sr.commit(make_os_tree(tmp_path / "t3", kernel=b"new kernel\n"), version="3")
    with read_only_boot(sr):
        # a new kernel and new entries: nothing can be written to /boot
        expect_error(sr, "deploy", OS, REF, contains="Read-only file system")
        # the same kernel, entries to rewrite
        expect_error(sr, "deploy", OS, f"{REF}^", contains="Read-only file system")
        expect_error(sr, "undeploy", "1", contains="Read-only file system")
    # and the sysroot still works once /boot is writable again
    sr.admin("deploy", OS, REF)
    assert sr.status(sr.ostree) == sr.status()


@contextmanager
def small_tmpfs(path: Path, size: str):
    path.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        _sh("umount", "-l", str(path))


def test_disk_full_mid_deploy(tmp_path, ostree, sysroot):
    """The whole sysroot on a small tmpfs (a hardlink checkout needs the repo on the
    same file system); the new tree's /etc copy does not fit."""
    with small_tmpfs(tmp_path / "small", "64m") as mnt:
        sr = init_sysroot(mnt / "sr", sysroot, ostree)
        sr.commit(make_os_tree(tmp_path / "t1"), version="1")
        sr.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
        big = "x" * (4 << 20)
        sr.commit(make_os_tree(tmp_path / "t2", extra={"usr/etc/big.conf": big}), version="2")
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        # room for the checkout's directories, not for a second copy of big.conf
        _sh("mount", "-o", f"remount,size={used + (2 << 20)}", str(mnt))
        # the free-space guard would refuse up front (test_free_space.py): off, to
        # test running out of space midway
        ostree("config", f"--repo={sr.repo}", "set", "core.min-free-space-percent", "0")
        expect_error(sr, "deploy", OS, REF, contains="No space left on device", oracle_fails=False)
        assert len(deployment_dirs(sr)) == 1
        _sh("mount", "-o", "remount,size=64m", str(mnt))
        sr.admin("deploy", OS, REF)
        assert sr.status(ostree) == sr.status()
        assert len(deployment_dirs(sr)) == 2
