"""sysroot prune against ostree prune: same objects deleted, same report, fsck-clean after.

Every comparison runs both tools on identical copies (`cp -a`) of one ostree-written
repository and compares what is left on disk, file by file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysroot.formats.objects import ObjectType
from sysroot.store.lock import RepoLock
from sysroot.store.prune import format_size
from sysroot.store.reachable import reachable_from_commit
from sysroot.store.repo import Repo
from tests.helpers.twins import copied_twins, lines_of_both
from tests.helpers.twins import run_ours as cli

# main: three commits (old to new), other: one commit whose ref we delete
TIMESTAMPS = ["2021-01-01 00:00:00", "2021-02-01 00:00:00", "2021-03-01 00:00:00"]


def _build(base: Path, ostree, mode: str) -> tuple[Path, list[str], str]:
    repo = base / "repo"
    tree = base / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "shared").write_text("in every commit\n")
    os.symlink("shared", tree / "link")
    ostree(f"--repo={repo}", "init", f"--mode={mode}")
    main = []
    for i, ts in enumerate(TIMESTAMPS):
        (tree / "version").write_text(f"{i}\n")
        (tree / "sub" / f"file{i}").write_bytes(os.urandom(2000 + i))
        main.append(
            ostree.out(
                f"--repo={repo}",
                "commit",
                "-b",
                "main",
                f"--timestamp={ts}",
                "-s",
                f"c{i}",
                f"--add-detached-metadata-string=n={i}",
                str(tree),
            )
        )
    (tree / "only-other").write_text("other\n")
    other = ostree.out(
        f"--repo={repo}",
        "commit",
        "-b",
        "other",
        "-s",
        "o",
        "--timestamp=2021-04-01 00:00:00",
        str(tree),
    )
    ostree(f"--repo={repo}", "refs", "--delete", "other")
    return repo, main, other


@pytest.fixture(scope="module")
def _bases(tmp_path_factory, ostree):
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = _build(tmp_path_factory.mktemp(f"prune-{mode}"), ostree, mode)
        return cache[mode]

    return get


def _copies(bases, mode, tmp_path):
    repo, main, other = bases(mode)
    theirs, ours = copied_twins(repo, tmp_path)
    return ours, theirs, main, other


@pytest.fixture
def base(_bases, mode, tmp_path):
    """Two identical copies of the mode's base repo: (ours, theirs, main commits, other)."""
    return _copies(_bases, mode, tmp_path)


@pytest.fixture
def archive(_bases, tmp_path):
    """The same, for tests where the repo mode makes no difference."""
    return _copies(_bases, "archive", tmp_path)


def listing(repo: Path) -> list[str]:
    """Every file prune may touch: objects (all kinds), state markers, deltas, config."""
    out = ["config:" + (repo / "config").read_text()]
    for top in ("objects", "state", "deltas"):
        for p in sorted((repo / top).rglob("*")):
            if not p.is_dir() or p.is_symlink():
                out.append(str(p.relative_to(repo)))
    return out


def commit_files(repo: Path) -> set[str]:
    return {p.parent.name + p.name.split(".")[0] for p in (repo / "objects").rglob("*.commit")}


@pytest.mark.parametrize(
    "args",
    [
        ["--refs-only"],
        ["--refs-only", "--depth=1"],
        ["--depth=0"],
        [],
        ["--keep-younger-than=2021-01-15 00:00:00"],
        ["--refs-only", "--depth=0", "--commit-only"],
    ],
    ids=lambda a: " ".join(a) or "default",
)
def test_prune_matches_ostree(base, ostree, sysroot, args):
    ours, theirs, main, other = base
    before = listing(ours)
    out_ours, out_theirs = lines_of_both(ostree, (theirs, ours), "prune", *args)
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    if "--refs-only" in args or any(a.startswith("--keep") for a in args):
        assert other not in commit_files(ours)  # its ref is gone: it really was pruned
        assert listing(ours) != before
    ostree(f"--repo={ours}", "fsck")


def test_depth_and_age_keep_the_right_commits(base, ostree, sysroot):
    ours, theirs, main, other = base
    assert cli(f"--repo={ours}", "prune", "--refs-only", "--depth=0")[0] == 0
    assert commit_files(ours) == {main[2]}
    # the kept commit is whole: its objects survived
    ostree(f"--repo={ours}", "fsck")
    assert cli(f"--repo={theirs}", "prune", "--keep-younger-than=2021-01-15 00:00:00")[0] == 0
    assert commit_files(theirs) == {main[1], main[2]}


