"""`checksum` against the oracle: files, executables, empty files, symlinks, directories,
FIFOs, extended attributes (and --ignore-xattrs), and the errors."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def tree(tmp_path):
    t = tmp_path / "t"
    (t / "d").mkdir(parents=True)
    (t / "f").write_bytes(b"hello\n" * 1000)
    (t / "x").write_bytes(b"#!/bin/sh\n")
    os.chmod(t / "x", 0o755)
    (t / "empty").write_bytes(b"")
    (t / "d").chmod(0o700)
    os.symlink("f", t / "link")
    os.symlink("/nowhere", t / "dangling")
    os.mkfifo(t / "fifo")
    (t / "attrs").write_bytes(b"with xattrs\n")
    os.setxattr(t / "attrs", "user.sysroot-test", b"value")
    os.chown(t / "x", 12, 34)
    return t


NAMES = ["f", "x", "empty", "d", "link", "dangling", "fifo", "attrs", "."]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("flags", [(), ("--ignore-xattrs",)])
def test_checksum_matches_ostree(ostree, sysroot, tree, name, flags):
    a = ostree("checksum", *flags, tree / name)
    b = sysroot("checksum", *flags, tree / name)
    assert b.stdout == a.stdout and len(a.stdout) == 65, (a.stdout, b.stdout)


def test_xattrs_count_unless_ignored(sysroot, tree):
    with_attrs = sysroot.out("checksum", tree / "attrs")
    os.removexattr(tree / "attrs", "user.sysroot-test")
    assert sysroot.out("checksum", tree / "attrs") != with_attrs


def test_checksum_is_the_committed_object(ostree, sysroot, tree, tmp_path):
    (tree / "fifo").unlink()  # ostree commits no FIFO
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=bare")
    ostree("commit", f"--repo={repo}", "-b", "m", "-s", "s", tree)
    listing = ostree.out("ls", f"--repo={repo}", "-C", "m", "/f", "/x", "/d")
    committed = [line.split()[-2] for line in listing.splitlines()]
    # for a directory ls -C shows the dirtree then the dirmeta: the dirmeta is last but one
    ours = [sysroot.out("checksum", tree / n) for n in ("f", "x", "d")]
    assert ours == committed


def test_several_paths_each_get_a_line(ostree, sysroot, tree):
    out = sysroot.out("checksum", tree / "f", tree / "x").splitlines()
    assert out == [f"{ostree.out('checksum', tree / n)}  {tree / n}" for n in ("f", "x")]


def test_errors_are_ostrees(ostree, sysroot, tmp_path):
    a = ostree("checksum", tmp_path / "missing", check=False)
    b = sysroot("checksum", tmp_path / "missing", check=False)
    assert a.returncode == b.returncode == 1
    assert b.stderr == a.stderr
    a, b = ostree("checksum", check=False), sysroot("checksum", check=False)
    assert a.returncode == b.returncode == 1
    assert b"error: A filename must be given" in a.stderr
    assert b.stderr == b"error: A filename must be given\n"
