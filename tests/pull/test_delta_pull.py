"""`sysroot pull` through static deltas, against `ostree pull` (the oracle).

The served archive repository, its deltas (from scratch to C1, C1 -> C2 with a bsdiff'd
and a rollsum'd file) and its summary and delta indexes are all made by the real
ostree. Both tools pull into twin repositories; the results must match (refs, objects,
`ostree fsck` clean on ours), and the request log must show that sysroot fetched the
superblock and parts and no object the delta carries (2022.7's scan race fetched some).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import RepoServer, new_repo, object_bytes, object_names, refs_of


def _write_tree(root: Path, version: int) -> None:
    """C1 (version 1): small files, a symlink, two 200-300 kB binaries; C2: a few
    files changed, one added, the binaries changed a little (bsdiff and rollsum)."""
    rnd = random.Random(7)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    for i in range(40):
        (root / f"usr/bin/tool{i}").write_text(f"tool {i}\n" * (i + 1))
    os.symlink("tool1", root / "usr/bin/link")
    big = bytearray(rnd.getrandbits(8) for _ in range(200_000))
    roll = bytearray(rnd.getrandbits(8) for _ in range(300_000))
    if version == 2:
        (root / "usr/bin/tool3").write_text("changed\n")
        (root / "etc/new").write_text("new in C2\n")
        big[1000] ^= 1  # a few bytes: bsdiff
        big[150_000] ^= 1
        roll[100_000:100_000] = b"INSERTED" * 10  # an insertion: rollsum finds the rest
    (root / "usr/bin/big").write_bytes(bytes(big))
    (root / "usr/bin/roll").write_bytes(bytes(roll))


def _make_served(ostree, base: Path) -> dict:
    repo = base / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    ids = {}
    for v in (1, 2):
        tree = base / f"t{v}"
        _write_tree(tree, v)
        ids[f"c{v}"] = ostree.out(
            "commit", f"--repo={repo}", "-b", "main", f"--timestamp=2021-01-0{v}", "-s", "v", tree
        )
    c1, c2 = ids["c1"], ids["c2"]
    ostree("static-delta", "generate", f"--repo={repo}", "--empty", f"--to={c1}")
    ostree("static-delta", "generate", f"--repo={repo}", f"--from={c1}", f"--to={c2}")
    ostree("summary", f"--repo={repo}", "-u")
    return {"repo": repo, **ids}


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree):
    data = _make_served(ostree, tmp_path_factory.mktemp("deltas"))
    with RepoServer(data["repo"]) as server:
        data["server"] = server
        yield data


def _delta_dir(repo: Path, ostree, name: str) -> Path:
    """The directory of delta name in repo (the one `show` finds)."""
    from sysroot.formats.static_delta import DeltaName

    return repo / DeltaName.parse(name).relpath


def _pull(tool, repo: Path, *args: str, check: bool = True, env=None):
    return tool("pull", f"--repo={repo}", *args, check=check, env=env)


def _carried(ostree, served_repo: Path, delta: str) -> set[str]:
    """objects/ paths (archive names) of the objects a delta's parts make."""
    from sysroot.formats.static_delta import parse_superblock

    sb = parse_superblock((_delta_dir(served_repo, ostree, delta) / "superblock").read_bytes())
    return {f"objects/{c[:2]}/{c[2:]}.{t.extension(True)}" for p in sb.parts for t, c in p.objects}


def test_the_delta_has_bsdiff_and_rollsum(served, ostree):
    show = ostree.out("static-delta", "show", f"--repo={served['repo']}", _name(served))
    assert "bspatch=1" in show
    assert "setread=0" not in show  # the rollsum'd file reads its old version


def _name(served) -> str:
    return f"{served['c1']}-{served['c2']}"


@pytest.mark.parametrize("mode", ["bare-user", "bare"])
def test_delta_pull_like_ostree(served, ostree, sysroot, tmp_path, mode):
    server = served["server"]
    theirs, ours = twin_repos(ostree, tmp_path, mode, server.url)
    c1, c2 = served["c1"], served["c2"]
    # from scratch, then C1 -> C2
    for spec, delta in ((f"main@{c1}", c1), ("main", _name(served))):
        _pull(ostree, theirs, "origin", spec)
        server.reset()
        out = sysroot.out("pull", f"--repo={ours}", "origin", spec)
        assert out.startswith("1 delta parts, 0 loose fetched; "), out
        assert_same_repos(ostree, theirs, ours, mode)
        relpath = str(_delta_dir(served["repo"], ostree, delta).relative_to(served["repo"]))
        assert f"{relpath}/superblock" in server.requests
        assert f"{relpath}/0" in server.requests
        # no scan race: nothing the delta carries is fetched as an object
        assert not _carried(ostree, served["repo"], delta) & set(server.requests)
        assert server.object_requests() == []
    assert refs_of(ours) == {"refs/remotes/origin/main": c2}


