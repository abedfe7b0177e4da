"""A mutable directory tree that is assembled in layers and written as dirtree objects.

A node is either backed by an existing dirtree checksum (and loaded only when a later
layer changes something inside it) or holds its entries. Directories imported from disk
are sealed as soon as they are complete, so memory follows the depth of the tree, not
its size.

Like libostree's OstreeMutableTree, a layer may replace a file by a file and merge a
directory into a directory, but never turn one kind into the other: that is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sysroot.errors import NotFoundError, SysrootError
from sysroot.formats.objects import DirTree, ObjectType, validate_name

if TYPE_CHECKING:  # annotations only: trees are read and written through one
    from sysroot.store.transaction import Transaction


class MutableTree:
    __slots__ = ("metadata", "_contents", "_files", "_dirs")

    def __init__(self, metadata: str | None = None, contents: str | None = None):
        self.metadata = metadata  # dirmeta checksum
        self._contents = contents  # dirtree checksum while unmodified
        self._files: dict[str, str] | None = None if contents else {}
        self._dirs: dict[str, MutableTree] | None = None if contents else {}

    @classmethod
    def backed(cls, tree: str, meta: str) -> MutableTree:
        return cls(meta, tree)

    def _load(self, tx: Transaction) -> tuple[dict[str, str], dict[str, MutableTree]]:
        """The entries (files, directories), read from the backing dirtree if need be."""
        if self._files is not None and self._dirs is not None:
            return self._files, self._dirs
        # a node without entries is backed (the constructor and seal() keep it so)
        assert self._contents is not None
        tree = DirTree.parse(tx.read_metadata(ObjectType.DIR_TREE, self._contents))
        files = self._files = dict(tree.files)
        dirs = self._dirs = {n: MutableTree.backed(t, m) for n, t, m in tree.dirs}
        return files, dirs

    def files(self, tx: Transaction) -> dict[str, str]:
        return self._load(tx)[0]

    def dirs(self, tx: Transaction) -> dict[str, MutableTree]:
        return self._load(tx)[1]

    def replace_file(self, tx: Transaction, name: str, checksum: str) -> None:
        validate_name(name)
        files, dirs = self._load(tx)
        if name in dirs:
            raise SysrootError(f"Can't replace directory with file: {name}")
        files[name] = checksum
        self._contents = None

    def ensure_dir(self, tx: Transaction, name: str) -> MutableTree:
        """The subdirectory name, created empty (without metadata) if missing."""
        validate_name(name)
        files, dirs = self._load(tx)
        if name in files:
            raise SysrootError(f"Can't replace file with directory: {name}")
        child = dirs.get(name)
        if child is None:
            child = MutableTree()
            dirs[name] = child
        self._contents = None  # the caller may change the child
        return child

    def set_dir(self, tx: Transaction, name: str, child: MutableTree) -> None:
        """Insert a whole (typically backed) subtree where nothing of that name exists."""
        validate_name(name)
        files, dirs = self._load(tx)
        if name in files or name in dirs:
            raise SysrootError(f"{name} already exists")
        dirs[name] = child
        self._contents = None

    def entry(self, tx: Transaction, name: str) -> str | MutableTree | None:
        """A file's checksum, a directory node, or None."""
        files, dirs = self._load(tx)
        found = files.get(name)
        return found if found is not None else dirs.get(name)

    def walk(self, tx: Transaction, parts: list[str]) -> MutableTree:
        """The directory at parts below this node (NotFoundError names the missing part)."""
        node = self
        for part in parts:
            child = node.dirs(tx).get(part)
            if child is None:
                raise NotFoundError(f"No such file or directory: {part}")
            node = child
        return node

    def merge(self, tx: Transaction, src: MutableTree) -> None:
        """Overlay src onto this node: src's metadata and files win, directories merge."""
        self.metadata = src.metadata
        if self._files is not None and not self._files and not self._dirs:
            # Empty so far: take src's entries wholesale (and stay lazily backed).
            self._contents, self._files, self._dirs = src._contents, src._files, src._dirs
            return
        for name, checksum in src.files(tx).items():
            self.replace_file(tx, name, checksum)
        for name, child in src.dirs(tx).items():
            existing = self.entry(tx, name)
            if existing is None:
                self.set_dir(tx, name, child)
            else:
                self.ensure_dir(tx, name).merge(tx, child)

    def is_empty(self, tx: Transaction) -> bool:
        files, dirs = self._load(tx)
        return not files and not dirs

    def seal(self, tx: Transaction) -> tuple[str, str]:
        """Write this subtree's dirtrees; afterwards the node is backed by checksums only."""
        if self.metadata is None:
            raise SysrootError("directory without metadata")
        if self._contents is not None:
            return self._contents, self.metadata
        files, children = self._load(tx)
        dirs = []
        for name, child in children.items():
            tree, meta = child.seal(tx)
            dirs.append((name, tree, meta))
        dirtree = DirTree(tuple(files.items()), tuple(dirs))
        self._contents = tx.write_metadata(ObjectType.DIR_TREE, dirtree.serialize())
        self._files = None
        self._dirs = None
        return self._contents, self.metadata
