"""The free-space guard (`[core] min-free-space-percent` / `min-free-space-size`) on a
small real file system (a tmpfs of a few MiB), against the real ostree.

Each test fills the file system until only a known number of blocks is free, then has
both tools write the same thing: both must refuse with the same message, leave no
object under its final name, move no ref, and leave a repo `ostree fsck` finds clean.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.pull.serve_helpers import RepoServer, new_repo

FS_MIB = 8
BLOCKS = FS_MIB << 8  # 4 KiB blocks
RESERVE_3PCT = BLOCKS * 3 // 100
BIG = 64 << 10  # one object of 17 blocks
BIG_MSG = "at least 69.6\u00a0kB requested"


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def _tmpfs(path: Path):
    path.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", f"size={FS_MIB}m,mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        _sh("umount", str(path))


@pytest.fixture
def fs(tmp_path):
    with _tmpfs(tmp_path / "fs") as mnt:
        yield mnt


def fill(mnt: Path, free_blocks: int) -> None:
    """Grow mnt/filler until exactly free_blocks blocks are free."""
    st = os.statvfs(mnt)
    assert st.f_bsize == 4096 and st.f_blocks == BLOCKS
    extra = st.f_bfree - free_blocks
    assert extra >= 0, (st.f_bfree, free_blocks)
    with open(mnt / "filler", "ab") as f:
        f.write(b"\0" * (extra * st.f_bsize))
    assert os.statvfs(mnt).f_bfree == free_blocks


def set_core(repo: Path, **keys: str) -> None:
    """Replace the min-free-space keys of repo's [core] with keys (name_with_underscores)."""
    lines = [
        ln
        for ln in (repo / "config").read_text().splitlines()
        if not ln.startswith("min-free-space")
    ]
    at = lines.index("[core]") + 1
    for k, v in keys.items():
        lines.insert(at, f"{k.replace('_', '-')}={v}")
    (repo / "config").write_text("\n".join(lines) + "\n")


def objects(repo: Path) -> set[str]:
    return {
        str(p.relative_to(repo / "objects"))
        for p in (repo / "objects").rglob("*")
        if not p.is_dir()
    }


def refs(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in (repo / "refs").rglob("*") if p.is_file())


def tree_with(base: Path, size: int = BIG, name: str = "t") -> Path:
    t = base / name
    t.mkdir()
    (t / "big").write_bytes(os.urandom(size))
    return t


def content_objects(repo: Path) -> set[str]:
    return {o for o in objects(repo) if o.endswith((".file", ".filez"))}


def both_refuse(
    ostree,
    sysroot,
    ours: Path,
    theirs: Path,
    args: list[str],
    contains: str,
    *,
    pull: bool = False,
    partial: bool = False,
    same_size: bool = True,
) -> str:
    """Run args on ours then on theirs: both fail with the same line, move no ref and
    store no content object. A pull keeps the metadata it verified (to resume from,
    marked commitpartial), and with partial, the content objects completed before the
    refusal; anything else stores nothing at all."""
    before = (objects(ours), refs(ours))
    r = sysroot(*args, f"--repo={ours}", check=False)
    line = one_error_line(r)
    assert contains in line, line
    if partial:
        assert refs(ours) == before[1]
    elif pull:
        assert (content_objects(ours), refs(ours)) == (set(), before[1])
    else:
        assert (objects(ours), refs(ours)) == before
    o = ostree(*args, f"--repo={theirs}", check=False)
    assert o.returncode != 0, o
    if not same_size:  # ", at least N kB requested": whichever object came first
        line = line.partition(", at least ")[0]
    assert line in o.stderr.decode(), (line, o.stderr.decode())
    ostree("fsck", f"--repo={ours}")
    return line


# ------------------------------------------------------------------ commit
@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_commit_refused_like_ostree(fs, tmp_path, ostree, sysroot, mode):
    ours, theirs = fs / "ours", fs / "theirs"
    sysroot("init", f"--repo={ours}", f"--mode={mode}")
    ostree("init", f"--repo={theirs}", f"--mode={mode}")
    tree = tree_with(tmp_path)
    fill(fs, RESERVE_3PCT + 10)  # room for 10 blocks; the file wants 17
    line = both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        ["commit", "-b", "main", f"--tree=dir={tree}"],
        f"Writing content object: min-free-space-percent '3%' would be exceeded, {BIG_MSG}",
    )
    assert line.startswith("error: ")
    assert not os.listdir(ours / "objects")
    assert [n for n in os.listdir(ours / "tmp") if n.startswith("staging-")] == []
    # a small file still fits: the guard refuses what crosses the line, not all writes
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_bytes(b"x" * 1000)
    sysroot("commit", f"--repo={ours}", "-b", "main", f"--tree=dir={small}")
    ostree("fsck", f"--repo={ours}")


