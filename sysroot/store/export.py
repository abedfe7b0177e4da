"""A commit's tree as a tar stream, as `ostree export` writes it: GNU tar, entries in
dirtree order (a directory, its files, then its subdirectories), owners and modes from
the commit, every mtime the commit's timestamp, no user or group names. GNU tar keeps
no extended attributes (nor does ostree's). Payloads are checked against their
checksums as they stream."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from sysroot.errors import SysrootError
from sysroot.store.tree import TreeEntry, TreeReader


class _Chunks:
    """read() over an iterator of chunks: what tarfile.addfile wants as a file."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def export_tar(
    reader: TreeReader, out: BinaryIO, *, subpath: str = "/", prefix: str = "", mtime: int
) -> None:
    """Write the tree at subpath of reader's commit to out, names prefixed with prefix
    (joined as given, like ostree: "pfx" + "a" is "pfxa")."""
    top = reader.resolve(subpath)
    if not top.is_dir:
        raise SysrootError(f"--subpath={subpath}: not a directory")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, reader, top, len(top.components), prefix, mtime)


def _add(
    tar: tarfile.TarFile, reader: TreeReader, entry: TreeEntry, skip: int, prefix: str, mtime: int
) -> None:
    rel = "/".join(entry.components[skip:])
    info = tarfile.TarInfo(prefix + rel if prefix or rel else "./")
    info.mtime = mtime
    info.uname = info.gname = ""
    if entry.is_dir:
        meta = reader.dirmeta(entry.checksum)
        info.type, info.mode, info.uid, info.gid = (
            tarfile.DIRTYPE,
            meta.mode & 0o7777,
            meta.uid,
            meta.gid,
        )
        tar.addfile(info)
        for child in reader.children(entry):
            _add(tar, reader, child, skip, prefix, mtime)
        return
    file = reader.file_info(entry.checksum, entry.path)
    header = file.header
    info.mode, info.uid, info.gid = header.mode & 0o7777, header.uid, header.gid
    if header.is_symlink:
        info.type, info.linkname = tarfile.SYMTYPE, header.symlink_target
        tar.addfile(info)
        return
    info.size = file.size
    tar.addfile(info, _Chunks(reader.read_file(entry)))
