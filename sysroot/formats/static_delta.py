"""ostree's static deltas as bytes: names and paths, the superblock, part files, the
opcode stream (shared/docs/static-deltas.md has the facts, checked against 2022.7).

Everything here reads untrusted bytes: sizes are capped, counts can only be as large as
the bytes present allow, and every failure is a FormatError with one line of text.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import lzma
from dataclasses import dataclass

from sysroot.errors import FormatError
from sysroot.formats import gvariant, leb128
from sysroot.formats.objects import (
    Commit,
    ObjectType,
    bswap32,
    bswap64,
    checksum_hex,
    is_checksum,
    mbase64_checksum_hex,
)

# The commit member (a struct aligned to 8) is read as `ay`: it starts 8-aligned in any
# superblock whose FROM and TO are 0/32 bytes (checked), and its exact bytes are what
# gets stored and checksummed, so no decode-and-re-encode step can alter them.
_SUPERBLOCK_READ_TYPE = "(a{sv}tayayayaya(uayttay)a(yaytt))"
SIGNED_TYPE = "(taya{sv})"
PART_PAYLOAD_TYPE = "(a(uuu)aa(ayay)ayay)"
SIGNED_MAGIC = b"OSTSGNDT"  # 0x4F535453474E4454 stored big-endian
ENDIANNESS_KEY = "ostree.endianness"
PART_VERSION = 0

# Caps for hostile input. A superblock of an --inline delta holds whole parts, so it may
# be large; parts are 32 MB of payload by default, but one big object gets a part of its
# own, hence the generous payload cap (it bounds memory, the decoder needs ~33 MiB more).
MAX_SUPERBLOCK = 1 << 30
MAX_PART_FILE = 1 << 30
MAX_PART_PAYLOAD = 1 << 31
_XZ_MEMLIMIT = 100 << 20


class Compression(enum.IntEnum):
    NONE = 0x00
    XZ = 0x78  # 'x'


class OpCode(enum.IntEnum):
    """In the order `static-delta show` counts them."""

    OPEN_SPLICE_AND_CLOSE = 0x53  # 'S'
    OPEN = 0x6F  # 'o'
    WRITE = 0x77  # 'w'
    SET_READ_SOURCE = 0x72  # 'r'
    UNSET_READ_SOURCE = 0x52  # 'R'
    CLOSE = 0x63  # 'c'
    BSPATCH = 0x42  # 'B'


# ---------------------------------------------------------------- names and paths


def mbase64(hexsum: str) -> str:
    """ostree's modified base64 of a checksum: no '=' padding, '_' for '/'."""
    return base64.b64encode(bytes.fromhex(hexsum)).decode("ascii").rstrip("=").replace("/", "_")


@dataclass(frozen=True)
class DeltaName:
    """FROM-TO, or TO alone for a delta from scratch (from_ None)."""

    from_: str | None
    to: str

    @classmethod
    def parse(cls, name: str) -> DeltaName:
        src, dash, dst = name.partition("-")
        if not dash:
            src, dst = "", name
        for part in (src, dst) if dash else (dst,):
            if not is_checksum(part):
                raise FormatError(f"Invalid checksum '{part}' in delta name '{name}'")
        return cls(src or None, dst)

    def __str__(self) -> str:
        return f"{self.from_}-{self.to}" if self.from_ else self.to

    @property
    def relpath(self) -> str:
        """The delta directory relative to the repository, without a trailing slash."""
        if self.from_ is None:
            t = mbase64(self.to)
            return f"deltas/{t[:2]}/{t[2:]}"
        f = mbase64(self.from_)
        return f"deltas/{f[:2]}/{f[2:]}-{mbase64(self.to)}"

    @classmethod
    def from_dirnames(cls, prefix: str, rest: str) -> DeltaName | None:
        """The delta stored in deltas/PREFIX/REST, or None if those are not its names."""
        src, dash, dst = (prefix + rest).partition("-")
        if not dash:
            src, dst = "", src
        to = mbase64_checksum_hex(dst)
        frm = mbase64_checksum_hex(src) if dash else None
        if to is None or (dash and frm is None):
            return None
        return cls(frm, to)


# ---------------------------------------------------------------- superblock


@dataclass(frozen=True)
class PartHeader:
    version: int
    checksum: str  # sha256 of the part file
    size: int  # bytes of the part file
    usize: int  # advisory: sum of the sizes of the objects it makes
    objects: tuple[tuple[ObjectType, str], ...]