def test_archive_repo_pulls_objects_as_ostree(served, ostree, sysroot, tmp_path):
    server = served["server"]
    theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
    for args in (("--require-static-deltas",), ("--dry-run", "--require-static-deltas")):
        err = _pull(ostree, theirs, "origin", "main", *args, check=False).stderr.decode()
        assert "Can't use static deltas in an archive repo" in err
        line = one_error_line(_pull(sysroot, ours, "origin", "main", *args, check=False))
        assert line.endswith("Can't use static deltas in an archive repo")
    _pull(ostree, theirs, "origin", "main")
    server.reset()
    _pull(sysroot, ours, "origin", "main")
    assert not [p for p in server.requests if p.startswith("deltas/")]
    assert object_bytes(ours) == object_bytes(theirs)
    ostree("fsck", f"--repo={ours}")


def test_disable_static_deltas(served, ostree, sysroot, tmp_path):
    server = served["server"]
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
    _pull(ostree, theirs, "origin", "main", "--disable-static-deltas")
    server.reset()
    out = sysroot.out("pull", f"--repo={ours}", "origin", "main", "--disable-static-deltas")
    assert "delta parts" not in out
    assert not [p for p in server.requests if p.startswith(("deltas/", "delta-indexes/"))]
    assert_same_repos(ostree, theirs, ours, "bare-user")


def test_require_static_deltas_without_a_usable_delta(served, ostree, sysroot, tmp_path):
    """Only scratch -> C1 and C1 -> C2 exist: a fresh repo has no way to C2."""
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", served["server"].url)
    err = _pull(ostree, theirs, "origin", "main", "--require-static-deltas", check=False)
    ours_line = one_error_line(
        _pull(sysroot, ours, "origin", "main", "--require-static-deltas", check=False)
    )
    want = f"Static deltas required, but none found for main to {served['c2']}"
    assert want in err.stderr.decode()
    assert ours_line.endswith(want)
    assert refs_of(ours) == {}
    assert object_names(ours) == set()
    # both flags: refused (ostree aborts on an assertion)
    one_error_line(
        _pull(
            sysroot,
            ours,
            "origin",
            "main",
            "--require-static-deltas",
            "--disable-static-deltas",
            check=False,
        )
    )


def test_dry_run_prints_what_ostree_prints(served, ostree, sysroot, tmp_path):
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", served["server"].url)
    c1 = served["c1"]
    for spec in (f"main@{c1}", "main"):
        args = ("origin", spec, "--dry-run", "--require-static-deltas")
        before = object_names(ours)
        want = ostree.out("pull", f"--repo={theirs}", *args)
        assert want.startswith("Delta update: ")
        assert sysroot.out("pull", f"--repo={ours}", *args) == want
        assert object_names(ours) == before  # nothing stored
        for repo in (theirs, ours):
            _pull(ostree, repo, "origin", spec)
    # up to date: ostree prints an empty update
    args = ("origin", "main", "--dry-run", "--require-static-deltas")
    assert sysroot.out("pull", f"--repo={ours}", *args) == ostree.out(
        "pull", f"--repo={theirs}", *args
    )


@pytest.fixture
def at_c1(served, ostree, tmp_path):
    """A bare-user repo with origin:main at C1 (pulled by ostree)."""
    repo = new_repo(ostree, tmp_path / "ours", "bare-user", served["server"].url)
    _pull(ostree, repo, "origin", f"main@{served['c1']}")
    served["server"].reset()
    return repo


