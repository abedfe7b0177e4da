"""A user who is not root, on a repository and a sysroot that belong to root: the one
error line names the path, a hint line says why (issue 20), and nothing changes.

Needs root to make the root-owned files and to drop to the user nobody (setpriv)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from sysroot.cli.main import permission_hint
from tests.helpers.tools import Tool

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
HINT = "hint: not running as root: run as root, or as the owner of the repository or sysroot"


@pytest.fixture
def shared_dir():
    """A root-owned directory nobody may enter (pytest's own tmp_path is 0700)."""
    assert os.geteuid() == 0, "this test needs root (to own the files and drop to nobody)"
    path = tempfile.mkdtemp(prefix="sysroot-not-root-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _as_nobody(sysroot, *args):
    return Tool([*NOBODY, *sysroot.argv0])(*args, check=False)


def _assert_refused_with_hint(proc, path: str) -> None:
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [f"error: {path}: Permission denied", HINT]


def test_repository_of_root(ostree, sysroot, shared_dir):
    repo = os.path.join(shared_dir, "repo")
    tree = os.path.join(shared_dir, "tree")
    os.mkdir(tree)
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree("commit", f"--repo={repo}", "-b", "main", "-s", "s", tree)
    proc = _as_nobody(sysroot, "refs", f"--repo={repo}", "--create=copy", "main")
    _assert_refused_with_hint(proc, f"{repo}/refs/heads/copy")
    assert sorted(os.listdir(f"{repo}/refs/heads")) == ["main"]


def test_sysroot_lock_of_root(sysroot, shared_dir):
    sr = os.path.join(shared_dir, "sysroot")
    sysroot("admin", "init-fs", sr)
    sysroot("admin", "os-init", "foo", f"--sysroot={sr}")
    proc = _as_nobody(sysroot, "admin", "os-init", "bar", f"--sysroot={sr}")
    _assert_refused_with_hint(proc, f"{sr}/ostree/lock")
    assert os.listdir(f"{sr}/ostree/deploy") == ["foo"]


@pytest.mark.unit
def test_no_hint_for_root_nor_for_other_errors(monkeypatch):
    denied = PermissionError(errno.EACCES, "Permission denied", "/x")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert permission_hint(denied) is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert permission_hint(denied) is not None
    assert permission_hint(PermissionError(errno.EPERM, "Operation not permitted")) is not None
    assert permission_hint(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None
