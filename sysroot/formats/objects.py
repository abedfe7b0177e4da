"""OSTree object records and their exact serialized forms and checksums.

Metadata objects (commit, dirtree, dirmeta) are named by the SHA-256 of their
GVariant bytes. Content objects are named by the SHA-256 of their "content stream":
a length-prefixed file header followed by the file bytes. OSTree stores its own
integer fields big-endian inside little-endian GVariants; the swap happens here.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import re
import stat
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sysroot.errors import FormatError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant

DIRMETA_TYPE = "(uuua(ayay))"
DIRTREE_TYPE = "(a(say)a(sayay))"
COMMIT_TYPE = "(a{sv}aya(say)sstayay)"
FILE_HEADER_TYPE = "(uuuusa(ayay))"
ZLIB_FILE_HEADER_TYPE = "(tuuuusa(ayay))"
FILEMETA_TYPE = DIRMETA_TYPE  # bare-user's user.ostreemeta
METADATA_DICT_TYPE = "a{sv}"

Xattrs = tuple[tuple[bytes, bytes], ...]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ObjectType(enum.IntEnum):
    FILE = 1
    DIR_TREE = 2
    DIR_META = 3
    COMMIT = 4
    TOMBSTONE_COMMIT = 5
    COMMIT_META = 6
    PAYLOAD_LINK = 7

    @property
    def is_metadata(self) -> bool:
        return 2 <= self.value <= 6

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self]

    def extension(self, archive: bool) -> str:
        if self is ObjectType.FILE:
            return "filez" if archive else "file"
        return self.type_name

    @classmethod
    def from_extension(cls, ext: str) -> ObjectType | None:
        if ext == "filez":
            return cls.FILE
        return _BY_NAME.get(ext)

    @property
    def gvariant_type(self) -> str | None:
        return _GVARIANT_TYPES.get(self)


_TYPE_NAMES = {
    ObjectType.FILE: "file",
    ObjectType.DIR_TREE: "dirtree",
    ObjectType.DIR_META: "dirmeta",
    ObjectType.COMMIT: "commit",
    ObjectType.TOMBSTONE_COMMIT: "tombstone-commit",
    ObjectType.COMMIT_META: "commitmeta",
    ObjectType.PAYLOAD_LINK: "payload-link",
}
_BY_NAME = {v: k for k, v in _TYPE_NAMES.items()}
_GVARIANT_TYPES = {
    ObjectType.DIR_TREE: DIRTREE_TYPE,
    ObjectType.DIR_META: DIRMETA_TYPE,
    ObjectType.COMMIT: COMMIT_TYPE,
    ObjectType.TOMBSTONE_COMMIT: METADATA_DICT_TYPE,
    ObjectType.COMMIT_META: METADATA_DICT_TYPE,
}


def bswap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "little"), "big")


def bswap64(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")


def is_checksum(text: str) -> bool:
    return bool(_HEX64.match(text))


def checksum_bytes(hexsum: str) -> bytes:
    if not is_checksum(hexsum):
        raise FormatError(f"Invalid checksum '{hexsum}'")
    return bytes.fromhex(hexsum)


def checksum_hex(raw: bytes) -> str:
    if len(raw) != 32:
        raise FormatError(f"Invalid checksum of {len(raw)} bytes, expected 32")
    return raw.hex()


def mbase64_checksum_hex(text: str) -> str | None:
    """ostree's "modified base64" checksum (43 chars, '_' for '/'; static delta names)
    as hex, or None if text is not one."""
    if len(text) != 43:
        return None
    try:
        raw = base64.b64decode(text.replace("_", "/") + "=", validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_name(name: str) -> None:
    """A dirtree entry name must be a single, real path component."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FormatError(f"Invalid filename {name!r} in dirtree")


def _xattr_list(xattrs: Xattrs) -> list[tuple[bytes, bytes]]:
    return [(bytes(k), bytes(v)) for k, v in xattrs]


def _parse_xattrs(raw: list[tuple[bytes, bytes]]) -> Xattrs:
    return tuple((bytes(k), bytes(v)) for k, v in raw)


