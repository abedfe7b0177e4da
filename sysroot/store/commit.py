"""Building commits: import directories, tarballs and existing commits as layers.

The library entry point is `CommitBuilder`; the CLI's `commit` is a thin wrapper.
Checksums match `ostree commit` for the same input and options.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

from sysroot.errors import SysrootError
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import Commit, DirMeta, FileHeader, ObjectType
from sysroot.store.mtree import MutableTree
from sysroot.util import fsutil

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class CommitModifier:
    """How file metadata is adjusted on the way into the repository."""

    skip_xattrs: bool = False
    canonical_permissions: bool = False
    owner_uid: int | None = None
    owner_gid: int | None = None
    consume: bool = False

    def dir_meta(self, st: os.stat_result, xattrs) -> DirMeta:
        uid, gid, mode = self._ids_mode(st.st_uid, st.st_gid, st.st_mode)
        return DirMeta(uid, gid, mode, () if self._drop_xattrs else tuple(xattrs))

    def file_header(self, st_uid: int, st_gid: int, st_mode: int, target: str,
                    xattrs) -> FileHeader:
        uid, gid, mode = self._ids_mode(st_uid, st_gid, st_mode)
        return FileHeader(uid, gid, mode, target, () if self._drop_xattrs else tuple(xattrs))

    @property
    def _drop_xattrs(self) -> bool:
        return self.skip_xattrs or self.canonical_permissions

    def _ids_mode(self, uid: int, gid: int, mode: int) -> tuple[int, int, int]:
        if self.owner_uid is not None:
            uid = self.owner_uid
        if self.owner_gid is not None:
            gid = self.owner_gid
        if self.canonical_permissions:
            uid = gid = 0
            if stat.S_ISREG(mode):
                mode &= stat.S_IFREG | 0o755
            elif stat.S_ISDIR(mode):
                mode &= stat.S_IFDIR | 0o755
        return uid, gid, mode

    @property
    def reads_xattrs(self) -> bool:
        return not self._drop_xattrs


def for_repo(modifier: CommitModifier, repo) -> CommitModifier:
    """bare-user-only repos and core.disable-xattrs narrow what may be stored."""
    from dataclasses import replace

    if repo.mode.forces_canonical_permissions():
        modifier = replace(modifier, canonical_permissions=True)
    if repo.disable_xattrs:
        modifier = replace(modifier, skip_xattrs=True)
    return modifier


def _file_type_error(path: str, mode: int) -> SysrootError:
    kinds = {stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
             stat.S_IFBLK: "block device"}
    kind = kinds.get(stat.S_IFMT(mode), f"mode {stat.S_IFMT(mode):o}")
    return SysrootError(f"Unsupported file type {kind}: {path}")


class DirectoryImporter:
    """Streams a directory tree from disk into a transaction and a MutableTree."""

    def __init__(self, tx, modifier: CommitModifier):
        self.tx = tx
        self.modifier = modifier
        self._hardlinks: dict[tuple[int, int], str] = {}

    def import_into(self, mtree: MutableTree, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SysrootError(f"{path}: No such file or directory") from None
        except NotADirectoryError:
            raise SysrootError(f"{path}: Not a directory") from None
        try:
            self._import_dir(mtree, fd, path)
        finally:
            os.close(fd)

    def _xattrs(self, target) -> list:
        return fsutil.read_xattrs(target) if self.modifier.reads_xattrs else []

    def _import_dir(self, mtree: MutableTree, dfd: int, path: str) -> None:
        tx = self.tx
        st = os.fstat(dfd)
        meta = self.modifier.dir_meta(st, self._xattrs(dfd))
        mtree.metadata = tx.write_metadata(ObjectType.DIR_META, meta.serialize())
        consume = self.modifier.consume
        with os.scandir(dfd) as it:
            entries = list(it)
        for entry in entries:
            name = entry.name
            _check_utf8(name, path)
            est = entry.stat(follow_symlinks=False)
            mode = est.st_mode
            if stat.S_ISDIR(mode):
                child = mtree.ensure_dir(tx, name)
                cfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dfd)
                try:
                    self._import_dir(child, cfd, f"{path}/{name}")
                finally:
                    os.close(cfd)
                child.seal(tx)
                if consume:
                    os.rmdir(name, dir_fd=dfd)
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                mtree.replace_file(tx, name, self._import_file(dfd, name, est, path))
                if consume:
                    os.unlink(name, dir_fd=dfd)
            else:
                raise _file_type_error(f"{path}/{name}", mode)

    def _import_file(self, dfd: int, name: str, st: os.stat_result, path: str) -> str:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            cached = self._hardlinks.get(key)
            if cached is not None:
                return cached
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dfd)
            _check_utf8(target, f"{path}/{name}")
            xattrs = self._xattrs(f"{path}/{name}") if self.modifier.reads_xattrs else []
            header = self.modifier.file_header(st.st_uid, st.st_gid, st.st_mode, target, xattrs)
            checksum = self.tx.write_content(header, None)
        else:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                header = self.modifier.file_header(st.st_uid, st.st_gid, st.st_mode, "",
                                                   self._xattrs(fd))
                checksum = self.tx.write_content(header, _read_chunks(fd, st.st_size))
            finally:
                os.close(fd)
        if st.st_nlink > 1:
            self._hardlinks[key] = checksum
        return checksum


def _read_chunks(fd: int, size_hint: int):
    # One read for the common small file; 1 MiB chunks for large ones.
    want = size_hint + 1 if size_hint < _READ_CHUNK else _READ_CHUNK
    while True:
        chunk = os.read(fd, want)
        if not chunk:
            return
        yield chunk
        want = _READ_CHUNK


def _check_utf8(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise SysrootError(f"Invalid UTF-8 in file name {name!r} in {where}") from None


@dataclass
class CommitBuilder:
    """Assemble a tree from layers, then write a commit for it.

    Use inside a transaction::

        with repo.transaction() as tx:
            b = CommitBuilder(tx)
            b.add_directory("rootfs")
            checksum = b.write(subject="x", parent=None)
            tx.set_ref("main", checksum)
    """

    tx: object
    modifier: CommitModifier = field(default_factory=CommitModifier)
    root: MutableTree = field(default_factory=MutableTree)

    def __post_init__(self) -> None:
        self.modifier = for_repo(self.modifier, self.tx.repo)

    def add_directory(self, path: str) -> None:
        DirectoryImporter(self.tx, self.modifier).import_into(self.root, path)

    def add_commit(self, checksum: str) -> None:
        """Layer an existing commit's tree (the first layer becomes lazily backed)."""
        commit = self.tx.repo.load_commit(checksum)
        if self.root.metadata is None and self.root.is_empty(self.tx):
            self.root = MutableTree.backed(commit.root_tree, commit.root_meta)
            return
        _merge_backed(self.tx, self.root, MutableTree.backed(commit.root_tree,
                                                             commit.root_meta))

    def add_tarball(self, path: str) -> None:
        from sysroot.store.tarimport import import_tarball

        import_tarball(self.tx, self.root, path, self.modifier)

    def seal(self) -> tuple[str, str]:
        if self.root.metadata is None:
            raise SysrootError("Nothing to commit: no tree was given")
        return self.root.seal(self.tx)

    def write(self, *, subject: str = "", body: str = "", parent: str | None = None,
              metadata: dict[str, Variant] | None = None,
              timestamp: int | None = None) -> str:
        tree, meta = self.seal()
        return write_commit(self.tx, tree=tree, meta=meta, subject=subject, body=body,
                            parent=parent, metadata=metadata or {}, timestamp=timestamp)


def _merge_backed(tx, dst: MutableTree, src: MutableTree) -> None:
    """Overlay src onto dst: src's entries win, directories merge recursively."""
    dst.metadata = src.metadata
    for name, checksum in src.files(tx).items():
        dst.replace_file(tx, name, checksum)
    for name, child in src.dirs(tx).items():
        if name in dst.dirs(tx):
            _merge_backed(tx, dst.ensure_dir(tx, name), child)
        else:
            dst.ensure_dir(tx, name)
            dst.dirs(tx)[name] = child


def default_timestamp() -> int:
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return int(sde)
        except ValueError:
            raise SysrootError(f"Invalid SOURCE_DATE_EPOCH '{sde}'") from None
    return int(time.time())


def write_commit(tx, *, tree: str, meta: str, subject: str = "", body: str = "",
                 parent: str | None = None, metadata: dict[str, Variant] | None = None,
                 timestamp: int | None = None) -> str:
    commit = Commit(
        metadata=dict(metadata or {}),
        parent=parent,
        subject=subject,
        body=body,
        timestamp=default_timestamp() if timestamp is None else timestamp,
        root_tree=tree,
        root_meta=meta,
    )
    return tx.write_metadata(ObjectType.COMMIT, commit.serialize())
