"""Loop devices and mounts that are always released: context managers only.

An image file is attached whole, with the partition scan on, so that its partitions
get device nodes as a real disk's do; it is detached on every exit path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from sysroot.errors import UsageError
from sysroot.util.run import run

SECTOR_SIZES = (512, 4096)


@contextlib.contextmanager
def attached_image(image: str, sector_size: int = 512) -> Iterator[str]:
    """image as a loop device with sector_size logical sectors and partition scanning."""
    if sector_size not in SECTOR_SIZES:
        raise UsageError(f"sector size {sector_size}: must be 512 or 4096")
    argv = ["losetup", "--find", "--show", "--partscan", "--sector-size", str(sector_size)]
    device = run([*argv, image]).stdout.decode().strip()
    try:
        yield device
    finally:
        run(["losetup", "--detach", device], check=False)


@contextlib.contextmanager
def mounted(
    source: str, target: str, *, bind: bool = False, read_only: bool = False
) -> Iterator[str]:
    """source mounted at target (made if missing) until the block ends."""
    os.makedirs(target, exist_ok=True)
    options = ["--bind"] if bind else []
    if read_only and not bind:
        options += ["-o", "ro"]
    run(["mount", *options, source, target])
    try:
        yield target
    finally:
        run(["umount", target], check=False)
