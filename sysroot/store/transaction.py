"""Writing objects: a staging directory under tmp/, published at commit.

As in libostree, objects are written into `tmp/staging-<bootid>-XXXXXX/XX/REST.ext`
while the repo lock is held shared; commit() flushes the file system, renames each
staged object into `objects/` without replacing an existing one, fsyncs the object
directories, then writes refs. A process killed at any moment leaves only a staging
directory (cleaned up later), never a partial object under its final name.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import secrets
import stat
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from sysroot.errors import CorruptObjectError, FormatError, SysrootError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import (
    FileHeader,
    ObjectType,
    is_checksum,
    length_prefixed,
    sha256_hex,
)
from sysroot.store.freespace import STREAM_CHECK_BYTES, SpaceGuard
from sysroot.store.lock import ofd_lock
from sysroot.store.modes import RepoMode
from sysroot.util import fsutil

if TYPE_CHECKING:  # the repo makes transactions: Repo.transaction()
    from sysroot.store.repo import Repo

_CHUNK = 1 << 20
_OSTREEMETA = "user.ostreemeta"
_STALE_SECS = 86400
# has_object lists an objects/XX directory at its third lookup, unless the directory
# is bigger than this (about a thousand names on ext4 or tmpfs)
_LIST_AFTER = 3
_LIST_MAX_BYTES = 64 << 10


def _boot_id() -> str:
    env = os.environ.get("OSTREE_BOOTID")
    if env:
        return env
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class Transaction:
    """Use as a context manager: objects and refs land only if the block succeeds."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self.mode: RepoMode = repo.mode
        self._lock = repo.lock(exclusive=False)
        self._staged: set[tuple[str, ObjectType]] = set()
        self._subdirs: set[str] = set()
        self._refs: dict[str, str | None] = {}
        self._collection_refs: dict[tuple[str, str], str] = {}
        self._lockfd: int | None = None
        self.staging_name: str | None = None
        self.staging_fd = -1
        self.staging_path = ""
        self._now_ns = time.time_ns()
        # metadata/content: objects newly stored; the *_total: every write call, the
        # object present or not (ostree's transaction stats, commit --table-output)
        self.stats = {
            "metadata": 0,
            "content": 0,
            "content_bytes": 0,
            "metadata_total": 0,
            "content_total": 0,
        }
        # commit --generate-sizes: checksum -> (type, archived, unpacked) of every object
        # written through this transaction, present before or not. Like ostree 2022.7,
        # only archive repositories record them (bare ones write no ostree.sizes).
        self.object_sizes: dict[str, tuple[ObjectType, int, int]] | None = None
        # write_content() may run in several threads (commit imports files in
        # parallel): temp names come from a counter, bookkeeping is under a lock.
        self._tmp_prefix = ".tmp-"
        self._tmp_names = itertools.count()
        self._mutex = threading.Lock()
        # has_object: lookups per objects/XX directory, and the names of those listed
        self._asked: dict[str, int] = {}
        self._listed: dict[str, frozenset[str]] = {}
        # min-free-space-*: measured per content object, in forked workers too
        self.space = SpaceGuard(repo.free_space, repo.dfd)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Transaction:
        self._lock.__enter__()
        try:
            self._make_staging_dir()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._cleanup()
            self._lock.__exit__(None, None, None)

    def _make_staging_dir(self) -> None:
        repo = self.repo
        prefix = f"staging-{_boot_id()}-"
        for _ in range(100):
            name = prefix + secrets.token_hex(3)
            lockfd = os.open(
                f"tmp/{name}-lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=repo.dfd
            )
            try:
                if not ofd_lock(lockfd, exclusive=True, wait=False):
                    raise FileExistsError
                # A concurrent stale-tmp cleanup may have unlinked the lock file between
                # our open and lock; a lock on an unlinked file protects nothing.
                try:
                    on_disk = os.stat(f"tmp/{name}-lock", dir_fd=repo.dfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise FileExistsError from None
                mine = os.fstat(lockfd)
                if (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
                    raise FileExistsError
                os.mkdir(f"tmp/{name}", 0o775, dir_fd=repo.dfd)
            except FileExistsError:
                os.close(lockfd)
                continue
            self._lockfd = lockfd
            self.staging_name = name
            self.staging_path = os.path.join(repo.path, "tmp", name)
            self.staging_fd = os.open(
                self.staging_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
            return
        raise SysrootError(f"Could not allocate a staging directory in {repo.path}/tmp")

    def _cleanup(self) -> None:
        if self.staging_fd >= 0:
            os.close(self.staging_fd)
            self.staging_fd = -1
        if self.staging_name:
            fsutil.rmtree_at(self.repo.dfd, f"tmp/{self.staging_name}")
            try:
                os.unlink(f"tmp/{self.staging_name}-lock", dir_fd=self.repo.dfd)
            except FileNotFoundError:
                pass
            self.staging_name = None
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None

    # ------------------------------------------------------------------ other processes
    def in_forked_child(self) -> None:
        """Make this copy of the transaction, in a process forked from its owner, able
        to stage objects beside the owner's: temp names of its own, a fresh lock. The
        child stages only; the owner records what it staged (record_staged) and alone
        commits or cleans up."""
        self._tmp_prefix = f".tmp-{os.getpid()}-"
        self._tmp_names = itertools.count()
        self._mutex = threading.Lock()
        self.space.in_forked_child()

    def record_staged(self, checksum: str, objtype: ObjectType) -> bool:
        """Take on an object a forked child staged (write_raw/write_content) in this
        transaction; False when it is not there (the child found it stored already)."""
        _, rel = self._staged_relpath(checksum, objtype)  # notes its objects/XX directory
        try:
            os.stat(rel, dir_fd=self.staging_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        with self._mutex:
            self._staged.add((checksum, objtype))
            self.stats["metadata" if objtype.is_metadata else "content"] += 1
        return True

    # ------------------------------------------------------------------ queries
    def has_object(self, objtype: ObjectType, checksum: str) -> bool:
        return (checksum, objtype) in self._staged or self._stored(objtype, checksum)

    def _stored(self, objtype: ObjectType, checksum: str) -> bool:
        """Whether objects/ holds the object. A commit asks once per file, so after
        a few lstat()s in one objects/XX directory it is listed once and answers the
        rest, unless it is big (memory stays small in a large repository). Objects
        another process adds meanwhile look absent: they are staged again and
        publishing keeps the one already there (rename without replace)."""
        sub = checksum[:2]
        names = self._listed.get(sub)
        if names is not None:
            return f"{checksum[2:]}.{objtype.extension(self.mode.is_archive)}" in names
        asked = self._asked.get(sub, 0) + 1
        self._asked[sub] = asked
        if asked == _LIST_AFTER:
            listed = self._list_objdir(sub)
            if listed is not None:
                self._listed[sub] = listed
                return f"{checksum[2:]}.{objtype.extension(self.mode.is_archive)}" in listed
        return self.repo.has_object(objtype, checksum)

    def _list_objdir(self, sub: str) -> frozenset[str] | None:
        try:
            fd = os.open(
                f"objects/{sub}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.repo.dfd
            )
        except FileNotFoundError:
            return frozenset()
        try:
            if os.fstat(fd).st_size > _LIST_MAX_BYTES:
                return None
            return frozenset(os.listdir(fd))
        finally:
            os.close(fd)

    def read_metadata(self, objtype: ObjectType, checksum: str) -> bytes:
        """A metadata object, whether staged in this transaction or already stored."""
        if (checksum, objtype) in self._staged:
            _, rel = self._staged_relpath(checksum, objtype)
            fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.staging_fd)
            with os.fdopen(fd, "rb") as f:
                return f.read()
        return self.repo.read_metadata(objtype, checksum)

    # ------------------------------------------------------------------ metadata
    def write_metadata(self, objtype: ObjectType, data: bytes, expected: str | None = None) -> str:
        """Store a metadata object; with expected, refuse data that does not hash to it."""
        checksum = sha256_hex(data)
        if expected is not None and checksum != expected:
            raise CorruptObjectError(expected, objtype.type_name, f"content hashes to {checksum}")
        self._note_size(checksum, objtype, len(data), len(data))
        with self._mutex:
            self.stats["metadata_total"] += 1
        if self.has_object(objtype, checksum):
            return checksum
        self._put(checksum, objtype, data)
        self.stats["metadata"] += 1
        return checksum

    def write_commitmeta(self, commit: str, metadata: dict[str, Variant]) -> None:
        """Detached metadata is not content-addressed: replaced by rename, not NOREPLACE."""
        data = gvariant.encode("a{sv}", metadata)
        rel = self.repo.object_relpath(commit, ObjectType.COMMIT_META)
        os.makedirs(os.path.dirname(os.path.join(self.repo.path, rel)), 0o775, exist_ok=True)
        fsutil.atomic_write(
            os.path.join(self.repo.path, rel), data, mode=0o644, fsync=self.repo.fsync_enabled
        )

    def _staged_relpath(self, checksum: str, objtype: ObjectType) -> tuple[str, str]:
        # Staged objects sit flat in the staging dir: creating and removing up to 256
        # prefix subdirectories per transaction costs more than it saves. (If ostree
        # reuses a dead staging dir of ours, it just ignores these names.)
        sub = checksum[:2]
        self._subdirs.add(sub)  # the objects/XX directories to ensure at publish
        return sub, f"{checksum}.{objtype.extension(self.mode.is_archive)}"

    def _write_staging_file(self, name: str, data: bytes, *, exclusive: bool) -> None:
        """A 0644 file in the staging dir (umask ignored, as objects must be readable)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
        fd = os.open(name, flags, 0o644, dir_fd=self.staging_fd)
        try:
            os.fchmod(fd, 0o644)
            _write_all(fd, data)
        finally:
            os.close(fd)

    def _put(self, checksum: str, objtype: ObjectType, data: bytes) -> None:
        _, rel = self._staged_relpath(checksum, objtype)
        self._write_staging_file(rel, data, exclusive=False)
        self._staged.add((checksum, objtype))

    # ------------------------------------------------------------------ content
    def write_content(
        self,
        header: FileHeader,
        payload: Iterable[bytes] | None,
        expected: str | None = None,
        *,
        size: int | None = None,
    ) -> str:
        """Store a content object from its header and payload chunks (None for symlinks).

        The checksum is computed while writing; with expected, a mismatch is an error
        and nothing is stored. size, when the caller knows it, lets the free-space guard
        refuse the object before a byte is written (otherwise it measures as the bytes
        arrive). Safe to call from several threads at once.
        """
        header.validate()
        with self._mutex:
            self.stats["content_total"] += 1
        admitted = self.space.admit(0 if header.is_symlink else size or 0)
        meter = _Meter(self.space, payload or (), size)
        try:
            return self._write_content(header, meter, expected)
        except OSError as e:
            raise self.space.translate(e, meter.written) from None
        finally:
            self.space.release(admitted)

    def link_content(self, src: Repo, checksum: str) -> bool:
        """Stage src's content object by a hard link to its file (the same bytes,
        mode, owner and xattrs), as ostree imports between repositories of one mode on
        one file system; commit() publishes it with the others, and an aborted
        transaction leaves nothing behind. No byte is written (ostree counts none
        either), so no space is taken. False when the file system refuses the link
        (another device, a link limit): the caller copies the object instead.
        FileNotFoundError when src lacks it."""
        if src.mode is not self.mode or self.object_sizes is not None:
            return False
        _, rel = self._staged_relpath(checksum, ObjectType.FILE)
        try:
            os.link(
                src.object_relpath(checksum, ObjectType.FILE),
                rel,
                src_dir_fd=src.dfd,
                dst_dir_fd=self.staging_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            pass  # staged already, linked or copied: the same object
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES):
                return False
            raise
        with self._mutex:
            self.stats["content_total"] += 1
            if (checksum, ObjectType.FILE) not in self._staged:
                self._staged.add((checksum, ObjectType.FILE))
                self.stats["content"] += 1
        return True

    def count_content_write(self) -> None:
        """A content write the caller skipped because it knows the object is the one
        it wrote just before (a hard link's second name)."""
        with self._mutex:
            self.stats["content_total"] += 1

    def _write_content(
        self, header: FileHeader, payload: Iterable[bytes], expected: str | None
    ) -> str:
        prefix = header.content_stream_prefix()
        h = hashlib.sha256(prefix)
        tmp = f"{self._tmp_prefix}{next(self._tmp_names)}"
        if header.is_symlink:
            checksum = h.hexdigest()
            if expected is not None and checksum != expected:
                raise CorruptObjectError(expected, "file", f"content hashes to {checksum}")
            if self.has_object(ObjectType.FILE, checksum):
                self._note_content_size(checksum, None, len(header.symlink_target))
                return checksum
            self._write_symlink(tmp, header)
            self._note_content_size(checksum, tmp, len(header.symlink_target))
            size = 0
        else:
            size = self._write_regular(tmp, header, payload, h)
            checksum = h.hexdigest()
            if expected is not None and checksum != expected:
                os.unlink(tmp, dir_fd=self.staging_fd)
                raise CorruptObjectError(expected, "file", f"content hashes to {checksum}")
            self._note_content_size(checksum, tmp, size)
            if self.has_object(ObjectType.FILE, checksum):
                os.unlink(tmp, dir_fd=self.staging_fd)
                return checksum
        _, rel = self._staged_relpath(checksum, ObjectType.FILE)
        # Two threads may stage the same content: both renames give the same file.
        os.rename(tmp, rel, src_dir_fd=self.staging_fd, dst_dir_fd=self.staging_fd)
        with self._mutex:
            self._staged.add((checksum, ObjectType.FILE))
            self.stats["content"] += 1
            self.stats["content_bytes"] += size
        return checksum

    def _note_size(self, checksum: str, objtype: ObjectType, archived: int, unpacked: int) -> None:
        if self.object_sizes is not None and self.mode.is_archive:
            with self._mutex:
                self.object_sizes[checksum] = (objtype, archived, unpacked)

    def note_stored_content_size(self, checksum: str, unpacked: int) -> None:
        """--generate-sizes for a content object the caller reuses without writing."""
        self._note_content_size(checksum, None, unpacked)

    def _note_content_size(self, checksum: str, tmp: str | None, unpacked: int) -> None:
        """The archived size is the .filez's: the temp file's, or the stored object's
        when nothing was written (a symlink already present)."""
        if self.object_sizes is None or not self.mode.is_archive:
            return
        if tmp is not None:
            archived = os.stat(tmp, dir_fd=self.staging_fd).st_size
        else:
            _, rel = self._staged_relpath(checksum, ObjectType.FILE)
            try:
                archived = os.stat(rel, dir_fd=self.staging_fd).st_size
            except FileNotFoundError:
                path = self.repo.object_relpath(checksum, ObjectType.FILE)
                archived = os.stat(path, dir_fd=self.repo.dfd).st_size
        self._note_size(checksum, ObjectType.FILE, archived, unpacked)

    def write_raw(self, checksum: str, objtype: ObjectType, chunks: Iterable[bytes]) -> bool:
        """Stage bytes already in this repository's encoding (e.g. the .filez of an
        archive remote for an archive repository) unchanged, as objtype checksum.

        The caller verifies while streaming: chunks must raise, not end, when the bytes
        do not match checksum; nothing is staged then. False if already present.
        Safe to call from several threads at once.
        """
        if objtype is ObjectType.FILE and not self.mode.is_archive:
            raise SysrootError("raw content objects can only be stored in archive repositories")
        if self.has_object(objtype, checksum):
            return False
        tmp = f"{self._tmp_prefix}{next(self._tmp_names)}"
        if objtype is not ObjectType.FILE:  # metadata: never refused, as in ostree
            self._write_raw_tmp(tmp, chunks)
        else:
            admitted = self.space.admit(0)
            meter = _Meter(self.space, chunks, None)
            try:
                self._write_raw_tmp(tmp, meter)
            except OSError as e:
                raise self.space.translate(e, meter.written) from None
            finally:
                self.space.release(admitted)
        _, rel = self._staged_relpath(checksum, objtype)
        os.rename(tmp, rel, src_dir_fd=self.staging_fd, dst_dir_fd=self.staging_fd)
        with self._mutex:
            self._staged.add((checksum, objtype))
            self.stats["metadata" if objtype.is_metadata else "content"] += 1
        return True

    def _write_raw_tmp(self, tmp: str, chunks: Iterable[bytes]) -> None:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.staging_fd
        )
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fchmod(fd, 0o644)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=self.staging_fd)
            raise
        os.close(fd)

    def _write_symlink(self, tmp: str, header: FileHeader) -> None:
        mode = self.mode
        if mode is RepoMode.BARE_USER:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o644,
                dir_fd=self.staging_fd,
            )
            try:
                os.fchmod(fd, 0o644)
                _write_all(fd, header.symlink_target.encode("utf-8") + b"\0")
                os.setxattr(fd, _OSTREEMETA, header.serialize_filemeta())
                os.utime(fd, ns=(self._now_ns, 0))
            finally:
                os.close(fd)
            return
        if mode is RepoMode.ARCHIVE:
            self._write_staging_file(tmp, _filez_header(header, 0), exclusive=True)
            return
        os.symlink(header.symlink_target, tmp, dir_fd=self.staging_fd)
        if mode is RepoMode.BARE:
            path = os.path.join(self.staging_path, tmp)
            os.chown(path, header.uid, header.gid, follow_symlinks=False)
            fsutil.write_xattrs(path, header.xattrs, follow_symlinks=False)

    def _write_regular(
        self, tmp: str, header: FileHeader, payload: Iterable[bytes], h: hashlib._Hash
    ) -> int:
        mode = self.mode
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.staging_fd
        )
        size = 0
        try:
            if mode is RepoMode.ARCHIVE:
                # The header records the uncompressed size, known only at the end; its
                # length does not depend on the value (a fixed 't'), so write a
                # placeholder and overwrite it in place.
                comp = zlib.compressobj(self.repo.zlib_level, zlib.DEFLATED, -15)
                _write_all(fd, _filez_header(header, 0))
                for chunk in payload:
                    h.update(chunk)
                    size += len(chunk)
                    _write_all(fd, comp.compress(chunk))
                _write_all(fd, comp.flush())
                os.pwrite(fd, _filez_header(header, size), 0)
                os.fchmod(fd, 0o644)
                return size
            for chunk in payload:
                h.update(chunk)
                size += len(chunk)
                _write_all(fd, chunk)
            if mode is RepoMode.BARE:
                os.fchown(fd, header.uid, header.gid)
                os.fchmod(fd, stat.S_IMODE(header.mode))
                for name, value in header.xattrs:
                    os.setxattr(fd, name.rstrip(b"\0"), value)
            elif mode is RepoMode.BARE_USER:
                os.fchmod(fd, (header.mode & 0o775) | stat.S_IRUSR)
                os.setxattr(fd, _OSTREEMETA, header.serialize_filemeta())
            else:  # bare-user-only
                perms = stat.S_IMODE(header.mode)
                if perms & ~0o775:
                    raise FormatError(
                        f"Invalid mode {perms:o} for a bare-user-only repo: "
                        "only 0775 bits are allowed"
                    )
                os.fchmod(fd, perms)
            os.utime(fd, ns=(self._now_ns, 0))
            return size
        except BaseException:
            os.close(fd)
            fd = -1
            try:
                os.unlink(tmp, dir_fd=self.staging_fd)
            except FileNotFoundError:
                pass
            raise
        finally:
            if fd >= 0:
                os.close(fd)

    # ------------------------------------------------------------------ refs
    def set_ref(self, refspec: str, checksum: str | None) -> None:
        """Queue a ref update, applied after the objects are published."""
        if checksum is not None and not is_checksum(checksum):
            raise SysrootError(f"Invalid checksum '{checksum}'")
        self._refs[refspec] = checksum

    def set_collection_ref(self, collection_id: str, ref: str, checksum: str) -> None:
        """Queue a collection ref: refs/heads/REF for the repository's own collection,
        else refs/mirrors/COLLECTION/REF (as ostree's transaction_set_collection_ref)."""
        if not is_checksum(checksum):
            raise SysrootError(f"Invalid checksum '{checksum}'")
        self._collection_refs[(collection_id, ref)] = checksum

    # ------------------------------------------------------------------ commit
    def commit(self) -> None:
        repo = self.repo
        fsync = repo.fsync_enabled
        if fsync and self._staged:
            fsutil.syncfs(self.staging_fd)
        objdirs = set()
        for sub in sorted(self._subdirs):
            try:
                os.mkdir(f"objects/{sub}", 0o775, dir_fd=repo.dfd)
            except FileExistsError:
                pass
            objdirs.add(sub)
        # Commits go last, once everything they reference is durably in objects/: a
        # crash in between leaves only unreferenced objects, never a commit with a
        # missing tree (which `ostree fsck` reports as corruption).
        commits = [c for c, t in self._staged if t is ObjectType.COMMIT]
        for checksum, objtype in self._staged:
            if objtype is not ObjectType.COMMIT:
                self._publish(checksum, objtype)
        if fsync:
            for sub in objdirs:
                fsutil.fsync_dir(f"objects/{sub}", dir_fd=repo.dfd)
            fsutil.fsync_dir("objects", dir_fd=repo.dfd)
        for checksum in commits:
            self._publish(checksum, ObjectType.COMMIT)
        if fsync:
            for sub in {c[:2] for c in commits}:
                fsutil.fsync_dir(f"objects/{sub}", dir_fd=repo.dfd)
        self._staged.clear()
        self._asked.clear()  # objects/ has changed: list again if asked again
        self._listed.clear()
        for refspec, target in self._refs.items():
            repo.write_ref(refspec, target)
        self._refs.clear()
        own = repo.config.get("core", "collection-id")
        for (cid, ref), target in self._collection_refs.items():
            if cid == own:
                repo.write_ref(ref, target)
                continue
            path = os.path.join(repo.path, "refs/mirrors", cid, ref)  # refs.collection_ref_relpath
            os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
            fsutil.atomic_write(path, (target + "\n").encode(), mode=0o644, fsync=fsync)
            os.utime(repo.dfd)  # as Repo.write_ref
        self._collection_refs.clear()
        self._cleanup_stale_tmp()

    def _publish(self, checksum: str, objtype: ObjectType) -> None:
        _, rel = self._staged_relpath(checksum, objtype)
        fsutil.rename_noreplace(
            rel,
            self.repo.object_relpath(checksum, objtype),
            src_dir_fd=self.staging_fd,
            dst_dir_fd=self.repo.dfd,
        )

    def _cleanup_stale_tmp(self) -> None:
        """Remove staging dirs of dead transactions (unlocked) and old tmp entries."""
        repo = self.repo
        expiry = repo.config.get_int("core", "tmp-expiry-secs", _STALE_SECS)
        now = time.time()
        try:
            entries = list(os.scandir(os.path.join(repo.path, "tmp")))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            if name.endswith("-lock") or name == "cache":
                continue
            if name.startswith("staging-"):
                lockname = f"tmp/{name}-lock"
                try:
                    lfd = os.open(lockname, os.O_RDWR | os.O_CLOEXEC, dir_fd=repo.dfd)
                except FileNotFoundError:
                    lfd = None
                if lfd is not None:
                    if not ofd_lock(lfd, exclusive=True, wait=False):
                        os.close(lfd)
                        continue  # a live transaction
                    try:
                        fsutil.rmtree_at(repo.dfd, f"tmp/{name}")
                        os.unlink(lockname, dir_fd=repo.dfd)
                    finally:
                        os.close(lfd)
                    continue
                # No lock file: ostree creates its staging dir before the lock file, so
                # a fresh one may be in use. Like ostree, leave it to the age check.
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > expiry:
                    fsutil.rmtree_at(repo.dfd, f"tmp/{name}")
            except FileNotFoundError:
                pass


class _Meter:
    """Payload chunks passed through, counted; free space is re-measured every MiB
    past what was admitted up front, and at the end of a stream whose size was not
    known (then the object, on disk by now, must have left the reserve untouched)."""

    def __init__(self, space: SpaceGuard, chunks: Iterable[bytes], size: int | None):
        self.space = space
        self.chunks = chunks
        self.written = 0
        self._size_known = size is not None
        self._next_check = (size or 0) + STREAM_CHECK_BYTES

    def __iter__(self) -> Iterator[bytes]:
        if not self.space.enabled:
            yield from self.chunks
            return
        for chunk in self.chunks:
            yield chunk
            self.written += len(chunk)
            if self.written >= self._next_check:
                self.space.check_stream(self.written)
                self._next_check = self.written + STREAM_CHECK_BYTES
        if not self._size_known:
            self.space.check_stream(self.written)


def _filez_header(header: FileHeader, size: int) -> bytes:
    return length_prefixed(header.serialize_zlib(size))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
