"""`refs --alias` against the real ostree: an alias found while walking a remote's refs
is listed by its path alone (ostree keys it without the remote), in ostree's order."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def alias_repo(tmp_path, ostree):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree("commit", f"--repo={repo}", "-b", "main", f"--tree=dir={tree}", "-s", "s")
    ostree("refs", f"--repo={repo}", "--create=origin:main", "main")
    ostree("refs", f"--repo={repo}", "--alias", "--create=al", "main")
    # aliases under a remote (ostree has no command that makes them, but lists them)
    remote = repo / "refs/remotes/origin"
    os.symlink("../../../heads/main", remote / "ral")
    (remote / "sub").mkdir()
    os.symlink("../../../../heads/main", remote / "sub/deep")
    return repo


@pytest.mark.parametrize("prefix", [[], ["origin:"], ["origin:sub"]])
def test_alias_listing_matches_ostree(alias_repo, ostree, sysroot, prefix):
    args = ["refs", f"--repo={alias_repo}", "--alias", *prefix]
    theirs = ostree(*args)
    ours = sysroot(*args)
    assert ours.stdout == theirs.stdout
    assert b"origin:" not in ours.stdout  # the walked aliases carry no remote
