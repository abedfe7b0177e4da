"""A mutable directory tree that is assembled in layers and written as dirtree objects.

A node is either backed by an existing dirtree checksum (and loaded only when a later
layer changes something inside it) or holds its entries. Directories imported from disk
are sealed as soon as they are complete, so memory follows the depth of the tree, not
its size.
"""

from __future__ import annotations

from sysroot.errors import SysrootError
from sysroot.formats.objects import DirTree, ObjectType, validate_name


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

    def _load(self, tx) -> None:
        if self._files is not None:
            return
        tree = DirTree.parse(tx.read_metadata(ObjectType.DIR_TREE, self._contents))
        self._files = dict(tree.files)
        self._dirs = {n: MutableTree.backed(t, m) for n, t, m in tree.dirs}

    def files(self, tx) -> dict[str, str]:
        self._load(tx)
        return self._files

    def dirs(self, tx) -> dict[str, MutableTree]:
        self._load(tx)
        return self._dirs

    def replace_file(self, tx, name: str, checksum: str) -> None:
        validate_name(name)
        self._load(tx)
        self._dirs.pop(name, None)
        self._files[name] = checksum
        self._contents = None

    def ensure_dir(self, tx, name: str) -> MutableTree:
        validate_name(name)
        self._load(tx)
        self._files.pop(name, None)
        child = self._dirs.get(name)
        if child is None:
            child = MutableTree()
            self._dirs[name] = child
        self._contents = None
        return child

    def lookup(self, tx, path: list[str]) -> MutableTree:
        node = self
        for part in path:
            node._load(tx)
            child = node._dirs.get(part)
            if child is None:
                raise SysrootError(f"No such directory {'/'.join(path)}")
            node = child
        return node

    def is_empty(self, tx) -> bool:
        self._load(tx)
        return not self._files and not self._dirs

    def seal(self, tx) -> tuple[str, str]:
        """Write this subtree's dirtrees; afterwards the node is backed by checksums only."""
        if self._contents is not None:
            if self.metadata is None:
                raise SysrootError("directory without metadata")
            return self._contents, self.metadata
        if self.metadata is None:
            raise SysrootError("directory without metadata")
        dirs = []
        for name, child in self._dirs.items():
            tree, meta = child.seal(tx)
            dirs.append((name, tree, meta))
        dirtree = DirTree(tuple(self._files.items()), tuple(dirs))
        self._contents = tx.write_metadata(ObjectType.DIR_TREE, dirtree.serialize())
        self._files = None
        self._dirs = None
        return self._contents, self.metadata
