"""The one helper for durable, atomic file-system writes, and a few syscalls
Python does not expose directly (syncfs, renameat2).

Rule everywhere: write to a temporary sibling, fsync it, rename it over the final name,
fsync the directory. A reader then sees the old content or the new, never half of either.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from sysroot.util import fiemap

_libc = ctypes.CDLL(None, use_errno=True)
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _oserror(what: str, name: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}", name)


def syncfs(fd: int) -> None:
    """Flush the whole file system that fd lives on (one call instead of many fsyncs)."""
    if _libc.syncfs(fd) != 0:
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            where = None
        raise _oserror("syncfs", where)


@contextlib.contextmanager
def errors_about(path: str | os.PathLike):
    """Name path in OSErrors that carry no (or only a relative) file name, as calls
    relative to a directory fd raise them: `error: /full/path: Input/output error`."""
    try:
        yield
    except OSError as e:
        name = e.filename
        if e.errno is not None and (name is None or not os.path.isabs(os.fsdecode(name))):
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e
        raise


def rename_noreplace(
    src: str, dst: str, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None
) -> bool:
    """Rename src to dst unless dst exists. Returns False when dst already existed."""
    sfd = _AT_FDCWD if src_dir_fd is None else src_dir_fd
    dfd = _AT_FDCWD if dst_dir_fd is None else dst_dir_fd
    res = _libc.renameat2(sfd, os.fsencode(src), dfd, os.fsencode(dst), _RENAME_NOREPLACE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        return False
    if err in (errno.EINVAL, errno.ENOSYS):
        # File system without RENAME_NOREPLACE: link + unlink gives the same guarantee.
        try:
            os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
        except FileExistsError:
            os.unlink(src, dir_fd=src_dir_fd)
            return False
        os.unlink(src, dir_fd=src_dir_fd)
        return True
    raise OSError(err, f"renameat2 {src} -> {dst}: {os.strerror(err)}")


def fsync_dir(path: str | os.PathLike | None = None, *, dir_fd: int | None = None) -> None:
    if path is None:
        assert dir_fd is not None
        os.fsync(dir_fd)
        return
    with errors_about(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(name: str) -> str:
    return f".{name}.tmp-{secrets.token_hex(4)}"


def is_temp_name(name: str) -> bool:
    """Whether name is one temp_name() makes: the leftover of an interrupted write."""
    return re.fullmatch(r"\..+\.tmp-[0-9a-f]{8}", name) is not None


def file_sha256(path: str | os.PathLike) -> bytes:
    """The SHA-256 of a file's content, read in large chunks."""
    h = hashlib.sha256()
    with errors_about(path), open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.digest()


