"""pull -L/--localcache-repo: objects a local repository has are taken from it, checked
against their names, instead of being fetched; the result is the same repository."""

from __future__ import annotations

from tests.conftest import one_error_line
from tests.helpers.twins import twin_repos
from tests.pull.serve_helpers import RepoServer, make_served_repo, object_names, refs_of


def test_pull_takes_objects_from_the_local_cache(ostree, sysroot, tmp_path):
    served = make_served_repo(ostree, tmp_path / "served")
    cache = tmp_path / "cache"
    ostree("init", f"--repo={cache}", "--mode=bare")
    ostree("pull-local", f"--repo={cache}", str(served["repo"]), "main")
    with RepoServer(served["repo"]) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        ostree("pull", f"--repo={theirs}", "-L", str(cache), "origin", "main")
        theirs_requests = list(server.requests)
        server.requests.clear()
        sysroot("pull", f"--repo={ours}", f"--localcache-repo={cache}", "origin", "main")
        ours_requests = list(server.requests)
    assert refs_of(ours) == refs_of(theirs)
    assert object_names(ours) == object_names(theirs)
    ostree("fsck", f"--repo={ours}")
    fetched = [r for r in ours_requests if r.startswith("objects/")]
    # only the commits come from the server (they are checked against the remote's
    # signature rules); every tree and file came from the cache
    assert fetched and all(r.endswith((".commit", ".commitmeta")) for r in fetched), fetched
    assert not [r for r in theirs_requests if r.endswith(".filez")]


def test_a_corrupt_cache_object_is_refused(ostree, sysroot, tmp_path):
    served = make_served_repo(ostree, tmp_path / "served")
    cache = tmp_path / "cache"
    ostree("init", f"--repo={cache}", "--mode=bare")
    ostree("pull-local", f"--repo={cache}", str(served["repo"]), "main")
    files = [p for p in (cache / "objects").glob("*/*.file") if not p.is_symlink()]
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    with RepoServer(served["repo"]) as server:
        _, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        proc = sysroot("pull", f"--repo={ours}", "-L", str(cache), "origin", "main", check=False)
    line = one_error_line(proc)
    assert "cache" in line
    assert victim.parent.name + victim.stem in line, line
    assert not (ours / "refs/remotes/origin/main").exists()
