"""The /etc three-way merge and `config-diff`, as libostree 2022.7 does them.

A = the merge deployment's ``usr/etc`` (its defaults), B = its ``etc`` (what the admin
made of them). The diff A→B is applied onto the new deployment's ``etc``, which starts
as a copy of the new ``usr/etc``. It is "the admin's version wins", not a textual merge:

* a path of A missing in B is *removed*: deleted from the new etc (even if its new
  default changed);
* a path of both whose type, uid, gid, mode, symlink target or content differ is
  *modified* (xattrs alone never count: SELinux labels of ``usr/etc`` and ``etc``
  differ anyway); a path only in B is *added*, with every descendant of an added
  directory listed too;
* modified and added paths are copied from B, after the parent directory in the new
  etc is created if needed and given B's parent's owner, mode and xattrs; a directory
  already in the new etc is kept as it is (its children carry their own diff); a new
  default directory where B has a non-directory is an error.

Order matters (it is what `ostree admin config-diff` prints): ostree walks with GIO,
whose local enumerator reads 1000 entries at a time and sorts each batch by inode.

Every write goes through directory file descriptors. Old etc is opened with O_NOFOLLOW
at each step and only read. In the new etc, as in ostree, symlinks on the way to a
path are followed, but only while they stay inside the new etc: an absolute one, or one
that climbs out, is refused instead of written through.

Nothing here fsyncs: a new deployment is published only after the caller's syncfs,
as ostree does.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sysroot.errors import SysrootError
from sysroot.util.fsutil import read_xattrs, rmtree_at, temp_name, write_xattrs

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GIO_CHUNK = 1000  # entries glib's local enumerator reads before sorting them by inode
_MAX_SYMLINKS = 40  # as the kernel's path walk
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class EtcDiff:
    """Paths relative to etc, '/'-separated, in ostree's order."""

    modified: tuple[str, ...]
    removed: tuple[str, ...]
    added: tuple[str, ...]


def format_config_diff(diff: EtcDiff) -> str:
    """Exactly what `ostree admin config-diff` prints for this diff."""
    lines = [f"M    {p}\n" for p in diff.modified]
    lines += [f"D    {p}\n" for p in diff.removed]
    lines += [f"A    {p}\n" for p in diff.added]
    return "".join(lines)


def merge_summary(diff: EtcDiff) -> str:
    """The line ostree logs (and `ostree admin deploy` prints) before applying a merge."""
    return (
        f"Copying /etc changes: {len(diff.modified)} modified, "
        f"{len(diff.removed)} removed, {len(diff.added)} added"
    )


# ---------------------------------------------------------------- diff


def diff_etc(usr_etc_fd: int, etc_fd: int) -> EtcDiff:
    """Compare the defaults (A, usr/etc) with the live etc (B), as ostree_diff_dirs
    with OSTREE_DIFF_FLAGS_IGNORE_XATTRS does."""
    modified: list[str] = []
    removed: list[str] = []
    added: list[str] = []
    with _errors("During /etc merge: computing the diff of /usr/etc and /etc"):
        _diff_dirs(usr_etc_fd, etc_fd, "", modified, removed, added)
    return EtcDiff(tuple(modified), tuple(removed), tuple(added))


def _diff_dirs(
    a_fd: int, b_fd: int, prefix: str, modified: list[str], removed: list[str], added: list[str]
) -> None:
    for name in _gio_listdir(a_fd):
        a_st = _lstat_or_none(a_fd, name)
        if a_st is None:
            continue  # vanished since readdir; GIO skips it too
        b_st = _lstat_or_none(b_fd, name)
        path = prefix + name
        if b_st is None:
            removed.append(path)
            continue
        if stat.S_IFMT(a_st.st_mode) != stat.S_IFMT(b_st.st_mode):
            modified.append(path)  # type changed: not descended into
            continue
        if _differs(a_fd, b_fd, name, a_st, b_st):
            modified.append(path)
        if stat.S_ISDIR(a_st.st_mode):
            with _opendir(a_fd, name) as a_child, _opendir(b_fd, name) as b_child:
                _diff_dirs(a_child, b_child, path + "/", modified, removed, added)
    for name in _gio_listdir(b_fd):
        if _lstat_or_none(a_fd, name) is not None:
            continue
        b_st = _lstat_or_none(b_fd, name)
        if b_st is None:
            continue
        added.append(prefix + name)
        if stat.S_ISDIR(b_st.st_mode):
            with _opendir(b_fd, name) as b_child:
                _list_added(b_child, prefix + name + "/", added)


