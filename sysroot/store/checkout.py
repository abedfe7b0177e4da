"""Checking out a commit (or a path inside it) into a directory.

Files are hardlinked to their objects when the object file on disk is exactly what
the checkout needs (bare repo and root checkout; bare-user/bare-user-only repo and
user-mode checkout), as `ostree checkout` does; otherwise they are copied with the
ownership, mode and xattrs the commit records.

Safety: every dirtree and dirmeta reachable from the checkout root is loaded and
validated before the first write, so a crafted tree (names like `..`, `a/b`, duplicate
names) is refused with nothing written. Writing happens only relative to directory
file descriptors opened with O_NOFOLLOW, one path component at a time, so neither a
symlink from the tree nor one already present in a --union target can redirect a
write outside the destination.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sysroot.errors import FormatError, NotFoundError, SysrootError, UsageError
from sysroot.formats.objects import DirMeta, DirTree, FileHeader, ObjectType
from sysroot.store.localsum import checksum_at
from sysroot.store.modes import RepoMode
from sysroot.store.repo import ContentInfo, Repo
from sysroot.store.tree import TreeEntry, TreeReader
from sysroot.util import fsutil

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SUID_SGID = stat.S_ISUID | stat.S_ISGID
_COPY_CHUNK = 1 << 20
_OSTREEMETA = "user.ostreemeta"


WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..opq"  # after the prefix: the file is `.wh..wh..opq`
PASSTHROUGH_PREFIX = ".ostree-wh."


class OverwriteMode(enum.Enum):
    """What to do when an entry already exists in the destination."""

    NONE = "none"  # an existing entry is an error
    UNION_FILES = "union"  # keep directories, replace files and symlinks
    ADD_FILES = "union-add"  # keep whatever exists, only add what is missing
    UNION_IDENTICAL = "union-identical"  # like ADD_FILES, but a differing file is an error


@dataclass(frozen=True)
class CheckoutOptions:
    """How to check out; the defaults are `ostree checkout COMMIT DEST`."""

    user_mode: bool = False  # no chown, no xattrs, setuid/setgid bits dropped
    overwrite: OverwriteMode = OverwriteMode.NONE
    subpath: str = "/"
    require_hardlinks: bool = False  # error rather than copy when a hardlink is impossible
    force_copy: bool = False  # never hardlink
    bareuseronly_dirs: bool = False  # directory modes limited to 0775
    allow_noent: bool = False  # a missing subpath is not an error
    fsync: bool = False  # flush the file system once the checkout is complete
    # Docker/OCI whiteouts: `.wh.NAME` removes NAME from the destination, and
    # `.wh..wh..opq` everything the directory held; neither is checked out
    process_whiteouts: bool = False
    # `.ostree-wh.NAME` becomes NAME, a 0:0 character device (overlayfs's whiteout)
    passthrough_whiteouts: bool = False
    skip: frozenset[str] = frozenset()  # absolute paths of files not to check out

    def check(self) -> None:
        if self.require_hardlinks and self.force_copy:
            raise UsageError("Cannot specify both --require-hardlinks and --force-copy")
        if self.overwrite is OverwriteMode.UNION_IDENTICAL and not self.require_hardlinks:
            raise UsageError("--union-identical requires --require-hardlinks")


@dataclass
class CheckoutStats:
    directories: int = 0
    hardlinked: int = 0
    copied: int = 0
    skipped: int = 0  # existing entries kept by --union-add / --union-identical


# ---------------------------------------------------------------------------- checkout


class _Frame:
    """One open directory of the checkout, waiting for its subdirectories."""

    __slots__ = ("fd", "meta", "did_exist", "path", "subdirs")

    def __init__(self, fd: int, meta: DirMeta, did_exist: bool, path: str):
        self.fd = fd
        self.meta = meta
        self.did_exist = did_exist
        self.path = path
        self.subdirs: Iterator[tuple[str, str, str]] = iter(())


class _Checkout:
    def __init__(self, repo: Repo, options: CheckoutOptions, reader: TreeReader):
        self.repo = repo
        self.opts = options
        self.reader = reader
        self.stats = CheckoutStats()
        mode = repo.mode
        # ostree: a bare-user-only repo only ever makes user-mode checkouts
        self.user_mode = options.user_mode or mode is RepoMode.BARE_USER_ONLY
        self.usermode_repo = mode in (RepoMode.BARE_USER, RepoMode.BARE_USER_ONLY)
        self.hardlinkable = (mode is RepoMode.BARE and not self.user_mode) or (
            self.usermode_repo and self.user_mode
        )
        can_link = self.hardlinkable and not options.force_copy
        # bare repo + root checkout: every object (symlinks too) is exactly the file
        # wanted, so the hot loop is one linkat per file with no metadata reads.
        self.link_everything = can_link and mode is RepoMode.BARE
        self.link_regular = can_link
        # user-mode repo + user checkout: regular objects are linked; what an object
        # is (regular or symlink, valid metadata) is decided once per distinct
        # user.ostreemeta value, not once per file (see _link_user_files)
        self.link_user_objects = can_link and self.usermode_repo
        self._regular_meta: dict[bytes, bool] = {}
        self.canonical_dirs = mode is RepoMode.BARE_USER_ONLY or options.bareuseronly_dirs
        self.objects_fd = os.open("objects", _DIR_FLAGS, dir_fd=repo.dfd)
        self.repo_dev = os.fstat(repo.dfd).st_dev
        self.top_path = ""

    def close(self) -> None:
        if self.objects_fd >= 0:
            os.close(self.objects_fd)
            self.objects_fd = -1

    # ------------------------------------------------------------------ directories
    def open_dir(
        self, parent_fd: int, name: str, path: str, meta: DirMeta, *, top: bool = False
    ) -> _Frame:
        did_exist = False
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            if self.opts.overwrite is OverwriteMode.NONE:
                raise SysrootError(f"Cannot create directory {path}: File exists") from None
            did_exist = True
        # The destination itself is the caller's choice and may be a symlink; below
        # it, never follow one.
        flags = _DIR_FLAGS if top else _DIR_FLAGS | os.O_NOFOLLOW
        try:
            fd = os.open(name, flags, dir_fd=parent_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                what = "a symlink" if _is_symlink(parent_fd, name) else "not a directory"
                raise SysrootError(
                    f"Refusing to check out into {path}: existing entry is {what}"
                ) from None
            raise
        try:
            if self.opts.require_hardlinks:
                dev = os.fstat(fd).st_dev
                if dev != self.repo_dev:
                    raise SysrootError(
                        "Unable to do hardlink checkout across devices "
                        f"(src={self.repo_dev} destination={dev})"
                    )
            if not did_exist and not self.user_mode:
                for xname, value in meta.xattrs:
                    os.setxattr(fd, xname.rstrip(b"\0"), value)
        except BaseException:
            os.close(fd)
            raise
        self.stats.directories += 1
        return _Frame(fd, meta, did_exist, path)

    def finish_dir(self, frame: _Frame) -> None:
        """Mode and owner last, so a read-only directory can still be filled."""
        fd = frame.fd
        if not frame.did_exist:
            meta = frame.meta
            mode = stat.S_IMODE(meta.mode)
            if self.canonical_dirs:
                mode &= 0o775
            os.fchmod(fd, mode)
            if not self.user_mode:
                os.fchown(fd, meta.uid, meta.gid)
            if not self.opts.force_copy:
                # ostree gives checked-out directories mtime 0, so checkouts compare equal
                os.utime(fd, ns=(os.fstat(fd).st_atime_ns, 0))

    def write_tree(
        self, parent_fd: int, name: str, tree_csum: str, meta_csum: str, path: str, *, top: bool
    ) -> None:
        reader = self.reader
        stack: list[_Frame] = []
        if top:
            self.top_path = path  # paths below are the destination's: this is their "/"
        try:
            frame = self.open_dir(parent_fd, name, path, reader.dirmeta(meta_csum), top=top)
            stack.append(frame)
            tree = reader.dirtree(tree_csum)
            self.write_files(frame.fd, tree, path)
            frame.subdirs = iter(tree.dirs)
            while stack:
                frame = stack[-1]
                nxt = next(frame.subdirs, None)
                if nxt is None:
                    self.finish_dir(frame)
                    stack.pop()
                    os.close(frame.fd)
                    continue
                dname, dtree, dmeta = nxt
                dpath = f"{frame.path}/{dname}" if frame.path != "/" else f"/{dname}"
                child = self.open_dir(frame.fd, dname, dpath, reader.dirmeta(dmeta))
                stack.append(child)
                tree = reader.dirtree(dtree)
                self.write_files(child.fd, tree, dpath)
                child.subdirs = iter(tree.dirs)
        finally:
            for frame in stack:
                os.close(frame.fd)

    # ------------------------------------------------------------------ files
    def write_files(self, dfd: int, tree: DirTree, path: str) -> None:
        o = self.opts
        if o.process_whiteouts or o.passthrough_whiteouts or o.skip:
            tree = self._special_files(dfd, tree, path)
        if self.link_everything:
            lstat, isreg = os.lstat, stat.S_ISREG
            objfd = self.objects_fd
            n = 0
            for name, csum in tree.files:
                rel = f"{csum[:2]}/{csum[2:]}.file"
                try:
                    st = lstat(rel, dir_fd=objfd)
                except OSError as e:
                    self.link_failed(e, dfd, name, csum, path)
                    continue
                if st.st_size == 0 and isreg(st.st_mode):
                    self.write_file(dfd, name, csum, path)  # empty files are copied
                    continue
                n += self._link_object(rel, dfd, name, csum, path)
            self.stats.hardlinked += n
            return
        if self.link_user_objects:
            self._link_user_files(dfd, tree, path)
            return
        for name, csum in tree.files:
            self.write_file(dfd, name, csum, path)

    def _link_user_files(self, dfd: int, tree: DirTree, path: str) -> None:
        """write_file for every file, as a tight loop over the usual case: a non-empty
        regular object is hardlinked after one lstat (and in bare-user, one getxattr).
        Anything else (a symlink object, an empty file, a missing object, metadata
        that does not validate) takes write_file, which decides and reports."""
        lstat, getxattr, isreg = os.lstat, os.getxattr, stat.S_ISREG
        objfd = self.objects_fd
        objects = os.path.join(self.repo.path, "objects", "")  # getxattr: no dir_fd form
        bare_user = self.repo.mode is RepoMode.BARE_USER
        known = self._regular_meta
        n = 0
        for name, csum in tree.files:
            rel = f"{csum[:2]}/{csum[2:]}.file"
            try:
                st = lstat(rel, dir_fd=objfd)
                if not isreg(st.st_mode) or st.st_size == 0:
                    self.write_file(dfd, name, csum, path)
                    continue
                if bare_user:
                    meta = getxattr(objects + rel, _OSTREEMETA, follow_symlinks=False)
                    regular = known.get(meta)
                    if regular is None:
                        regular = known[meta] = _is_regular_meta(meta)
                    if not regular:
                        self.write_file(dfd, name, csum, path)
                        continue
            except OSError:
                self.write_file(dfd, name, csum, path)
                continue
            n += self._link_object(rel, dfd, name, csum, path)
        self.stats.hardlinked += n

    def _link_object(self, rel: str, dfd: int, name: str, csum: str, path: str) -> int:
        """The object at rel hardlinked as name: 1, or 0 when link_failed took over."""
        try:
            os.link(rel, name, src_dir_fd=self.objects_fd, dst_dir_fd=dfd, follow_symlinks=False)
            return 1
        except OSError as e:
            self.link_failed(e, dfd, name, csum, path)
            return 0

    def _special_files(self, dfd: int, tree: DirTree, path: str) -> DirTree:
        """The skip list and the whiteouts applied: tree without the files they take.
        Whiteouts first, so that an opaque marker never removes this tree's own."""
        o = self.opts
        kept = []
        inside = "/" + path[len(self.top_path) :].strip("/")  # the directory, as in the tree
        for name, csum in tree.files:
            if _join(inside, name) in o.skip:
                continue
            if o.process_whiteouts and name.startswith(WHITEOUT_PREFIX):
                gone = name[len(WHITEOUT_PREFIX) :]
                if gone == OPAQUE_MARKER:
                    for entry in os.listdir(dfd):
                        fsutil.rmtree_at(dfd, entry)
                elif gone not in ("", ".", "..") and "/" not in gone:
                    fsutil.rmtree_at(dfd, gone)
                continue
            kept.append((name, csum))
        files = []
        for name, csum in kept:
            if o.passthrough_whiteouts and name.startswith(PASSTHROUGH_PREFIX):
                self._overlay_whiteout(dfd, name[len(PASSTHROUGH_PREFIX) :], csum, path)
                continue
            files.append((name, csum))
        return DirTree(tuple(files), tree.dirs)

    def _overlay_whiteout(self, dfd: int, name: str, csum: str, path: str) -> None:
        if name in ("", ".", "..") or "/" in name:
            raise SysrootError(f"Invalid whiteout name in {path}")
        header = self.reader.file_info(csum, _join(path, name)).header
        mode = stat.S_IMODE(header.mode) & (0o1777 if self.user_mode else 0o7777)
        os.mknod(name, stat.S_IFCHR | mode, os.makedev(0, 0), dir_fd=dfd)
        if not self.user_mode:
            os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)

    def write_file(self, dfd: int, name: str, csum: str, dirpath: str) -> None:
        path = _join(dirpath, name)
        info = self.reader.file_info(csum, path)
        header = info.header
        if header.is_symlink:
            if self.link_everything:
                self._link(dfd, name, csum, dirpath)
                return
            if self.opts.require_hardlinks and not self.usermode_repo:
                raise self._cannot_hardlink()
            self.make_symlink(dfd, name, header, path)
            return
        if info.size == 0:
            # ostree never hardlinks empty files (they are often lock files or flags
            # that get written in place); it copies them, even with -H.
            self.copy_regular(dfd, name, csum, info, path)
            return
        if self.link_regular:
            self._link(dfd, name, csum, dirpath)
            return
        if self.opts.require_hardlinks:
            raise self._cannot_hardlink()
        self.copy_regular(dfd, name, csum, info, path)

    def _link(self, dfd: int, name: str, csum: str, dirpath: str) -> None:
        try:
            os.link(
                f"{csum[:2]}/{csum[2:]}.file",
                name,
                src_dir_fd=self.objects_fd,
                dst_dir_fd=dfd,
                follow_symlinks=False,
            )
            self.stats.hardlinked += 1
        except OSError as e:
            self.link_failed(e, dfd, name, csum, dirpath)

    def _cannot_hardlink(self) -> SysrootError:
        if self.usermode_repo:
            return SysrootError("User repository mode requires user checkout mode to hardlink")
        return SysrootError("Bare repository mode cannot hardlink in user checkout mode")

    def link_failed(self, e: OSError, dfd: int, name: str, csum: str, dirpath: str) -> None:
        """A hardlink did not work: an existing entry, a missing object, or no links here."""
        path = _join(dirpath, name)
        objrel = f"{csum[:2]}/{csum[2:]}.file"
        if e.errno == errno.EEXIST:
            if self._keep_existing(path):
                return
            mode = self.opts.overwrite
            src = os.lstat(objrel, dir_fd=self.objects_fd)
            dst = os.lstat(name, dir_fd=dfd)
            if (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino):
                self.stats.skipped += 1
                return
            if mode is OverwriteMode.UNION_IDENTICAL:
                if (
                    not stat.S_ISDIR(dst.st_mode)
                    and _checksum_existing(dfd, name, dst, self.repo.disable_xattrs) == csum
                ):
                    self.stats.skipped += 1
                    return
                raise SysrootError(f"Cannot check out {path}: a different file exists")
            # --union: link under a temporary name, then rename over the old entry
            # (rename replaces a file or symlink, never writes through it).
            tmp = _temp_entry(
                lambda t: os.link(
                    objrel, t, src_dir_fd=self.objects_fd, dst_dir_fd=dfd, follow_symlinks=False
                )
            )
            _replace(tmp, name, dfd, path)
            self.stats.hardlinked += 1
            return
        if e.errno == errno.ENOENT and not self.repo.has_object(ObjectType.FILE, csum):
            raise NotFoundError(f"No such content object {csum} (needed for {path})") from None
        if e.errno in (errno.EMLINK, errno.EXDEV, errno.EPERM) and not self.opts.require_hardlinks:
            info = self.reader.file_info(csum, path)
            if info.header.is_symlink:
                self.make_symlink(dfd, name, info.header, path)
            else:
                self.copy_regular(dfd, name, csum, info, path)
            return
        raise SysrootError(f"Hardlinking {objrel} to {path}: {e.strerror}") from None

    def make_symlink(self, dfd: int, name: str, header: FileHeader, path: str) -> None:
        target = header.symlink_target
        try:
            os.symlink(target, name, dir_fd=dfd)
        except FileExistsError:
            pass
        else:
            self._set_symlink_meta(dfd, name, header)
            self.stats.copied += 1
            return
        if self._keep_existing(path):
            return
        if self.opts.overwrite is OverwriteMode.UNION_IDENTICAL:
            if _is_symlink(dfd, name) and os.readlink(name, dir_fd=dfd) == target:
                self.stats.skipped += 1
                return
            raise SysrootError(f"Cannot check out {path}: a different file exists")
        tmp = _temp_entry(lambda t: os.symlink(target, t, dir_fd=dfd))
        self._set_symlink_meta(dfd, tmp, header)
        _replace(tmp, name, dfd, path)
        self.stats.copied += 1

    def _keep_existing(self, path: str) -> bool:
        """An entry is in the way at path: an error without an overwrite mode; True
        (counted as skipped) when --union-add keeps it; False to go on and compare or
        replace it."""
        mode = self.opts.overwrite
        if mode is OverwriteMode.NONE:
            # from None: callers are often handling the OSError that found the entry
            raise SysrootError(f"Cannot check out {path}: File exists") from None
        if mode is OverwriteMode.ADD_FILES:
            self.stats.skipped += 1
            return True
        return False

    def _set_symlink_meta(self, dfd: int, name: str, header: FileHeader) -> None:
        if self.user_mode:
            return
        os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
        if header.xattrs:
            # setxattr has no dir_fd form; /proc/self/fd/N names the directory we
            # hold, and the last component is not followed.
            fsutil.write_xattrs(f"/proc/self/fd/{dfd}/{name}", header.xattrs, follow_symlinks=False)

    def copy_regular(self, dfd: int, name: str, csum: str, info: ContentInfo, path: str) -> None:
        overwrite = self.opts.overwrite
        keep = (OverwriteMode.ADD_FILES, OverwriteMode.UNION_IDENTICAL)
        if overwrite in keep and _exists(dfd, name):
            if overwrite is OverwriteMode.UNION_IDENTICAL:
                st = os.lstat(name, dir_fd=dfd)
                if (
                    stat.S_ISDIR(st.st_mode)
                    or _checksum_existing(dfd, name, st, self.repo.disable_xattrs) != csum
                ):
                    raise SysrootError(f"Cannot check out {path}: a different file exists")
            self.stats.skipped += 1
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        if overwrite is OverwriteMode.UNION_FILES:
            holder: list[int] = []
            tmp = _temp_entry(lambda t: holder.append(os.open(t, flags, 0o600, dir_fd=dfd)))
            fd = holder[0]
        else:
            tmp = None
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                raise SysrootError(f"Cannot check out {path}: File exists") from None
        try:
            try:
                self._fill_regular(fd, csum, info)
            finally:
                os.close(fd)
            if tmp is not None:
                _replace(tmp, name, dfd, path)
                tmp = None
        except BaseException:
            try:
                os.unlink(tmp if tmp is not None else name, dir_fd=dfd)
            except OSError:
                pass
            raise
        self.stats.copied += 1

    def _fill_regular(self, fd: int, csum: str, info: ContentInfo) -> None:
        header = info.header
        if self.repo.mode is RepoMode.ARCHIVE:
            for chunk in self.repo.iter_payload(csum):
                _write_all(fd, chunk)
        else:
            src = os.open(
                f"{csum[:2]}/{csum[2:]}.file",
                os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                dir_fd=self.objects_fd,
            )
            try:
                _copy_fd(src, fd, info.size)
            finally:
                os.close(src)
        mode = stat.S_IMODE(header.mode)
        if self.user_mode:
            mode &= ~_SUID_SGID
        else:
            # chown before chmod: chown clears setuid/setgid bits
            os.fchown(fd, header.uid, header.gid)
            for xname, value in header.xattrs:
                os.setxattr(fd, xname.rstrip(b"\0"), value)
        os.fchmod(fd, mode)


