"""The checksum ostree gives a file, symlink or directory on disk, as it would be
committed: a content object's (header, then the payload) or a dirmeta's. Used by
`checksum` and by checkout (is an existing file already the object?)."""

from __future__ import annotations

import hashlib
import os
import stat

from sysroot.formats.objects import DirMeta, FileHeader
from sysroot.util import fsutil

_CHUNK = 1 << 20


def checksum_at(dfd: int | None, name: str, st: os.stat_result, *, ignore_xattrs: bool) -> str:
    """The object checksum of name (relative to dfd, or a path when dfd is None) whose
    lstat is st. A device node or FIFO is hashed as its header alone, as ostree does."""
    where = name if dfd is None else f"/proc/self/fd/{dfd}/{name}"
    if stat.S_ISDIR(st.st_mode):
        xattrs = () if ignore_xattrs else tuple(fsutil.read_xattrs(where))
        meta = DirMeta(st.st_uid, st.st_gid, st.st_mode, xattrs)
        return hashlib.sha256(meta.serialize()).hexdigest()
    if stat.S_ISLNK(st.st_mode):
        xattrs = () if ignore_xattrs else tuple(fsutil.read_xattrs(where))
        target = os.readlink(name, dir_fd=dfd)
        header = FileHeader(st.st_uid, st.st_gid, st.st_mode, target, xattrs)
        return hashlib.sha256(header.content_stream_prefix()).hexdigest()
    if not stat.S_ISREG(st.st_mode):
        xattrs = () if ignore_xattrs else tuple(fsutil.read_xattrs(where))
        header = FileHeader(st.st_uid, st.st_gid, st.st_mode, "", xattrs)
        return hashlib.sha256(header.content_stream_prefix()).hexdigest()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        xattrs = () if ignore_xattrs else tuple(fsutil.read_xattrs(fd))
        header = FileHeader(st.st_uid, st.st_gid, st.st_mode, "", xattrs)
        h = hashlib.sha256(header.content_stream_prefix())
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def path_checksum(path: str, *, ignore_xattrs: bool = False) -> str:
    """The object checksum of path, not following a final symlink."""
    return checksum_at(None, path, os.lstat(path), ignore_xattrs=ignore_xattrs)
