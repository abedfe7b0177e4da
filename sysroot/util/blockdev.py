"""Block-device ioctls Python does not wrap: sector size, byte size, table re-read."""

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
