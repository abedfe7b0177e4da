"""`summary -u` in a repository with a collection ID also commits to `ostree-metadata`,
as ostree 2022.7 does: compared with the real ostree, object for object."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sysroot.store.summary import KEY_LAST_MODIFIED, Summary
from tests.conftest import COMMIT_ARGS

EPOCH = {"SOURCE_DATE_EPOCH": "1000"}  # both stamp the commit with it
CID = "org.example.Os"


def _files(repo: Path) -> dict[str, bytes]:
    """Every file but the summary (its last-modified is the wall clock) and the lock."""
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and p.name not in ("summary", ".lock")
    }


def _summary_but_time(repo: Path) -> bytes:
    summary = Summary.parse((repo / "summary").read_bytes())
    summary.metadata[KEY_LAST_MODIFIED] = summary.metadata[KEY_LAST_MODIFIED].__class__("t", 0)
    return summary.serialize()


@pytest.fixture
def twins(tmp_path, ostree) -> tuple[Path, Path]:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    ours = tmp_path / "ours"
    ostree("init", f"--repo={ours}", "--mode=archive", f"--collection-id={CID}")
    ostree("commit", f"--repo={ours}", "-b", "main", *COMMIT_ARGS, str(tree))
    theirs = tmp_path / "theirs"
    subprocess.run(["cp", "-a", str(ours), str(theirs)], check=True)
    return ours, theirs


@pytest.mark.parametrize(
    "extra",
    [[], [a for i in range(9) for a in ("-m", f"key{i}={i}")]],
    ids=["plain", "nine-keys"],
)
def test_metadata_commit_matches_ostree(ostree, sysroot, twins, extra):
    ours, theirs = twins
    for _ in range(2):  # the second update chains onto the first, unchanged or not
        sysroot("summary", f"--repo={ours}", "-u", *extra, env=EPOCH)
        ostree("summary", f"--repo={theirs}", "-u", *extra, env=EPOCH)
    assert _files(ours) == _files(theirs)  # same commits, trees, refs, config
    assert _summary_but_time(ours) == _summary_but_time(theirs)  # lists ostree-metadata
    log = ostree.out("log", f"--repo={ours}", "ostree-metadata")
    assert log.count("commit ") == 2
    for args in (["refs", "--collections"], ["ls", "-R", "ostree-metadata"]):
        assert sysroot.out(*args, f"--repo={ours}") == ostree.out(*args, f"--repo={theirs}")
    assert "(org.example.Os, ostree-metadata)" in sysroot.out(
        "refs", "--collections", f"--repo={ours}"
    )
    ostree("fsck", f"--repo={ours}")


def test_no_metadata_ref_without_collection_id(tmp_path, ostree, sysroot):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    sysroot("summary", f"--repo={repo}", "-u")
    assert not (repo / "refs/heads/ostree-metadata").exists()
    assert sysroot.out("refs", f"--repo={repo}") == ""


def test_bad_metadata_writes_no_commit(twins, sysroot):
    ours, _ = twins
    sysroot("summary", f"--repo={ours}", "-u", "-m", "k=notgvariant", check=False)
    assert not (ours / "refs/heads/ostree-metadata").exists()


@pytest.mark.parametrize("own_collection", [None, "org.b"])
def test_collection_map_matches_ostree(tmp_path, ostree, sysroot, own_collection):
    """Mirrored refs of other collections (refs/mirrors/COLLECTION/) go to the summary's
    ostree.summary.collection-map; those of the repository's own collection join the
    main list, as ostree 2022.7 writes (and `summary --view` shows) them."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    ours = tmp_path / "ours"
    ostree("init", f"--repo={ours}", "--mode=archive")
    commit = ostree.out("commit", f"--repo={ours}", "-b", "main", *COMMIT_ARGS, str(tree))
    for cid, ref in (("org.b", "z"), ("org.a", "y"), ("org.a", "x"), ("org.c.d", "q/r")):
        ostree("refs", f"--repo={ours}", "--collections", f"--create={cid}:{ref}", commit)
    if own_collection:
        ostree("config", f"--repo={ours}", "set", "core.collection-id", own_collection)
    theirs = tmp_path / "theirs"
    subprocess.run(["cp", "-a", str(ours), str(theirs)], check=True)
    sysroot("summary", f"--repo={ours}", "-u", env=EPOCH)
    ostree("summary", f"--repo={theirs}", "-u", env=EPOCH)
    assert _files(ours) == _files(theirs)
    assert _summary_but_time(ours) == _summary_but_time(theirs)
    assert b"ostree.summary.collection-map" in (ours / "summary").read_bytes()

    def view(tool, repo):
        text = tool.out("summary", "--view", f"--repo={repo}")
        return [ln for ln in text.splitlines() if "Last-Modified" not in ln]

    shown = view(sysroot, ours)
    assert shown == view(ostree, theirs)
    assert "* (org.c.d, q/r)" in shown
    assert "Collection Map (ostree.summary.collection-map): (printed above)" in shown


def test_metadata_commit_signed_like_the_summary(twins, ostree, sysroot):
    """ostree 2022.7 signs the ostree-metadata commit with the summary's keys (dummy
    signatures, ostree's test engine, make the bytes comparable)."""
    ours, theirs = twins
    env = {**EPOCH, "OSTREE_DUMMY_SIGN_ENABLED": "1"}
    args = ["summary", "-u", "--sign-type=dummy", "--sign=abcd"]
    sysroot(*args, f"--repo={ours}", env=env)
    ostree(*args, f"--repo={theirs}", env=env)
    assert _files(ours) == _files(theirs)
    assert any(name.endswith(".commitmeta") for name in _files(ours))