# ---------------------------------------------------------------- dirmeta


@dataclass(frozen=True)
class DirMeta:
    uid: int
    gid: int
    mode: int  # full st_mode including S_IFDIR
    xattrs: Xattrs = ()

    def serialize(self) -> bytes:
        return gvariant.encode(
            DIRMETA_TYPE,
            (bswap32(self.uid), bswap32(self.gid), bswap32(self.mode), _xattr_list(self.xattrs)),
        )

    @classmethod
    def parse(cls, data: bytes) -> DirMeta:
        uid, gid, mode, xattrs = gvariant.decode(DIRMETA_TYPE, data)
        return cls(bswap32(uid), bswap32(gid), bswap32(mode), _parse_xattrs(xattrs))

    def validate(self) -> None:
        if not stat.S_ISDIR(self.mode):
            raise FormatError(f"Invalid directory metadata mode {self.mode:o}: not a directory")
        if self.mode & ~(stat.S_IFDIR | 0o7777):
            raise FormatError(f"Invalid directory metadata mode {self.mode:o}")
        names = [k for k, _ in self.xattrs]
        if any(not k.rstrip(b"\0") for k in names) or names != sorted(set(names)):
            raise FormatError("Invalid xattrs in directory metadata")

    @property
    def checksum(self) -> str:
        return sha256_hex(self.serialize())


# ---------------------------------------------------------------- dirtree


@dataclass(frozen=True)
class DirTree:
    """files: (name, content checksum); dirs: (name, dirtree checksum, dirmeta checksum)."""

    files: tuple[tuple[str, str], ...] = ()
    dirs: tuple[tuple[str, str, str], ...] = ()

    def serialize(self) -> bytes:
        """The `(a(say)a(sayay))` bytes, entries sorted by their UTF-8 names.

        Hand-framed (commit writes one per directory; the generic encoder was a tenth
        of its time); the same bytes as `gvariant.encode(DIRTREE_TYPE, ...)`, which a
        test checks on random trees."""
        files = sorted(((n.encode(), c) for n, c in self.files), key=_first)
        dirs = sorted(((n.encode(), t, m) for n, t, m in self.dirs), key=_first)
        fbody = bytearray()
        fends = []
        for name, csum in files:
            _check_name_bytes(name)
            _framed_entry(fbody, name, bytes.fromhex(csum), b"")
            fends.append(len(fbody))
        gvariant.append_offsets(fbody, fends)
        dbody = bytearray()
        dends = []
        for name, tree, meta in dirs:
            _check_name_bytes(name)
            _framed_entry(dbody, name, bytes.fromhex(tree), bytes.fromhex(meta))
            dends.append(len(dbody))
        gvariant.append_offsets(dbody, dends)
        out = fbody + dbody
        gvariant.append_offsets(out, [len(fbody)])
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> DirTree:
        files, dirs = gvariant.decode(DIRTREE_TYPE, data)
        return cls(
            tuple((n, checksum_hex(c)) for n, c in files),
            tuple((n, checksum_hex(t), checksum_hex(m)) for n, t, m in dirs),
        )

    def validate(self) -> None:
        """Reject names that could escape a checkout, duplicates and misordering."""
        for names in ([n for n, _ in self.files], [n for n, _, _ in self.dirs]):
            for n in names:
                validate_name(n)
            keys = [n.encode() for n in names]
            if keys != sorted(set(keys)):
                raise FormatError("dirtree entries are not sorted or contain duplicates")
        if {n for n, _ in self.files} & {n for n, _, _ in self.dirs}:
            raise FormatError("dirtree has a name that is both a file and a directory")

    @property
    def checksum(self) -> str:
        return sha256_hex(self.serialize())


def _first(entry: tuple[bytes, str] | tuple[bytes, str, str]) -> bytes:
    return entry[0]


def _check_name_bytes(name: bytes) -> None:
    if b"\0" in name:  # as the generic encoder refuses a GVariant string with a NUL
        raise FormatError("string contains a NUL byte")


