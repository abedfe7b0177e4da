"""An OSTree repository: layout, config, reading objects and refs.

Writing goes through a Transaction (transaction.py); everything here only reads,
except creating a repository and editing its config.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, TypeVar, overload

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError, SysrootError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.keyfile import KeyFile
from sysroot.formats.objects import (
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    is_checksum,
)
from sysroot.store.freespace import FreeSpacePolicy
from sysroot.store.lock import RepoLock
from sysroot.store.modes import RepoMode
from sysroot.store.transaction import Transaction
from sysroot.util import fsutil

REPO_DIRS = (
    "tmp",
    "extensions",
    "state",
    "refs",
    "refs/heads",
    "refs/mirrors",
    "refs/remotes",
    "objects",
)
_REF_FRAGMENT = r"[\w\d][-._\w\d]*"
_REF_RE = re.compile(rf"^{_REF_FRAGMENT}(/{_REF_FRAGMENT})*$", re.ASCII)
_REMOTE_RE = re.compile(rf"^{_REF_FRAGMENT}$", re.ASCII)
_OSTREEMETA = "user.ostreemeta"
_CHUNK = 1 << 20


def validate_ref_name(ref: str) -> None:
    if not _REF_RE.match(ref):
        raise SysrootError(f"Invalid ref name {ref}")


def parse_refspec(refspec: str) -> tuple[str | None, str]:
    """'remote:ref' -> (remote, ref); 'ref' -> (None, ref)."""
    name, sep, ref = refspec.partition(":")
    remote = name if sep else None
    if not sep:
        ref = refspec
    if (remote is not None and not _REMOTE_RE.match(remote)) or not _REF_RE.match(ref):
        raise SysrootError(f"Invalid refspec {refspec}")  # ostree's wording
    return remote, ref


_T = TypeVar("_T")


@dataclass(frozen=True)
class ContentInfo:
    """A content object's metadata and, for regular files, its uncompressed size."""

    header: FileHeader
    size: int


def default_repo_path() -> str:
    """The repository of a command given no --repo, chosen as libostree's default
    repository is: the current directory when it is a repository, else $OSTREE_REPO,
    else the system's /ostree/repo."""
    if os.path.isdir("objects") and os.path.isfile("config"):
        return os.getcwd()
    path = os.environ.get("OSTREE_REPO")
    if path:
        return path
    if os.path.isdir("/ostree/repo/objects"):
        return "/ostree/repo"
    raise SysrootError("Command requires a --repo argument", hint="or set $OSTREE_REPO")


