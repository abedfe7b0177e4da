"""Importing a tar archive as a commit layer, the way `ostree commit --tree=tar=` does.

The archive is read once, as a stream (plain, gzip, bzip2 or xz), so its size does not
matter. What libostree 2022.7 does, and so what we do (checked against it):

* Member names are split on "/", ignoring empty and "." components; ".." is refused.
  We also refuse absolute names (ostree strips the leading "/").
* A parent directory must already exist, unless autocreate_parents is set: then the root
  and every directory on the path get metadata 0755 with the member's uid/gid, even
  directories that already existed, and no commit modifier applies to them. With
  autocreate_parents a root still without metadata at the end gets 0755 root:root.
* Hardlink members are resolved after the whole archive is read, in archive order,
  against the final tree (so a link follows a later replacement of its target).
* Modes are taken as the archive gives them, symlinks included (not forced to 0777).
* Extended attributes are kept unless keep_xattrs is false (ostree drops them only for
  --no-xattrs and in bare-user-only repos, not for --canonical-permissions or
  core.disable-xattrs). They come from pax records (SCHILY.xattr.*, LIBARCHIVE.xattr.* and
  RHT.security.selinux), in the reverse of their order in the archive, empty values
  and duplicates included: libarchive prepends each one to its list.
* Devices, fifos and other member types are refused.
"""

from __future__ import annotations

import base64
import binascii
import lzma
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from sysroot.errors import NotFoundError, SysrootError
from sysroot.formats.objects import DirMeta, FileHeader, ObjectType, Xattrs
from sysroot.store.commitmods import CommitModifier, PathnameFilter, check_utf8
from sysroot.store.mtree import MutableTree
from sysroot.store.transaction import Transaction

_CHUNK = 1 << 20
_SCHILY = "SCHILY.xattr."
_LIBARCHIVE = "LIBARCHIVE.xattr."
_RHT_SELINUX = "RHT.security.selinux"
# Errors of a damaged or truncated archive, from tarfile and the decompressors.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


@dataclass
class _Hardlink:
    parent: MutableTree
    name: str
    target: list[str]
    member: str


def import_tarball(
    tx: Transaction,
    mtree: MutableTree,
    path: str,
    modifier: CommitModifier,
    *,
    autocreate_parents: bool = False,
    keep_xattrs: bool = True,
    rename: PathnameFilter | None = None,
) -> None:
    """Add the archive at path to mtree, writing its content into the transaction.

    The modifier changes ownership and modes; xattrs follow keep_xattrs alone;
    rename (--tar-pathname-filter) rewrites member paths and hard link targets.
    """
    importer = _TarImporter(tx, mtree, modifier, path, autocreate_parents, keep_xattrs)
    importer.rename = rename
    try:
        # Streaming mode ("|"): one pass, no seeking, any size.
        with (
            open(path, "rb") as f,
            tarfile.open(
                fileobj=f, mode="r|*", encoding="utf-8", errors="surrogateescape"
            ) as archive,
        ):
            for member in archive:
                importer.add(archive, member)
    except _ARCHIVE_ERRORS as e:
        raise SysrootError(f"{path}: not a readable tar archive: {e}") from None
    except OSError as e:
        if e.errno is not None:
            raise  # a system call failed (e.g. writing the repository): not the archive
        # gzip and bzip2 report bad data as OSError without errno
        raise SysrootError(f"{path}: not a readable tar archive: {e}") from None
    importer.finish()


