"""FIEMAP (linux/fiemap.h): where a file's data lies on the device its file system is on.

Asked without FIEMAP_FLAG_SYNC by default: the callers read file systems mounted
read-only, where nothing is waiting to be written, and a sync would need write access.
"""

from __future__ import annotations

import enum
import fcntl
import os
import struct
from dataclasses import dataclass

FS_IOC_FIEMAP = 0xC020660B
_HEADER = struct.Struct("=QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents,
#                                     fm_extent_count, fm_reserved
_EXTENT = struct.Struct("=QQQQQIIII")  # fe_logical, fe_physical, fe_length, 2 reserved,
#                                        fe_flags, 3 reserved
_BATCH = 32  # extents per call: files of a freshly made image are hardly fragmented
_ALL = 0xFFFFFFFFFFFFFFFF
FLAG_SYNC = 0x1


class ExtentFlag(enum.IntFlag):
    LAST = 0x1
    UNKNOWN = 0x2
    DELALLOC = 0x4
    ENCODED = 0x8
    DATA_ENCRYPTED = 0x80
    NOT_ALIGNED = 0x100
    DATA_INLINE = 0x200
    DATA_TAIL = 0x400
    UNWRITTEN = 0x800
    MERGED = 0x1000
    SHARED = 0x2000


@dataclass(frozen=True)
class FiemapExtent:
    logical: int
    physical: int
    length: int
    flags: ExtentFlag


def extents(fd: int, *, sync: bool = False, limit: int | None = None) -> list[FiemapExtent]:
    """Every extent of the open file fd, in logical order (at most limit of them)."""
    out: list[FiemapExtent] = []
    start = 0
    batch = _BATCH if limit is None else max(1, min(_BATCH, limit))
    buf = bytearray(_HEADER.size + _EXTENT.size * batch)
    while True:
        _HEADER.pack_into(buf, 0, start, _ALL - start, FLAG_SYNC if sync else 0, 0, batch, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        mapped = _HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return out
        for i in range(min(mapped, batch)):
            logical, physical, length, _r1, _r2, flags, *_ = _EXTENT.unpack_from(
                buf, _HEADER.size + i * _EXTENT.size
            )
            extent = FiemapExtent(logical, physical, length, ExtentFlag(flags))
            out.append(extent)
            if extent.flags & ExtentFlag.LAST or (limit is not None and len(out) >= limit):
                return out
        last = out[-1]
        start = last.logical + last.length


def path_extents(path: str | os.PathLike[str], *, sync: bool = False) -> list[FiemapExtent]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return extents(fd, sync=sync)
    finally:
        os.close(fd)
