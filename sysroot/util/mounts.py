"""Writing to a sysroot whose physical root is mounted read-only.

With `[sysroot] readonly=true`, the booted system sees /sysroot read-only, so nothing
but sysroot itself changes deployments or the repository. An `admin` command that
writes then gets a private mount namespace of its own (unshare) in which that one
mount is writable: the rest of the system keeps seeing it read-only, and the
namespace disappears with the process. libostree does the same.
"""

from __future__ import annotations

import ctypes
import os

from sysroot.errors import SysrootError
from sysroot.util.run import run

CLONE_NEWNS = 0x00020000
_libc = ctypes.CDLL(None, use_errno=True)


def is_read_only(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def mount_point_of(path: str) -> str:
    return (
        run(["findmnt", "--noheadings", "--output", "TARGET", "--target", path])
        .stdout.decode()
        .strip()
        .splitlines()[-1]
    )


def enter_private_mount_namespace() -> None:
    """Make this process's mounts from now on its own: a new mount namespace in which
    nothing propagates back to the system's. The rest of the system never sees them, and
    they all go with the process, even one that is killed."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise SysrootError(f"a private mount namespace cannot be made: {os.strerror(err)}")
    run(["mount", "--make-rslave", "/"])


def make_writable_privately(path: str) -> bool:
    """If path is on a read-only mount, remount that mount writable in a new private
    mount namespace of this process. Returns whether it did."""
    if not is_read_only(path):
        return False
    target = mount_point_of(path)
    if _libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise SysrootError(
            f"{target} is read-only and a private mount namespace to write "
            f"to it cannot be made: {os.strerror(err)}"
        )
    # nothing done in this namespace may propagate back to the system's mounts
    run(["mount", "--make-rslave", "/"])
    # first the per-mount flag (how sysroot-prepare-root makes it read-only); if the
    # file system itself is read-only, remount it too (that is seen everywhere)
    run(["mount", "-o", "remount,bind,rw", target])
    if is_read_only(path):
        run(["mount", "-o", "remount,rw", target])
    return True
