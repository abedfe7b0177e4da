"""checkout against the real ostree: same trees, same hardlinks, same refusals.

Repos are written by both tools (ostree and sysroot commit) in every mode; each test
checks out with both tools and compares the resulting trees entry by entry.
Crafted hostile trees are written with Transaction.write_metadata and must be
refused before anything is written, inside or outside the destination.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from sysroot.errors import CorruptObjectError, NotFoundError, SysrootError, UsageError
from sysroot.formats.objects import Commit, DirMeta, DirTree, FileHeader, ObjectType
from sysroot.store.checkout import CheckoutOptions, OverwriteMode, checkout_tree
from sysroot.store.commit import CommitBuilder
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo
from sysroot.store.tree import TreeReader
from tests.conftest import COMMIT_ARGS, make_rich_tree
from tests.helpers.twins import ReposByWriter, run_in_dirs

MODES = ["bare", "bare-user", "bare-user-only", "archive"]


# ---------------------------------------------------------------------------- trees & repos


def make_base_tree(root: Path) -> Path:
    """The shared rich tree, plus ownership, a read-only directory and a smaller big file."""
    make_rich_tree(root)
    with open(root / "usr/share/big", "wb") as f:  # several copy chunks, but quick
        f.write(os.urandom(1 << 20) * 2 + os.urandom(12345))
    owned = root / "owned"
    owned.mkdir()
    (owned / "f").write_text("owned by someone else\n")
    os.chown(owned / "f", 1234, 5678)
    os.chmod(owned / "f", 0o640)
    os.chown(owned, 4321, 8765)
    os.chmod(owned, 0o750)
    ro = root / "readonly"
    (ro / "sub").mkdir(parents=True)
    (ro / "sub" / "inside").write_text("in a read-only dir\n")
    os.chmod(ro / "sub", 0o555)
    os.chmod(ro, 0o555)
    return root


def make_changed_tree(base: Path, root: Path) -> Path:
    """base with a changed file, a file turned symlink, new files and a new directory."""
    os.system(f"cp -a {base} {root}")  # noqa: S605 - fixed arguments, test only
    (root / "B").write_text("changed\n")
    (root / "z").unlink()
    os.symlink("B", root / "z")
    (root / "usr/newfile").write_text("new\n")
    (root / "newdir").mkdir()
    (root / "newdir/f").write_text("x\n")
    os.chmod(root / "usr", 0o700)
    return root


class Repos(ReposByWriter):
    """Repos built on demand: (mode, writer) -> path with refs t and t2."""

    def __init__(self, base: Path, ostree, sysroot):
        self.tree1 = make_base_tree(base / "tree1")
        self.tree2 = make_changed_tree(self.tree1, base / "tree2")
        super().__init__(
            base, ostree, sysroot, {"t": self.tree1, "t2": self.tree2}, tuple(COMMIT_ARGS)
        )


_SHARED: list[Repos] = []


def shared_repos(tmp_path_factory, ostree, sysroot) -> Repos:
    """One Repos for the whole session (the ls/cat tests use the same repos)."""
    if not _SHARED:
        _SHARED.append(Repos(tmp_path_factory.mktemp("checkout-repos"), ostree, sysroot))
    return _SHARED[0]


@pytest.fixture(scope="session")
def repos(tmp_path_factory, ostree, sysroot) -> Repos:
    return shared_repos(tmp_path_factory, ostree, sysroot)


def snapshot(root: Path, *, dir_mtimes: bool = True) -> dict[str, tuple]:
    """Everything a checkout determines, per path: type, mode, owner, xattrs, content."""
    out: dict[str, tuple] = {}
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath) / n for n in dirnames + filenames]
    for p in paths:
        st = os.lstat(p)
        xattrs = sorted(
            (k, os.getxattr(p, k, follow_symlinks=False))
            for k in os.listxattr(p, follow_symlinks=False)
        )
        rec: tuple = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            tuple(xattrs),
        )
        if stat.S_ISLNK(st.st_mode):
            rec += (os.readlink(p),)
        elif stat.S_ISREG(st.st_mode):
            rec += (hashlib.sha256(p.read_bytes()).hexdigest(),)
        elif dir_mtimes:
            rec += (st.st_mtime_ns == 0,)  # ostree gives new directories mtime 0
        out[str(p.relative_to(root))] = rec
    return out


def object_inodes(repo: Path) -> set[tuple[int, int]]:
    out = set()
    for dirpath, _, filenames in os.walk(repo / "objects"):
        for n in filenames:
            if n.endswith(".file"):
                st = os.lstat(os.path.join(dirpath, n))
                out.add((st.st_dev, st.st_ino))
    return out


def linked_paths(root: Path, inodes: set[tuple[int, int]]) -> set[str]:
    out = set()
    for dirpath, _, filenames in os.walk(root):
        for n in filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) in inodes:
                out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


# ---------------------------------------------------------------------------- vs oracle


@pytest.mark.parametrize("writer", ["ostree", "sysroot"])
def test_checkout_matches_ostree(repos, ostree, sysroot, tmp_path, mode, writer):
    repo = repos.get(mode, writer)
    run_in_dirs(ostree, sysroot, tmp_path, ["checkout", f"--repo={repo}", "t", "dest"])
    ours = snapshot(tmp_path / "sysroot/dest")
    assert ours == snapshot(tmp_path / "ostree/dest")
    assert len(ours) > 60
    if mode != "bare-user-only":  # that mode stores no ownership
        assert ours["owned/f"][2:4] == (1234, 5678)
        assert ours["owned"][1:4] == (0o750, 4321, 8765)
    assert ours["readonly"][1] == 0o555


# (mode, options, whether new directories get mtime 0): ostree leaves directory mtimes
# alone with --force-copy, and a file subpath's directory is made with the current
# time. Mode-dependent options run in every mode; subpaths in a linking and a copying one.
OPTION_CASES = [
    (m, o, t) for m in MODES for o, t in ((["-U"], True), (["-C"], False), (["-M"], True))
]
OPTION_CASES += [
    (m, o, t)
    for m in ("bare-user", "archive")
    for o, t in (
        (["--subpath=usr/share"], True),
        (["--subpath=/usr/bin/tool"], False),
        (["--subpath=/link-to-tool"], False),
        (["-U", "--subpath=/usr/bin"], True),
    )
]
OPTION_CASES += [("bare", ["--fsync=true"], True), ("bare", ["--fsync=false"], True)]


@pytest.mark.parametrize(
    ("repo_mode", "opts", "mtimes"),
    OPTION_CASES,
    ids=[f"{m}-{' '.join(o)}" for m, o, _ in OPTION_CASES],
)
def test_checkout_options_match_ostree(repos, ostree, tmp_path, repo_mode, opts, mtimes):
    repo = repos.get(repo_mode)
    run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", *opts, "t", "dest"])
    ours = snapshot(tmp_path / "sysroot/dest", dir_mtimes=mtimes)
    assert ours == snapshot(tmp_path / "ostree/dest", dir_mtimes=mtimes)
    assert ours


@pytest.mark.parametrize("opts", [[], ["-U"], ["-C"]], ids=lambda o: " ".join(o) or "default")
def test_hardlinks_like_ostree(repos, ostree, tmp_path, mode, opts):
    repo = repos.get(mode)
    run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", *opts, "t", "dest"])
    inodes = object_inodes(repo)
    ours = linked_paths(tmp_path / "sysroot/dest", inodes)
    assert ours == linked_paths(tmp_path / "ostree/dest", inodes)
    user = "-U" in opts or mode == "bare-user-only"
    expect_links = "-C" not in opts and (
        (mode == "bare" and not user) or (mode.startswith("bare-user") and user)
    )
    if expect_links:
        # every non-empty regular file; empty files are always copied
        assert "usr/bin/tool" in ours and "usr/share/big" in ours
        assert "empty-file" not in ours
        assert ("link-to-tool" in ours) == (mode == "bare")
    else:
        assert ours == set()


@pytest.mark.parametrize("writer", ["ostree", "sysroot"])
def test_bare_checkout_shares_object_inodes(repos, sysroot, tmp_path, writer):
    repo_path = repos.get("bare", writer)
    sysroot("checkout", f"--repo={repo_path}", "t", tmp_path / "dest")
    repo = Repo.open(repo_path)
    reader = TreeReader(repo, repo.resolve_rev("t"))
    for rel in ("usr/bin/tool", "usr/share/big", "link-to-tool", "owned/f"):
        entry = reader.resolve(rel)
        obj = os.lstat(repo.object_path(entry.checksum, ObjectType.FILE))
        assert os.lstat(tmp_path / "dest" / rel).st_ino == obj.st_ino, rel
    repo.close()


UNION_CASES = [("--union", []), ("--union-add", []), ("--union", ["-U"]), ("--union-add", ["-C"])]


@pytest.mark.parametrize(
    ("union", "user"), UNION_CASES, ids=[" ".join([u, *o]) for u, o in UNION_CASES]
)
def test_union_matches_ostree(repos, ostree, tmp_path, mode, union, user):
    repo = repos.get(mode)
    for ref in ("t", "t2"):
        run_in_dirs(
            ostree, None, tmp_path, ["checkout", f"--repo={repo}", *user, union, ref, "dest"]
        )
    ours = snapshot(tmp_path / "sysroot/dest", dir_mtimes=False)
    assert ours == snapshot(tmp_path / "ostree/dest", dir_mtimes=False)
    changed = (tmp_path / "sysroot/dest/B").read_text()
    assert changed == ("changed\n" if union == "--union" else "B")
    assert (tmp_path / "sysroot/dest/newdir/f").read_text() == "x\n"


def test_union_identical(repos, ostree, sysroot, tmp_path):
    repo = repos.get("bare")
    args = ["checkout", f"--repo={repo}", "--union-identical", "-H"]
    run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", "t", "dest"])
    run_in_dirs(ostree, None, tmp_path, [*args, "t", "dest"])  # identical: fine
    res = run_in_dirs(ostree, None, tmp_path, [*args, "t2", "dest"], check=False)
    assert res["ostree"].returncode != 0 and res["sysroot"].returncode != 0
    assert (tmp_path / "sysroot/dest/B").read_text() == "B"  # untouched
    # a copied tree with the same content counts as identical too
    os.system(f"cp -a {repos.tree1} {tmp_path / 'copy'}")  # noqa: S605
    sysroot(*args, "t", tmp_path / "copy")
    res = sysroot("checkout", f"--repo={repo}", "--union-identical", "t", "x", check=False)
    assert res.returncode == 2 and b"--require-hardlinks" in res.stderr


@pytest.mark.parametrize("opts", [["-H"], ["-U", "-H"]], ids=" ".join)
def test_require_hardlinks_like_ostree(repos, ostree, sysroot, tmp_path, mode, opts):
    repo = repos.get(mode)
    res = run_in_dirs(
        ostree, None, tmp_path, ["checkout", f"--repo={repo}", *opts, "t", "dest"], check=False
    )
    ok = res["ostree"].returncode == 0
    assert (res["sysroot"].returncode == 0) == ok
    if ok:
        assert snapshot(tmp_path / "sysroot/dest") == snapshot(tmp_path / "ostree/dest")
    else:
        assert res["sysroot"].stderr.decode().strip() == res["ostree"].stderr.decode().strip()
        assert not (tmp_path / "sysroot/dest").exists()  # our partial checkout is removed


def test_existing_destination_is_an_error(repos, ostree, sysroot, tmp_path):
    repo = repos.get("bare")
    for name in ("ostree", "sysroot"):
        (tmp_path / name / "dest").mkdir(parents=True)
        (tmp_path / name / "dest/keep").write_text("mine")
    res = run_in_dirs(
        ostree, None, tmp_path, ["checkout", f"--repo={repo}", "t", "dest"], check=False
    )
    assert res["ostree"].returncode != 0 and res["sysroot"].returncode != 0
    assert os.listdir(tmp_path / "sysroot/dest") == ["keep"]
    assert len(res["sysroot"].stderr.decode().strip().splitlines()) == 1


def test_default_destination_is_the_rev(repos, ostree, sysroot, tmp_path):
    repo = repos.get("bare")
    run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", "t"])
    assert snapshot(tmp_path / "sysroot/t") == snapshot(tmp_path / "ostree/t")
    # a ref with a slash names a nested path, whose parent must exist (as in ostree)
    ostree("refs", f"--repo={repo}", "t", "--create=a/b")
    res = run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", "a/b"], check=False)
    assert res["ostree"].returncode != 0 and res["sysroot"].returncode != 0
    (tmp_path / "ostree/a").mkdir()
    (tmp_path / "sysroot/a").mkdir()
    run_in_dirs(ostree, None, tmp_path, ["checkout", f"--repo={repo}", "a/b"])
    assert snapshot(tmp_path / "sysroot/a/b") == snapshot(tmp_path / "ostree/a/b")


def test_allow_noent(repos, ostree, sysroot, tmp_path):
    repo = repos.get("bare")
    args = ["checkout", f"--repo={repo}", "--subpath=/nonexistent", "t", "dest"]
    res = run_in_dirs(ostree, None, tmp_path, args, check=False)
    assert res["ostree"].returncode != 0 and res["sysroot"].returncode != 0
    assert b"/nonexistent" in res["sysroot"].stderr
    run_in_dirs(ostree, None, tmp_path, [*args, "--allow-noent"])
    assert not (tmp_path / "sysroot/dest").exists() and not (tmp_path / "ostree/dest").exists()


def test_from_stdin_matches_ostree(repos, ostree, sysroot, tmp_path):
    repo = repos.get("archive")
    for name in ("ostree", "sysroot"):
        (tmp_path / name / "dest").mkdir(parents=True)
    for name, tool in (("ostree", ostree), ("sysroot", sysroot)):
        tool(
            "checkout",
            f"--repo={repo}",
            "--union",
            "--from-stdin",
            "dest",
            input=b"t\0/usr\0t2\0/newdir\0",
            cwd=tmp_path / name,
        )
    ours = snapshot(tmp_path / "sysroot/dest", dir_mtimes=False)
    assert ours == snapshot(tmp_path / "ostree/dest", dir_mtimes=False)
    assert {"bin", "share", "f"} <= set(ours)


def test_library_api_options_and_stats(repos, tmp_path):
    repo = Repo.open(repos.get("bare"))
    stats = checkout_tree(repo, "t", tmp_path / "a")
    files = [
        os.path.join(d, n)
        for d, dirs, names in os.walk(repos.tree1)
        for n in names + [x for x in dirs if os.path.islink(os.path.join(d, x))]
    ]
    empty = [f for f in files if not os.path.islink(f) and os.path.getsize(f) == 0]
    assert (stats.hardlinked, stats.copied) == (len(files) - len(empty), len(empty))
    assert stats.directories == 1 + sum(
        1
        for d, dirs, _ in os.walk(repos.tree1)
        for x in dirs
        if not os.path.islink(os.path.join(d, x))
    )
    stats = checkout_tree(
        repo, "t2", tmp_path / "a", CheckoutOptions(overwrite=OverwriteMode.ADD_FILES)
    )
    assert stats.skipped > 0 and (tmp_path / "a/B").read_text() == "B"
    with pytest.raises(UsageError):
        checkout_tree(
            repo, "t", tmp_path / "b", CheckoutOptions(force_copy=True, require_hardlinks=True)
        )
    with pytest.raises(NotFoundError):
        checkout_tree(repo, "t", tmp_path / "c", CheckoutOptions(subpath="/nope"))
    assert (
        checkout_tree(repo, "t", tmp_path / "c", CheckoutOptions(subpath="/nope", allow_noent=True))
        is None
    )
    assert not (tmp_path / "c").exists()
    # dir_fd: the destination is taken relative to it
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        checkout_tree(repo, "t", "viafd", CheckoutOptions(subpath="/usr/bin"), dir_fd=fd)
    finally:
        os.close(fd)
    assert (tmp_path / "viafd/tool").read_bytes() == (repos.tree1 / "usr/bin/tool").read_bytes()
    repo.close()


# ---------------------------------------------------------------------------- corruption


def _object_of(repo_path: Path, path: str) -> tuple[str, str | None]:
    repo = Repo.open(repo_path)
    try:
        entry = TreeReader(repo, repo.resolve_rev("t")).resolve(path)
        return entry.checksum, entry.tree
    finally:
        repo.close()


def small_tree(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("tool\n")
    (root / "usr/lib").mkdir()
    (root / "usr/lib/lib.so").write_text("lib\n")
    os.symlink("bin/tool", root / "usr/link")
    return root


@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_missing_content_object(ostree, sysroot, tmp_path, mode):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", f"--mode={mode}")
    ostree("commit", f"--repo={repo}", "-b", "t", small_tree(tmp_path / "tree"))
    csum, _ = _object_of(repo, "/usr/bin/tool")
    ext = "filez" if mode == "archive" else "file"
    os.unlink(repo / "objects" / csum[:2] / f"{csum[2:]}.{ext}")
    res = sysroot("checkout", f"--repo={repo}", "t", tmp_path / "dest", check=False)
    err = res.stderr.decode()
    assert res.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert csum in err and "usr/bin/tool" in err and "Traceback" not in err
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("mode", ["bare-user", "bare-user-only"])
def test_missing_content_object_user_checkout(ostree, sysroot, tmp_path, mode):
    """The user-mode link loop (checkout -U of a bare-user repo) reports a missing
    object as the slow path does: one line naming the object and the path."""
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", f"--mode={mode}")
    ostree("commit", f"--repo={repo}", "-b", "t", small_tree(tmp_path / "tree"))
    csum, _ = _object_of(repo, "/usr/bin/tool")
    os.unlink(repo / "objects" / csum[:2] / f"{csum[2:]}.file")
    res = sysroot("checkout", "-U", f"--repo={repo}", "t", tmp_path / "dest", check=False)
    err = res.stderr.decode()
    assert res.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert csum in err and "usr/bin/tool" in err and "Traceback" not in err
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("damage", ["removed", "garbage", "directory mode"])
def test_bad_ostreemeta_refused_in_user_checkout(ostree, tmp_path, damage):
    """A bare-user object whose user.ostreemeta is missing, undecodable or not a
    regular file's is refused as corrupt, never hardlinked as it is."""
    repo_path = tmp_path / "repo"
    ostree("init", f"--repo={repo_path}", "--mode=bare-user")
    ostree("commit", f"--repo={repo_path}", "-b", "t", small_tree(tmp_path / "tree"))
    csum, _ = _object_of(repo_path, "/usr/bin/tool")
    obj = repo_path / "objects" / csum[:2] / f"{csum[2:]}.file"
    if damage == "removed":
        os.removexattr(obj, "user.ostreemeta")
    elif damage == "garbage":
        os.setxattr(obj, "user.ostreemeta", b"\xff")
    else:
        meta = FileHeader(0, 0, stat.S_IFDIR | 0o755).serialize_filemeta()
        os.setxattr(obj, "user.ostreemeta", meta)
    repo = Repo.open(repo_path)
    with pytest.raises(CorruptObjectError) as exc:
        checkout_tree(repo, "t", tmp_path / "dest", CheckoutOptions(user_mode=True))
    repo.close()
    assert csum in str(exc.value)