def test_corrupt_part_fails_and_moves_nothing(served, ostree, sysroot, at_c1):
    server = served["server"]
    relpath = _delta_dir(served["repo"], ostree, _name(served)).relative_to(served["repo"])
    server.faults[f"{relpath}/0"] = "corrupt"
    line = one_error_line(_pull(sysroot, at_c1, "origin", "main", check=False))
    assert "part 0 of static delta" in line and "Checksum mismatch" in line, line
    assert refs_of(at_c1) == {"refs/remotes/origin/main": served["c1"]}
    ostree("fsck", f"--repo={at_c1}")
    # the next pull (a good part) completes
    server.reset()
    _pull(sysroot, at_c1, "origin", "main")
    assert refs_of(at_c1) == {"refs/remotes/origin/main": served["c2"]}
    ostree("fsck", f"--repo={at_c1}")


def _copy_served(served, tmp_path: Path) -> Path:
    copy = tmp_path / "served-copy"
    shutil.copytree(served["repo"], copy, symlinks=True)
    return copy


def test_superblock_not_matching_the_summary(served, ostree, sysroot, at_c1, tmp_path):
    """The summary's digest is checked before the superblock is parsed: here a valid
    superblock (the scratch delta's) in place of the listed one."""
    copy = _copy_served(served, tmp_path)
    sb = _delta_dir(copy, ostree, _name(served)) / "superblock"
    shutil.copy(_delta_dir(copy, ostree, served["c1"]) / "superblock", sb)
    with RepoServer(copy) as server:
        ostree("remote", "add", f"--repo={at_c1}", "--no-gpg-verify", "bad", server.url)
        want = f"Invalid checksum for static delta {_name(served)}"
        err = _pull(ostree, at_c1, "bad", "main", check=False).stderr.decode()
        assert want in err
        line = one_error_line(_pull(sysroot, at_c1, "bad", "main", check=False))
        assert line.endswith(want)
        assert server.object_requests() == []
    assert refs_of(at_c1) == {"refs/remotes/origin/main": served["c1"]}
    ostree("fsck", f"--repo={at_c1}")