@dataclass(frozen=True)
class Fallback:
    objtype: ObjectType
    checksum: str
    size: int
    usize: int


@dataclass(frozen=True)
class Superblock:
    metadata: dict[str, gvariant.Variant]
    timestamp: int
    from_: str | None
    to: str
    commit_bytes: bytes
    n_parents: int  # "recursive deltas": always empty, `show` prints its count
    parts: tuple[PartHeader, ...]
    fallbacks: tuple[Fallback, ...]
    big_endian: bool | None  # the byte order of the part/fallback integers; None: invalid
    signed: bool

    @property
    def name(self) -> DeltaName:
        return DeltaName(self.from_, self.to)

    @property
    def commit(self) -> Commit:
        return Commit.parse(self.commit_bytes)

    def inline_part(self, relpath: str, index: int) -> bytes | None:
        """The bytes of part index if the superblock carries it (--inline)."""
        v = self.metadata.get(f"{relpath}/{index}")
        if v is None:
            return None
        if v.signature != "(yay)":
            raise FormatError(f"Inline part {index} has type {v.signature}, expected (yay)")
        return gvariant.encode("(yay)", v.value)

    def commitmeta(self, relpath: str) -> dict[str, gvariant.Variant] | None:
        v = self.metadata.get(f"{relpath}/commitmeta")
        if v is None or v.signature != "a{sv}":
            return None
        return dict(v.value)


def _csum(raw: bytes, what: str) -> str:
    if len(raw) != 32:
        raise FormatError(f"Invalid checksum of length {len(raw)} expected 32 in {what}")
    return checksum_hex(raw)


def _objtype(value: int, what: str) -> ObjectType:
    try:
        return ObjectType(value)
    except ValueError:
        raise FormatError(f"Invalid object type {value} in {what}") from None


def _parse_objects(raw: bytes) -> tuple[tuple[ObjectType, str], ...]:
    if len(raw) % 33:
        raise FormatError("Invalid checksum array length")
    return tuple(
        (_objtype(raw[i], "delta part objects"), checksum_hex(raw[i + 1 : i + 33]))
        for i in range(0, len(raw), 33)
    )


def unwrap_signed(data: bytes) -> tuple[bytes, dict[str, gvariant.Variant] | None]:
    """(the unsigned superblock, the signatures dict or None when data is not signed)."""
    if not data.startswith(SIGNED_MAGIC):
        return data, None
    try:
        _magic, inner, sigs = gvariant.decode(SIGNED_TYPE, data)
    except FormatError as e:
        raise FormatError(f"Invalid signed delta superblock: {e}") from None
    if not any(k.startswith("ostree.sign.") for k in sigs):
        return data, None
    return bytes(inner), dict(sigs)


def _guess_big_endian(parts: list[tuple[int, bytes, int, int, bytes]]) -> bool | None:
    """2022.7's heuristic for superblocks without the endianness key: sizes that only
    make sense byte-swapped mean the other order (we, like ostree on x86, are little)."""
    total = n_objects = 0
    for _v, _c, size, usize, objs in parts:
        if size > usize and usize and size / usize > 1.2:
            return True
        total += size
        n_objects += len(objs) // 33
    if n_objects and total / n_objects > 0xFFFFFFFF:
        return True
    return None


def parse_superblock(data: bytes) -> Superblock:
    if len(data) > MAX_SUPERBLOCK:
        raise FormatError(f"Delta superblock of {len(data)} bytes is too large")
    inner, sigs = unwrap_signed(data)
    try:
        meta, ts, frm, to, commit, parents, parts, fallbacks = gvariant.decode(
            _SUPERBLOCK_READ_TYPE, inner
        )
    except FormatError as e:
        raise FormatError(f"Invalid delta superblock: {e}") from None
    if frm and len(frm) != 32:
        raise FormatError(f"Invalid checksum of length {len(frm)} expected 32 in delta FROM")
    to_hex = _csum(to, "delta TO")
    endian = meta.get(ENDIANNESS_KEY)
    big: bool | None
    if endian is not None and endian.signature == "y" and endian.value in (0x6C, 0x42):
        big = endian.value == 0x42
    elif endian is not None:
        big = None  # "invalid": read in host order, as ostree does
    else:
        big = _guess_big_endian(parts)

    def u32(v: int) -> int:
        return bswap32(v) if big else v

    def u64(v: int) -> int:
        return bswap64(v) if big else v

    headers = tuple(
        PartHeader(u32(v), _csum(c, "delta part header"), u64(s), u64(us), _parse_objects(o))
        for v, c, s, us, o in parts
    )
    falls = tuple(
        Fallback(_objtype(t, "delta fallback"), _csum(c, "delta fallback"), u64(s), u64(us))
        for t, c, s, us in fallbacks
    )
    return Superblock(
        metadata=dict(meta),
        timestamp=bswap64(ts),
        from_=checksum_hex(frm) if frm else None,
        to=to_hex,
        commit_bytes=bytes(commit),
        n_parents=len(parents) // 64,
        parts=headers,
        fallbacks=falls,
        big_endian=big,
        signed=sigs is not None,
    )


