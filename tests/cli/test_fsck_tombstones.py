"""fsck --add-tombstones: a commit whose parent is gone gets a tombstone for that
parent, core.tombstone-commits goes on, and the repository then passes ostree's fsck.
(ostree 2022.7 names the tombstone after the child, which hides the child: not copied.)"""

from __future__ import annotations

import shutil


def _repo_with_missing_parent(tmp_path, ostree):
    repo = tmp_path / "repo"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    ostree("init", f"--repo={repo}", "--mode=archive")
    first = ostree.out(f"--repo={repo}", "commit", "-b", "m", "-s", "1", tree)
    (tree / "f").write_text("2")
    second = ostree.out(f"--repo={repo}", "commit", "-b", "m", "-s", "2", tree)
    (repo / "objects" / first[:2] / f"{first[2:]}.commit").unlink()
    return repo, first, second


def test_add_tombstones_for_a_missing_parent(ostree, sysroot, tmp_path):
    repo, first, second = _repo_with_missing_parent(tmp_path, ostree)
    oracle = tmp_path / "oracle"
    shutil.copytree(repo, oracle, symlinks=True)
    theirs = ostree(f"--repo={oracle}", "fsck", "--add-tombstones")
    ours = sysroot(f"--repo={repo}", "fsck", "--add-tombstones")
    assert b"Adding tombstone for commit" in theirs.stdout  # ostree does add one
    lines = ours.stdout.decode().splitlines()
    assert f"Adding tombstone for commit {first}" in lines
    assert lines[-1] == "object fsck of 1 commits completed successfully - no errors found."
    assert (repo / "objects" / first[:2] / f"{first[2:]}.tombstone-commit").is_file()
    assert not (repo / "objects" / second[:2] / f"{second[2:]}.tombstone-commit").exists()
    assert ostree.out(f"--repo={repo}", "config", "get", "core.tombstone-commits") == "true"
    # the oracle reads what we wrote, and the child commit is still whole
    ostree(f"--repo={repo}", "fsck")
    assert ostree.out(f"--repo={repo}", "rev-parse", "m") == second
    # nothing more to add the second time
    again = sysroot(f"--repo={repo}", "fsck", "--add-tombstones")
    assert b"Adding tombstone" not in again.stdout


def test_without_the_option_nothing_is_written(ostree, sysroot, tmp_path):
    repo, first, _ = _repo_with_missing_parent(tmp_path, ostree)
    sysroot(f"--repo={repo}", "fsck")
    assert not list((repo / "objects").glob("*/*.tombstone-commit"))
    assert (
        sysroot(f"--repo={repo}", "config", "get", "core.tombstone-commits", check=False).returncode
        != 0
    )
