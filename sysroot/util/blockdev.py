"""Block-device ioctls Python does not wrap: sector size, byte size, table re-read,
zeroing a range."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import time
from collections.abc import Callable

BLKSSZGET = 0x1268  # int: the logical sector size
BLKGETSIZE64 = 0x80081272  # u64: the size in bytes
BLKRRPART = 0x125F  # re-read the partition table
BLKZEROOUT = 0x127F  # u64[2] {start, length}: zero a range, page cache included


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def logical_sector_size(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, BLKSSZGET, buf, True)
    return int(struct.unpack("=i", buf)[0])


def size_bytes(fd: int) -> int:
    buf = bytearray(8)
    fcntl.ioctl(fd, BLKGETSIZE64, buf, True)
    return int(struct.unpack("=Q", buf)[0])


def reread_partitions(
    fd: int, *, attempts: int = 20, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """BLKRRPART until the kernel takes it (EBUSY while udev still probes the old table
    is common right after a write); whether it was taken."""
    for attempt in range(attempts):
        try:
            fcntl.ioctl(fd, BLKRRPART)
            return True
        except OSError:
            if attempt + 1 < attempts:
                sleep(0.1)
    return False


def zero_out(fd: int, start: int, length: int) -> None:
    """Zero length bytes from start (both multiples of the logical sector size). The
    kernel drops the range from the page cache and has the device write zeros — with
    WRITE ZEROES where it has it (virtio, NVMe; a loop device punches its file), else
    by writing zero pages itself: no bytes cross from user space either way. OSError
    when the device or kernel cannot."""
    fcntl.ioctl(fd, BLKZEROOUT, struct.pack("=QQ", start, length))
