"""sysroot fsck against ostree fsck.

Clean repositories written by either tool pass both checkers. Each corruption case is
applied identically to two copies of one ostree-written repository: ostree must agree the
repository is broken, sysroot must name the bad object in one line and exit non-zero,
and after `fsck --delete` by each tool the two repositories must hold exactly the same
objects and partial-commit markers, on which both tools then give the same verdict.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from sysroot.formats import gvariant
from sysroot.formats.objects import DIRTREE_TYPE, ObjectType
from sysroot.store.fsck import fsck
from sysroot.store.repo import Repo
from tests.conftest import COMMIT_ARGS
from tests.helpers.twins import copied_twins, for_both
from tests.helpers.twins import run_ours as cli


def _build(base: Path, ostree, mode: str) -> tuple[Path, str, str]:
    repo, tree = base / "repo", base / "tree"
    (tree / "a/b").mkdir(parents=True)
    (tree / "a/f").write_text("hello\n")
    (tree / "a/b/g").write_text("x\n")
    os.symlink("f", tree / "a/lnk")
    (tree / "data").write_bytes(os.urandom(5000))
    ostree(f"--repo={repo}", "init", f"--mode={mode}")
    c1 = ostree.out(f"--repo={repo}", "commit", "-b", "main", "-s", "one", str(tree))
    (tree / "h").write_text("more\n")
    c2 = ostree.out(f"--repo={repo}", "commit", "-b", "main", "-s", "two", str(tree))
    return repo, c1, c2


@pytest.fixture(scope="module")
def _bases(tmp_path_factory, ostree):
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = _build(tmp_path_factory.mktemp(f"fsck-{mode}"), ostree, mode)
        return cache[mode]

    return get


class Base:
    """Two identical copies of an ostree-written repo with commits c1 <- c2 (ref main)."""

    def __init__(self, src: Path, c1: str, c2: str, tmp_path: Path):
        self.theirs, self.ours = copied_twins(src, tmp_path)
        self.c1, self.c2 = c1, c2
        repo = Repo.open(self.ours)
        self.mode = repo.mode
        root = repo.load_dirtree(repo.load_commit(c2).root_tree)
        self.root_meta = repo.load_commit(c2).root_meta
        files = dict(root.files)
        dirs = {n: (t, m) for n, t, m in root.dirs}
        a = repo.load_dirtree(dirs["a"][0])
        self.data = files["data"]  # a regular file in both commits
        self.tree_a = dirs["a"][0]  # a dirtree in both commits
        self.meta_a = dirs["a"][1]
        self.lnk = dict(a.files)["lnk"]
        self.c1_root = repo.load_commit(c1).root_tree  # the one object only c1 has
        repo.close()

    def both(self, fn):
        for_both((self.ours, self.theirs), fn)

    def path(self, repo: Path, checksum: str, objtype: ObjectType) -> Path:
        ext = objtype.extension(self.mode.is_archive)
        return repo / "objects" / checksum[:2] / f"{checksum[2:]}.{ext}"


@pytest.fixture
def base(_bases, mode, tmp_path) -> Base:
    return Base(*_bases(mode), tmp_path)


def listing(repo: Path) -> list[tuple[str, bytes]]:
    """Every object file and partial-commit marker (with its content)."""
    out = []
    for p in sorted((repo / "objects").rglob("*")):
        if not p.is_dir() or p.is_symlink():
            out.append((str(p.relative_to(repo)), b""))
    for p in sorted((repo / "state").glob("*")):
        out.append((str(p.relative_to(repo)), p.read_bytes()))
    return out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def assert_like_ostree(base: Base, ostree, label: str) -> None:
    """The common oracle comparison for one corruption, already applied to both copies."""
    oracle = ostree(f"--repo={base.theirs}", "fsck", "--all", check=False)
    assert oracle.returncode != 0, "ostree should agree the repository is broken"
    rc, out, err = cli(f"--repo={base.ours}", "fsck")
    assert rc == 1
    lines = err.splitlines()
    assert [line for line in lines if line.startswith(label)], err
    assert lines[-1] == "error: Repository corruption encountered"

    ostree(f"--repo={base.theirs}", "fsck", "--delete", check=False)
    cli(f"--repo={base.ours}", "fsck", "--delete")
    assert listing(base.ours) == listing(base.theirs)

    second = ostree(f"--repo={base.theirs}", "fsck", check=False)
    rc, out, err = cli(f"--repo={base.ours}", "fsck")
    assert (rc != 0) == (second.returncode != 0), (err, second.stderr)
    if rc == 0:
        assert "completed successfully" in out
    # and ostree sees the repository we repaired exactly as the one it repaired
    third = ostree(f"--repo={base.ours}", "fsck", check=False)
    assert (third.returncode, third.stdout) == (second.returncode, second.stdout)


# ---------------------------------------------------------------------- clean repos


def test_clean_repo_written_by_ostree(tmp_path, ostree, mode, rich_tree):
    repo = tmp_path / "repo"
    ostree(f"--repo={repo}", "init", f"--mode={mode}")
    ostree(f"--repo={repo}", "commit", "-b", "main", *COMMIT_ARGS, str(rich_tree))
    ostree(
        f"--repo={repo}",
        "commit",
        "-b",
        "main",
        "-s",
        "again",
        "--add-detached-metadata-string=k=v",
        str(rich_tree / "usr"),
    )
    rc, out, err = cli(f"--repo={repo}", "fsck")
    assert (rc, err) == (0, "")
    assert (
        out.splitlines()[-1] == "object fsck of 2 commits completed successfully - no errors found."
    )
    report = fsck(Repo.open(repo))
    assert report.ok and report.n_commits == 2
    # the same count of objects ostree verifies
    ours = ostree.out(f"--repo={repo}", "fsck")
    assert f"fsck objects ({report.n_objects}/{report.n_objects}) 100%" in ours


def test_clean_repo_written_by_sysroot(tmp_path, ostree, sysroot, mode, rich_tree):
    repo = tmp_path / "repo"
    sysroot(f"--repo={repo}", "init", f"--mode={mode}")
    sysroot(f"--repo={repo}", "commit", "-b", "main", *COMMIT_ARGS, str(rich_tree))
    sysroot(f"--repo={repo}", "commit", "-b", "main", "-s", "2", str(rich_tree / "usr"))
    result = ostree(f"--repo={repo}", "fsck")
    assert "object fsck of 2 commits completed successfully" in result.stdout.decode()
    assert result.stderr == b""
    assert sysroot(f"--repo={repo}", "fsck", "-q").stdout == b""  # -q: errors only


# ---------------------------------------------------------------------- corruption


def test_flipped_byte_in_content_object(base, ostree):
    base.both(lambda r: flip(base.path(r, base.data, ObjectType.FILE), 2500))
    assert_like_ostree(base, ostree, f"{base.data}.file: ")
    report = fsck(Repo.open(base.ours))
    # the deleted object's commits were marked partial, as ostree marks them
    assert sorted(report.fsck_partial) == sorted([base.c1, base.c2])


def test_truncated_content_object(base, ostree):
    def truncate(repo):
        p = base.path(repo, base.data, ObjectType.FILE)
        p.chmod(0o644)
        p.write_bytes(p.read_bytes()[:-100])

    base.both(truncate)
    assert_like_ostree(base, ostree, f"{base.data}.file: ")


def test_missing_content_object(base, ostree):
    base.both(lambda r: base.path(r, base.data, ObjectType.FILE).unlink())
    assert_like_ostree(base, ostree, f"{base.data}.file: missing (in commits ")


def test_missing_symlink_object(base, ostree):
    base.both(lambda r: base.path(r, base.lnk, ObjectType.FILE).unlink())
    assert_like_ostree(base, ostree, f"{base.lnk}.file: missing")


def test_flipped_byte_in_dirtree(base, ostree):
    # byte 0 is inside the first file name: ostree still parses the tree, as do we
    base.both(lambda r: flip(base.path(r, base.tree_a, ObjectType.DIR_TREE), 0))
    assert_like_ostree(base, ostree, f"{base.tree_a}.dirtree: corrupted: actual checksum")


def test_flipped_byte_in_dirmeta(base, ostree):
    base.both(lambda r: flip(base.path(r, base.meta_a, ObjectType.DIR_META), -1))
    assert_like_ostree(base, ostree, f"{base.meta_a}.dirmeta: corrupted")


def test_flipped_byte_in_commit(base, ostree):
    # the parent commit: nothing else names it, so deleting it leaves a clean repository
    base.both(lambda r: flip(base.path(r, base.c1, ObjectType.COMMIT), -1))
    assert_like_ostree(base, ostree, f"{base.c1}.commit: corrupted")
    assert not base.path(base.ours, base.c1, ObjectType.COMMIT).exists()


def test_missing_dirmeta(base, ostree):
    base.both(lambda r: base.path(r, base.meta_a, ObjectType.DIR_META).unlink())
    assert_like_ostree(base, ostree, f"{base.meta_a}.dirmeta: missing")


def _bad_commit(repo: Path, c2: str, tree_bytes: bytes) -> tuple[str, str]:
    """Store tree_bytes as a dirtree under its real checksum and commit it as ref 'bad'."""
    r = Repo.open(repo)
    tree = hashlib.sha256(tree_bytes).hexdigest()
    (repo / "objects" / tree[:2]).mkdir(exist_ok=True)
    (repo / "objects" / tree[:2] / f"{tree[2:]}.dirtree").write_bytes(tree_bytes)
    commit = replace(r.load_commit(c2), root_tree=tree, parent=None, subject="bad")
    data = commit.serialize()
    csum = hashlib.sha256(data).hexdigest()
    (repo / "objects" / csum[:2]).mkdir(exist_ok=True)
    (repo / "objects" / csum[:2] / f"{csum[2:]}.commit").write_bytes(data)
    (repo / "refs/heads/bad").write_text(csum + "\n")
    return tree, csum


def test_dirtree_with_uplink_name(base, ostree):
    # well-formed GVariant, correct checksum, but a ".." entry: both tools reject it
    raw = gvariant.encode(DIRTREE_TYPE, ([("..", bytes.fromhex(base.data))], []))
    trees = {}
    base.both(lambda r: trees.setdefault(r, _bad_commit(r, base.c2, raw)))
    tree, commit = trees[base.ours]
    assert_like_ostree(base, ostree, f"{tree}.dirtree: invalid dirtree: ")
    assert (base.ours / "state" / f"{commit}.commitpartial").read_bytes() == b"f"


def test_dirtree_with_bad_framing(base, ostree):
    # ostree loads metadata as "trusted" GVariant and never sees bad framing offsets (it
    # reads such a tree as empty); we refuse the object, and mark its commit partial
    # exactly as ostree would, so ostree then reports the damage too.
    repo = Repo.open(base.ours)
    good = bytearray(repo.load_dirtree(base.tree_a).serialize())
    good[-1] = 0xFF  # the framing offset of the files array, now out of range
    tree, commit = _bad_commit(base.ours, base.c2, bytes(good))
    assert ostree(f"--repo={base.ours}", "fsck", check=False).returncode == 0
    rc, out, err = cli(f"--repo={base.ours}", "fsck", "--delete")
    assert rc == 1
    assert f"{tree}.dirtree: invalid dirtree: " in err
    assert not base.path(base.ours, tree, ObjectType.DIR_TREE).exists()
    after = ostree(f"--repo={base.ours}", "fsck", check=False)
    assert after.returncode == 1
    assert b"1 partial commits from fsck-detected corruption" in after.stderr
    assert (base.ours / "state" / f"{commit}.commitpartial").read_bytes() == b"f"


def test_missing_dirtree(base, ostree):
    # ostree stops at the first missing dirtree without marking anything; we report it
    # and mark the commits that need it partial, as ostree does for any other object.
    base.both(lambda r: base.path(r, base.tree_a, ObjectType.DIR_TREE).unlink())
    oracle = ostree(f"--repo={base.theirs}", "fsck", check=False)
    assert oracle.returncode == 1
    assert f"No such metadata object {base.tree_a}.dirtree".encode() in oracle.stderr
    rc, out, err = cli(f"--repo={base.ours}", "fsck")
    assert rc == 1
    assert f"{base.tree_a}.dirtree: missing (in commits " in err
    after = ostree(f"--repo={base.ours}", "fsck", check=False)
    assert after.returncode == 1
    assert "2 partial commits not verified" in after.stdout.decode()


def test_ref_holding_garbage(base, ostree):
    base.both(lambda r: (r / "refs/heads/junk").write_text("garbage\n"))
    assert_like_ostree(base, ostree, "ref junk: holds 'garbage', not a commit checksum")


def test_ref_to_missing_commit(base, ostree):
    missing = "a" * 64
    base.both(lambda r: (r / "refs/heads/gone").write_text(missing + "\n"))
    assert_like_ostree(base, ostree, f"ref gone: points to missing commit {missing}")


# ---------------------------------------------------------------------- partial commits


def test_partial_commit_from_pull_is_skipped(base, ostree):
    # an interrupted pull leaves an empty marker: missing objects are expected there
    def pull_partial(repo):
        (repo / "state" / f"{base.c1}.commitpartial").write_bytes(b"")
        base.path(repo, base.c1_root, ObjectType.DIR_TREE).unlink()

    base.both(pull_partial)
    oracle = ostree(f"--repo={base.theirs}", "fsck")
    rc, out, err = cli(f"--repo={base.ours}", "fsck")
    assert rc == 0 and err == ""
    assert "1 partial commits not verified" in oracle.stdout.decode()
    assert "1 partial commits not verified" in out
    report = fsck(Repo.open(base.ours))
    assert report.partial == [base.c1] and report.fsck_partial == [] and report.ok


def test_walk_reads_each_dirtree_once(tmp_path, ostree, monkeypatch):
    # many commits sharing one tree must not multiply the work
    repo_path, tree = tmp_path / "repo", tmp_path / "tree"
    for i in range(30):
        (tree / f"d{i % 5}" / f"e{i}").mkdir(parents=True)
        (tree / f"d{i % 5}" / f"e{i}" / "f").write_text(str(i))
    ostree(f"--repo={repo_path}", "init", "--mode=archive")
    for i in range(8):
        (tree / "counter").write_text(str(i))
        ostree(f"--repo={repo_path}", "commit", "-b", "main", "-s", str(i), str(tree))
    repo = Repo.open(repo_path)
    reads: list[tuple[ObjectType, str]] = []
    real = repo.read_metadata

    def counting(objtype, checksum):
        reads.append((objtype, checksum))
        return real(objtype, checksum)

    monkeypatch.setattr(repo, "read_metadata", counting)
    report = fsck(repo)
    assert report.ok and report.n_commits == 8
    assert len(reads) == len(set(reads))  # nothing read twice
    n_trees = sum(1 for p in (repo_path / "objects").rglob("*.dirtree"))
    assert sum(1 for t, _ in reads if t is ObjectType.DIR_TREE) == n_trees


def test_cli_end_to_end_without_traceback(_bases, tmp_path, sysroot):
    base = Base(*_bases("bare-user"), tmp_path)
    flip(base.path(base.ours, base.data, ObjectType.FILE), 100)
    (base.ours / "refs/heads/junk").write_text("garbage\n")
    res = sysroot(f"--repo={base.ours}", "fsck", "-q", check=False)
    assert res.returncode == 1
    assert res.stdout == b""
    err = res.stderr.decode()
    assert "Traceback" not in err
    assert err.splitlines() == [
        "ref junk: holds 'garbage', not a commit checksum",
        f"{base.data}.file: corrupted: actual checksum is "
        + err.split("actual checksum is ")[1][:64]
        + f" (in commits {', '.join(sorted([base.c1, base.c2]))})",
        "error: Repository corruption encountered",
    ]


@pytest.mark.parametrize(
    "flag, line",
    [
        ("--verify-bindings", "ref copy: commit has no ref binding for 'copy' (binds 'main')"),
        ("--verify-back-refs", "ref 'main' in its bindings does not resolve to it"),
    ],
)
def test_verify_bindings(_bases, tmp_path, ostree, flag, line):
    # `ostree commit -b main` binds the commit to 'main'; a second ref to it is unbound,
    # and the parent commit is bound to 'main' which has moved on
    base = Base(*_bases("archive"), tmp_path)
    base.both(lambda r: ostree(f"--repo={r}", "refs", "--create=copy", "main"))
    assert ostree(f"--repo={base.theirs}", "fsck", flag, check=False).returncode == 1
    rc, out, err = cli(f"--repo={base.ours}", "fsck", flag)
    assert rc == 1
    assert line in err
    # without the flag both tools find nothing wrong
    ostree(f"--repo={base.theirs}", "fsck")
    assert cli(f"--repo={base.ours}", "fsck")[0] == 0