def _list_added(fd: int, prefix: str, added: list[str]) -> None:
    for name in _gio_listdir(fd):
        st = _lstat_or_none(fd, name)
        if st is None:
            continue
        added.append(prefix + name)
        if stat.S_ISDIR(st.st_mode):
            with _opendir(fd, name) as child:
                _list_added(child, prefix + name + "/", added)


def _differs(a_fd: int, b_fd: int, name: str, a: os.stat_result, b: os.stat_result) -> bool:
    """Would ostree's xattr-less checksums of A and B differ? (Same file type given.)

    Both checksums cover uid, gid and the full st_mode; for a symlink its target, for a
    regular file its content. Comparing those directly gives the same answer."""
    if (a.st_uid, a.st_gid, a.st_mode) != (b.st_uid, b.st_gid, b.st_mode):
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(name, dir_fd=a_fd) != os.readlink(name, dir_fd=b_fd)
    if stat.S_ISREG(a.st_mode):
        return a.st_size != b.st_size or not _same_content(a_fd, b_fd, name)
    return False


def _same_content(a_fd: int, b_fd: int, name: str) -> bool:
    fa = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=a_fd)
    try:
        fb = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=b_fd)
        try:
            while True:
                ca = os.read(fa, _COPY_CHUNK)
                cb = os.read(fb, _COPY_CHUNK)
                if ca != cb:
                    return False
                if not ca:
                    return True
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _gio_listdir(dir_fd: int) -> list[str]:
    """Names in the order g_file_enumerate_children() returns them on a local directory:
    readdir() order, cut into batches of 1000, each batch qsort()ed by inode."""
    names: list[str] = []
    batch: list[tuple[int, str]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            batch.append((entry.inode(), entry.name))
            if len(batch) == _GIO_CHUNK:
                names += [n for _, n in _glibc_msort(batch, _gio_inode_cmp)]
                batch = []
    names += [n for _, n in _glibc_msort(batch, _gio_inode_cmp)]
    return names


def _gio_inode_cmp(a: tuple[int, str], b: tuple[int, str]) -> int:
    # glib returns `a->inode - b->inode` as a C int: the difference truncated to 32 bits.
    # Inconsistent for inodes far apart, so the sort below must be glibc's own algorithm.
    d = (a[0] - b[0]) & 0xFFFFFFFF
    return d - (1 << 32) if d & 0x80000000 else d


_T = TypeVar("_T")


def _glibc_msort(items: list[_T], cmp: Callable[[_T, _T], int]) -> list[_T]:
    """glibc 2.36 qsort(): a top-down merge sort (stable, left half first on ties)."""
    if len(items) <= 1:
        return items
    half = len(items) // 2
    left = _glibc_msort(items[:half], cmp)
    right = _glibc_msort(items[half:], cmp)
    out: list[_T] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out += left[i:]
    out += right[j:]
    return out


# ---------------------------------------------------------------- merge


def merge_etc(old_usr_etc_fd: int, old_etc_fd: int, new_etc_fd: int) -> EtcDiff:
    """Apply the admin's changes (old usr/etc → old etc) onto new_etc, which already holds
    a copy of the new deployment's usr/etc. Returns the diff that was applied.

    Raises SysrootError where ostree refuses too (e.g. a modified file whose new default
    is a directory), leaving new_etc partly merged: the caller discards the deployment.
    """
    diff = diff_etc(old_usr_etc_fd, old_etc_fd)
    for path in diff.removed:
        with _errors(f"During /etc merge: removing /etc/{path}"):
            _remove(new_etc_fd, path)
    for path in diff.modified + diff.added:
        with _errors(f"During /etc merge: copying /etc/{path}"):
            _copy_modified(old_etc_fd, new_etc_fd, path)
    return diff


def _remove(new_etc_fd: int, path: str) -> None:
    parent, name = _split(path)
    try:
        parent_fd = _open_beneath(new_etc_fd, parent)
    except FileNotFoundError:
        return  # already gone with its parent
    try:
        rmtree_at(parent_fd, name)
    finally:
        os.close(parent_fd)


def _copy_modified(old_etc_fd: int, new_etc_fd: int, path: str) -> None:
    """ostree's copy_modified_config_file()."""
    parent, name = _split(path)
    with _opendir_path(old_etc_fd, parent) as src_parent:
        src_st = os.lstat(name, dir_fd=src_parent)
        dst_parent = (
            _ensure_dir_from_template(old_etc_fd, new_etc_fd, parent)
            if parent
            else os.dup(new_etc_fd)
        )
        try:
            dst_st = _lstat_or_none(dst_parent, name)
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
                if not stat.S_ISDIR(src_st.st_mode):
                    raise SysrootError(
                        "During /etc merge: Modified config file newly defaults to "
                        f"directory '{path}', cannot merge",
                        hint=f"move your /etc/{path} aside, deploy, then merge it by hand",
                    )
                return  # directory attributes are not carried over (ostree neither)
            if dst_st is not None:
                os.unlink(name, dir_fd=dst_parent)
            if stat.S_ISDIR(src_st.st_mode):
                _copy_dir(src_parent, name, dst_parent, path, merge=True)
            elif stat.S_ISREG(src_st.st_mode) or stat.S_ISLNK(src_st.st_mode):
                _copy_file(src_parent, name, src_st, dst_parent, keep_times=True)
            else:  # fifo, socket, device: dropped (the new default, if any, is gone too)
                log.info("Ignoring non-regular/non-symlink file found during /etc merge: %s", path)
        finally:
            os.close(dst_parent)


def _ensure_dir_from_template(old_etc_fd: int, new_etc_fd: int, path: str) -> int:
    """ostree's ensure_directory_from_template(): make sure directory `path` exists in the
    new etc (creating missing parents the same way) and give it owner, mode and xattrs of
    the same directory in the old etc. Returns an fd on it."""
    parent, name = _split(path)
    with _opendir_path(old_etc_fd, path) as src:
        try:
            parent_fd = _open_beneath(new_etc_fd, parent)
        except FileNotFoundError:
            if not parent:
                raise
            parent_fd = _ensure_dir_from_template(old_etc_fd, new_etc_fd, parent)
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        finally:
            os.close(parent_fd)
        target = _open_beneath(new_etc_fd, path)
        try:
            _copy_dir_attributes(src, target)
        except BaseException:
            os.close(target)
            raise
        return target


def _copy_dir_attributes(src_fd: int, dst_fd: int) -> None:
    # xattrs first (ostree: so the SELinux label is right early); existing ones on the
    # target that the source lacks are left alone, as ostree leaves them.
    write_xattrs(dst_fd, read_xattrs(src_fd), follow_symlinks=True)  # an fd: no link to follow
    st = os.fstat(src_fd)
    os.fchown(dst_fd, st.st_uid, st.st_gid)
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))