def _framed_entry(buf: bytearray, name: bytes, first: bytes, second: bytes) -> None:
    """Append one `(say)` (second empty) or `(sayay)` struct: the name's string, the
    checksum arrays, and the framing offsets of the non-last members, last first."""
    start = len(buf)
    buf += name
    buf += b"\0"
    name_end = len(buf) - start
    buf += first
    if second:
        first_end = len(buf) - start
        buf += second
        body = len(buf) - start
        if body + 2 <= 0xFF:  # the usual case: one-byte offsets
            buf.append(first_end)
            buf.append(name_end)
            return
        tail = bytearray(buf[start:])
        gvariant.append_offsets(tail, [first_end, name_end])
    else:
        body = len(buf) - start
        if body + 1 <= 0xFF:
            buf.append(name_end)
            return
        tail = bytearray(buf[start:])
        gvariant.append_offsets(tail, [name_end])
    buf[start:] = tail


# ---------------------------------------------------------------- commit


@dataclass(frozen=True)
class Commit:
    metadata: dict[str, Variant]
    parent: str | None
    subject: str
    body: str
    timestamp: int
    root_tree: str
    root_meta: str
    related: tuple[tuple[str, bytes], ...] = field(default=())

    def serialize(self) -> bytes:
        return gvariant.encode(
            COMMIT_TYPE,
            (
                self.metadata,
                bytes.fromhex(self.parent) if self.parent else b"",
                list(self.related),
                self.subject,
                self.body,
                bswap64(self.timestamp),
                bytes.fromhex(self.root_tree),
                bytes.fromhex(self.root_meta),
            ),
        )

    @classmethod
    def parse(cls, data: bytes) -> Commit:
        meta, parent, related, subject, body, ts, tree, dmeta = gvariant.decode(COMMIT_TYPE, data)
        if parent and len(parent) != 32:
            raise FormatError(f"commit parent checksum has {len(parent)} bytes")
        return cls(
            metadata=meta,
            parent=parent.hex() if parent else None,
            subject=subject,
            body=body,
            timestamp=bswap64(ts),
            root_tree=checksum_hex(tree),
            root_meta=checksum_hex(dmeta),
            related=tuple((n, bytes(c)) for n, c in related),
        )

    @property
    def checksum(self) -> str:
        return sha256_hex(self.serialize())

    @property
    def content_checksum(self) -> str:
        """OSTree's ContentChecksum: the tree without commit metadata."""
        return sha256_hex(bytes.fromhex(self.root_tree) + bytes.fromhex(self.root_meta))

    @property
    def version(self) -> str | None:
        v = self.metadata.get("version")
        return v.value if v is not None and v.signature == "s" else None

    def metadata_value(self, key: str) -> Any:
        v = self.metadata.get(key)
        return None if v is None else v.value


# ---------------------------------------------------------------- content objects


