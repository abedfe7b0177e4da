"""Tree differences, computed as `ostree diff` (ostree_diff_dirs) computes them.

Either side is a commit's tree in a repository or a directory on disk. Entries are
compared by checksum: content-object checksum for files and symlinks, dirmeta checksum
for directories (so a chmod or chown is a modification). For a directory on disk the
checksums are computed from the files, optionally without xattrs and with an owner
override. The traversal order matches ostree's so the M/D/A lines come out identical:

* the children of a directory in a repository are its files, then its subdirectories,
  each sorted by name (the dirtree order);
* the children of a directory on disk come in GLib's enumeration order: readdir order
  sorted by inode number in chunks of 1000 entries;
* modified entries and removed ones come from walking A, added ones from walking B;
  a changed directory is recursed into, a removed one is not, an added one lists all
  its descendants; the roots themselves are never reported.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sysroot.errors import NotFoundError, SysrootError
from sysroot.formats.objects import DirMeta, FileHeader, ObjectType
from sysroot.store.repo import Repo
from sysroot.util import fsutil

_CHUNK = 1 << 20
_GIO_BATCH = 1000  # GLocalFileEnumerator sorts each batch of entries by inode


@dataclass(frozen=True)
class DiffItem:
    """A path present on both sides whose type or checksum differs."""

    path: str  # relative to the roots, without a leading slash
    src_checksum: str | None
    target_checksum: str | None


@dataclass
class TreeDiff:
    modified: list[DiffItem] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.modified or self.removed or self.added)


# ---------------------------------------------------------------- tree sides


@dataclass
class _Entry:
    name: str
    kind: str  # "dir", "object" (a repo content object), "reg", "lnk", "other"
    # a repo side knows the checksum up front; a side on disk computes it when needed
    checksum: str | None = None
    dirtree: str = ""  # a repo directory's dirtree checksum
    st: os.stat_result | None = None  # the lstat of an entry on disk


class _Side(Protocol):
    """One side of a diff: a directory whose entries are compared."""

    native: bool  # on disk (paths printed without a leading slash)

    def entries(self) -> Iterator[_Entry]: ...

    def checksum(self, entry: _Entry) -> str: ...

    def subtree(self, entry: _Entry) -> _Side: ...


class RepoTree:
    """A directory of a commit: its dirtree and dirmeta checksums."""

    native = False

    def __init__(self, repo: Repo, tree: str, meta: str):
        self.repo = repo
        self.tree = tree
        self.meta = meta

    @classmethod
    def for_commit(cls, repo: Repo, rev: str) -> RepoTree:
        commit = repo.load_commit(repo.resolve_rev(rev))
        return cls(repo, commit.root_tree, commit.root_meta)

    def entries(self) -> Iterator[_Entry]:
        dirtree = self.repo.load_dirtree(self.tree)
        for name, checksum in dirtree.files:
            yield _Entry(name, "object", checksum)
        for name, tree, meta in dirtree.dirs:
            yield _Entry(name, "dir", meta, dirtree=tree)

    def checksum(self, entry: _Entry) -> str:
        if entry.checksum is None:  # never: every entry of a dirtree comes with it
            raise SysrootError(f"{entry.name}: no checksum")
        return entry.checksum

    def subtree(self, entry: _Entry) -> RepoTree:
        return RepoTree(self.repo, entry.dirtree, self.checksum(entry))


class LocalTree:
    """A directory on disk, checksummed the way a commit of it would be."""

    native = True

    def __init__(
        self,
        path: str,
        *,
        ignore_xattrs: bool = False,
        owner_uid: int | None = None,
        owner_gid: int | None = None,
    ):
        self.path = path
        self.ignore_xattrs = ignore_xattrs
        self.owner_uid = owner_uid
        self.owner_gid = owner_gid

    def _child(self, path: str) -> LocalTree:
        return LocalTree(
            path,
            ignore_xattrs=self.ignore_xattrs,
            owner_uid=self.owner_uid,
            owner_gid=self.owner_gid,
        )

    def entries(self) -> Iterator[_Entry]:
        try:
            with os.scandir(self.path) as it:
                scanned = [(e.name, e.inode()) for e in it]
        except OSError as e:
            raise SysrootError(f"Reading directory {self.path}: {e.strerror}") from None
        for start in range(0, len(scanned), _GIO_BATCH):
            batch = sorted(scanned[start : start + _GIO_BATCH], key=lambda e: e[1])
            for name, _ in batch:
                path = os.path.join(self.path, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue  # vanished while we looked
                if stat.S_ISDIR(st.st_mode):
                    kind = "dir"
                elif stat.S_ISREG(st.st_mode):
                    kind = "reg"
                elif stat.S_ISLNK(st.st_mode):
                    kind = "lnk"
                else:
                    kind = "other"
                yield _Entry(name, kind, st=st)

    def _ids(self, st: os.stat_result) -> tuple[int, int]:
        uid = st.st_uid if self.owner_uid is None else self.owner_uid
        gid = st.st_gid if self.owner_gid is None else self.owner_gid
        return uid, gid

    def _xattrs(self, path: str) -> tuple[tuple[bytes, bytes], ...]:
        return () if self.ignore_xattrs else tuple(fsutil.read_xattrs(path))

    def _stat(self, entry: _Entry) -> os.stat_result:
        if entry.st is None:  # never: entries() gives each one its lstat
            raise SysrootError(f"{self.path}/{entry.name}: not read")
        return entry.st

    def checksum(self, entry: _Entry) -> str:
        path, st = os.path.join(self.path, entry.name), self._stat(entry)
        uid, gid = self._ids(st)
        try:
            if entry.kind == "dir":
                return DirMeta(uid, gid, st.st_mode, self._xattrs(path)).checksum
            target = os.readlink(path) if entry.kind == "lnk" else ""
            header = FileHeader(uid, gid, st.st_mode, target, self._xattrs(path))
            h = hashlib.sha256(header.content_stream_prefix())
            if entry.kind == "reg":
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
            return h.hexdigest()
        except OSError as e:
            raise SysrootError(f"Reading {path}: {e.strerror}") from None

    def subtree(self, entry: _Entry) -> LocalTree:
        return self._child(os.path.join(self.path, entry.name))


def _checksum(side: _Side, entry: _Entry) -> str:
    if entry.checksum is None:
        entry.checksum = side.checksum(entry)
    return entry.checksum


def _same_type(a: _Entry, b: _Entry) -> bool:
    if (a.kind == "dir") != (b.kind == "dir"):
        return False
    if "other" in (a.kind, b.kind):
        return a.kind == b.kind
    # a repo object may be a file or a symlink: if the other side is the other type
    # the checksums differ anyway, which reports the same modification
    return a.kind == b.kind or "object" in (a.kind, b.kind)


# ---------------------------------------------------------------- the walk


def _add_all(side: _Side, prefix: str, out: list[str]) -> None:
    """Every descendant of an added directory, each directory followed by its contents."""
    stack = [(side, prefix, side.entries())]
    while stack:
        node, pre, it = stack[-1]
        entry = next(it, None)
        if entry is None:
            stack.pop()
            continue
        path = pre + entry.name
        out.append(path)
        if entry.kind == "dir":
            sub = node.subtree(entry)
            stack.append((sub, path + "/", sub.entries()))


@dataclass
class _Frame:
    a: _Side
    b: _Side
    prefix: str
    a_entries: Iterator[_Entry]
    b_entries: dict[str, _Entry]
    a_names: set[str] = field(default_factory=set)


def _frame(a: _Side, b: _Side, prefix: str) -> _Frame:
    return _Frame(a, b, prefix, a.entries(), {e.name: e for e in b.entries()})


def diff_trees(a: _Side, b: _Side) -> TreeDiff:
    """Differences from tree a to tree b (RepoTree or LocalTree, in any combination)."""
    result = TreeDiff()
    # an explicit stack instead of recursion: trees may be deeper than Python's limit
    stack = [_frame(a, b, "")]
    while stack:
        f = stack[-1]
        ea = next(f.a_entries, None)
        if ea is None:
            # A's side of this directory is done (subdirectories included): additions
            for name, added in f.b_entries.items():
                if name not in f.a_names:
                    result.added.append(f.prefix + name)
                    if added.kind == "dir":
                        _add_all(f.b.subtree(added), f.prefix + name + "/", result.added)
            stack.pop()
            continue
        f.a_names.add(ea.name)
        path = f.prefix + ea.name
        eb = f.b_entries.get(ea.name)
        if eb is None:
            result.removed.append(path)
        elif not _same_type(ea, eb):
            result.modified.append(DiffItem(path, None, None))
        else:
            ca, cb = _checksum(f.a, ea), _checksum(f.b, eb)
            if ca != cb:
                result.modified.append(DiffItem(path, ca, cb))
            if ea.kind == "dir":
                stack.append(_frame(f.a.subtree(ea), f.b.subtree(eb), path + "/"))
    return result


def diff_commits(repo: Repo, a: str, b: str) -> TreeDiff:
    """Differences between the trees of two revisions of repo."""
    return diff_trees(RepoTree.for_commit(repo, a), RepoTree.for_commit(repo, b))


def diff_dirs(a: str, b: str, *, ignore_xattrs: bool = False) -> TreeDiff:
    """Differences between two directories on disk (what /etc merge needs)."""
    for path in (a, b):
        if not os.path.isdir(path):
            raise NotFoundError(f"{path}: not a directory")
    return diff_trees(
        LocalTree(a, ignore_xattrs=ignore_xattrs), LocalTree(b, ignore_xattrs=ignore_xattrs)
    )


# ---------------------------------------------------------------- --stats


def reachable_objects(repo: Repo, commit: str) -> set[tuple[str, ObjectType]]:
    """The commit object and everything its tree references (no parents)."""
    out = {(commit, ObjectType.COMMIT)}
    c = repo.load_commit(commit)
    stack = [(c.root_tree, c.root_meta)]
    while stack:
        tree, meta = stack.pop()
        out.add((meta, ObjectType.DIR_META))
        if (tree, ObjectType.DIR_TREE) in out:
            continue
        out.add((tree, ObjectType.DIR_TREE))
        dirtree = repo.load_dirtree(tree)
        out.update((csum, ObjectType.FILE) for _, csum in dirtree.files)
        stack.extend((t, m) for _, t, m in dirtree.dirs)
    return out


def object_storage_size(repo: Repo, checksum: str, objtype: ObjectType) -> int:
    """The size of the loose object file as stored (compressed for archive repos)."""
    try:
        return os.lstat(repo.object_relpath(checksum, objtype), dir_fd=repo.dfd).st_size
    except FileNotFoundError:
        raise NotFoundError(f"No such {objtype.type_name} object {checksum}") from None


@dataclass(frozen=True)
class DiffStats:
    a_objects: int
    b_objects: int
    common_objects: int
    common_size: int


def diff_stats(repo: Repo, a: str, b: str) -> DiffStats:
    ra = reachable_objects(repo, repo.resolve_rev(a))
    rb = reachable_objects(repo, repo.resolve_rev(b))
    common = ra & rb
    size = sum(object_storage_size(repo, c, t) for c, t in common)
    return DiffStats(len(ra), len(rb), len(common), size)
