"""Reading one commit's tree: paths resolved as ostree resolves them, objects validated
and cached, symlinks followed inside the commit, file payloads verified as they stream.

The checkout (checkout.py), `ls`/`cat` and the deploy space check read trees through
`TreeReader`, so a crafted tree (names like `..`, `a/b`, duplicates) is refused the
same way everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError, SysrootError
from sysroot.formats.dirtree import parse_fast
from sysroot.formats.objects import DirMeta, DirTree, FileHeader, ObjectType
from sysroot.store.repo import ContentInfo, Repo

_MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class TreeEntry:
    """One resolved path inside a commit.

    For a directory, `checksum` is its dirmeta and `tree` its dirtree; for a file,
    `checksum` is the content object and `tree` is None.
    """

    components: tuple[str, ...]
    checksum: str
    tree: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.tree is not None

    @property
    def name(self) -> str:
        return self.components[-1] if self.components else "/"

    @property
    def path(self) -> str:
        return "/" + "/".join(self.components)

    def dirtree(self) -> str:
        """The dirtree checksum of a directory entry."""
        if self.tree is None:
            raise SysrootError(f"Not a directory: {self.path}")
        return self.tree


def split_repo_path(path: str, base: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The components of path, taken relative to base, exactly as ostree resolves it.

    OSTree does not normalize: an absolute path, or a `//` anywhere, restarts at the
    root; `.` and `..` are looked up as names (and so never found); a trailing `/`
    names an empty child. Matching that keeps output and errors identical.
    """
    comps = list(base)
    while True:
        if path.startswith("/"):
            if path == "/":
                return ()
            path = path[1:]
            if comps:  # below the root: start again from the root
                comps = []
                continue
        slash = path.find("/")
        if slash < 0:
            comps.append(path)
            return tuple(comps)
        comps.append(path[:slash])
        path = path[slash + 1 :]


class _Validatable(Protocol):
    def validate(self) -> None: ...


_V = TypeVar("_V", bound=_Validatable)


def _validated(obj: _V, checksum: str, kind: str) -> _V:
    """obj, once its validate() passed; a failure names the object as corrupt."""
    try:
        obj.validate()
    except FormatError as e:
        raise CorruptObjectError(checksum, kind, str(e)) from None
    return obj


class TreeReader:
    """Read-only access to one commit's tree, with validated, cached objects."""

    def __init__(self, repo: Repo, commit: str):
        self.repo = repo
        self.commit = commit
        self._trees: dict[str, DirTree] = {}
        self._metas: dict[str, DirMeta] = {}
        self._files: dict[str, ContentInfo] = {}
        c = repo.load_commit(commit)
        self.root = TreeEntry((), c.root_meta, c.root_tree)

    def dirtree(self, checksum: str) -> DirTree:
        tree = self._trees.get(checksum)
        if tree is None:
            data = self.repo.read_metadata(ObjectType.DIR_TREE, checksum)
            tree = parse_fast(data) or self.repo.load_dirtree(checksum)
            self._trees[checksum] = _validated(tree, checksum, "dirtree")
        return tree

    def dirmeta(self, checksum: str) -> DirMeta:
        meta = self._metas.get(checksum)
        if meta is None:
            meta = _validated(self.repo.load_dirmeta(checksum), checksum, "dirmeta")
            self._metas[checksum] = meta
        return meta

    def file_info(self, checksum: str, path: str | None = None) -> ContentInfo:
        info = self._files.get(checksum)
        if info is None:
            try:
                info = self.repo.load_file(checksum)
            except NotFoundError:
                where = f" (needed for {path})" if path else ""
                raise NotFoundError(f"No such content object {checksum}{where}") from None
            _validated(info.header, checksum, "file")
            self._files[checksum] = info
        return info

    def child(self, parent: TreeEntry, name: str) -> TreeEntry | None:
        tree = self.dirtree(parent.dirtree())
        for fname, csum in tree.files:
            if fname == name:
                return TreeEntry(parent.components + (name,), csum)
        for dname, tcsum, mcsum in tree.dirs:
            if dname == name:
                return TreeEntry(parent.components + (name,), mcsum, tcsum)
        return None

    def children(self, parent: TreeEntry) -> list[TreeEntry]:
        """Files first, then directories, each in dirtree order (as ostree lists them)."""
        tree = self.dirtree(parent.dirtree())
        comps = parent.components
        return [TreeEntry(comps + (n,), c) for n, c in tree.files] + [
            TreeEntry(comps + (n,), m, t) for n, t, m in tree.dirs
        ]

    def lookup(self, components: tuple[str, ...]) -> TreeEntry:
        """The entry at components; NotFoundError names the first missing one."""
        node = self.root
        for i, name in enumerate(components):
            if not node.is_dir:
                raise NotFoundError("Not a directory")
            child = self.child(node, name)
            if child is None:
                missing = "/" + "/".join(components[: i + 1])
                raise NotFoundError(f"No such file or directory: {missing}")
            node = child
        return node

    def resolve(self, path: str) -> TreeEntry:
        return self.lookup(split_repo_path(path))

    def follow_symlinks(self, entry: TreeEntry) -> TreeEntry:
        """Resolve symlinks inside the commit, the way `ostree cat` opens a path:
        the target is taken relative to the link's directory, never the host."""
        for _ in range(_MAX_SYMLINK_HOPS):
            if entry.is_dir:
                return entry
            header = self.file_info(entry.checksum, entry.path).header
            if not header.is_symlink:
                return entry
            entry = self.lookup(split_repo_path(header.symlink_target, entry.components[:-1]))
        raise SysrootError(f"Too many levels of symbolic links: {entry.path}")

    def read_file(self, entry: TreeEntry) -> Iterator[bytes]:
        """The payload chunks of a regular-file entry."""
        if entry.is_dir:
            raise SysrootError("Can't open directory")
        header = self.file_info(entry.checksum, entry.path).header
        return _verified_payload(header, entry.checksum, self.repo.iter_payload(entry.checksum))

    def prefetch(self, tree: str, meta: str) -> None:
        """Load and validate every dirtree and dirmeta below (tree, meta)."""
        seen: set[str] = set()
        stack = [(tree, meta)]
        while stack:
            t, m = stack.pop()
            self.dirmeta(m)
            if t in seen:
                continue
            seen.add(t)
            stack.extend((st, sm) for _, st, sm in self.dirtree(t).dirs)


def _verified_payload(
    header: FileHeader, checksum: str, chunks: Iterable[bytes]
) -> Iterator[bytes]:
    """chunks, passed through; raises at the end if they do not hash to checksum (the
    caller has streamed them by then, but exits non-zero with the reason)."""
    h = hashlib.sha256(header.content_stream_prefix())
    for chunk in chunks:
        h.update(chunk)
        yield chunk
    if h.hexdigest() != checksum:
        raise CorruptObjectError(checksum, "file", f"content has checksum {h.hexdigest()}")