def test_percent_zero_disables(fs, tmp_path, ostree, sysroot):
    ours, theirs = fs / "ours", fs / "theirs"
    sysroot("init", f"--repo={ours}", "--mode=bare")
    ostree("init", f"--repo={theirs}", "--mode=bare")
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="0")
    tree = tree_with(tmp_path)
    fill(fs, RESERVE_3PCT + 10)  # the default 3% would refuse the 17 blocks
    sysroot("commit", f"--repo={ours}", "-b", "main", f"--tree=dir={tree}")
    ostree("commit", f"--repo={theirs}", "-b", "main", f"--tree=dir={tree}")
    assert refs(ours) == ["refs/heads/main"]
    ostree("fsck", f"--repo={ours}")


def test_size_takes_precedence(fs, tmp_path, ostree, sysroot):
    ours, theirs = fs / "ours", fs / "theirs"
    sysroot("init", f"--repo={ours}", "--mode=bare")
    ostree("init", f"--repo={theirs}", "--mode=bare")
    tree = tree_with(tmp_path)
    fill(fs, 300)  # the 50% reserve (1024 blocks) is crossed already; 1MB (256) is not
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="50")
    args = ["commit", "-b", "main", f"--tree=dir={tree}"]
    both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        args,
        f"min-free-space-percent '50%' would be exceeded, {BIG_MSG}",
    )
    # the size wins over the percent: 300 - 17 blocks stays above 1MB
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="50", min_free_space_size="1MB")
    sysroot(*args, f"--repo={ours}")
    ostree(*args, f"--repo={theirs}")
    # ... and refuses on its own terms even with the percent off
    tree2 = tree_with(tmp_path, name="t2")
    args2 = ["commit", "-b", "main", f"--tree=dir={tree2}"]
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="0", min_free_space_size="2MB")
    both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        args2,
        f"Writing content object: min-free-space-size 2MB would be exceeded, {BIG_MSG}",
    )
    # 0MB leaves the percent in force, as in ostree
    for repo in (ours, theirs):
        set_core(repo, min_free_space_size="0MB", min_free_space_percent="50")
    both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        args2,
        f"min-free-space-percent '50%' would be exceeded, {BIG_MSG}",
    )
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="0", min_free_space_size="0MB")
    sysroot(*args2, f"--repo={ours}")
    ostree(*args2, f"--repo={theirs}")
    ostree("fsck", f"--repo={ours}")


@pytest.mark.parametrize(
    "keys,message",
    [
        ({"min_free_space_percent": "100"}, "Invalid min-free-space-percent '100'"),
        ({"min_free_space_percent": "-1"}, "Invalid min-free-space-percent '-1'"),
        (
            {"min_free_space_size": "1M"},
            "Invalid min-free-space-size '1M': It should be of "
            "the format '123MB', '123GB' or '123TB'",
        ),
        (
            {"min_free_space_size": "5KB"},
            "Invalid min-free-space-size '5KB': It should be of "
            "the format '123MB', '123GB' or '123TB'",
        ),
        (
            {"min_free_space_size": "99999999999999TB"},
            "Invalid min-free-space-size '99999999999999TB': Value was too high",
        ),
        # a valid size does not excuse an invalid percent
        (
            {"min_free_space_size": "1MB", "min_free_space_percent": "500"},
            "Invalid min-free-space-percent '500'",
        ),
    ],
)
def test_invalid_values_like_ostree(tmp_path, ostree, sysroot, keys, message):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    sysroot("init", f"--repo={ours}", "--mode=bare")
    ostree("init", f"--repo={theirs}", "--mode=bare")
    tree = tree_with(tmp_path)
    for repo in (ours, theirs):
        set_core(repo, **keys)
    config = (ours / "config").read_bytes()
    for args in (["commit", "-b", "main", f"--tree=dir={tree}"], ["refs"]):
        line = one_error_line(sysroot(*args, f"--repo={ours}", check=False))
        assert line == f"error: {ours}/config: {message}", line
        o = ostree(*args, f"--repo={theirs}", check=False)
        assert o.returncode != 0 and message in o.stderr.decode(), o
    assert (ours / "config").read_bytes() == config
    assert not os.listdir(ours / "objects") and refs(ours) == []


