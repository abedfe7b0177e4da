"""A remote's `collection-id` binds the commits pulled through it, against ostree
2022.7: over HTTP each commit must carry a ref binding and the same
`ostree.collection-binding`, else the pull fails with ostree's words and stores no ref;
from a file:// remote the source repository's own collection ID binds, as in ostree."""

from __future__ import annotations

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, pulled_by_both, twin_repos
from tests.pull.serve_helpers import RepoServer, refs_of


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree):
    """(server, base): plain/ (no collection ID) and bound/ (org.example.A, whose commits
    carry it), each with main and a summary."""
    base = tmp_path_factory.mktemp("collections")
    tree = base / "tree"
    tree.mkdir()
    (tree / "file").write_text("bound\n")
    for name, extra in (("plain", []), ("bound", ["--collection-id=org.example.A"])):
        repo = base / name
        ostree("init", f"--repo={repo}", "--mode=archive", *extra)
        ostree("commit", f"--repo={repo}", "-b", "main", "--timestamp=2021-01-01", tree)
        ostree("summary", f"--repo={repo}", "-u")
    with RepoServer(base) as server:
        yield server, base


def _pull_both(ostree, sysroot, tmp_path, url, collection_id, *args):
    return pulled_by_both(
        ostree, sysroot, tmp_path, url, (f"--collection-id={collection_id}",), ("main", *args)
    )


@pytest.mark.parametrize(
    "source, collection_id, args, ok",
    [
        ("bound", "org.example.A", [], True),
        ("plain", "org.example.B", [], False),  # no collection binding at all
        ("bound", "org.example.B", [], False),  # bound to another collection
        ("bound", "org.example.B", ["--disable-verify-bindings"], True),
    ],
)
def test_http_remote_binds_like_ostree(
    served, ostree, sysroot, tmp_path, source, collection_id, args, ok
):
    server, _ = served
    url = f"{server.url}{source}"
    theirs, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, url, collection_id, *args
    )
    if ok:
        assert theirs_proc.returncode == ours_proc.returncode == 0
        assert_same_repos(ostree, theirs, ours, "archive")
        return
    assert theirs_proc.returncode != 0
    assert one_error_line(ours_proc) == theirs_proc.stderr.decode().strip().splitlines()[-1]
    assert refs_of(ours) == {}


@pytest.mark.parametrize("source", ["plain", "bound"])
def test_file_remote_binds_to_the_source_repository(served, ostree, sysroot, tmp_path, source):
    """ostree compares with the source repository's collection ID there (none for
    plain/, org.example.A for bound/), not the remote's: both pulls succeed."""
    _, base = served
    theirs, ours, procs = _pull_both(
        ostree, sysroot, tmp_path, f"file://{base / source}", "org.example.B"
    )
    assert [p.returncode for p in procs] == [0, 0]
    assert_same_repos(ostree, theirs, ours, "archive")


def test_collection_refs_and_metadata_ref_like_ostree(served, ostree, sysroot, tmp_path):
    """Through a remote with a collection-id, refs land in refs/remotes/REMOTE/ and
    `refs --collections` lists them as (collection, ref); the remote's `ostree-metadata`
    (which `summary -u` commits there) pulls like any bound ref."""
    server, _ = served
    theirs, ours, procs = _pull_both(
        ostree, sysroot, tmp_path, f"{server.url}bound", "org.example.A"
    )
    assert [p.returncode for p in procs] == [0, 0]
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        tool("pull", f"--repo={repo}", "origin", "ostree-metadata")
    assert_same_repos(ostree, theirs, ours, "archive")
    assert set(refs_of(ours)) == {f"refs/remotes/origin/{r}" for r in ("main", "ostree-metadata")}
    listing = sysroot.out("refs", "--collections", f"--repo={ours}")
    assert listing == ostree.out("refs", "--collections", f"--repo={theirs}")
    assert "(org.example.A, ostree-metadata)" in listing.splitlines()


def _ref_files(repo) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): p.read_text()
        for p in sorted((repo / "refs").rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "source, remote_collection, own_collection, where",
    [
        ("bound", "org.example.A", None, "refs/mirrors/org.example.A"),
        ("bound", None, None, "refs/mirrors/org.example.A"),  # the summary's, not the remote's
        ("bound", "org.example.A", "org.example.A", "refs/heads"),  # the repo's own
        ("plain", None, None, "refs/heads"),
        ("file:bound", "org.example.A", None, "refs/mirrors/org.example.A"),
    ],
)
def test_mirror_files_refs_by_collection_like_ostree(
    served, ostree, sysroot, tmp_path, source, remote_collection, own_collection, where
):
    """pull --mirror puts a collection's refs (the remote summary's
    ostree.summary.collection-id) in refs/mirrors/COLLECTION/, unless it is the
    repository's own, as ostree 2022.7."""
    server, base = served
    url = f"file://{base / source[5:]}" if source.startswith("file:") else f"{server.url}{source}"
    theirs, ours = twin_repos(ostree, tmp_path, "archive", None)
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        if own_collection:
            ostree("config", f"--repo={repo}", "set", "core.collection-id", own_collection)
        extra = [f"--collection-id={remote_collection}"] if remote_collection else []
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", *extra, "origin", url)
        tool("pull", f"--repo={repo}", "--mirror", "origin", "main")
    assert _ref_files(ours) == _ref_files(theirs)
    assert list(_ref_files(ours)) == [f"{where}/main"]
    listing = sysroot.out("refs", "--collections", f"--repo={ours}")
    assert listing == ostree.out("refs", "--collections", f"--repo={theirs}")
    ostree("fsck", f"--repo={ours}")