def atomic_write(
    path: str | os.PathLike,
    data: bytes,
    *,
    mode: int = 0o644,
    dir_fd: int | None = None,
    fsync: bool = True,
) -> None:
    """Replace path with data atomically (temp sibling, fsync, rename, fsync dir)."""
    path = os.fspath(path)
    with errors_about(path):
        _atomic_write(path, data, mode, dir_fd, fsync)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file to stream into that appears at path, complete, only when the block ends
    without an error (temp sibling, fsync, rename, fsync dir); else it is removed."""
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(parent, temp_name(name))
    with errors_about(path):
        f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    try:
        with f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(parent)


def _atomic_write(path: str, data: bytes, mode: int, dir_fd: int | None, fsync: bool) -> None:
    parent, name = os.path.split(path)
    pfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        tmp = temp_name(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=pfd)
        renamed = False
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            renamed = True
        finally:
            if not renamed:
                try:
                    os.unlink(tmp, dir_fd=pfd)
                except FileNotFoundError:
                    pass
        if fsync:
            os.fsync(pfd)
    finally:
        os.close(pfd)


def atomic_symlink(
    target: str,
    path: str | os.PathLike,
    *,
    dir_fd: int | None = None,
    fsync: bool = True,
    tmp_name: str | None = None,
) -> None:
    """Point symlink path at target atomically.

    tmp_name: a fixed temporary name (libostree's `loader.tmp`) instead of a random one,
    so a leftover of an interrupted swap has a known name to clean up; a stale one is
    replaced.
    """
    path = os.fspath(path)
    with errors_about(path):
        _atomic_symlink(target, path, dir_fd, fsync, tmp_name)


def _atomic_symlink(
    target: str, path: str, dir_fd: int | None, fsync: bool, tmp_name: str | None
) -> None:
    parent, name = os.path.split(path)
    pfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        tmp = tmp_name or temp_name(name)
        if tmp_name is not None:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except FileNotFoundError:
                pass
        os.symlink(target, tmp, dir_fd=pfd)
        try:
            if fsync:
                os.fsync(pfd)  # the new link is on disk before the name points at it
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            os.unlink(tmp, dir_fd=pfd)
            raise
        if fsync:
            os.fsync(pfd)
    finally:
        os.close(pfd)


def read_xattrs(path: str | int, *, follow_symlinks: bool = False) -> list[tuple[bytes, bytes]]:
    """All extended attributes of path (or fd), sorted by name as libostree sorts them.

    Zero-length values are dropped, as libostree drops them: they never enter checksums.
    """
    if isinstance(path, int):
        follow_symlinks = True  # an fd is already the object itself
    try:
        names = os.listxattr(path, follow_symlinks=follow_symlinks)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    out = []
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=follow_symlinks)
        except OSError as e:
            if e.errno == errno.ENODATA:
                continue
            raise
        if value:
            out.append((os.fsencode(name) + b"\0", value))
    out.sort()
    return out


def write_xattrs(
    path: str | int, xattrs: Iterable[tuple[bytes, bytes]], *, follow_symlinks: bool = False
) -> None:
    for name, value in xattrs:
        os.setxattr(path, name.rstrip(b"\0"), value, follow_symlinks=follow_symlinks)


def rmtree_at(dir_fd: int, name: str) -> None:
    """Remove name (file or whole tree) relative to dir_fd, never following symlinks."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    import stat

    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


# chattr +i: libostree marks deployment roots immutable so they are not edited by accident.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010


def set_immutable(path: str | os.PathLike, immutable: bool) -> bool:
    """Set or clear the immutable flag on a directory; False where unsupported."""
    import array
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        flags = array.array("l", [0])
        try:
            fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
                return False
            raise
        new = (flags[0] | _FS_IMMUTABLE_FL) if immutable else (flags[0] & ~_FS_IMMUTABLE_FL)
        if new != flags[0]:
            flags[0] = new
            try:
                fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags)
            except OSError as e:
                if e.errno in (errno.ENOTTY, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    return False
                raise
        return True
    finally:
        os.close(fd)


def _first_extent(path: str | os.PathLike) -> int | None:
    """Physical byte offset of the file's first extent; None for a file without data."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with errors_about(path):
            found = fiemap.extents(fd, sync=True, limit=1)
    finally:
        os.close(fd)
    return found[0].physical if found else None


def shares_extents(path_a: str | os.PathLike, path_b: str | os.PathLike) -> bool:
    """Whether two names start on the same physical extent (the same data on disk).

    On FAT a rename interrupted by a power cut can leave two directory entries pointing
    at one cluster chain; unlinking either frees the chain under the other. Raises
    OSError (EOPNOTSUPP/ENOTTY) where the file system does not implement FIEMAP.
    """
    a, b = _first_extent(path_a), _first_extent(path_b)
    return a is not None and a == b


def fs_type(path: str | os.PathLike) -> str | None:
    """The type of the file system path is on, as /proc/self/mountinfo names it
    (`vfat`, `ext4`, `fuse.fusefat`, ...); None when no mount matches."""
    dev = os.stat(path).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[2] == want and " - " in line:
            found = line.split(" - ", 1)[1].split()[0]  # last match: the top mount
    return found