def test_detached_metadata_and_partial_marker_go_with_commit(base, ostree, sysroot):
    ours, theirs, main, other = base
    for repo in (ours, theirs):
        assert (repo / "objects" / main[0][:2] / f"{main[0][2:]}.commitmeta").exists()
        (repo / "state" / f"{main[0]}.commitpartial").write_bytes(b"")
        (repo / "state" / f"{main[2]}.commitpartial").write_bytes(b"")
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", "--refs-only", "--depth=1"
    )
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    assert not (ours / "objects" / main[0][:2] / f"{main[0][2:]}.commitmeta").exists()
    assert not (ours / "state" / f"{main[0]}.commitpartial").exists()
    assert (ours / "state" / f"{main[2]}.commitpartial").exists()


def test_no_prune_deletes_nothing(base, ostree, sysroot):
    ours, theirs, main, other = base
    before = listing(ours)
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", "--refs-only", "--depth=0", "--no-prune"
    )
    assert out_ours == out_theirs
    assert out_ours[1].startswith("Would delete: ")
    assert listing(ours) == before == listing(theirs)


def test_delete_commit_leaves_tombstone_like_ostree(base, ostree, sysroot):
    ours, theirs, main, other = base
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", f"--delete-commit={main[1]}"
    )
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)  # includes config (tombstone-commits=true)
    assert (ours / "objects" / main[1][:2] / f"{main[1][2:]}.tombstone-commit").read_bytes() == (
        theirs / "objects" / main[1][:2] / f"{main[1][2:]}.tombstone-commit"
    ).read_bytes()
    # with tombstones on, a later prune leaves tombstones for what it deletes too
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", "--refs-only", "--depth=0"
    )
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    ostree(f"--repo={ours}", "fsck")


def test_delete_commit_refuses_a_referenced_commit(archive, sysroot):
    ours, theirs, main, other = archive
    before = listing(ours)
    res = sysroot(f"--repo={ours}", "prune", f"--delete-commit={main[2]}", check=False)
    assert res.returncode != 0
    assert res.stderr.decode().startswith(f"error: Commit '{main[2]}' is referenced by 'main'")
    assert listing(ours) == before


def test_retain_branch_depth_and_only_branch(archive, ostree, sysroot):
    ours, theirs, main, other = archive
    ostree(f"--repo={ours}", "refs", "--create=keep", main[0])
    ostree(f"--repo={theirs}", "refs", "--create=keep", main[0])
    args = ["--only-branch=main", "--depth=0", "--retain-branch-depth=keep=0"]
    out_ours, out_theirs = lines_of_both(ostree, (theirs, ours), "prune", *args)
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    assert commit_files(ours) == {main[0], main[2]}


def test_mirror_and_remote_refs_are_roots(archive, ostree, sysroot):
    ours, theirs, main, other = archive
    for repo in (ours, theirs):
        (repo / "refs/mirrors/org.example.Os").mkdir(parents=True)
        (repo / "refs/mirrors/org.example.Os/stable").write_text(main[0] + "\n")
        (repo / "refs/remotes/origin").mkdir(parents=True)
        (repo / "refs/remotes/origin/other").write_text(other + "\n")
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", "--refs-only", "--depth=0"
    )
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    assert commit_files(ours) == {main[0], main[2], other}


def test_static_delta_to_pruned_commit_goes(archive, ostree, sysroot):
    ours, theirs, main, other = archive
    for repo in (ours, theirs):
        ostree(f"--repo={repo}", "static-delta", "generate", "--empty", f"--to={other}")
        ostree(f"--repo={repo}", "static-delta", "generate", f"--from={main[1]}", f"--to={main[2]}")
    assert len(list((ours / "deltas").rglob("superblock"))) == 2
    out_ours, out_theirs = lines_of_both(ostree, (theirs, ours), "prune", "--refs-only")
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    assert len(list((ours / "deltas").rglob("superblock"))) == 1