@dataclass(frozen=True)
class FileHeader:
    """Metadata of a content object (regular file or symlink)."""

    uid: int
    gid: int
    mode: int  # full st_mode
    symlink_target: str = ""
    xattrs: Xattrs = ()
    rdev: int = 0

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    def _values(self) -> tuple[int, int, int, int, str, list[tuple[bytes, bytes]]]:
        return (
            bswap32(self.uid),
            bswap32(self.gid),
            bswap32(self.mode),
            bswap32(self.rdev),
            self.symlink_target,
            _xattr_list(self.xattrs),
        )

    def serialize(self) -> bytes:
        return _cached(_serialize_header, self)

    def serialize_zlib(self, size: int) -> bytes:
        return gvariant.encode(ZLIB_FILE_HEADER_TYPE, (bswap64(size), *self._values()))

    def content_stream_prefix(self) -> bytes:
        """The bytes hashed (and streamed) before the payload."""
        return _cached(_content_stream_prefix, self)

    @classmethod
    def parse(cls, data: bytes) -> FileHeader:
        uid, gid, mode, rdev, target, xattrs = gvariant.decode(FILE_HEADER_TYPE, data)
        return cls(
            bswap32(uid), bswap32(gid), bswap32(mode), target, _parse_xattrs(xattrs), bswap32(rdev)
        )

    @classmethod
    def parse_zlib(cls, data: bytes) -> tuple[FileHeader, int]:
        size, uid, gid, mode, rdev, target, xattrs = gvariant.decode(ZLIB_FILE_HEADER_TYPE, data)
        header = cls(
            bswap32(uid), bswap32(gid), bswap32(mode), target, _parse_xattrs(xattrs), bswap32(rdev)
        )
        return header, bswap64(size)

    def serialize_filemeta(self) -> bytes:
        """The value of bare-user's user.ostreemeta xattr."""
        return _cached(_serialize_filemeta, self)

    @classmethod
    def parse_filemeta(cls, data: bytes, symlink_target: str = "") -> FileHeader:
        """A header from bare-user's user.ostreemeta. A repository's objects share a
        few distinct values, so decoding is cached by the bytes (headers are frozen)."""
        header = _parse_filemeta(bytes(data))
        if symlink_target:
            return cls(header.uid, header.gid, header.mode, symlink_target, header.xattrs)
        return header

    def validate(self) -> None:
        if not (self.is_regular or self.is_symlink):
            raise FormatError(
                f"Invalid file metadata mode {self.mode:o}: not a regular file or symlink"
            )
        if self.rdev != 0:
            raise FormatError("Corrupted file object; invalid nonzero rdev")
        if self.mode & ~(stat.S_IFMT(self.mode) | 0o7777):
            raise FormatError(f"Invalid file metadata mode {self.mode:o}")
        if self.is_regular and self.symlink_target:
            raise FormatError("regular file has a symlink target")
        if self.is_symlink and not self.symlink_target:
            raise FormatError("symlink has an empty target")


# A tree's files share a handful of headers (owner, mode, no xattrs): commit encodes
# each of them once rather than once per file. Bounded, since symlinks (each with its
# own target) are headers too.
@functools.lru_cache(maxsize=1024)
def _serialize_header(header: FileHeader) -> bytes:
    return gvariant.encode(FILE_HEADER_TYPE, header._values())


@functools.lru_cache(maxsize=1024)
def _content_stream_prefix(header: FileHeader) -> bytes:
    return length_prefixed(_serialize_header(header))


@functools.lru_cache(maxsize=1024)
def _serialize_filemeta(header: FileHeader) -> bytes:
    return gvariant.encode(
        FILEMETA_TYPE,
        (
            bswap32(header.uid),
            bswap32(header.gid),
            bswap32(header.mode),
            _xattr_list(header.xattrs),
        ),
    )


@functools.lru_cache(maxsize=1024)
def _parse_filemeta(data: bytes) -> FileHeader:
    uid, gid, mode, xattrs = gvariant.decode(FILEMETA_TYPE, data)
    return FileHeader(
        bswap32(uid), bswap32(gid), bswap32(mode), "", tuple(sorted(_parse_xattrs(xattrs)))
    )


def _cached(fn: Callable[[FileHeader], bytes], header: FileHeader) -> bytes:
    try:
        return fn(header)
    except TypeError:  # unhashable xattrs (a list): encode without the cache
        raw: bytes = fn.__wrapped__(header)  # type: ignore[attr-defined]
        return raw


_LEN_PREFIX = struct.Struct(">I4x")


def length_prefixed(header: bytes) -> bytes:
    """OSTree's framing: u32 big-endian length, four zero bytes, the header."""
    return _LEN_PREFIX.pack(len(header)) + header


def split_length_prefixed(data: bytes) -> tuple[bytes, int]:
    """Return (header bytes, offset of the payload) of a length-prefixed stream."""
    if len(data) < 8:
        raise FormatError("content stream shorter than its length prefix")
    (length,) = _LEN_PREFIX.unpack_from(data)
    if length == 0 or 8 + length > len(data):
        raise FormatError(f"content stream header length {length} out of range")
    return data[8 : 8 + length], 8 + length


def content_checksum(header: FileHeader, payload_chunks: Iterable[bytes]) -> str:
    """Checksum of a content object from its header and payload (iterable of bytes)."""
    h = hashlib.sha256(header.content_stream_prefix())
    for chunk in payload_chunks:
        h.update(chunk)
    return h.hexdigest()
