"""Loop devices and mounts that are always released: context managers only.

An image file is attached whole, with the partition scan on, so that its partitions
get device nodes as a real disk's do; it is detached on every exit path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Iterator

from sysroot.errors import UsageError
from sysroot.util.run import run

SECTOR_SIZES = (512, 4096)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def attached_image(image: str, sector_size: int = 512, *, read_only: bool = False) -> Iterator[str]:
    """image as a loop device with sector_size logical sectors and partition scanning."""
    if sector_size not in SECTOR_SIZES:
        raise UsageError(f"sector size {sector_size}: must be 512 or 4096")
    argv = ["losetup", "--find", "--show", "--partscan", "--sector-size", str(sector_size)]
    if read_only:
        argv.append("--read-only")
    device = run([*argv, image]).stdout.decode().strip()
    with _released(["losetup", "--detach", device]):
        yield device


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
    with _released(["umount", target]):
        yield target


@contextlib.contextmanager
def _released(release: list[str]) -> Iterator[None]:
    """Run release after the block: its failure is the error when the block succeeded
    (an unmount that fails has not written everything), and only logged when the block's
    own error is on its way."""
    try:
        yield
    except BaseException:
        proc = run(release, check=False)
        if proc.returncode != 0:
            log.error("%s failed: %s", shlex.join(release), proc.stderr.decode().strip())
        raise
    run(release)
