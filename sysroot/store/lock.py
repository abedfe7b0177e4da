"""Repository and sysroot locks, interoperable with libostree.

libostree takes open-file-description (OFD) locks with fcntl; flock() and OFD locks do
not see each other on Linux, so we must use OFD locks too. The repo `.lock` is taken
shared for writing objects and exclusive for deleting them (prune).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

from sysroot.errors import SysrootError

# struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
_FLOCK = struct.Struct("hhqqi4x")


def ofd_lock(fd: int, *, exclusive: bool, wait: bool) -> bool:
    """Take an OFD lock on the whole file; False if busy and not waiting."""
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    cmd = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
    try:
        fcntl.fcntl(fd, cmd, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if e.errno == errno.EINVAL:  # kernel without OFD locks
            op = fcntl.LOCK_SH if kind == fcntl.F_RDLCK else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, op | (0 if wait else fcntl.LOCK_NB))
                return True
            except BlockingIOError:
                return False
        raise


class RepoLock:
    """Shared or exclusive lock on `<repo>/.lock`, with a timeout like core.lock-timeout-secs."""

    def __init__(
        self, repo_fd: int, *, exclusive: bool, timeout: float = 300, enabled: bool = True
    ):
        self.repo_fd = repo_fd
        self.exclusive = exclusive
        self.timeout = timeout
        self.enabled = enabled
        self.fd: int | None = None

    def __enter__(self) -> RepoLock:
        if not self.enabled:
            return self
        fd = os.open(".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o660, dir_fd=self.repo_fd)
        deadline = None if self.timeout < 0 else time.monotonic() + self.timeout
        while not ofd_lock(fd, exclusive=self.exclusive, wait=False):
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                what = "exclusive" if self.exclusive else "shared"
                raise SysrootError(
                    f"Locking repo {what} failed: timed out after "
                    f"{self.timeout:g} s; another process holds the lock"
                )
            time.sleep(0.05)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the open file description drops the OFD lock
            self.fd = None