def test_garbage_percent_refused_not_ignored(tmp_path, ostree, sysroot):
    """ostree reads min-free-space-percent with strtoull, so "abc" is 0 and silently
    turns the guard off; a typo must not do that here."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    sysroot("init", f"--repo={ours}", "--mode=bare")
    ostree("init", f"--repo={theirs}", "--mode=bare")
    for repo in (ours, theirs):
        set_core(repo, min_free_space_percent="abc")
    line = one_error_line(sysroot("refs", f"--repo={ours}", check=False))
    assert line == f"error: {ours}/config: Invalid min-free-space-percent 'abc'"
    assert ostree("refs", f"--repo={theirs}", check=False).returncode == 0  # the divergence


# ------------------------------------------------------------------ pulls
@pytest.fixture
def source(tmp_path, ostree) -> Path:
    """An archive repo (off the small file system): main = one 64 KiB file."""
    src = tmp_path / "src"
    ostree("init", f"--repo={src}", "--mode=archive")
    ostree("commit", f"--repo={src}", "-b", "main", f"--tree=dir={tree_with(tmp_path)}")
    ostree("summary", f"--repo={src}", "-u")
    return src


def _pull_case(fs, ostree, sysroot, url: str | None, mode: str = "bare"):
    ours = new_repo(ostree, fs / "ours", mode, url)
    theirs = new_repo(ostree, fs / "theirs", mode, url)
    fill(fs, RESERVE_3PCT + 10)
    return ours, theirs


@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_http_pull_refused_like_ostree(fs, source, ostree, sysroot, mode):
    with RepoServer(source) as server:
        ours, theirs = _pull_case(fs, ostree, sysroot, server.url, mode)
        line = both_refuse(
            ostree,
            sysroot,
            ours,
            theirs,
            ["pull", "origin", "main"],
            "min-free-space-percent '3%' would be exceeded",
            pull=True,
        )
    assert "Writing content object: " in line
    assert refs(ours) == []
    # no content object made it under its final name
    assert not [o for o in objects(ours) if o.endswith((".file", ".filez"))]


def test_file_pull_refused_like_ostree(fs, source, ostree, sysroot):
    ours, theirs = _pull_case(fs, ostree, sysroot, f"file://{source}")
    line = both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        ["pull", "origin", "main"],
        "min-free-space-percent '3%' would be exceeded",
        pull=True,
    )
    assert refs(ours) == []
    assert "Writing content object: " in line


def test_pull_local_refused_like_ostree(fs, source, ostree, sysroot):
    ours, theirs = _pull_case(fs, ostree, sysroot, None)
    both_refuse(
        ostree,
        sysroot,
        ours,
        theirs,
        ["pull-local", str(source), "main"],
        "Writing content object: min-free-space-percent '3%' would be exceeded, " + BIG_MSG,
        pull=True,
    )
    assert refs(ours) == []


def test_pull_local_archive_to_archive_refused(fs, source, ostree, sysroot):
    """ostree copies .filez between archive repos without the guard and runs into
    ENOSPC; here the guard holds on that path too."""
    ours = new_repo(ostree, fs / "ours", "archive")
    set_core(ours, min_free_space_size="6MB")  # 1536 blocks
    fill(fs, 1536 + 10)
    line = one_error_line(sysroot("pull-local", f"--repo={ours}", str(source), "main", check=False))
    assert "min-free-space-size 6MB would be exceeded" in line, line
    assert refs(ours) == []
    ostree("fsck", f"--repo={ours}")


def test_pull_many_objects_in_workers(fs, tmp_path, ostree, sysroot):
    """Many objects fetched by the forked workers: each worker measures the file system,
    so together they stop at the reserve instead of running into ENOSPC."""
    src = tmp_path / "many"
    ostree("init", f"--repo={src}", "--mode=archive")
    t = tmp_path / "manytree"
    t.mkdir()
    for i in range(200):
        (t / f"f{i}").write_bytes(os.urandom(12 << 10))  # 4 blocks each
    ostree("commit", f"--repo={src}", "-b", "main", f"--tree=dir={t}")
    ostree("summary", f"--repo={src}", "-u")
    with RepoServer(src) as server:
        ours = new_repo(ostree, fs / "ours", "bare", server.url)
        theirs = new_repo(ostree, fs / "theirs", "bare", server.url)
        fill(fs, RESERVE_3PCT + 300)  # room for some 75 of the 200 objects
        # Which object crosses the reserve depends on how the concurrent fetches
        # interleave (a 4 kB metadata object or a 16 kB file, in either tool): the
        # size in the message is not compared, the rest of the line is.
        both_refuse(
            ostree,
            sysroot,
            ours,
            theirs,
            ["pull", "origin", "main"],
            "min-free-space-percent '3%' would be exceeded",
            partial=True,
            same_size=False,
        )
    assert refs(ours) == []
    assert 0 < len(content_objects(ours)) < 200
    st = os.statvfs(fs)
    # the reserve held, give or take an object per worker in flight
    assert st.f_bfree >= RESERVE_3PCT - 8 * 4, st.f_bfree


# ------------------------------------------------------------------ admin deploy
def test_deploy_refused_before_writing(fs, tmp_path, ostree, sysroot):
    """ostree 2022.7 deploys past the reserve (its guard covers repo writes only); the
    deployment shares the repo's file system, so here it is held to the same reserve,
    checked before the checkout starts."""
    from tests.deploy.conftest import OSNAME, init_sysroot, make_os_tree, snapshot

    ref = f"{OSNAME}/x"
    srs = {
        "ours": init_sysroot(fs / "ours", sysroot, ostree),
        "theirs": init_sysroot(fs / "theirs", ostree, ostree),
    }
    for i, sr in enumerate(srs.values()):
        sr.commit(make_os_tree(tmp_path / f"t1-{i}"), version="1")
        sr.admin("deploy", f"--os={OSNAME}", "--karg=root=/dev/sda1", ref)
        big = {"usr/etc/big.conf": "x" * BIG}  # copied to /etc: 17 blocks
        sr.commit(make_os_tree(tmp_path / f"t2-{i}", extra=big), version="2")
    fill(fs, RESERVE_3PCT + 10)
    ours = srs["ours"]
    before = snapshot(ours.path)
    line = one_error_line(ours.admin("deploy", f"--os={OSNAME}", ref, check=False))
    assert "min-free-space-percent '3%' would be exceeded, at least" in line, line
    assert line.startswith("error: Deploying "), line
    assert snapshot(ours.path) == before
    assert os.statvfs(fs).f_bfree == RESERVE_3PCT + 10  # not a block written
    ostree("fsck", f"--repo={ours.repo}")
    # the divergence: ostree goes ahead into the reserve
    theirs = srs["theirs"]
    theirs.admin("deploy", f"--os={OSNAME}", ref)
    assert os.statvfs(fs).f_bfree < RESERVE_3PCT
    # with the space back, the same deploy goes through
    os.unlink(fs / "filler")
    ours.admin("deploy", f"--os={OSNAME}", ref)
    assert ours.status(ostree) == ours.status()


def test_http_pull_object_bigger_than_fs(fs, tmp_path, ostree, sysroot):
    """A streamed object of unknown size larger than the whole file system: refused
    by the guard midway (never a bare ENOSPC), its partial file removed."""
    src = tmp_path / "huge"
    ostree("init", f"--repo={src}", "--mode=archive")
    t = tree_with(tmp_path, size=(FS_MIB + 2) << 20, name="hugetree")
    ostree("commit", f"--repo={src}", "-b", "main", f"--tree=dir={t}")
    ostree("summary", f"--repo={src}", "-u")
    with RepoServer(src) as server:
        ours = new_repo(ostree, fs / "ours", "bare", server.url)
        theirs = new_repo(ostree, fs / "theirs", "bare", server.url)
        for repo in (ours, theirs):
            set_core(repo, min_free_space_percent="1")
        free = os.statvfs(fs).f_bfree
        r = sysroot("pull", f"--repo={ours}", "origin", "main", check=False)
        line = one_error_line(r)
        assert line.startswith(
            "error: Writing content object: min-free-space-percent '1%' "
            "would be exceeded, at least "
        ), line
        assert os.statvfs(fs).f_bfree >= free - 16  # the partial object is gone
        o = ostree("pull", f"--repo={theirs}", "origin", "main", check=False)
        assert (
            "Writing content object: min-free-space-percent '1%' would be exceeded, "
            "at least 10.5\u00a0MB requested" in o.stderr.decode()
        ), o
    assert refs(ours) == [] and content_objects(ours) == set()
    ostree("fsck", f"--repo={ours}")


def test_stream_measured_every_mib(fs):
    """A payload of unknown size is measured as it is written: it stops at the reserve,
    well before the file system is full."""
    from sysroot.formats.objects import FileHeader
    from sysroot.store.freespace import FreeSpaceError
    from sysroot.store.modes import RepoMode
    from sysroot.store.repo import Repo

    Repo.create(fs / "r", RepoMode.BARE).close()
    set_core(fs / "r", min_free_space_size="3MB")
    free = os.statvfs(fs).f_bfree
    consumed = 0

    def chunks():
        nonlocal consumed
        for _ in range(FS_MIB + 2):
            consumed += 1
            yield b"\1" * (1 << 20)

    refused = pytest.raises(FreeSpaceError, match="min-free-space-size 3MB would be exceeded")
    with Repo.open(fs / "r") as repo, refused, repo.transaction() as tx:
        tx.write_content(FileHeader(0, 0, 0o100644, "", ()), chunks())
    room_mib = (free * 4096 >> 20) - 3
    assert consumed <= room_mib + 1, (consumed, room_mib)  # not run on to ENOSPC
    assert os.statvfs(fs).f_bfree >= free - 4  # the partial object is gone
