"""`mirrorlist=URL` as a remote's url or contenturl, against ostree 2022.7: the list
fetched, comments, blank lines and non-http(s) entries skipped, the mirrors probed in
order (their `config`), the first that answers serving the pull."""

from __future__ import annotations

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import RepoServer, free_port, refs_of, repo_servers


@pytest.fixture(scope="module")
def servers(served_repo, tmp_path_factory):
    """(data, lists, list_server, broken, good): the served repo; a server of mirror
    lists (files written by each test); a mirror that answers 404 to everything; a good
    mirror."""
    lists = tmp_path_factory.mktemp("lists")
    with (
        RepoServer(lists) as list_server,
        repo_servers(served_repo["repo"], lambda path: False, None) as (broken, good),
    ):
        yield served_repo, lists, list_server, broken, good


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
    # the broken mirror listed before the good one was probed once by each, and the one
    # listed after it asked for the files the good one lacks (summary.sig)
    theirs_asked, ours_asked = broken.by_tool
    assert ours_asked[0] == "config" and sorted(ours_asked) == sorted(theirs_asked)
    assert ("summary.sig" in ours_asked) is not as_contenturl  # url's file, not content


def _every_other_object(path: str) -> bool:
    """What the partial mirror has: no object whose name's first digit is even."""
    name = path.rpartition("/")[2]
    return not path.startswith("objects/") or int(name[0], 16) % 2 == 1


@pytest.mark.parametrize("dead_between", [False, True])
def test_each_file_from_the_next_mirror_that_has_it(
    servers, ostree, sysroot, tmp_path, dead_between
):
    """A mirror that lacks some objects (a bare 404: ostree 2022.7 would take an error
    page's body for the start of the object) passes each on to the mirrors after it:
    the pull gets every object, as ostree's does. An unreachable mirror in between is
    passed over too (ostree fails the pull there: its list here has no dead mirror)."""
    data, _, _, _, good = servers
    dead = [f"http://127.0.0.1:{free_port()}/"] if dead_between else []
    with repo_servers(data["repo"], _every_other_object) as (partial,):
        partial.bare_404 = True
        theirs, ours = twin_repos(ostree, tmp_path, "archive", None)
        asked = {}
        for tool, repo, extra in ((ostree, theirs, []), (sysroot, ours, dead)):
            listed = mirror_list(servers, f"partial-{repo.name}", partial.url, *extra, good.url)
            ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", listed)
            partial.reset()
            good.reset()
            tool("pull", f"--repo={repo}", "origin", "main")
            asked[tool] = (list(partial.requests), list(good.requests))
        assert_same_repos(ostree, theirs, ours, "archive")
        assert refs_of(ours) == {"refs/remotes/origin/main": data["c2"]}
        from_partial, from_good = (
            {p for p in r if p.startswith("objects/")} for r in asked[sysroot]
        )
        lacking = {p for p in from_partial if not _every_other_object(p)}
        assert lacking and lacking < from_partial
        # only what the first mirror lacked (or nobody has: the detached metadata)
        assert lacking <= from_good <= from_partial
        assert all(_every_other_object(p) for p in from_good - lacking)
        assert from_good == {p for p in asked[ostree][1] if p.startswith("objects/")}


def test_dead_last_mirror_fails_what_the_others_lack(servers, ostree, sysroot, tmp_path):
    """As in ostree 2022.7: the last mirror's failure is the file's, summary.sig too."""
    _, _, _, _, good = servers
    dead = f"http://127.0.0.1:{free_port()}/"
    listed = mirror_list(servers, "dead-last", good.url, dead)
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, listed, expect_ok=False
    )
    assert f"{dead}summary.sig" in theirs_proc.stderr.decode()
    assert f"{dead}summary.sig" in one_error_line(ours_proc)
    assert refs_of(ours) == {}


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


def test_remote_refs_summary_from_the_next_mirror(servers, ostree, sysroot, tmp_path):
    """`remote refs` asks the mirrors in turn too: the first one has no summary."""
    data, _, _, _, good = servers
    with repo_servers(data["repo"], lambda path: path != "summary") as (no_summary,):
        no_summary.bare_404 = True
        listed = mirror_list(servers, "no-summary-first", no_summary.url, good.url)
        repo = twin_repos(ostree, tmp_path, "archive", None)[1]
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", listed)
        theirs = ostree("remote", "refs", f"--repo={repo}", "origin")
        ours = sysroot("remote", "refs", f"--repo={repo}", "origin")
        assert ours.stdout == theirs.stdout == b"origin:main\norigin:other\n"
        assert "summary" in no_summary.requests
