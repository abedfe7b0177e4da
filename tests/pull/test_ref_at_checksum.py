"""`pull REMOTE REF@CHECKSUM` against ostree 2022.7: the commit is pulled and REF set to
it, whatever the remote's summary names; the ref binding, the rollback check and the
refusals of a bad spelling are ostree's. Over http:// and file:// alike."""

from __future__ import annotations

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import RepoServer, make_served_repo, object_names, refs_of


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree):
    data = make_served_repo(ostree, tmp_path_factory.mktemp("served"))
    with RepoServer(data["repo"]) as server:
        data["urls"] = {"http": server.url, "file": f"file://{data['repo']}"}
        yield data


@pytest.fixture(params=["http", "file"])
def url(request, served) -> str:
    return served["urls"][request.param]


def pull_both(ostree, sysroot, tmp_path, url, *args, mode="archive"):
    theirs, ours = twin_repos(ostree, tmp_path, mode, url)
    ostree("pull", f"--repo={theirs}", *args)
    sysroot("pull", f"--repo={ours}", *args)
    assert_same_repos(ostree, theirs, ours, mode)
    return theirs, ours


def test_ref_set_to_the_given_commit(served, ostree, sysroot, tmp_path, url):
    # the summary says main is c2: c1 is pulled, and main set to it
    _, ours = pull_both(ostree, sysroot, tmp_path, url, "origin", f"main@{served['c1']}")
    assert refs_of(ours) == {"refs/remotes/origin/main": served["c1"]}


def test_bare_user_and_mirror(served, ostree, sysroot, tmp_path, url):
    _, ours = pull_both(
        ostree, sysroot, tmp_path, url, "origin", f"main@{served['c1']}", mode="bare-user"
    )
    assert refs_of(ours) == {"refs/remotes/origin/main": served["c1"]}
    (tmp_path / "m").mkdir()
    _, ours = pull_both(
        ostree, sysroot, tmp_path / "m", url, "--mirror", "origin", f"main@{served['c1']}"
    )
    assert refs_of(ours) == {"refs/heads/main": served["c1"]}


def test_ref_not_on_the_remote(served, ostree, sysroot, tmp_path, url):
    """The remote's refs are not asked: a name it does not have is set all the same
    (with bindings not verified: c1 is bound to main)."""
    args = ("--disable-verify-bindings", "origin", f"nosuch@{served['c1']}")
    _, ours = pull_both(ostree, sysroot, tmp_path, url, *args)
    assert refs_of(ours) == {"refs/remotes/origin/nosuch": served["c1"]}


def test_mixed_and_repeated_names(served, ostree, sysroot, tmp_path, url):
    """A name given twice is pulled once, the last spelling counting, as in ostree."""
    args = ("origin", f"main@{served['c1']}", "other", f"main@{served['c2']}")
    _, ours = pull_both(ostree, sysroot, tmp_path, url, *args)
    assert refs_of(ours) == {
        "refs/remotes/origin/main": served["c2"],
        "refs/remotes/origin/other": served["other"],
    }
    c1 = served["c1"]
    assert not (ours / f"objects/{c1[:2]}/{c1[2:]}.commit").exists()


def test_checksum_before_the_at(served, ostree, sysroot, tmp_path, url):
    """CHECKSUM@CHECKSUM: ostree pulls the first as a checksum and moves no ref."""
    _, ours = pull_both(ostree, sysroot, tmp_path, url, "origin", f"{served['c2']}@{served['c1']}")
    assert refs_of(ours) == {}


def test_rollback_check_applies(served, ostree, sysroot, tmp_path, url):
    """-T compares the given commit with the ref's: c1 is no newer than c2 (the same
    timestamp), so both accept it; a commit made later then refuses c1."""
    theirs, ours = twin_repos(ostree, tmp_path, "archive", url)
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        tool("pull", f"--repo={repo}", "origin", "main")
        tool("pull", f"--repo={repo}", "-T", "origin", f"main@{served['c1']}")
    assert_same_repos(ostree, theirs, ours, "archive")
    # a local main newer than c1 (-T resolves the bare name, refs/heads first)
    for repo in (theirs, ours):
        newer = tmp_path / "newer"
        newer.mkdir(exist_ok=True)
        ostree("commit", f"--repo={repo}", "-b", "main", "--timestamp=2030-01-01", str(newer))
    args = ("-T", "origin", f"main@{served['c1']}")
    before = refs_of(ours)
    err = ostree("pull", f"--repo={theirs}", *args, check=False).stderr.decode()
    assert "chronologically older" in err
    line = one_error_line(sysroot("pull", f"--repo={ours}", *args, check=False))
    assert "chronologically older" in line
    assert refs_of(ours) == before == refs_of(theirs)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("other@{c1}", "has no requested ref 'other' in ref binding metadata ('main')"),
        ("main@abc", "Invalid rev abc"),
        ("main@", "error: Invalid rev"),
        ("main@{C1}", "Invalid rev {C1}"),  # upper case is no checksum
        ("@{c1}", "Invalid ref name"),
        ("main@{c1}@{c1}", "Invalid ref name"),  # split at the last @
        ("origin:main@{c1}", "Invalid refspec origin:main@{c1}"),  # not in REMOTE:REF
        ("main@" + "0" * 64, "0" * 64),  # no such commit (http: 404, file: no object)
    ],
)
def test_refusals_like_ostree(served, ostree, sysroot, tmp_path, url, spec, message):
    c1 = served["c1"]
    spec = spec.format(c1=c1, C1=c1.upper())
    message = message.format(c1=c1, C1=c1.upper())
    args = [spec] if spec.startswith("origin:") else ["origin", spec]
    theirs, ours = twin_repos(ostree, tmp_path, "archive", url)
    assert ostree("pull", f"--repo={theirs}", *args, check=False).returncode != 0
    line = one_error_line(sysroot("pull", f"--repo={ours}", *args, check=False))
    assert line.startswith("error: ") and message in line, line
    assert refs_of(ours) == refs_of(theirs) == {}
    assert object_names(ours) == set()
