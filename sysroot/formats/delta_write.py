"""Writing ostree's static delta bytes: part payloads and files, superblocks, signed
superblocks (shared/docs/static-deltas.md §2–§3; the reader is formats/static_delta.py).

Pure computation: the generator (store/delta_generate.py) decides what goes where.
"""

from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass, field

from sysroot.formats import gvariant, leb128
from sysroot.formats import static_delta as sd
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import ObjectType, bswap32, bswap64

ENDIAN_LITTLE = 0x6C  # 'l'
ENDIAN_BIG = 0x42  # 'B'
# the commit member written as `ay` (see encode_superblock), as the reader reads it
_SUPERBLOCK_WRITE_TYPE = "(a{sv}tayayayaya(uayttay)a(yaytt))"
XZ_PRESET = 8  # liblzma's easy encoder preset ostree uses; with CRC64 the same bytes


def _varints(*values: int) -> bytes:
    return b"".join(leb128.encode(v) for v in values)


@dataclass
class PartBuilder:
    """One part being filled: its mode and xattr tables (deduplicated, first-use
    order), payload blob, opcode stream, and the objects it makes in op order."""

    modes: list[tuple[int, int, int]] = field(default_factory=list)
    xattrs: list[tuple[tuple[bytes, bytes], ...]] = field(default_factory=list)
    blob: bytearray = field(default_factory=bytearray)
    ops: bytearray = field(default_factory=bytearray)
    objects: list[tuple[ObjectType, str]] = field(default_factory=list)
    usize: int = 0
    _mode_idx: dict[tuple[int, int, int], int] = field(default_factory=dict)
    _xattr_idx: dict[tuple[tuple[bytes, bytes], ...], int] = field(default_factory=dict)

    def mode_index(self, uid: int, gid: int, mode: int) -> int:
        key = (uid, gid, mode)
        if key not in self._mode_idx:
            self._mode_idx[key] = len(self.modes)
            self.modes.append(key)
        return self._mode_idx[key]

    def xattr_index(self, xattrs: tuple[tuple[bytes, bytes], ...]) -> int:
        key = tuple(xattrs)
        if key not in self._xattr_idx:
            self._xattr_idx[key] = len(self.xattrs)
            self.xattrs.append(key)
        return self._xattr_idx[key]

    def add_blob(self, data: bytes | memoryview) -> int:
        """Append data to the blob; its offset."""
        off = len(self.blob)
        self.blob += data
        return off

    def op(self, code: sd.OpCode, *args: int) -> None:
        self.ops.append(code)
        self.ops += _varints(*args)

    def payload(self) -> bytes:
        """The `(a(uuu)aa(ayay)ayay)` bytes; mode integers big-endian as in ostree."""
        modes = [(bswap32(u), bswap32(g), bswap32(m)) for u, g, m in self.modes]
        xattrs = [list(x) for x in self.xattrs]
        return gvariant.encode(sd.PART_PAYLOAD_TYPE, (modes, xattrs, self.blob, self.ops))


def part_file(payload: bytes) -> bytes:
    """The part file: compression byte 'x', then the xz stream (preset 8, CRC64)."""
    body = lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)
    return bytes([sd.Compression.XZ]) + body


@dataclass(frozen=True)
class PartInfo:
    checksum: bytes  # sha256 of the part file
    size: int
    usize: int
    objects: tuple[tuple[ObjectType, str], ...]

    @classmethod
    def of(cls, data: bytes, usize: int, objects: list[tuple[ObjectType, str]]) -> PartInfo:
        return cls(hashlib.sha256(data).digest(), len(data), usize, tuple(objects))


@dataclass(frozen=True)
class FallbackInfo:
    checksum: str
    size: int  # the object's storage size in the source repository
    usize: int  # its content length


def encode_superblock(
    *,
    metadata: list[tuple[str, Variant]],
    timestamp: int,
    from_: str | None,
    to: str,
    commit_bytes: bytes,
    parts: list[PartInfo],
    fallbacks: list[FallbackInfo],
    big_endian: bool,
) -> bytes:
    """The unsigned superblock. metadata in insertion order (ostree uses a builder,
    not a dict); part and fallback integers in the chosen byte order, the timestamp
    always big-endian. The commit is embedded as its exact bytes: it starts 8-aligned
    (FROM is 0 or 32 bytes), so writing it as `ay` frames it the same."""

    def u32(v: int) -> int:
        return bswap32(v) if big_endian else v

    def u64(v: int) -> int:
        return bswap64(v) if big_endian else v

    headers = [
        (
            u32(sd.PART_VERSION),
            p.checksum,
            u64(p.size),
            u64(p.usize),
            b"".join(bytes([t]) + bytes.fromhex(c) for t, c in p.objects),
        )
        for p in parts
    ]
    falls = [
        (int(ObjectType.FILE), bytes.fromhex(f.checksum), u64(f.size), u64(f.usize))
        for f in fallbacks
    ]
    value = (
        gvariant.MultiDict(metadata),
        bswap64(timestamp),
        bytes.fromhex(from_) if from_ else b"",
        bytes.fromhex(to),
        commit_bytes,
        b"",
        headers,
        falls,
    )
    return gvariant.encode(_SUPERBLOCK_WRITE_TYPE, value)


def wrap_signed(superblock: bytes, sign_type: str, signatures: list[bytes]) -> bytes:
    """`(taya{sv})`: magic, the unsigned superblock, `ostree.sign.<type>` -> aay."""
    magic = int.from_bytes(sd.SIGNED_MAGIC, "big")
    sigs = {f"ostree.sign.{sign_type}": Variant("aay", signatures)}
    return gvariant.encode(sd.SIGNED_TYPE, (bswap64(magic), superblock, sigs))


def endianness_entry(big_endian: bool) -> tuple[str, Variant]:
    return (sd.ENDIANNESS_KEY, Variant("y", ENDIAN_BIG if big_endian else ENDIAN_LITTLE))