def test_truncated_superblock_without_summary(served, ostree, sysroot, at_c1, tmp_path):
    """No summary, no index: the superblock is asked for by name, unchecked (the
    legacy path), so the parser meets the truncated bytes."""
    copy = _copy_served(served, tmp_path)
    (copy / "summary").unlink()
    shutil.rmtree(copy / "delta-indexes")
    config = copy / "config"
    config.write_text(config.read_text().replace("indexed-deltas=true", ""))
    sb = _delta_dir(copy, ostree, _name(served)) / "superblock"
    sb.write_bytes(sb.read_bytes()[: sb.stat().st_size // 2])
    with RepoServer(copy) as server:
        before = object_names(at_c1)
        # --url: the ref's local commit (origin:main) names the delta
        line = one_error_line(
            _pull(sysroot, at_c1, "origin", "main", f"--url={server.url}", check=False)
        )
        assert "static delta" in line.lower(), line
        assert str(sb.relative_to(copy)) in server.requests
    assert object_names(at_c1) == before
    assert refs_of(at_c1) == {"refs/remotes/origin/main": served["c1"]}
    ostree("fsck", f"--repo={at_c1}")


def test_legacy_path_pulls_the_delta(served, ostree, sysroot, tmp_path):
    """No summary, no index: the FROM-TO superblock named after the local ref."""
    copy = _copy_served(served, tmp_path)
    (copy / "summary").unlink()
    shutil.rmtree(copy / "delta-indexes")
    config = copy / "config"
    config.write_text(config.read_text().replace("indexed-deltas=true", ""))
    with RepoServer(copy) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
        for repo in (theirs, ours):
            _pull(ostree, repo, "origin", f"main@{served['c1']}")
        _pull(ostree, theirs, "origin", "main")
        server.reset()
        _pull(sysroot, ours, "origin", "main")
        assert server.object_requests() == []
        assert any(p.endswith("/0") for p in server.requests)
        assert_same_repos(ostree, theirs, ours, "bare-user")


def test_require_over_file_url_uses_the_delta(served, ostree, sysroot, tmp_path):
    """As ostree: --require-static-deltas fetches from a file:// remote through its
    deltas instead of importing it."""
    repo = new_repo(ostree, tmp_path / "ours", "bare-user", f"file://{served['repo']}")
    out = sysroot.out(
        "pull", f"--repo={repo}", "origin", f"main@{served['c1']}", "--require-static-deltas"
    )
    assert out.startswith("1 delta parts"), out
    ostree("fsck", f"--repo={repo}")


def test_parts_already_present_are_not_fetched(served, ostree, sysroot, tmp_path):
    """A commit left partial with every object of the part in (an interrupted pull):
    the delta's part is skipped, as by ostree."""
    repo = new_repo(ostree, tmp_path / "ours", "bare-user", served["server"].url)
    _pull(ostree, repo, "origin", f"main@{served['c1']}")
    (repo / "state").mkdir(exist_ok=True)
    (repo / "state" / f"{served['c1']}.commitpartial").write_bytes(b"")
    (repo / "refs/remotes/origin/main").unlink()
    server = served["server"]
    server.reset()
    out = sysroot.out("pull", f"--repo={repo}", "origin", f"main@{served['c1']}")
    assert out.startswith("1 delta parts"), out
    assert not [p for p in server.requests if p.endswith("/0")]
    assert not (repo / "state" / f"{served['c1']}.commitpartial").exists()
    subprocess.run(["ostree", "fsck", f"--repo={repo}"], check=True, capture_output=True)


def test_progress_line_counts_delta_parts():
    import io

    from sysroot.pull.progress import Progress

    progress = Progress(io.StringIO(), live=False)
    assert progress.line().startswith("Receiving objects: 0% (0/0)")
    progress.add_parts(3, 1)
    progress.add_part_done()
    progress.add_total(2)
    assert progress.line().startswith("Receiving delta parts: 2/3 objects: 0/2 ")


def _parts_kept(repo: Path, superblock: Path) -> set[int]:
    """The parts of the delta whose objects repo has, all of them."""
    from sysroot.store.repo import Repo
    from sysroot.store.static_delta import load_path

    parts = load_path(str(superblock)).superblock.parts
    with Repo.open(str(repo)) as r:
        return {i for i, p in enumerate(parts) if all(r.has_object(t, c) for t, c in p.objects)}


def test_part_failing_midway_resumes_with_that_part_only(ostree, sysroot, tmp_path):
    """Three parts (1 MB chunks), the last one missing on the server: the pull fails,
    moves no ref; the parts that ran are kept, so the next pull fetches only the others.
    (Which ran before the failure stopped the workers depends on timing: a part in
    flight when the failing one comes back may be dropped, and is then fetched again.)"""
    repo = tmp_path / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "tree"
    tree.mkdir()
    rnd = random.Random(3)
    for i in range(3):
        (tree / f"blob{i}").write_bytes(bytes(rnd.getrandbits(8) for _ in range(600_000)))
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "x", tree)
    ostree(
        "static-delta", "generate", f"--repo={repo}", "--empty", f"--to={c1}", "--max-chunk-size=1"
    )
    ostree("summary", f"--repo={repo}", "-u")
    relpath = _delta_dir(repo, ostree, c1).relative_to(repo)
    assert (repo / relpath / "2").exists()
    with RepoServer(repo) as server:
        ours = new_repo(ostree, tmp_path / "ours", "bare-user", server.url)
        server.faults[f"{relpath}/2"] = "404"
        one_error_line(_pull(sysroot, ours, "origin", "main", check=False))
        assert refs_of(ours) == {}
        ostree("fsck", f"--repo={ours}")
        kept = _parts_kept(ours, repo / relpath / "superblock")
        assert 2 not in kept
        server.reset()
        out = sysroot.out("pull", f"--repo={ours}", "origin", "main")
        assert out.startswith("3 delta parts, 0 loose fetched"), out
        parts = [p for p in server.requests if p.startswith(f"{relpath}/")]
        again = [f"{relpath}/{i}" for i in sorted({0, 1, 2} - kept)]
        assert parts[0] == f"{relpath}/superblock" and sorted(parts[1:]) == again
        assert refs_of(ours) == {"refs/remotes/origin/main": c1}
        ostree("fsck", f"--repo={ours}")


def test_signed_superblock_is_refused_as_by_ostree(served, ostree, sysroot, tmp_path):
    """2022.7's pull cannot read a signed superblock; neither pulls through it."""
    copy = _copy_served(served, tmp_path)
    env = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"}
    subprocess.run(
        [
            "ostree",
            "static-delta",
            "generate",
            f"--repo={copy}",
            "--empty",
            f"--to={served['c1']}",
            "--sign-type=dummy",
            "--sign=deadbeef",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    ostree("summary", f"--repo={copy}", "-u")
    with RepoServer(copy) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
        spec = f"main@{served['c1']}"
        assert _pull(ostree, theirs, "origin", spec, check=False).returncode != 0
        line = one_error_line(_pull(sysroot, ours, "origin", spec, check=False))
        assert "signed superblock" in line, line
        assert refs_of(ours) == {}


@pytest.mark.parametrize(
    ("key", "message"), [("k1", None), ("k2", "dummy: incorrect signatures found: 1")]
)
def test_signed_commit_in_the_delta_is_verified(ostree, sysroot, tmp_path, key, message):
    """A remote asking for signatures: the TO commit is checked with the detached
    metadata the superblock carries, before anything of it is stored (as 2022.7)."""
    on = {"OSTREE_DUMMY_SIGN_ENABLED": "1"}
    repo = tmp_path / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("signed\n")
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "x", tree)
    ostree("sign", f"--repo={repo}", "--sign-type=dummy", c1, "k1", env=on)
    ostree("static-delta", "generate", f"--repo={repo}", "--empty", f"--to={c1}")
    ostree("summary", f"--repo={repo}", "-u")
    with RepoServer(repo) as server:
        theirs, ours = (tmp_path / "theirs", tmp_path / "ours")
        for r in (theirs, ours):
            ostree("init", f"--repo={r}", "--mode=bare-user")
            ostree(
                "remote",
                "add",
                f"--repo={r}",
                "--no-gpg-verify",
                f"--sign-verify=dummy=inline:{key}",
                "origin",
                server.url,
            )
        spec = ("origin", f"main@{c1}")
        theirs_rc = _pull(ostree, theirs, *spec, check=False, env=on).returncode
        server.reset()
        proc = _pull(sysroot, ours, *spec, check=False, env=on)
        assert f"{_delta_dir(repo, ostree, c1).relative_to(repo)}/superblock" in server.requests
        if message is None:
            assert theirs_rc == proc.returncode == 0
            assert_same_repos(ostree, theirs, ours, "bare-user")
            return
        assert theirs_rc != 0
        assert message in one_error_line(proc)
        assert refs_of(ours) == {}
        assert object_names(ours) == set()


@pytest.fixture(scope="module")
def inline_and_fallback(tmp_path_factory, ostree):
    """C1 (small files) with an --inline delta from scratch; C2 adding a 1.2 MB file
    that the C1 -> C2 delta lists as a fallback (--min-fallback-size=1: 1 MB)."""
    base = tmp_path_factory.mktemp("fallback")
    repo = base / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = base / "tree"
    (tree / "etc").mkdir(parents=True)
    for i in range(10):
        (tree / f"etc/conf{i}").write_text(f"conf {i}\n")
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", "--timestamp=2021-01-01", tree)
    (tree / "big").write_bytes(random.Random(5).randbytes(1_200_000))
    c2 = ostree.out("commit", f"--repo={repo}", "-b", "main", "--timestamp=2021-01-02", tree)
    ostree("static-delta", "generate", f"--repo={repo}", "--empty", f"--to={c1}", "--inline")
    ostree(
        "static-delta",
        "generate",
        f"--repo={repo}",
        f"--from={c1}",
        f"--to={c2}",
        "--min-fallback-size=1",
    )
    ostree("summary", f"--repo={repo}", "-u")
    assert "Number of fallback entries: 1" in ostree.out(
        "static-delta", "show", f"--repo={repo}", f"{c1}-{c2}"
    )
    with RepoServer(repo) as server:
        yield {"repo": repo, "c1": c1, "c2": c2, "server": server}


def test_inline_delta_and_fallback_object(inline_and_fallback, ostree, sysroot, tmp_path):
    d = inline_and_fallback
    server, c1, c2 = d["server"], d["c1"], d["c2"]
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
    # the inline delta: the superblock carries the part
    _pull(ostree, theirs, "origin", f"main@{c1}")
    server.reset()
    out = sysroot.out("pull", f"--repo={ours}", "origin", f"main@{c1}")
    assert out.startswith("1 delta parts, 0 loose fetched"), out
    scratch = str(_delta_dir(d["repo"], ostree, c1).relative_to(d["repo"]))
    assert [p for p in server.requests if p.startswith("deltas/")] == [f"{scratch}/superblock"]
    assert server.object_requests() == []
    assert_same_repos(ostree, theirs, ours, "bare-user")
    # the fallback: fetched as an object, the dry run counting as ostree's
    args = ("origin", "main", "--dry-run", "--require-static-deltas")
    assert sysroot.out("pull", f"--repo={ours}", *args) == ostree.out(
        "pull", f"--repo={theirs}", *args
    )
    # (ostree: "1 delta parts, N loose fetched", N counting its scan race's objects)
    _pull(ostree, theirs, "origin", "main")
    server.reset()
    out = sysroot.out("pull", f"--repo={ours}", "origin", "main")
    assert out.startswith("1 delta parts, 1 loose fetched"), out
    assert out.endswith("; 1.2\u00a0MB content written"), out
    from sysroot.formats.static_delta import parse_superblock

    sb = parse_superblock((_delta_dir(d["repo"], ostree, f"{c1}-{c2}") / "superblock").read_bytes())
    (fallback,) = sb.fallbacks
    want = f"objects/{fallback.checksum[:2]}/{fallback.checksum[2:]}.filez"
    assert server.object_requests() == [want]
    assert_same_repos(ostree, theirs, ours, "bare-user")


def test_no_scratch_delta_when_the_ref_has_a_commit(served, ostree, sysroot, tmp_path):
    """origin:main at C2 (no C1 here), pulling main@C1: the scratch delta to C1 is not
    used (an object pull costs less than a whole tree), by either tool."""
    server = served["server"]
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
    for repo in (theirs, ours):
        _pull(ostree, repo, "origin", "main", "--disable-static-deltas")
    spec = f"main@{served['c1']}"
    logs = []
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        server.reset()
        _pull(tool, repo, "origin", spec)
        logs.append([p for p in server.requests if p.startswith("deltas/")])
    assert logs == [[], []]
    assert_same_repos(ostree, theirs, ours, "bare-user")


def test_the_newest_local_commit_is_the_delta_source(ostree, sysroot, tmp_path):
    """Deltas C0 -> C2 and C1 -> C2, both C0 and C1 here: both tools take C1's."""
    repo = tmp_path / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "tree"
    tree.mkdir()
    commits = []
    for i in range(3):
        (tree / "file").write_text(f"version {i}\n" * 100)
        commits.append(
            ostree.out(
                "commit", f"--repo={repo}", "-b", "main", f"--timestamp=2021-01-0{i + 1}", tree
            )
        )
    c0, c1, c2 = commits
    for frm in (c0, c1):
        ostree("static-delta", "generate", f"--repo={repo}", f"--from={frm}", f"--to={c2}")
    ostree("summary", f"--repo={repo}", "-u")
    with RepoServer(repo) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "bare-user", server.url)
        logs = []
        for tool, r in ((ostree, theirs), (sysroot, ours)):
            _pull(ostree, r, "origin", c1, "--disable-static-deltas")
            _pull(ostree, r, "origin", f"main@{c0}", "--disable-static-deltas")
            server.reset()
            _pull(tool, r, "origin", "main")
            logs.append({p for p in server.requests if p.endswith("/superblock")})
        want = f"{_delta_dir(repo, ostree, f'{c1}-{c2}').relative_to(repo)}/superblock"
        assert logs == [{want}, {want}]
        assert_same_repos(ostree, theirs, ours, "bare-user")


def test_delta_larger_than_the_free_space(served, ostree, sysroot, tmp_path):
    """On a small file system with less free space than the parts unpack to, both
    tools refuse the delta before fetching a part; no ref moves."""
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(fs)], check=True)
    try:
        theirs, ours = twin_repos(ostree, fs, "bare-user", served["server"].url)
        for repo in (theirs, ours):
            _pull(ostree, repo, "origin", f"main@{served['c1']}")
        st = os.statvfs(fs)
        (fs / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 300_000))
        err = _pull(ostree, theirs, "origin", "main", check=False).stderr.decode()
        want = "Delta requires " + err.split("Delta requires ")[1].split(" available")[0]
        want = want.rpartition(" but only ")[0]  # the free space differs a little
        assert want.endswith(" free space,"), err
        server = served["server"]
        server.reset()
        line = one_error_line(_pull(sysroot, ours, "origin", "main", check=False))
        assert want in line, line
        assert not [p for p in server.requests if p.endswith("/0")]
        assert refs_of(ours) == {"refs/remotes/origin/main": served["c1"]}
    finally:
        subprocess.run(["umount", str(fs)], check=True)