def test_prune_waits_for_the_exclusive_lock(archive, sysroot):
    ours, theirs, main, other = archive
    with open(ours / "config", "a") as f:
        f.write("lock-timeout-secs=1\n")
    before = listing(ours)
    fd = os.open(ours, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with RepoLock(fd, exclusive=False):  # as a transaction in progress holds it
            res = sysroot(f"--repo={ours}", "prune", "--refs-only", check=False)
            assert res.returncode == 1
            assert "Locking repo exclusive failed" in res.stderr.decode()
            assert listing(ours) == before
            # only looking needs no exclusive lock
            sysroot(f"--repo={ours}", "prune", "--refs-only", "--no-prune")
    finally:
        os.close(fd)
    sysroot(f"--repo={ours}", "prune", "--refs-only")
    assert listing(ours) != before


def test_garbage_ref_stops_prune(archive, sysroot):
    # ostree ignores such a ref and prunes what it protected; we refuse instead
    ours, theirs, main, other = archive
    (ours / "refs/heads/broken").write_text("not-a-checksum\n")
    before = listing(ours)
    res = sysroot(f"--repo={ours}", "prune", "--refs-only", check=False)
    assert res.returncode == 1
    err = res.stderr.decode()
    assert err.startswith("error: Ref broken is not a valid checksum")
    assert "Traceback" not in err
    assert listing(ours) == before


def test_leftover_temp_ref_is_not_a_ref(archive, ostree, sysroot):
    # an interrupted atomic ref write leaves a dot-file; ostree ignores those, so do we
    ours, theirs, main, other = archive
    for repo in (ours, theirs):
        (repo / "refs/heads/.main.tmp-1234").write_text("half-writ")
    out_ours, out_theirs = lines_of_both(ostree, (theirs, ours), "prune", "--refs-only")
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--depth=x"], "Cannot parse integer value 'x' for --depth"),
        (["--keep-younger-than=garbage"], "Could not parse 'garbage'"),
        (
            ["--delete-commit=abc", "--no-prune"],
            "Cannot specify both --delete-commit and --no-prune",
        ),
        (["--delete-commit=abc"], "Invalid checksum 'abc'"),
        (["--retain-branch-depth=main"], "must specify BRANCH=DEPTH"),
        (["--only-branch=nope"], "Refspec 'nope' not found"),
    ],
)
def test_bad_arguments(tmp_path, ostree, args, message):
    repo = tmp_path / "repo"
    ostree(f"--repo={repo}", "init", "--mode=archive")
    rc, out, err = cli(f"--repo={repo}", "prune", *args)
    assert rc != 0
    assert message in err and len(err.strip().splitlines()) <= 2, err


def test_relative_dates(archive, ostree, sysroot):
    ours, theirs, main, other = archive
    # every commit is years old: only what refs point at survives
    out_ours, out_theirs = lines_of_both(
        ostree, (theirs, ours), "prune", "--keep-younger-than=2 days ago"
    )
    assert out_ours == out_theirs
    assert listing(ours) == listing(theirs)
    assert commit_files(ours) == {main[2]}


@pytest.mark.parametrize("depth", [0, 1, -1])
def test_reachable_set_is_what_pull_local_copies(archive, ostree, tmp_path, depth):
    # ostree pull-local copies exactly the objects reachable from a commit at a depth
    ours, theirs, main, other = archive
    dest = tmp_path / "dest"
    ostree(f"--repo={dest}", "init", "--mode=archive")
    ostree(f"--repo={dest}", "pull-local", f"--depth={depth}", str(ours), main[2])
    copied = {
        (p.parent.name + p.name.split(".")[0], ObjectType.from_extension(p.suffix[1:]))
        for p in (dest / "objects").rglob("*.*")
        if p.suffix[1:] in ("commit", "dirtree", "dirmeta", "filez")
    }
    assert reachable_from_commit(Repo.open(ours), main[2], depth) == copied


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1049, 1050, 999_949, 3_500_000, 10**10])
def test_format_size_like_glib(size):
    # GLib's g_format_size, which ostree prune prints
    expected = {
        0: "0 bytes",
        1: "1 byte",
        999: "999 bytes",
        1000: "1.0 kB",
        1049: "1.0 kB",
        1050: "1.1 kB",
        999_949: "999.9 kB",
        3_500_000: "3.5 MB",
        10**10: "10.0 GB",
    }[size]
    if size >= 1000:
        expected = expected.replace(" ", "\u00a0")
    assert format_size(size) == expected