def _copy_dir(src_parent: int, name: str, dst_parent: int, rel: str, *, merge: bool) -> None:
    """ostree's copy_dir_recurse(): directories, regular files and symlinks.

    merge=True is the /etc merge of 2022.7: file times kept, and a fifo, socket or device
    inside the directory is an error (later ostree skips them). merge=False (copy_tree):
    fresh times, such files skipped."""
    with _opendir(src_parent, name) as src:
        try:
            os.mkdir(name, 0o700, dir_fd=dst_parent)
        except FileExistsError:
            pass
        with _opendir(dst_parent, name) as dst:
            _copy_dir_attributes(src, dst)
            _copy_children(src, dst, rel, merge=merge)


def _copy_children(src: int, dst: int, rel: str, *, merge: bool) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        child = f"{rel}/{entry.name}" if rel else entry.name
        if stat.S_ISDIR(st.st_mode):
            _copy_dir(src, entry.name, dst, child, merge=merge)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            _copy_file(src, entry.name, st, dst, keep_times=merge)
        elif merge:
            raise SysrootError(
                f"During /etc merge: cannot copy /etc/{child}: not a regular "
                "file, symlink or directory",
                hint="remove it (or move it out of /etc) and deploy again",
            )
        else:
            log.info("Ignoring non-regular/non-symlink file %s", child)


