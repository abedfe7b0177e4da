"""`pull -T/--timestamp-check` and `--timestamp-check-from-rev`: the rollback (freeze)
defense, against ostree 2022.7 as the oracle.

The served archive repository has main = A (2022) whose parent is B (2021), E (same
time as A) and O (2020) on `old`. Moving the served `main` back to B is the attack:
with -T both tools refuse it with the same single line, and the ref stays at A. Without
-T both accept it: ostree's default does not check timestamps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysroot.store.timestamps import format_glib_time
from tests.conftest import one_error_line
from tests.helpers.twins import run_both, twin_repos
from tests.pull.serve_helpers import RepoServer, object_names, refs_of

TS_A, TS_B, TS_O = 1654041600, 1609804800, 1577836800  # 2022-06-01, 2021-01-05, 2020-01-01


def _stamp(ts: int) -> str:
    return f"--timestamp=@{ts}"


def _commit(ostree, repo: Path, tree: Path, branch: str, ts: int, subject: str) -> str:
    (tree / "file").write_text(subject + "\n")  # each commit its own content
    return ostree.out(
        "commit", f"--repo={repo}", "-b", branch, _stamp(ts), "-s", subject, str(tree)
    )


@pytest.fixture
def served(tmp_path, ostree):
    """A fresh served repository per test: tests move its refs."""
    repo = tmp_path / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub/kept").write_text("in every commit\n")
    data = {"repo": repo, "tree": tree}
    data["o"] = _commit(ostree, repo, tree, "old", TS_O, "O")
    data["b"] = _commit(ostree, repo, tree, "main", TS_B, "B")
    data["a"] = _commit(ostree, repo, tree, "main", TS_A, "A")  # parent B
    data["e"] = _commit(ostree, repo, tree, "main", TS_A, "E")  # parent A, A's time
    serve(ostree, repo, "main", data["a"])
    with RepoServer(repo) as server:
        data["server"] = server
        yield data


def serve(ostree, repo: Path, ref: str, checksum: str) -> None:
    """Point the served ref at checksum (any commit, as a hostile server would)."""
    (repo / "refs/heads" / ref).write_text(checksum + "\n")
    ostree("summary", f"--repo={repo}", "-u")


def both(ostree, sysroot, repos: tuple[Path, Path], *args: str, ok: bool = True):
    """Run `pull ARGS` with each tool; when refused, return the two error lines."""
    p1, p2 = run_both(ostree, sysroot, repos, "pull", *args)
    if ok:
        assert p1.returncode == 0, p1.stderr.decode()
        assert p2.returncode == 0, p2.stderr.decode()
        return None
    return one_error_line(p1), one_error_line(p2)


def refusal(new: str, new_ts: int, current: str, current_ts: int) -> str:
    return (
        f"error: Upgrade target revision '{new}' with timestamp "
        f"'{format_glib_time(new_ts)}' is chronologically older than current revision "
        f"'{current}' with timestamp '{format_glib_time(current_ts)}'; use "
        "--allow-downgrade to permit"
    )


def state(repo: Path) -> tuple[dict, set, list]:
    return refs_of(repo), object_names(repo), sorted(os.listdir(repo / "state"))


def test_rollback_refused_with_timestamp_check(tmp_path, ostree, sysroot, served):
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    both(ostree, sysroot, repos, "origin", "main")
    serve(ostree, served["repo"], "main", served["b"])  # the rollback
    before = state(repos[1])
    for flag in ("-T", "--timestamp-check"):
        theirs, ours = both(ostree, sysroot, repos, flag, "origin", "main", ok=False)
        assert theirs == ours == refusal(served["b"], TS_B, served["a"], TS_A)
        for repo in repos:
            assert refs_of(repo) == {"refs/remotes/origin/main": served["a"]}
    # refused before anything of B is stored (ostree leaves B.commitpartial behind)
    assert state(repos[1]) == before
    assert not any(served["b"][2:] in name for name in object_names(repos[1]))


def test_rollback_to_a_commit_already_here(tmp_path, ostree, sysroot, served):
    """B pulled before A: going back to it is refused all the same."""
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    serve(ostree, served["repo"], "main", served["b"])
    both(ostree, sysroot, repos, "origin", "main")
    serve(ostree, served["repo"], "main", served["a"])
    both(ostree, sysroot, repos, "origin", "main")
    serve(ostree, served["repo"], "main", served["b"])
    theirs, ours = both(ostree, sysroot, repos, "-T", "origin", "main", ok=False)
    assert theirs == ours == refusal(served["b"], TS_B, served["a"], TS_A)
    for repo in repos:
        assert refs_of(repo) == {"refs/remotes/origin/main": served["a"]}


def test_rollback_accepted_by_default(tmp_path, ostree, sysroot, served):
    """ostree's default: no timestamp check, a server may move a ref back."""
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    both(ostree, sysroot, repos, "origin", "main")
    serve(ostree, served["repo"], "main", served["b"])
    both(ostree, sysroot, repos, "origin", "main")
    for repo in repos:
        assert refs_of(repo) == {"refs/remotes/origin/main": served["b"]}


