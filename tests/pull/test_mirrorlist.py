"""`mirrorlist=URL` as a remote's url or contenturl, against ostree 2022.7: the list
fetched, comments, blank lines and non-http(s) entries skipped, the mirrors probed in
order (their `config`), the first that answers serving the pull."""

from __future__ import annotations

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import RepoServer, free_port, make_served_repo, refs_of


@pytest.fixture(scope="module")
def servers(tmp_path_factory, ostree):
    """(data, lists, broken, good): the served repo; a server of mirror lists (files
    written by each test); a mirror that answers 404 to everything; a good mirror."""
    data = make_served_repo(ostree, tmp_path_factory.mktemp("served"))
    lists = tmp_path_factory.mktemp("lists")
    with (
        RepoServer(lists) as list_server,
        RepoServer(data["repo"]) as broken,
        RepoServer(data["repo"]) as good,
    ):
        broken.serves = lambda path: False
        yield data, lists, list_server, broken, good


def mirror_list(servers, name: str, *entries: str) -> str:
    _, lists, list_server, _, _ = servers
    (lists / name).write_text("".join(f"{e}\n" for e in entries))
    return f"mirrorlist={list_server.url}{name}"


def _pull_both(ostree, sysroot, tmp_path, url, setup=(), expect_ok=True, watch=None):
    """Pull with each tool; watch: a server whose requests each tool's pull made are
    kept in watch.by_tool."""
    theirs, ours = twin_repos(ostree, tmp_path, "archive", None)
    procs = []
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", *setup, "origin", url)
        if watch is not None:
            watch.reset()
        procs.append(tool("pull", f"--repo={repo}", "origin", "main", check=False))
        if watch is not None:
            watch.by_tool.append(list(watch.requests))
    assert [p.returncode == 0 for p in procs] == [expect_ok, expect_ok], procs
    return theirs, ours, procs


@pytest.mark.parametrize("as_contenturl", [False, True])
def test_first_working_mirror_serves_the_pull(servers, ostree, sysroot, tmp_path, as_contenturl):
    data, _, _, broken, good = servers
    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    listed = mirror_list(
        servers,
        "mirrors",
        "# a comment, then a blank line",
        "",
        f"file://{data['repo']}",  # not taken from a list
        dead,
        broken.url,
        good.url,
        broken.url,
    )
    url, setup = (good.url, (f"--contenturl={listed}",)) if as_contenturl else (listed, ())
    broken.by_tool = []
    theirs, ours, _ = _pull_both(ostree, sysroot, tmp_path, url, setup, watch=broken)
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours) == {"refs/remotes/origin/main": data["c2"]}
    # the broken mirror listed before the good one was probed once by each (ostree asks
    # the one listed after the good one too, for files the good one lacks: summary.sig)
    theirs_asked, ours_asked = broken.by_tool
    assert theirs_asked[0] == "config" and ours_asked == ["config"]


def test_no_working_mirror(servers, ostree, sysroot, tmp_path):
    _, _, _, broken, _ = servers
    listed = mirror_list(servers, "bad", f"http://127.0.0.1:{free_port()}/", broken.url)
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, listed, expect_ok=False
    )
    message = f"No valid mirrors were found in mirrorlist '{listed[len('mirrorlist=') :]}'"
    assert message in theirs_proc.stderr.decode()
    assert one_error_line(ours_proc) == f"error: {message}"
    assert refs_of(ours) == {}


def test_list_not_found(servers, ostree, sysroot, tmp_path):
    _, _, list_server, _, _ = servers
    list_url = f"{list_server.url}nosuchlist"
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, f"mirrorlist={list_url}", expect_ok=False
    )
    message = f"While fetching mirrorlist '{list_url}': "
    assert message in theirs_proc.stderr.decode()
    assert one_error_line(ours_proc).startswith(f"error: {message}")
    assert refs_of(ours) == {}


def test_remote_refs_and_summary_from_the_first_working_mirror(servers, ostree, sysroot, tmp_path):
    _, _, _, broken, good = servers
    listed = mirror_list(servers, "for-refs", broken.url, good.url)
    repo = twin_repos(ostree, tmp_path, "archive", None)[1]
    ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", listed)
    for command, shown in (("refs", b"origin:main\n"), ("summary", b"* main\n")):
        theirs = ostree("remote", command, f"--repo={repo}", "origin")
        ours = sysroot("remote", command, f"--repo={repo}", "origin")
        assert ours.stdout == theirs.stdout
        assert shown in ours.stdout


def test_metalink_remote_refused_in_one_line(sysroot, ostree, tmp_path):
    """Metalinks (an XML list of mirrors with checksums of the summary) are not read."""
    repo = twin_repos(ostree, tmp_path, "archive", None)[1]
    ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--no-gpg-verify",
        "m",
        "metalink=http://127.0.0.1:1/m.xml",
    )
    line = one_error_line(sysroot("pull", f"--repo={repo}", "m", "main", check=False))
    assert line == "error: Remote m has no url (metalinks are not supported)"
    assert refs_of(repo) == {}