def test_corrupted_dirtree(ostree, sysroot, tmp_path):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=bare")
    ostree("commit", f"--repo={repo}", "-b", "t", small_tree(tmp_path / "tree"))
    _, tree = _object_of(repo, "/usr/bin")
    obj = repo / "objects" / tree[:2] / f"{tree[2:]}.dirtree"
    os.chmod(obj, 0o644)
    obj.write_bytes(b"\x01garbage that is not a dirtree\xff")
    res = sysroot("checkout", f"--repo={repo}", "t", tmp_path / "dest", check=False)
    err = res.stderr.decode()
    assert res.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert tree in err and "dirtree" in err
    assert not (tmp_path / "dest").exists()  # refused before writing anything


# ---------------------------------------------------------------------------- hostile trees


class Crafter:
    """Writes hand-made (possibly invalid) trees and commits into a repo."""

    def __init__(self, path: Path, mode: str = "bare"):
        from sysroot.store.modes import RepoMode

        self.repo = Repo.create(path, RepoMode.parse(mode))
        with self.repo.transaction() as tx:
            self.meta = tx.write_metadata(
                ObjectType.DIR_META, DirMeta(0, 0, stat.S_IFDIR | 0o755).serialize()
            )
            self.file = tx.write_content(FileHeader(0, 0, stat.S_IFREG | 0o644), [b"pwned\n"])

    def symlink(self, target: str) -> str:
        with self.repo.transaction() as tx:
            return tx.write_content(FileHeader(0, 0, stat.S_IFLNK | 0o777, target), None)

    def tree(self, files=(), dirs=()) -> str:
        """files: [(name, content checksum)], dirs: [(name, dirtree checksum)]."""
        data = DirTree(tuple(files), tuple((n, t, self.meta) for n, t in dirs)).serialize()
        with self.repo.transaction() as tx:
            return tx.write_metadata(ObjectType.DIR_TREE, data)

    def raw_tree(self, data: bytes) -> str:
        with self.repo.transaction() as tx:
            return tx.write_metadata(ObjectType.DIR_TREE, data)

    def commit(self, root_tree: str, ref: str, root_meta: str | None = None) -> str:
        c = Commit({}, None, "crafted", "", 0, root_tree, root_meta or self.meta)
        with self.repo.transaction() as tx:
            csum = tx.write_metadata(ObjectType.COMMIT, c.serialize())
            tx.set_ref(ref, csum)
        return csum


