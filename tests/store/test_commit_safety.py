"""Commit crash safety and concurrency, checked with real processes.

* Concurrent commits (sysroot + sysroot, sysroot + ostree) into one repository.
* `kill -9` of a commit at random moments: no partial object under objects/, no broken
  ref, and the next commit succeeds and removes the dead transaction's staging dir.
* core.fsync=false is honoured.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sysroot.formats.objects import ObjectType, content_checksum, is_checksum
from sysroot.store.lock import ofd_lock
from sysroot.store.repo import Repo
from sysroot.util import fsutil
from sysroot.util.run import clean_env
from tests.helpers.twins import run_sysroot

SYSROOT = [sys.executable, "-m", "sysroot"]


def make_tree(root: Path, files: int, *, seed: int, shared: int = 0) -> Path:
    """files small-to-medium files in 20 directories; the first `shared` files have the
    same content in every tree (so concurrent commits race on the same objects)."""
    rng = random.Random(seed)
    for i in range(files):
        d = root / f"dir{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        if i < shared:
            data = f"shared file {i}\n".encode() * (i % 50 + 1)
        else:
            data = rng.randbytes(rng.choice((10, 300, 3000, 20000)))
        (d / f"f{i}").write_bytes(data)
    os.symlink("dir0/f0", root / "link")
    return root


def popen(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}: {err.decode()}"
    return out.decode().strip()


def verify_objects(path: Path) -> int:
    """Every file under objects/ is a complete object whose content hashes to its name.

    Unlike `ostree fsck`, this also covers objects no commit references (what a killed
    commit may leave behind)."""
    count = 0
    with Repo.open(path) as repo:
        for sub in sorted(os.listdir(path / "objects")):
            for name in sorted(os.listdir(path / "objects" / sub)):
                base, _, ext = name.partition(".")
                checksum = sub + base
                objtype = ObjectType.from_extension(ext)
                assert is_checksum(checksum) and objtype is not None, f"stray file {sub}/{name}"
                if objtype is ObjectType.FILE:
                    info = repo.load_file(checksum)
                    actual = content_checksum(info.header, repo.iter_payload(checksum))
                else:
                    actual = hashlib.sha256(repo.read_metadata(objtype, checksum)).hexdigest()
                assert actual == checksum, f"object {checksum}.{ext} hashes to {actual}"
                count += 1
    return count


def verify_refs(path: Path, allowed: set[str]) -> dict[str, str]:
    """Refs are whole checksums of commits that exist, from the allowed set."""
    refs = {}
    for ref in os.listdir(path / "refs/heads"):
        if ref.startswith("."):
            continue  # an interrupted ref write's temp file; readers skip it like ostree
        value = (path / "refs/heads" / ref).read_text()
        assert value.endswith("\n") and value.strip() in allowed, f"ref {ref}: {value!r}"
        assert (path / "objects" / value[:2] / f"{value.strip()[2:]}.commit").exists()
        refs[ref] = value.strip()
    return refs


def staging_dirs(path: Path) -> list[str]:
    return [
        n for n in os.listdir(path / "tmp") if n.startswith("staging-") and not n.endswith("-lock")
    ]


def fsck_both(ostree, path: Path) -> None:
    res = ostree("fsck", f"--repo={path}", check=False)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    rc, out, err = run_sysroot("fsck", f"--repo={path}")
    assert rc == 0, out + err


def oracle_checksums(ostree, tmp_path: Path, trees: dict[str, Path]) -> dict[str, str]:
    """What ostree alone, without concurrency, commits for each branch."""
    repo = tmp_path / "oracle"
    ostree("init", f"--repo={repo}", "--mode=bare")
    return {
        branch: ostree.out(
            "commit", f"--repo={repo}", "-b", branch, "--timestamp=@1700000000", str(tree)
        )
        for branch, tree in trees.items()
    }


# ---------------------------------------------------------------- concurrency


def test_two_sysroot_commits_at_once(tmp_path, ostree):
    repo = tmp_path / "repo"
    run_sysroot("init", f"--repo={repo}", "--mode=bare")
    trees = {f"b{i}": make_tree(tmp_path / f"t{i}", 300, seed=i, shared=150) for i in (1, 2)}
    procs = [
        popen([*SYSROOT, "commit", f"--repo={repo}", "-b", b, "--timestamp=@1700000000", tree])
        for b, tree in trees.items()
    ]
    results = {b: finish(p) for b, p in zip(trees, procs, strict=True)}
    assert results == oracle_checksums(ostree, tmp_path, trees)
    assert verify_refs(repo, set(results.values())) == results
    assert staging_dirs(repo) == []
    verify_objects(repo)
    fsck_both(ostree, repo)


@pytest.mark.parametrize("ostree_delay", [0.0, 0.35], ids=["together", "ostree-later"])
def test_sysroot_and_ostree_commit_at_once(tmp_path, ostree, ostree_delay):
    repo = tmp_path / "repo"
    run_sysroot("init", f"--repo={repo}", "--mode=bare")
    trees = {
        "s": make_tree(tmp_path / "ts", 300, seed=3, shared=150),
        "o": make_tree(tmp_path / "to", 300, seed=4, shared=150),
    }
    s = popen(
        [*SYSROOT, "commit", f"--repo={repo}", "-b", "s", "--timestamp=@1700000000", trees["s"]]
    )
    time.sleep(ostree_delay)  # sysroot's interpreter start-up takes about that long
    o = popen(
        [
            ostree.argv0[0],
            "commit",
            f"--repo={repo}",
            "-b",
            "o",
            "--timestamp=@1700000000",
            trees["o"],
        ]
    )
    results = {"s": finish(s), "o": finish(o)}
    assert results == oracle_checksums(ostree, tmp_path, trees)
    assert verify_refs(repo, set(results.values())) == results
    verify_objects(repo)
    fsck_both(ostree, repo)


# ---------------------------------------------------------------- kill -9


def test_kill_9_during_commit_leaves_a_consistent_repo(tmp_path, ostree):
    tree = make_tree(tmp_path / "tree", 800, seed=7)
    # One undisturbed run gives the expected checksum and how long a commit takes.
    scratch = tmp_path / "scratch"
    run_sysroot("init", f"--repo={scratch}", "--mode=bare")
    started = time.monotonic()
    expected = finish(
        popen(
            [
                *SYSROOT,
                "commit",
                f"--repo={scratch}",
                "-b",
                "main",
                "--timestamp=@1700000000",
                "--parent=none",
                tree,
            ]
        )
    )
    duration = time.monotonic() - started

    repo = tmp_path / "repo"
    run_sysroot("init", f"--repo={repo}", "--mode=bare")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # One random moment in each stretch: start-up and import, import, publish and refs.
    moments = [rng.uniform(lo, hi) * duration for lo, hi in ((0.3, 0.55), (0.55, 0.8), (0.8, 1.0))]
    for delay in moments:
        proc = popen(
            [
                *SYSROOT,
                "commit",
                f"--repo={repo}",
                "-b",
                "main",
                "--timestamp=@1700000000",
                "--parent=none",
                tree,
            ]
        )
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        where = f"(seed {seed}, killed after {delay:.2f}s of {duration:.2f}s)"
        assert verify_refs(repo, {expected}) in ({}, {"main": expected}), where
        verify_objects(repo)
        res = ostree("fsck", f"--repo={repo}", check=False)
        assert res.returncode == 0, where + res.stderr.decode()
    # The next commit completes, and cleans up after the dead ones.
    rc, out, err = run_sysroot(
        "commit",
        f"--repo={repo}",
        "-b",
        "main",
        "--timestamp=@1700000000",
        "--parent=none",
        str(tree),
    )
    assert rc == 0, err
    assert out == expected
    assert staging_dirs(repo) == []
    assert verify_refs(repo, {expected}) == {"main": expected}
    verify_objects(repo)
    fsck_both(ostree, repo)


def test_stale_staging_dirs_are_removed_only_when_dead(tmp_path):
    repo = tmp_path / "repo"
    run_sysroot("init", f"--repo={repo}", "--mode=bare")
    tmp = repo / "tmp"
    names = {kind: f"staging-test-{kind}" for kind in ("dead", "live", "nolock", "old")}
    for name in names.values():
        (tmp / name / "ab").mkdir(parents=True)
        (tmp / name / "ab" / "partial").write_bytes(b"x")
    for kind in ("dead", "live"):
        (tmp / f"{names[kind]}-lock").touch()
    os.utime(tmp / names["old"], (0, 0))
    live = os.open(tmp / f"{names['live']}-lock", os.O_RDWR)
    try:
        assert ofd_lock(live, exclusive=True, wait=False)
        tree = tmp_path / "t"
        tree.mkdir()
        (tree / "f").write_text("f\n")
        rc, _, err = run_sysroot("commit", f"--repo={repo}", "-b", "main", str(tree))
        assert rc == 0, err
    finally:
        os.close(live)
    # dead (unlocked lock file) and old (expired) go; a locked one stays, and so does a
    # fresh one without a lock file: ostree creates its staging dir before its lock.
    assert sorted(staging_dirs(repo)) == sorted([names["live"], names["nolock"]])


# ---------------------------------------------------------------- fsync


@pytest.mark.parametrize("fsync", [True, False])
def test_core_fsync_setting_is_honoured(tmp_path, ostree, monkeypatch, fsync):
    repo = tmp_path / "repo"
    run_sysroot("init", f"--repo={repo}", "--mode=bare")
    ostree("config", f"--repo={repo}", "set", "core.fsync", str(fsync).lower())
    tree = make_tree(tmp_path / "tree", 40, seed=1)
    calls = []
    real_fsync, real_syncfs = os.fsync, fsutil.syncfs
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(fsutil, "syncfs", lambda fd: (calls.append("syncfs"), real_syncfs(fd))[1])
    rc, out, err = run_sysroot("commit", f"--repo={repo}", "-b", "main", str(tree))
    monkeypatch.undo()
    assert rc == 0, err
    if fsync:
        assert "syncfs" in calls and "fsync" in calls
    else:
        assert calls == []
    assert verify_refs(repo, {out}) == {"main": out}
    fsck_both(ostree, repo)


def test_objects_stored_by_another_writer_mid_transaction(tmp_path, ostree):
    """A transaction lists objects/XX directories it asks about often (has_object);
    objects another writer stores after the listing look absent, are staged again,
    and publishing keeps the stored ones: the commit is complete and fsck-clean."""
    from sysroot.store.commit import CommitBuilder
    from sysroot.store.modes import RepoMode

    tree = make_tree(tmp_path / "tree", 1500, seed=5)
    later = make_tree(tmp_path / "later", 1500, seed=6)
    path = tmp_path / "repo"
    repo = Repo.create(path, RepoMode.BARE)
    with repo.transaction() as tx:
        builder = CommitBuilder(tx)
        builder.add_directory(str(tree))  # ~6 lookups per objects/XX: listed
        assert tx._listed, "the lookups should have listed some objects/XX directories"
        ostree("commit", f"--repo={path}", "-b", "other", "--timestamp=2020-01-01", later)
        builder.add_directory(str(later))  # stored by ostree since our listing
        tx.set_ref("ours", builder.write(subject="s", timestamp=0))
    repo.close()
    verify_objects(path)
    fsck_both(ostree, path)
    out = subprocess.run(
        ["ostree", "ls", f"--repo={path}", "-R", "ours"], capture_output=True, check=True
    )
    assert out.stdout.count(b"\n") > 1500