def _copy_file(
    src_dir: int, name: str, st: os.stat_result, dst_dir: int, *, keep_times: bool
) -> None:
    """Copy a regular file or symlink over dst_dir/name through a temporary sibling, as
    glnx_file_copy_at(OVERWRITE): owner, then xattrs (chown drops security.capability),
    then mode (chown drops setuid bits), then for files atime and mtime."""
    tmp = temp_name(name)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_dir), tmp, dir_fd=dst_dir)
        try:
            write_xattrs(_proc_path(dst_dir, tmp), read_xattrs(_proc_path(src_dir, name)))
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
            os.rename(tmp, name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
        except BaseException:
            _unlink_quietly(dst_dir, tmp)
            raise
        return
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dst = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dst_dir,
        )
        try:
            try:
                while chunk := os.read(src, _COPY_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(dst, view) :]
                os.fchown(dst, st.st_uid, st.st_gid)
                write_xattrs(dst, read_xattrs(src), follow_symlinks=True)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                if keep_times:
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
            os.rename(tmp, name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
        except BaseException:
            _unlink_quietly(dst_dir, tmp)
            raise
    finally:
        os.close(src)


# ---------------------------------------------------------------- copy_tree


def copy_tree(src_fd: int, dst_parent_fd: int, name: str) -> None:
    """Copy the directory src_fd to dst_parent_fd/name (which must not exist): a real
    copy, never hardlinks, keeping mode, ownership, xattrs and symlinks; fifos, sockets
    and devices are skipped. Used to make a deployment's etc from its usr/etc; like
    ostree's checkout of /usr/etc, files get fresh timestamps."""
    with _errors(f"Copying a tree to {name}"):
        os.mkdir(name, 0o700, dir_fd=dst_parent_fd)
        try:
            with _opendir(dst_parent_fd, name) as dst:
                _copy_dir_attributes(src_fd, dst)
                _copy_children(src_fd, dst, "", merge=False)
        except BaseException:
            rmtree_at(dst_parent_fd, name)  # leave nothing half-copied behind
            raise


# ---------------------------------------------------------------- fd helpers


@contextmanager
def _errors(context: str) -> Iterator[None]:
    """Turn an OSError into one SysrootError line: context, the name it hit, why."""
    try:
        yield
    except OSError as e:
        culprit = f" ({os.fsdecode(e.filename)})" if e.filename is not None else ""
        raise SysrootError(f"{context}{culprit}: {e.strerror or e}") from e


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _lstat_or_none(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


@contextmanager
def _opendir(dir_fd: int, name: str) -> Iterator[int]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _opendir_path(dir_fd: int, path: str) -> Iterator[int]:
    """Open dir_fd/path refusing symlinks at every step (used on the old etc)."""
    fd = os.dup(dir_fd)
    try:
        for part in filter(None, path.split("/")):
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_beneath(root_fd: int, path: str) -> int:
    """Open directory root/path the way the kernel would, following symlinks, except
    that a symlink that is absolute or leads out of root raises SysrootError.

    Raises FileNotFoundError / NotADirectoryError like openat() for missing or non-dir
    components (including a dangling symlink)."""
    todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
    stack = [os.dup(root_fd)]  # the real directories walked, root first (for "..")
    hops = 0
    link: tuple[str, str] | None = None  # the last symlink followed, for the message
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                if len(stack) == 1:
                    raise _escape_error(path, link)
                os.close(stack.pop())
                continue
            st = os.lstat(part, dir_fd=stack[-1])
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                link = (part, os.readlink(part, dir_fd=stack[-1]))
                if link[1].startswith("/"):
                    raise _escape_error(path, link)
                todo += [p for p in reversed(link[1].split("/")) if p not in ("", ".")]
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(os.open(part, _DIR_FLAGS, dir_fd=stack[-1]))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _escape_error(path: str, link: tuple[str, str] | None) -> SysrootError:
    via = f" (through symlink {link[0]} -> {link[1]})" if link else ""
    return SysrootError(
        f"During /etc merge: /etc/{path}{via} leads outside the new /etc; refusing to "
        "write through it",
        hint="the new default replaced a directory by a symlink; move your changes aside",
    )


def _proc_path(dir_fd: int, name: str) -> str:
    # Python has no *xattr(dir_fd=); this names dir_fd's own directory, then name in it
    # without following name itself: safe for symlinks.
    return f"/proc/self/fd/{dir_fd}/{name}"


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