def test_first_pull_and_newer_commits_accepted(tmp_path, ostree, sysroot, served):
    """No local ref yet: nothing to compare. Then newer, equal-time and same commits."""
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    serve(ostree, served["repo"], "main", served["b"])
    both(ostree, sysroot, repos, "-T", "origin", "main")
    for checksum in ("a", "e", "e"):  # newer; the same time, another commit; the same
        serve(ostree, served["repo"], "main", served[checksum])
        both(ostree, sysroot, repos, "-T", "origin", "main")
        for repo in repos:
            assert refs_of(repo) == {"refs/remotes/origin/main": served[checksum]}


def test_timestamp_check_from_rev(tmp_path, ostree, sysroot, served):
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    both(ostree, sysroot, repos, "origin", "main", "old")  # A and O are here now
    serve(ostree, served["repo"], "main", served["b"])
    expected = refusal(served["b"], TS_B, served["a"], TS_A)
    for rev in (served["a"], "origin:main"):  # newer than B, as a checksum or a ref
        theirs, ours = both(
            ostree, sysroot, repos, f"--timestamp-check-from-rev={rev}", "origin", "main", ok=False
        )
        assert theirs == ours == expected
        for repo in repos:
            assert refs_of(repo)["refs/remotes/origin/main"] == served["a"]
    # by checksum too: no ref, the commit itself is compared
    theirs, ours = both(
        ostree,
        sysroot,
        repos,
        f"--timestamp-check-from-rev={served['a']}",
        "origin",
        served["b"],
        ok=False,
    )
    assert theirs == ours == expected
    # an unknown rev: refused before anything is fetched
    theirs, ours = both(
        ostree, sysroot, repos, "--timestamp-check-from-rev=nosuchref", "origin", "main", ok=False
    )
    assert theirs == ours == "error: Refspec 'nosuchref' not found"
    # older than B: accepted
    both(ostree, sysroot, repos, f"--timestamp-check-from-rev={served['o']}", "origin", "main")
    for repo in repos:
        assert refs_of(repo)["refs/remotes/origin/main"] == served["b"]


def test_from_rev_checks_the_history_fetched(tmp_path, ostree, sysroot, served):
    """With --depth, ostree compares every commit fetched, the parents too."""
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    both(ostree, sysroot, repos, "origin", "main")  # A
    serve(ostree, served["repo"], "main", served["e"])  # E (A's time) <- A <- B (older)
    theirs, ours = both(
        ostree,
        sysroot,
        repos,
        f"--timestamp-check-from-rev={served['a']}",
        "--depth=-1",
        "origin",
        "main",
        ok=False,
    )
    assert theirs == ours == refusal(served["b"], TS_B, served["a"], TS_A)
    for repo in repos:
        assert refs_of(repo) == {"refs/remotes/origin/main": served["a"]}


def test_compares_what_the_name_resolves_to(tmp_path, ostree, sysroot, served):
    """ostree resolves the ref's name as given (refs/heads first), not the remote:ref
    the pull would move: a mirrored refs/heads/main guards origin:main."""
    repos = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    both(ostree, sysroot, repos, "--mirror", "origin", "main")
    serve(ostree, served["repo"], "main", served["b"])
    theirs, ours = both(ostree, sysroot, repos, "-T", "origin", "main", ok=False)
    assert theirs == ours == refusal(served["b"], TS_B, served["a"], TS_A)
    for repo in repos:
        assert refs_of(repo) == {"refs/heads/main": served["a"]}