def listing(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


@pytest.fixture
def crafter(tmp_path) -> Crafter:
    c = Crafter(tmp_path / "repo")
    yield c
    c.repo.close()


def _outside_state(tmp_path: Path) -> set[str]:
    return {p for p in listing(tmp_path) if not p.startswith("repo")}


BAD_NAMES = ["..", ".", "", "a/b", "../escape", "x/../../escape"]


@pytest.mark.parametrize("as_dir", [False, True], ids=["file", "dir"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_refuses_bad_names(crafter, tmp_path, name, as_dir):
    inner = crafter.tree([("escaped", crafter.file)])
    root = crafter.tree(
        [("ok", crafter.file)] + ([] if as_dir else [(name, crafter.file)]),
        [(name, inner)] if as_dir else [],
    )
    crafter.commit(root, "evil")
    (tmp_path / "work").mkdir()
    before = _outside_state(tmp_path)
    with pytest.raises(CorruptObjectError) as exc:
        checkout_tree(crafter.repo, "evil", tmp_path / "work/dest")
    assert root in str(exc.value) and "dirtree" in str(exc.value)
    assert _outside_state(tmp_path) == before  # not even the destination was created


def test_refuses_bad_name_deep_before_writing(crafter, tmp_path):
    bad = crafter.tree([("..", crafter.file)])
    mid = crafter.tree([("fine", crafter.file)], [("b", bad)])
    root = crafter.tree([("first", crafter.file)], [("a", mid)])
    crafter.commit(root, "evil")
    with pytest.raises(CorruptObjectError) as exc:
        checkout_tree(crafter.repo, "evil", tmp_path / "dest")
    assert bad in str(exc.value)
    assert os.listdir(tmp_path) == ["repo"]


@pytest.mark.parametrize("shape", ["duplicate-file", "duplicate-dir", "file-and-dir", "unsorted"])
def test_refuses_duplicate_and_unsorted_entries(crafter, tmp_path, shape):
    link = crafter.symlink(str(tmp_path / "outside"))
    (tmp_path / "outside").mkdir()
    inner = crafter.tree([("victim", crafter.file)])
    if shape == "file-and-dir":  # a symlink "x", then a directory "x" written through it
        root = crafter.tree([("x", link)], [("x", inner)])
    elif shape == "duplicate-file":
        root = crafter.tree([("x", link), ("x", crafter.file)])
    elif shape == "duplicate-dir":
        root = crafter.tree([], [("x", inner), ("x", inner)])
    else:  # serialize() sorts, so build the unsorted bytes by hand
        from sysroot.formats import gvariant

        root = crafter.raw_tree(
            gvariant.encode(
                "(a(say)a(sayay))",
                ([("b", bytes.fromhex(crafter.file)), ("a", bytes.fromhex(crafter.file))], []),
            )
        )
    crafter.commit(root, "evil")
    with pytest.raises(CorruptObjectError):
        checkout_tree(crafter.repo, "evil", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert os.listdir(tmp_path / "outside") == []


def test_cli_refusal_is_one_line(crafter, sysroot, tmp_path):
    crafter.commit(crafter.tree([("..", crafter.file)]), "evil")
    res = sysroot("checkout", f"--repo={crafter.repo.path}", "evil", tmp_path / "dest", check=False)
    err = res.stderr.decode()
    assert res.returncode == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "union", [OverwriteMode.UNION_FILES, OverwriteMode.ADD_FILES, OverwriteMode.UNION_IDENTICAL]
)
def test_union_never_writes_through_existing_symlinked_dir(crafter, tmp_path, union):
    outside = tmp_path / "outside"
    outside.mkdir()
    first = crafter.tree([("etc", crafter.symlink(str(outside)))])
    second = crafter.tree([], [("etc", crafter.tree([("passwd", crafter.file)]))])
    crafter.commit(first, "first")
    crafter.commit(second, "second")
    checkout_tree(crafter.repo, "first", tmp_path / "dest")
    opts = CheckoutOptions(
        overwrite=union, require_hardlinks=union is OverwriteMode.UNION_IDENTICAL
    )
    with pytest.raises(SysrootError) as exc:
        checkout_tree(crafter.repo, "second", tmp_path / "dest", opts)
    assert "symlink" in str(exc.value)
    assert os.listdir(outside) == []
    assert os.readlink(tmp_path / "dest/etc") == str(outside)


@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_union_replaces_symlink_not_its_target(tmp_path, mode):
    crafter = Crafter(tmp_path / "repo", mode)
    victim = tmp_path / "victim"
    victim.write_text("original\n")
    crafter.commit(crafter.tree([("f", crafter.symlink(str(victim)))]), "first")
    crafter.commit(crafter.tree([("f", crafter.file)]), "second")
    checkout_tree(crafter.repo, "first", tmp_path / "dest")
    checkout_tree(
        crafter.repo,
        "second",
        tmp_path / "dest",
        CheckoutOptions(overwrite=OverwriteMode.ADD_FILES),
    )
    assert os.path.islink(tmp_path / "dest/f")  # kept
    checkout_tree(
        crafter.repo,
        "second",
        tmp_path / "dest",
        CheckoutOptions(overwrite=OverwriteMode.UNION_FILES),
    )
    assert not os.path.islink(tmp_path / "dest/f")
    assert (tmp_path / "dest/f").read_text() == "pwned\n"
    assert victim.read_text() == "original\n"
    assert sorted(os.listdir(tmp_path / "dest")) == ["f"]  # no temporary left behind
    crafter.repo.close()


def test_symlink_destination_is_followed_only_at_the_top(crafter, tmp_path):
    # The destination path is the caller's; a symlink there is their choice.
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    crafter.commit(crafter.tree([("a", crafter.file)]), "t")
    checkout_tree(
        crafter.repo, "t", tmp_path / "alias", CheckoutOptions(overwrite=OverwriteMode.UNION_FILES)
    )
    assert (tmp_path / "real/a").read_text() == "pwned\n"


def test_invalid_dirmeta_refused(crafter, tmp_path):
    with crafter.repo.transaction() as tx:
        bad_meta = tx.write_metadata(
            ObjectType.DIR_META, DirMeta(0, 0, stat.S_IFREG | 0o644).serialize()
        )
    crafter.commit(crafter.tree([("a", crafter.file)]), "evil", root_meta=bad_meta)
    with pytest.raises(CorruptObjectError) as exc:
        checkout_tree(crafter.repo, "evil", tmp_path / "dest")
    assert bad_meta in str(exc.value) and "dirmeta" in str(exc.value)
    assert not (tmp_path / "dest").exists()


# ---------------------------------------------------------------------------- speed


def test_bare_checkout_links_every_file_without_copying(tmp_path):
    """The speed of a bare checkout comes from linking: every file of a 2,000-file tree
    must be a hardlink to its object, none copied (timings live in bench/)."""
    tree = tmp_path / "tree"
    for d in range(20):
        sub = tree / f"d{d % 4}" / f"s{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f}").write_text(f"{d} {f}\n")
    repo_path = tmp_path / "repo"
    repo = Repo.create(repo_path, RepoMode.BARE)
    with repo.transaction() as tx:
        builder = CommitBuilder(tx)
        builder.add_directory(str(tree))
        tx.set_ref("b", builder.write(subject="s"))
    stats = checkout_tree(repo, "b", tmp_path / "co")
    repo.close()
    assert stats.hardlinked == 2000
    assert stats.copied == 0
