"""The `ostree.sizes` commit metadata: what each object of a commit weighs.

`ostree commit --generate-sizes` stores one `ay` per object of the commit: the 32-byte
raw checksum, the archived (compressed, as stored in an archive repository) size and
the unpacked size as unsigned LEB128 varints, then one byte with the object type
(added in ostree 2020.1; older commits leave it out, which means a content object).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sysroot.errors import FormatError, NotFoundError
from sysroot.formats import leb128
from sysroot.formats.objects import Commit, ObjectType

SIZES_KEY = "ostree.sizes"
_CHECKSUM_LEN = 32


@dataclass(frozen=True)
class ObjectSize:
    """One entry of `ostree.sizes`."""

    checksum: str  # hex
    objtype: ObjectType
    archived: int  # bytes in an archive repository (a .filez is compressed)
    unpacked: int  # bytes once checked out (a symlink: its target's length)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at pos and the position after it."""
    try:
        return leb128.decode(data, pos)
    except FormatError:
        raise FormatError("Invalid object size metadata") from None


def decode_object_size(raw: bytes) -> ObjectSize:
    """One `ay` entry of `ostree.sizes`; FormatError if it is malformed."""
    if len(raw) < _CHECKSUM_LEN:
        raise FormatError("Invalid object size metadata")
    archived, pos = _varint(raw, _CHECKSUM_LEN)
    unpacked, pos = _varint(raw, pos)
    try:
        objtype = ObjectType(raw[pos]) if pos < len(raw) else ObjectType.FILE
    except ValueError:
        raise FormatError(f"Invalid object type {raw[pos]} in size metadata") from None
    return ObjectSize(raw[:_CHECKSUM_LEN].hex(), objtype, archived, unpacked)


def decode_object_sizes(entries: Iterable[bytes]) -> list[ObjectSize]:
    """Every entry of an `ostree.sizes` value (GVariant `aay`), in stored order."""
    return [decode_object_size(raw) for raw in entries]


def commit_object_sizes(commit: Commit) -> list[ObjectSize]:
    """The `ostree.sizes` of a commit; NotFoundError if it has none (or not as `aay`)."""
    v = commit.metadata.get(SIZES_KEY)
    if v is None or v.signature != "aay":
        raise NotFoundError(f"No metadata key {SIZES_KEY} in commit")
    return decode_object_sizes(v.value)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_object_size(size: ObjectSize) -> bytes:
    """One `ay` entry, with the object type byte (as ostree 2020.1 and later write it)."""
    return (
        bytes.fromhex(size.checksum)
        + _encode_varint(size.archived)
        + _encode_varint(size.unpacked)
        + bytes([size.objtype.value])
    )


def encode_object_sizes(sizes: Iterable[ObjectSize]) -> list[bytes]:
    """The `ostree.sizes` value (`aay`), sorted by checksum as ostree sorts it."""
    return [encode_object_size(s) for s in sorted(sizes, key=lambda s: s.checksum)]