class Repo:
    """An open repository. Use Repo.open() or Repo.create()."""

    def __init__(self, path: str, dfd: int, config: KeyFile):
        self.path = path
        self.dfd = dfd
        self.config = config
        try:
            self.mode = RepoMode.parse(config.get("core", "mode", "bare") or "bare")
            # Like ostree, an invalid min-free-space-* value fails at open, so no
            # command runs with a guard other than the one configured.
            self.free_space = FreeSpacePolicy.from_config(config)
        except FormatError as e:  # say which repository
            raise FormatError(f"{os.path.join(path, 'config')}: {e}") from None
        self._tmp_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"Repo({self.path!r}, mode={self.mode.value})"

    # ------------------------------------------------------------------ open/create
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Repo:
        if path is None:
            path = default_repo_path()
        path = os.fspath(path)
        try:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"Repository {path}: no such directory") from None
        except NotADirectoryError:
            raise SysrootError(f"Repository {path}: not a directory") from None
        try:
            if not os.path.isdir(os.path.join(path, "objects")):
                raise SysrootError(
                    f"Repository {path}: not an OSTree repository (no objects/ directory)"
                )
            try:
                with open(os.path.join(path, "config"), encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                raise SysrootError(f"Repository {path}: config file is missing") from None
            except UnicodeDecodeError:
                raise FormatError(f"{path}/config: not valid UTF-8") from None
            config = KeyFile.parse(text, source=f"{path}/config")
            version = config.get("core", "repo_version")
            if version is None:
                raise FormatError(f"{path}/config: no repo_version in [core]")
            if version.strip() != "1":
                raise FormatError(f"{path}/config: invalid repo_version '{version}', expected 1")
            if config.get_bool("core", "archive", False):
                raise FormatError(
                    f"{path}/config: this version no longer supports "
                    "core.archive=true; use mode=archive-z2"
                )
            repo = cls(path, dfd, config)
        except BaseException:
            os.close(dfd)
            raise
        return repo

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], mode: RepoMode, collection_id: str | None = None
    ) -> Repo:
        """Create (or, like ostree, re-open) a repository at path."""
        path = os.fspath(path)
        os.makedirs(path, mode=0o775, exist_ok=True)
        if os.path.isdir(os.path.join(path, "objects")):
            existing = cls.open(path)
            if existing.mode is not mode:
                existing.close()
                raise SysrootError(
                    f"Repository {path} exists with mode {existing.mode.value}, not {mode.value}"
                )
            return existing
        text = f"[core]\nrepo_version=1\nmode={mode.config_string}\n"
        if collection_id:
            text += f"collection-id={collection_id}\n"
        fsutil.atomic_write(os.path.join(path, "config"), text.encode(), mode=0o644)
        # objects/ last: its existence is what marks a repository as created
        for d in REPO_DIRS:
            os.makedirs(os.path.join(path, d), mode=0o775, exist_ok=True)
        fsutil.fsync_dir(path)
        return cls.open(path)

    def close(self) -> None:
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ config
    @property
    def fsync_enabled(self) -> bool:
        return self.config.get_bool("core", "fsync", True)

    @property
    def disable_xattrs(self) -> bool:
        return self.config.get_bool("core", "disable-xattrs", False)

    @property
    def zlib_level(self) -> int:
        return min(9, max(1, self.config.get_int("archive", "zlib-level", 6)))

    def lock(self, *, exclusive: bool) -> RepoLock:
        return RepoLock(
            self.dfd,
            exclusive=exclusive,
            timeout=self.config.get_int("core", "lock-timeout-secs", 300),
            enabled=self.config.get_bool("core", "locking", True),
        )

    def write_config(self) -> None:
        fsutil.atomic_write(
            os.path.join(self.path, "config"),
            self.config.to_text().encode(),
            fsync=self.fsync_enabled,
        )

    # ------------------------------------------------------------------ objects
    def object_relpath(self, checksum: str, objtype: ObjectType) -> str:
        ext = objtype.extension(self.mode.is_archive)
        return f"objects/{checksum[:2]}/{checksum[2:]}.{ext}"

    def object_path(self, checksum: str, objtype: ObjectType) -> str:
        return os.path.join(self.path, self.object_relpath(checksum, objtype))

    def has_object(self, objtype: ObjectType, checksum: str) -> bool:
        try:
            os.lstat(self.object_relpath(checksum, objtype), dir_fd=self.dfd)
            return True
        except FileNotFoundError:
            return False

    def list_objects(self) -> Iterator[tuple[str, ObjectType]]:
        """Every loose object, as (checksum, type)."""
        objdir = os.path.join(self.path, "objects")
        for prefix in sorted(os.listdir(objdir)):
            if len(prefix) != 2:
                continue
            try:
                names = sorted(os.listdir(os.path.join(objdir, prefix)))
            except NotADirectoryError:
                continue
            for name in names:
                base, dot, ext = name.partition(".")
                objtype = ObjectType.from_extension(ext)
                if not dot or objtype is None or len(base) != 62:
                    continue
                if objtype is ObjectType.FILE and ext != self.mode.content_extension:
                    continue
                checksum = prefix + base
                if is_checksum(checksum):
                    yield checksum, objtype

    def read_metadata(self, objtype: ObjectType, checksum: str) -> bytes:
        """The raw bytes of a metadata object; NotFoundError if absent."""
        if not is_checksum(checksum):
            raise SysrootError(f"Invalid checksum '{checksum}'")
        try:
            fd = os.open(
                self.object_relpath(checksum, objtype),
                os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                dir_fd=self.dfd,
            )
        except FileNotFoundError:
            raise NotFoundError(f"No such metadata object {checksum}.{objtype.type_name}") from None
        except OSError as e:
            raise CorruptObjectError(checksum, objtype.type_name, e.strerror or str(e)) from None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def _parse_metadata(
        self, objtype: ObjectType, checksum: str, parser: Callable[[bytes], _T]
    ) -> _T:
        data = self.read_metadata(objtype, checksum)
        # a damaged object must not be read as if it were the one it is named after
        actual = hashlib.sha256(data).hexdigest()
        if actual != checksum:
            raise CorruptObjectError(checksum, objtype.type_name, f"content has checksum {actual}")
        try:
            return parser(data)
        except FormatError as e:
            raise CorruptObjectError(checksum, objtype.type_name, str(e)) from None

    def load_commit(self, checksum: str) -> Commit:
        return self._parse_metadata(ObjectType.COMMIT, checksum, Commit.parse)

    def load_dirtree(self, checksum: str) -> DirTree:
        return self._parse_metadata(ObjectType.DIR_TREE, checksum, DirTree.parse)

    def load_dirmeta(self, checksum: str) -> DirMeta:
        return self._parse_metadata(ObjectType.DIR_META, checksum, DirMeta.parse)

    def load_commitmeta(self, checksum: str) -> dict[str, Variant] | None:
        """Detached commit metadata (signatures), or None."""
        try:
            data = self.read_metadata(ObjectType.COMMIT_META, checksum)
        except NotFoundError:
            return None
        try:
            meta: dict[str, Variant] = gvariant.decode("a{sv}", data)
        except FormatError as e:
            raise CorruptObjectError(checksum, "commitmeta", str(e)) from None
        return meta

    def is_partial(self, checksum: str) -> bool:
        try:
            os.lstat(f"state/{checksum}.commitpartial", dir_fd=self.dfd)
            return True
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ content
    def load_file(self, checksum: str) -> ContentInfo:
        """Metadata of a content object, read the way the repo's mode stores it."""
        relpath = self.object_relpath(checksum, ObjectType.FILE)
        try:
            if self.mode is RepoMode.ARCHIVE:
                return self._load_filez(checksum, relpath)
            st = os.lstat(relpath, dir_fd=self.dfd)
        except FileNotFoundError:
            raise NotFoundError(f"No such content object {checksum}") from None
        path = os.path.join(self.path, relpath)
        try:
            if self.mode is RepoMode.BARE_USER:
                return self._load_bare_user(checksum, path, st)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                mode = st.st_mode
                size = 0
            elif stat.S_ISREG(st.st_mode):
                target = ""
                mode = st.st_mode
                size = st.st_size
            else:
                raise CorruptObjectError(checksum, "file", "not a regular file or symlink")
            if self.mode is RepoMode.BARE_USER_ONLY:
                return ContentInfo(FileHeader(0, 0, mode, target, ()), size)
            xattrs = tuple(fsutil.read_xattrs(path))
            return ContentInfo(FileHeader(st.st_uid, st.st_gid, mode, target, xattrs), size)
        except OSError as e:
            raise CorruptObjectError(checksum, "file", e.strerror or str(e)) from None

    def _load_bare_user(self, checksum: str, path: str, st: os.stat_result) -> ContentInfo:
        if not stat.S_ISREG(st.st_mode):
            raise CorruptObjectError(checksum, "file", "bare-user object is not a regular file")
        try:
            meta = os.getxattr(path, _OSTREEMETA, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENODATA:
                raise CorruptObjectError(checksum, "file", f"missing {_OSTREEMETA} xattr") from None
            raise
        try:
            header = FileHeader.parse_filemeta(meta)
        except FormatError as e:
            raise CorruptObjectError(checksum, "file", f"bad {_OSTREEMETA}: {e}") from None
        if header.is_symlink:
            with open(path, "rb") as f:
                raw = f.read(4097)
            target = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            return ContentInfo(
                FileHeader(header.uid, header.gid, header.mode, target, header.xattrs), 0
            )
        return ContentInfo(header, st.st_size)

    def _read_filez_header(self, checksum: str, f: BinaryIO) -> tuple[FileHeader, int, int]:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptObjectError(checksum, "file", "truncated archive header")
        length = int.from_bytes(head[:4], "big")
        if length == 0 or length > 1 << 20:
            raise CorruptObjectError(checksum, "file", f"invalid header length {length}")
        hdr = f.read(length)
        if len(hdr) != length:
            raise CorruptObjectError(checksum, "file", "truncated archive header")
        try:
            header, size = FileHeader.parse_zlib(hdr)
        except FormatError as e:
            raise CorruptObjectError(checksum, "file", str(e)) from None
        return header, size, 8 + length

    def _load_filez(self, checksum: str, relpath: str) -> ContentInfo:
        fd = os.open(relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self.dfd)
        with os.fdopen(fd, "rb") as f:
            header, size, _ = self._read_filez_header(checksum, f)
        return ContentInfo(header, 0 if header.is_symlink else size)

    def iter_payload(self, checksum: str) -> Iterator[bytes]:
        """The uncompressed bytes of a regular-file content object, in chunks."""
        relpath = self.object_relpath(checksum, ObjectType.FILE)
        try:
            fd = os.open(relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self.dfd)
        except FileNotFoundError:
            raise NotFoundError(f"No such content object {checksum}") from None
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symlink object has no payload
                return
            raise
        with os.fdopen(fd, "rb") as f:
            if self.mode is not RepoMode.ARCHIVE:
                while chunk := f.read(_CHUNK):
                    yield chunk
                return
            header, size, _ = self._read_filez_header(checksum, f)
            if header.is_symlink:
                return
            d = zlib.decompressobj(-15)
            total = 0
            try:
                while chunk := f.read(_CHUNK):
                    out = d.decompress(chunk)
                    total += len(out)
                    yield out
                out = d.flush()
            except zlib.error as e:
                raise CorruptObjectError(checksum, "file", f"bad compressed data: {e}") from None
            total += len(out)
            if out:
                yield out
            if not d.eof or total != size:
                raise CorruptObjectError(
                    checksum, "file", f"compressed payload gives {total} bytes, header says {size}"
                )

    def read_payload(self, checksum: str) -> bytes:
        return b"".join(self.iter_payload(checksum))

    # ------------------------------------------------------------------ refs
    def _read_ref_file(self, relpath: str, name: str) -> str | None:
        try:
            with open(os.path.join(self.path, relpath), encoding="ascii", errors="replace") as f:
                text = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            return None
        value = text.rstrip()  # like g_strchomp: leading blanks are an error
        if not is_checksum(value):
            shown = value[:64] + ("…" if len(value) > 64 else "")
            raise FormatError(
                f"Invalid checksum '{shown}' in ref '{name}' ({os.path.join(self.path, relpath)})"
            )
        return value

    def read_ref(self, refspec: str) -> str | None:
        """The checksum a ref points at, or None. Accepts 'remote:ref'."""
        remote, ref = parse_refspec(refspec)
        if remote is not None:
            return self._read_ref_file(f"refs/remotes/{remote}/{ref}", refspec)
        for base in ("refs/heads", "refs/remotes"):
            value = self._read_ref_file(f"{base}/{ref}", refspec)
            if value is not None:
                return value
        # then, like ostree, the ref under each remote, in directory order
        try:
            remotes = [
                e.name
                for e in os.scandir(os.path.join(self.path, "refs/remotes"))
                if e.is_dir(follow_symlinks=False)
            ]
        except FileNotFoundError:
            remotes = []
        for r in remotes:
            value = self._read_ref_file(f"refs/remotes/{r}/{ref}", refspec)
            if value is not None:
                return value
        return None

    def list_refs(
        self, prefix: str | None = None, *, remote: str | None = None, include_remotes: bool = True
    ) -> dict[str, str]:
        """All refs (name -> checksum) as `ostree refs` names them, sorted."""
        out: dict[str, str] = {}
        if remote is not None:
            self._walk_refs(f"refs/remotes/{remote}", f"{remote}:", out)
        else:
            self._walk_refs("refs/heads", "", out)
            if include_remotes:
                base = os.path.join(self.path, "refs/remotes")
                for r in sorted(os.listdir(base)) if os.path.isdir(base) else ():
                    self._walk_refs(f"refs/remotes/{r}", f"{r}:", out)
        if prefix:
            out = {
                k: v
                for k, v in out.items()
                if k == prefix
                or k.startswith(prefix.rstrip("/") + "/")
                or k.startswith(prefix)
                and prefix.endswith(":")
            }
        return dict(sorted(out.items()))

    def _walk_refs(self, relbase: str, name_prefix: str, out: dict[str, str]) -> None:
        base = os.path.join(self.path, relbase)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, base)
            for fn in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                if fn.startswith("."):
                    continue  # like ostree: e.g. the temp file of an interrupted ref write
                name = fn if rel == "." else f"{rel}/{fn}"
                value = self._read_ref_file(f"{relbase}/{name}", name_prefix + name)
                if value is not None:
                    out[name_prefix + name] = value

    @overload
    def resolve_rev(self, rev: str, *, allow_noent: Literal[False] = False) -> str: ...
    @overload
    def resolve_rev(self, rev: str, *, allow_noent: bool) -> str | None: ...
    def resolve_rev(self, rev: str, *, allow_noent: bool = False) -> str | None:
        """A ref, a full or abbreviated commit checksum, optionally followed by ^ (parent)."""
        parents = 0
        while rev.endswith("^"):
            rev, parents = rev[:-1], parents + 1
        checksum = self._resolve_base(rev, allow_noent=allow_noent)
        if checksum is None:
            return None
        for _ in range(parents):
            commit = self.load_commit(checksum)
            if commit.parent is None:
                raise NotFoundError(f"Commit {checksum} has no parent")
            checksum = commit.parent
        return checksum

    def _resolve_base(self, rev: str, *, allow_noent: bool) -> str | None:
        if is_checksum(rev):
            return rev
        # like ostree, any run of hex digits (even empty) may abbreviate a commit
        if re.fullmatch(r"[0-9a-f]{0,63}", rev):
            matches = self._commits_with_prefix(rev)
            if len(matches) > 1:
                raise SysrootError(f"Refspec {rev} not unique")
            if matches:
                return matches[0]
        if not rev:
            raise SysrootError("Invalid empty ref name")
        try:
            value = self.read_ref(rev)
        except SysrootError:
            if allow_noent:
                return None
            raise
        if value is None:
            if allow_noent:
                return None
            raise NotFoundError(f"Refspec '{rev}' not found")
        return value

    def _commits_with_prefix(self, prefix: str) -> list[str]:
        objdir = os.path.join(self.path, "objects")
        if len(prefix) >= 2:
            subdirs = [prefix[:2]]
        else:
            subdirs = [d for d in os.listdir(objdir) if len(d) == 2 and d.startswith(prefix)]
        rest = prefix[2:]
        found = []
        for sub in subdirs:
            try:
                names = os.listdir(os.path.join(objdir, sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
            found += [
                sub + n[:62]
                for n in names
                if n.endswith(".commit") and n.startswith(rest) and len(n) == 69
            ]
        return sorted(found)

    def write_ref(self, refspec: str, checksum: str | None) -> None:
        """Point a ref at checksum (None deletes it), atomically."""
        remote, ref = parse_refspec(refspec)
        if is_checksum(ref):
            raise SysrootError(f"Invalid ref name {ref}: looks like a checksum")
        base = f"refs/remotes/{remote}" if remote else "refs/heads"
        relpath = f"{base}/{ref}"
        path = os.path.join(self.path, relpath)
        if checksum is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise NotFoundError(f"Ref '{refspec}' not found") from None
            self._prune_empty_ref_dirs(os.path.dirname(path), os.path.join(self.path, base))
        else:
            os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
            if os.path.islink(path):
                os.unlink(path)
            elif os.path.isdir(path):
                os.rmdir(path)  # like ostree: an empty directory left by deleted refs
            fsutil.atomic_write(
                path, (checksum + "\n").encode(), mode=0o644, fsync=self.fsync_enabled
            )
        os.utime(self.dfd)  # like libostree: a ref change bumps the repo mtime

    @staticmethod
    def _prune_empty_ref_dirs(d: str, stop: str) -> None:
        while os.path.normpath(d) != os.path.normpath(stop):
            try:
                os.rmdir(d)
            except OSError:
                return
            d = os.path.dirname(d)

    # ------------------------------------------------------------------ writing
    def transaction(self) -> Transaction:
        return Transaction(self)