# ---------------------------------------------------------------- parts


@dataclass(frozen=True)
class PartPayload:
    modes: tuple[tuple[int, int, int], ...]  # (uid, gid, st_mode), already host order
    xattrs: tuple[tuple[tuple[bytes, bytes], ...], ...]
    blob: bytes
    ops: bytes


def decompress_part(data: bytes, expected_checksum: str | None) -> bytes:
    """The payload bytes of a part file; with expected_checksum, the file must hash to
    it (inline parts are not checked, as in ostree)."""
    if len(data) > MAX_PART_FILE:
        raise FormatError(f"Delta part of {len(data)} bytes is too large")
    if expected_checksum is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_checksum:
            raise FormatError(
                f"Checksum mismatch in static delta part; expected={expected_checksum} "
                f"actual={actual}"
            )
    if not data:
        raise FormatError("Empty static delta part")
    kind, body = data[0], data[1:]
    if kind == Compression.NONE:
        return body
    if kind != Compression.XZ:
        raise FormatError(f"Invalid compression type '{kind}'")
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT)
    try:
        out = d.decompress(body, max_length=MAX_PART_PAYLOAD + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"Invalid xz data in static delta part: {e}") from None
    if len(out) > MAX_PART_PAYLOAD:
        raise FormatError("Delta part payload is too large")
    if not d.eof or d.unused_data:
        raise FormatError("Truncated or trailing data in xz static delta part")
    return out


def parse_part_payload(payload: bytes) -> PartPayload:
    try:
        modes, xattrs, blob, ops = gvariant.decode(PART_PAYLOAD_TYPE, payload)
    except FormatError as e:
        raise FormatError(f"Invalid static delta part payload: {e}") from None
    return PartPayload(
        modes=tuple((bswap32(u), bswap32(g), bswap32(m)) for u, g, m in modes),
        xattrs=tuple(tuple((bytes(k), bytes(v)) for k, v in x) for x in xattrs),
        blob=bytes(blob),
        ops=bytes(ops),
    )


# Arguments per opcode; 'S' has 2 for metadata objects, 4 for content.
_ARITY = {
    OpCode.OPEN: 3,
    OpCode.WRITE: 2,
    OpCode.SET_READ_SOURCE: 1,
    OpCode.UNSET_READ_SOURCE: 0,
    OpCode.CLOSE: 0,
    OpCode.BSPATCH: 2,
}


@dataclass(frozen=True)
class Op:
    code: OpCode
    args: tuple[int, ...]


def iter_ops(ops: bytes, objects: tuple[tuple[ObjectType, str], ...]) -> list[Op]:
    """The decoded opcode stream; the object cursor decides the arity of 'S'."""
    out: list[Op] = []
    pos = idx = 0
    while pos < len(ops):
        byte = ops[pos]
        try:
            code = OpCode(byte)
        except ValueError:
            raise FormatError(f"Unknown opcode {byte} at offset {pos}") from None
        pos += 1
        if code is OpCode.OPEN_SPLICE_AND_CLOSE:
            if idx >= len(objects):
                raise FormatError("Delta part has more objects in its operations than listed")
            n = 2 if objects[idx][0].is_metadata else 4
        else:
            n = _ARITY[code]
        args = []
        for _ in range(n):
            try:
                v, pos = leb128.decode(ops, pos)
            except FormatError:
                raise FormatError("Unexpected EOF reading varint") from None
            args.append(v)
        if code in (OpCode.OPEN_SPLICE_AND_CLOSE, OpCode.CLOSE):
            idx += 1
        elif code is OpCode.OPEN and idx >= len(objects):
            raise FormatError("Delta part has more objects in its operations than listed")
        out.append(Op(code, tuple(args)))
    return out