def test_file_remote(tmp_path, ostree, sysroot, served):
    repos = twin_repos(ostree, tmp_path, "archive", f"file://{served['repo']}")
    both(ostree, sysroot, repos, "origin", "main")
    serve(ostree, served["repo"], "main", served["b"])
    before = state(repos[1])
    theirs, ours = both(ostree, sysroot, repos, "-T", "origin", "main", ok=False)
    assert theirs == ours == refusal(served["b"], TS_B, served["a"], TS_A)
    assert state(repos[1]) == before
    theirs, ours = both(
        ostree,
        sysroot,
        repos,
        f"--timestamp-check-from-rev={served['a']}",
        "origin",
        "main",
        ok=False,
    )
    assert theirs == ours
    both(ostree, sysroot, repos, "origin", "main")  # without the check: accepted
    for repo in repos:
        assert refs_of(repo) == {"refs/remotes/origin/main": served["b"]}


@pytest.mark.parametrize("args", [["origin", "CHECKSUM"], ["--depth=1", "origin", "main"]])
def test_unsupported_combinations_refused(tmp_path, ostree, sysroot, served, args):
    """-T with a pull by checksum or with --depth: ostree 2022.7 aborts on an assertion
    (exit 134); sysroot refuses with one line, exit 2, before fetching anything."""
    args = [served["b"] if a == "CHECKSUM" else a for a in args]
    theirs, ours = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    p = ostree("pull", f"--repo={theirs}", "-T", *args, check=False)
    assert p.returncode != 0 and b"assertion failed" in p.stderr
    before = state(ours)
    served["server"].reset()
    p = sysroot("pull", f"--repo={ours}", "-T", *args, check=False)
    line = one_error_line(p)
    assert p.returncode == 2 and line.startswith("error: --timestamp-check "), line
    assert served["server"].object_requests() == []
    assert state(ours) == before


def test_pull_local_has_no_timestamp_check(tmp_path, ostree, sysroot, served):
    """ostree's pull-local has neither option; neither does sysroot's."""
    theirs, ours = twin_repos(ostree, tmp_path, "archive", None)
    for opt in ("-T", "--timestamp-check-from-rev=main"):
        p1 = ostree("pull-local", f"--repo={theirs}", opt, str(served["repo"]), "main", check=False)
        p2 = sysroot("pull-local", f"--repo={ours}", opt, str(served["repo"]), "main", check=False)
        assert p1.returncode != 0 and p2.returncode != 0
        assert refs_of(theirs) == refs_of(ours) == {}


def test_two_refs_at_one_commit(tmp_path, ostree, sysroot, served):
    """Each ref is compared with its own local commit, also when another ref pulled at
    the same time points at the same commit. ostree 2022.7 refuses this over http but
    not from a file:// remote (it scans the commit once, for the first ref, and lets
    the second move back): sysroot refuses it from both, with ostree's http message."""
    nobind = "--disable-verify-bindings"  # A and B are bound to main only
    for url in (served["server"].url, f"file://{served['repo']}"):
        (tmp_path / url.split(":")[0]).mkdir()
        repos = twin_repos(ostree, tmp_path / url.split(":")[0], "archive", url)
        serve(ostree, served["repo"], "main", served["b"])
        serve(ostree, served["repo"], "other", served["a"])
        both(ostree, sysroot, repos, nobind, "origin", "main", "other")
        serve(ostree, served["repo"], "other", served["b"])  # other goes back, main stays
        theirs, ours = repos
        ostree(
            "pull", f"--repo={theirs}", nobind, "-T", "origin", "main", "other", check=False
        )  # its outcome depends on the transport (see above)
        p = sysroot("pull", f"--repo={ours}", nobind, "-T", "origin", "main", "other", check=False)
        assert one_error_line(p) == refusal(served["b"], TS_B, served["a"], TS_A)
        assert refs_of(ours) == {
            "refs/remotes/origin/main": served["b"],
            "refs/remotes/origin/other": served["a"],
        }
