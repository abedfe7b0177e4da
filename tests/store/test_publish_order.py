"""The order in which a transaction makes a commit durable (store/transaction.py):
the staged objects are flushed (syncfs) before any is published; every object a
commit references is published and its objects/ directories fsynced before the commit
object appears; the commit's own directory is fsynced before the ref points at it.
A power cut at any point then leaves unreferenced objects at worst, never a commit or
ref whose tree is missing. Power cuts cannot be simulated; the calls are recorded."""

from __future__ import annotations

import os

from sysroot.util import fsutil
from tests.helpers.twins import run_sysroot


def test_commit_publishes_in_a_durable_order(tmp_path, monkeypatch, ostree):
    repo = tmp_path / "repo"
    rc, _, err = run_sysroot("init", f"--repo={repo}", "--mode=bare")
    assert rc == 0, err
    tree = tmp_path / "tree"
    for i in range(30):  # spread over many objects/XX directories
        (tree / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 5}/f{i}").write_text(f"file {i}\n")
    calls: list[tuple[str, str]] = []
    real = {
        n: getattr(fsutil, n) for n in ("syncfs", "fsync_dir", "rename_noreplace", "atomic_write")
    }

    def syncfs(fd):
        calls.append(("syncfs", ""))
        return real["syncfs"](fd)

    def fsync_dir(path=None, *, dir_fd=None):
        calls.append(("fsync_dir", os.fspath(path) if path is not None else ""))
        return real["fsync_dir"](path, dir_fd=dir_fd)

    def rename_noreplace(src, dst, **kw):
        calls.append(("publish", dst))
        return real["rename_noreplace"](src, dst, **kw)

    def atomic_write(path, data, **kw):
        calls.append(("write", os.fspath(path)))
        return real["atomic_write"](path, data, **kw)

    for name, fn in (
        ("syncfs", syncfs),
        ("fsync_dir", fsync_dir),
        ("rename_noreplace", rename_noreplace),
        ("atomic_write", atomic_write),
    ):
        monkeypatch.setattr(fsutil, name, fn)
    rc, commit, err = run_sysroot(
        "commit", f"--repo={repo}", "-b", "main", "--timestamp=2021-01-01 00:00:00", str(tree)
    )
    monkeypatch.undo()
    assert rc == 0, err
    ostree("fsck", f"--repo={repo}")

    objects = [
        (i, dst)
        for i, (kind, dst) in enumerate(calls)
        if kind == "publish" and dst.startswith("objects/")
    ]
    commit_at = [i for i, dst in objects if dst.endswith(".commit")]
    assert len(commit_at) == 1, calls
    c = commit_at[0]
    others = [(i, dst) for i, dst in objects if i != c]
    assert len(others) > 30  # files, trees, metas
    first = min(i for i, _ in objects)
    assert ("syncfs", "") in calls[:first], "staged objects not flushed before publishing"
    assert max(i for i, _ in others) < c, "the commit appears before what it references"
    synced = {dst for kind, dst in calls[max(i for i, _ in others) : c] if kind == "fsync_dir"}
    dirs = {os.path.dirname(dst) for _, dst in others}
    assert dirs <= synced and "objects" in synced, (
        f"not fsynced before the commit is published: {sorted(dirs - synced)}"
    )
    ref = [
        i
        for i, (kind, dst) in enumerate(calls)
        if kind == "write" and dst.endswith("refs/heads/main")
    ]
    assert len(ref) == 1 and ref[0] > c, calls
    assert ("fsync_dir", f"objects/{commit[:2]}") in calls[c : ref[0]], (
        "the commit is not durable before the ref points at it"
    )