# ---------------------------------------------------------------------------- helpers


def _is_regular_meta(meta: bytes) -> bool:
    """Whether a bare-user object with this user.ostreemeta is a valid regular file."""
    try:
        header = FileHeader.parse_filemeta(meta)
        header.validate()
    except FormatError:
        return False
    return header.is_regular


def _join(dirpath: str, name: str) -> str:
    return f"{dirpath}/{name}" if dirpath != "/" else f"/{name}"


def _is_symlink(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dfd).st_mode)
    except OSError:
        return False


def _exists(dfd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False


def _temp_entry(create: Callable[[str], object]) -> str:
    """Create an entry under a fresh temporary name with create(name); return the name."""
    for _ in range(100):
        name = fsutil.temp_name("checkout-union")
        try:
            create(name)
            return name
        except FileExistsError:
            continue
    raise SysrootError("Exhausted attempts to create a temporary name")


def _replace(tmp: str, name: str, dfd: int, path: str) -> None:
    try:
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        os.unlink(tmp, dir_fd=dfd)
        raise SysrootError(f"Cannot replace {path}: {e.strerror}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_fd(src: int, dst: int, size: int) -> None:
    """Copy size bytes; copy_file_range lets the kernel share extents where it can."""
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(src, dst, min(left, 1 << 30))
            if n == 0:
                break
            left -= n
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while left > 0:
        chunk = os.read(src, min(left, _COPY_CHUNK))
        if not chunk:
            break
        _write_all(dst, chunk)
        left -= len(chunk)
    if left:
        raise SysrootError(f"Object file is {left} bytes shorter than recorded")


def _checksum_existing(dfd: int, name: str, st: os.stat_result, no_xattrs: bool) -> str:
    """The content checksum of an existing file or symlink in the destination ("" for
    anything else: never an object's)."""
    if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return ""
    return checksum_at(dfd, name, st, ignore_xattrs=no_xattrs)


def _remove_created(parent_fd: int, name: str) -> None:
    """Best-effort removal of a partial checkout we created ourselves."""
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError:
        return
    try:
        os.fchmod(fd, 0o700)  # our own half-done directories may already be read-only
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _remove_created(fd, entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError:
        pass


# ---------------------------------------------------------------------------- entry point


def checkout_tree(
    repo: Repo,
    commit_or_rev: str,
    target: str | os.PathLike[str],
    options: CheckoutOptions | None = None,
    *,
    dir_fd: int | None = None,
) -> CheckoutStats | None:
    """Check out commit_or_rev (or options.subpath inside it) as the directory target.

    target is created; with --union/--union-add it may already exist. A file subpath
    is checked out as target/NAME. Returns None when the subpath is missing and
    options.allow_noent is set. If the checkout fails, a target directory created by
    this call is removed again.
    """
    options = options or CheckoutOptions()
    options.check()
    commit = repo.resolve_rev(commit_or_rev)
    if commit is None:
        raise NotFoundError(f"Refspec '{commit_or_rev}' not found")
    reader = TreeReader(repo, commit)
    try:
        entry = reader.resolve(options.subpath)
    except NotFoundError:
        if options.allow_noent:
            return None
        raise
    # Everything the checkout will read is validated before anything is written.
    if entry.tree is not None:
        reader.prefetch(entry.tree, entry.checksum)
    else:
        reader.file_info(entry.checksum, entry.path)

    target = os.fspath(target)
    parent, name = os.path.split(target.rstrip("/") or "/")
    if not name:
        raise UsageError(f"Invalid checkout destination '{target}'")
    parent_fd = os.open(parent or ".", _DIR_FLAGS, dir_fd=dir_fd)
    job = _Checkout(repo, options, reader)
    created = not _exists(parent_fd, name)
    try:
        if entry.tree is not None:
            job.write_tree(parent_fd, name, entry.tree, entry.checksum, target, top=True)
        else:
            _checkout_single_file(job, parent_fd, name, entry, target)
        if options.fsync:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                fsutil.syncfs(fd)
            finally:
                os.close(fd)
    except BaseException:
        if created:
            _remove_created(parent_fd, name)
        raise
    finally:
        job.close()
        os.close(parent_fd)
    return job.stats


def _checkout_single_file(
    job: _Checkout, parent_fd: int, name: str, entry: TreeEntry, target: str
) -> None:
    """A file subpath: like ostree, make the directory (it may exist) and put the file in."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    dfd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        job.write_file(dfd, entry.name, entry.checksum, target)
    finally:
        os.close(dfd)