class _TarImporter:
    def __init__(
        self,
        tx: Transaction,
        root: MutableTree,
        modifier: CommitModifier,
        path: str,
        autocreate_parents: bool,
        keep_xattrs: bool,
    ):
        self.tx = tx
        self.root = root
        self.modifier = modifier
        self.path = path
        self.autocreate = autocreate_parents
        self.keep_xattrs = keep_xattrs
        self._links: list[_Hardlink] = []
        self.rename: PathnameFilter | None = None

    def _renamed(self, name: str, is_dir: bool) -> str:
        """name after --tar-pathname-filter, which sees it as libostree shows it: no
        leading "/" or "./", a directory with its "/" (Python's tarfile drops it)."""
        if self.rename is None:
            return name
        rel = name.lstrip("/")
        while rel.startswith("./"):
            rel = rel[2:].lstrip("/")
        if is_dir and rel and not rel.endswith("/"):
            rel += "/"
        return self.rename.apply(rel)

    def _split(self, name: str, member: str) -> list[str]:
        where = f"'{member}' in tar archive {self.path}"
        check_utf8(name, "path", where)
        if name.startswith("/"):
            raise SysrootError(
                f"Absolute path '{name}' for {where}: member names and "
                "hardlink targets must be relative"
            )
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise SysrootError(f"Invalid uplink '..' in path '{name}' for {where}")
        return parts

    def add(self, archive: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        tx = self.tx
        parts = self._split(self._renamed(m.name, m.isdir()), m.name)
        rel = "/" + "/".join(parts)  # as --statoverride and --skip-list name it
        if self.modifier.skips(rel):
            return
        if m.isdir():
            uid, gid, mode = self.modifier.ids_mode(
                m.uid, m.gid, stat.S_IFDIR | (m.mode & 0o7777), rel
            )
            meta = DirMeta(uid, gid, mode, self._xattrs(m))
            node = self.root if not parts else self._parent(parts, m).ensure_dir(tx, parts[-1])
            node.metadata = tx.write_metadata(ObjectType.DIR_META, meta.serialize())
            return
        if not (m.isreg() or m.issym() or m.islnk()):
            raise SysrootError(
                f"Unsupported file type for path '{m.name}' in tar archive "
                f"{self.path}: only files, symlinks, hardlinks and "
                "directories can be committed"
            )
        if not parts:
            raise SysrootError(f"Can't import file as root: '{m.name}' in tar archive {self.path}")
        parent = self._parent(parts, m)
        if m.islnk():
            target = self._split(self._renamed(m.linkname, False), m.name)
            if not target:
                raise SysrootError(
                    f"Invalid hardlink path '{m.linkname}' for '{m.name}' "
                    f"in tar archive {self.path}"
                )
            self._links.append(_Hardlink(parent, parts[-1], target, m.name))
            return
        parent.replace_file(tx, parts[-1], self._content(archive, m, rel))

    def _parent(self, parts: list[str], m: tarfile.TarInfo) -> MutableTree:
        try:
            return self.root.walk(self.tx, parts[:-1])
        except NotFoundError as e:
            if not self.autocreate:
                raise NotFoundError(
                    f"{e} (parent of '{m.name}' in tar archive {self.path})",
                    hint="use --tar-autocreate-parents",
                ) from None
        meta = DirMeta(m.uid, m.gid, stat.S_IFDIR | 0o755)
        checksum = self.tx.write_metadata(ObjectType.DIR_META, meta.serialize())
        node = self.root
        node.metadata = checksum
        for part in parts[:-1]:
            node = node.ensure_dir(self.tx, part)
            node.metadata = checksum
        return node

    def _xattrs(self, m: tarfile.TarInfo) -> Xattrs:
        if not self.keep_xattrs:
            return ()
        found = []
        for key, value in m.pax_headers.items():
            raw = value.encode("utf-8", "surrogateescape")
            if key.startswith(_SCHILY):
                name = key[len(_SCHILY) :].encode("utf-8", "surrogateescape")
            elif key.startswith(_LIBARCHIVE):
                name = unquote_to_bytes(key[len(_LIBARCHIVE) :])
                try:
                    raw = base64.b64decode(raw + b"=" * (-len(raw) % 4))
                except binascii.Error:
                    raise SysrootError(
                        f"Invalid base64 value of {key} for '{m.name}' in tar archive {self.path}"
                    ) from None
            elif key == _RHT_SELINUX:
                name = b"security.selinux"
            else:
                continue
            found.append((name + b"\0", raw))
        found.reverse()
        return tuple(found)

    def _content(self, archive: tarfile.TarFile, m: tarfile.TarInfo, rel: str) -> str:
        kind = stat.S_IFLNK if m.issym() else stat.S_IFREG
        uid, gid, mode = self.modifier.ids_mode(m.uid, m.gid, kind | (m.mode & 0o7777), rel)
        if m.issym():
            check_utf8(m.linkname, "symlink target", f"'{m.name}' in tar archive {self.path}")
            header = FileHeader(uid, gid, mode, m.linkname, self._xattrs(m))
            return self.tx.write_content(header, None)
        header = FileHeader(uid, gid, mode, "", self._xattrs(m))
        data = archive.extractfile(m)
        if data is None:  # never: m is a regular file (the caller sorted out the rest)
            raise SysrootError(f"'{m.name}' in tar archive {self.path} is not a file")

        def chunks() -> Iterator[bytes]:
            while chunk := data.read(_CHUNK):
                yield chunk

        return self.tx.write_content(header, chunks())

    def finish(self) -> None:
        tx = self.tx
        for link in self._links:
            shown = "/".join(link.target)
            try:
                found = self.root.walk(tx, link.target[:-1]).entry(tx, link.target[-1])
            except NotFoundError:
                found = None
            if found is None:
                raise SysrootError(
                    f"Hardlink '{link.member}' in tar archive {self.path}: "
                    f"target '{shown}' not found"
                )
            if isinstance(found, MutableTree):
                raise SysrootError(
                    f"Hardlink '{link.member}' in tar archive {self.path}: "
                    f"target '{shown}' is a directory"
                )
            link.parent.replace_file(tx, link.name, found)
        if self.autocreate and self.root.metadata is None:
            meta = DirMeta(0, 0, stat.S_IFDIR | 0o755)
            self.root.metadata = tx.write_metadata(ObjectType.DIR_META, meta.serialize())
