"""coreos-installer's osmet file (version 1): a disk image packed without the byte
ranges that OSTree objects in a repository already hold, plus the table to put them back.

The file is three parts with nothing between them: a header, a body, then an xz stream
(the packed image) to the end of the file. Header and body are bincode 1.x with varint
integers, little endian:
- u8 raw; any other unsigned integer (and every string length and sequence count) is
  one byte when below 251, else a marker 251/252/253/254 and the value as little-endian
  u16/u32/u64/u128;
- a string is its length and UTF-8 bytes, a sequence its count and items, a fixed array
  (the magic, the 32-byte digests) raw bytes; struct fields follow in order, untagged.

Header: magic[8], version u32, app_version, sector_size u32, os_description,
os_architecture. Body: partitions [{start_offset u64, end_offset u64, mappings
[{extent {logical, physical, length: u64}, object [u8; 32]}]}], checksum [u8; 32]
(SHA-256 of the whole image), size u64 (its length). `physical` counts from the start
of its partition; `logical` is the offset in the object's file.

Reading is hardened, unlike coreos-installer's (which lets bincode parse the whole
header before it looks at the magic): the magic is checked on the first 8 bytes, every
length and count is capped, and items are read one at a time, so a declared count never
allocates anything before its bytes are there. Any malformed input is OsmetFormatError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from sysroot.errors import FormatError

MAGIC = b"OSMET\0\0\0"
VERSION = 1
DIGEST_SIZE = 32  # SHA-256: the object checksums and the image checksum
XZ_MAGIC = b"\xfd7zXZ\0"  # where the body ends, the packed image's xz stream begins

# Caps on what a file may declare. Real files hold two partitions (boot, root), short
# strings and some 10^5 mappings; the caps only keep a hostile file from asking for more.
MAX_STRING = 64 * 1024
MAX_PARTITIONS = 128
MAX_MAPPINGS = 1 << 24  # per partition; the bytes behind them bound the read anyway

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

# bincode's varint markers: the value follows in this many little-endian bytes
_MARKERS = {251: 2, 252: 4, 253: 8, 254: 16}
_SINGLE_BYTE_LIMIT = 251


class OsmetFormatError(FormatError):
    """An osmet file (or a header/body to write) that is malformed; one line says what."""


@dataclass(frozen=True)
class Extent:
    logical: int  # byte offset in the object's file
    physical: int  # byte offset from the start of the partition
    length: int


@dataclass(frozen=True)
class Mapping:
    extent: Extent
    object: bytes  # the object's content checksum, 32 raw bytes


@dataclass(frozen=True)
class Partition:
    start_offset: int  # byte offsets on the disk, end exclusive
    end_offset: int
    mappings: tuple[Mapping, ...]

    @property
    def mapped_bytes(self) -> int:
        """Bytes of this partition the objects supply (left out of the packed image)."""
        return sum(m.extent.length for m in self.mappings)


@dataclass(frozen=True)
class Header:
    sector_size: int
    os_description: str
    os_architecture: str
    app_version: str
    version: int = VERSION


@dataclass(frozen=True)
class Body:
    partitions: tuple[Partition, ...]
    checksum: bytes  # SHA-256 of the whole unpacked image, 32 raw bytes
    size: int  # length of the unpacked image in bytes


# ------------------------------------------------------------------ validation


def _check_int(value: object, limit: int, what: str) -> int:
    # bool is an int to Python but no length or offset
    if not isinstance(value, int) or isinstance(value, bool):
        raise OsmetFormatError(f"{what} is not an integer: {value!r}")
    if not 0 <= value <= limit:
        raise OsmetFormatError(f"{what} {value} does not fit in u{limit.bit_length()}")
    return value


def _check_digest(value: object, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise OsmetFormatError(f"{what} is not {DIGEST_SIZE} bytes")


def validate_header(header: Header) -> None:
    """The header describes something writable and usable: version 1, a sector size
    that a block device can have (a power of two; 0 is also what a fixint-encoded file
    of coreos-installer 0.2 reads as, which claims version 1 too)."""
    if _check_int(header.version, U32_MAX, "version") != VERSION:
        raise OsmetFormatError(f"osmet version {header.version} is not supported (only {VERSION})")
    sector = _check_int(header.sector_size, U32_MAX, "sector size")
    if sector == 0 or sector & (sector - 1):
        raise OsmetFormatError(f"sector size {sector} is not a power of two")


def validate(body: Body) -> None:
    """Strict structure: 1..MAX_PARTITIONS partitions, ascending and not overlapping,
    inside the image; in each, mappings of non-zero length sorted by physical offset,
    not overlapping, inside the partition. (coreos-installer's own check adds a
    partition-relative end to a disk offset, so it is looser; this is what it means.)"""
    _check_digest(body.checksum, "image checksum")
    size = _check_int(body.size, U64_MAX, "image size")
    if not body.partitions:
        raise OsmetFormatError("no partitions")
    if len(body.partitions) > MAX_PARTITIONS:
        raise OsmetFormatError(f"{len(body.partitions)} partitions (at most {MAX_PARTITIONS})")
    previous_end = 0
    for i, part in enumerate(body.partitions):
        where = f"partition {i}"
        start = _check_int(part.start_offset, U64_MAX, f"{where} start")
        end = _check_int(part.end_offset, U64_MAX, f"{where} end")
        if start >= end:
            raise OsmetFormatError(f"{where}: start {start} is not before end {end}")
        if start < previous_end:
            raise OsmetFormatError(
                f"{where} starts at {start}, before the previous one ends ({previous_end})"
            )
        if end > size:
            raise OsmetFormatError(f"{where} ends at {end}, past the image size {size}")
        previous_end = end
        _validate_mappings(part.mappings, end - start, where)


def _validate_mappings(mappings: tuple[Mapping, ...], span: int, where: str) -> None:
    cursor = 0  # the end of the previous mapping, partition-relative
    for j, m in enumerate(mappings):
        what = f"{where} mapping {j}"
        _check_digest(m.object, f"{what} object")
        _check_int(m.extent.logical, U64_MAX, f"{what} logical offset")
        physical = _check_int(m.extent.physical, U64_MAX, f"{what} physical offset")
        length = _check_int(m.extent.length, U64_MAX, f"{what} length")
        if length == 0:
            raise OsmetFormatError(f"{what} has length 0")
        if physical < cursor:
            raise OsmetFormatError(
                f"{what} at {physical} is out of order or overlaps the previous one (ends {cursor})"
            )
        cursor = physical + length
        if cursor > span:
            raise OsmetFormatError(f"{what} ends at {cursor}, past the partition's {span} bytes")


def canonicalize(mappings: Iterable[Mapping]) -> tuple[tuple[Mapping, ...], int, int]:
    """(mappings sorted by physical offset without overlaps, how many were dropped,
    how many clamped), as coreos-installer canonicalizes a partition's mappings:
    reflinked or shared blocks give several objects the same disk bytes, and each byte
    must come from one object only. Ties sort longest first, so that the shorter ones
    are the ones contained (dropped); an extent that starts inside the previous kept
    one and goes past it is clamped to its new part (logical and physical advance by
    the overlap, length shrinks). Zero-length extents cover nothing and are dropped."""
    ordered = sorted(mappings, key=lambda m: (m.extent.physical, -m.extent.length))
    out: list[Mapping] = []
    dropped = clamped = 0
    end = 0  # end of the last kept extent; nothing kept yet covers anything below 0
    for m in ordered:
        e = m.extent
        if e.length <= 0 or (out and e.physical + e.length <= end):
            dropped += 1
            continue
        if out and e.physical < end:
            overlap = end - e.physical
            e = Extent(e.logical + overlap, e.physical + overlap, e.length - overlap)
            m = Mapping(e, m.object)
            clamped += 1
        out.append(m)
        end = e.physical + e.length
    return tuple(out), dropped, clamped


# ------------------------------------------------------------------ writing


def _varint(value: int, limit: int, what: str) -> bytes:
    value = _check_int(value, limit, what)
    if value < _SINGLE_BYTE_LIMIT:
        return bytes((value,))
    if value <= 0xFFFF:
        return b"\xfb" + struct.pack("<H", value)
    if value <= U32_MAX:
        return b"\xfc" + struct.pack("<I", value)
    return b"\xfd" + struct.pack("<Q", value)  # _check_int kept it within u64


def _string(text: str, what: str) -> bytes:
    try:
        data = text.encode("utf-8")
    except (UnicodeEncodeError, AttributeError) as e:
        raise OsmetFormatError(f"{what} is not a valid UTF-8 string") from e
    if len(data) > MAX_STRING:
        raise OsmetFormatError(f"{what} is {len(data)} bytes long (at most {MAX_STRING})")
    return _varint(len(data), U64_MAX, f"{what} length") + data


def encode_header(header: Header) -> bytes:
    validate_header(header)
    return b"".join(
        (
            MAGIC,
            _varint(header.version, U32_MAX, "version"),
            _string(header.app_version, "app version"),
            _varint(header.sector_size, U32_MAX, "sector size"),
            _string(header.os_description, "OS description"),
            _string(header.os_architecture, "OS architecture"),
        )
    )


def encode_body(body: Body) -> bytes:
    validate(body)  # also range-checks every integer, so the varints below all fit
    out = [_varint(len(body.partitions), U64_MAX, "partition count")]
    for part in body.partitions:
        out.append(_varint(part.start_offset, U64_MAX, "partition start"))
        out.append(_varint(part.end_offset, U64_MAX, "partition end"))
        out.append(_varint(len(part.mappings), U64_MAX, "mapping count"))
        for m in part.mappings:
            e = m.extent
            out.append(_varint(e.logical, U64_MAX, "logical offset"))
            out.append(_varint(e.physical, U64_MAX, "physical offset"))
            out.append(_varint(e.length, U64_MAX, "length"))
            out.append(m.object)
    out.append(body.checksum)
    out.append(_varint(body.size, U64_MAX, "image size"))
    return b"".join(out)


def encode(header: Header, body: Body) -> bytes:
    """Header and body bytes; the xz stream is appended by the caller."""
    return encode_header(header) + encode_body(body)


# ------------------------------------------------------------------ reading


class _Reader:
    """Reads exactly what each field needs, never past it (the xz stream follows), and
    knows the offset for the error messages."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.offset = 0

    def take(self, n: int, what: str) -> bytes:
        data = b""
        while len(data) < n:  # a raw file or pipe may return short reads
            chunk = self.f.read(n - len(data))
            if not chunk:
                raise OsmetFormatError(
                    f"truncated at byte {self.offset + len(data)} (reading the {what})"
                )
            data += chunk
        self.offset += n
        return data

    def varint(self, limit: int, what: str) -> int:
        first = self.take(1, what)[0]
        if first < _SINGLE_BYTE_LIMIT:
            return first
        width = _MARKERS.get(first)
        if width is None:
            raise OsmetFormatError(
                f"{what}: invalid varint marker {first} at byte {self.offset - 1}"
            )
        # bincode accepts a wider form than needed, so this does too; the range counts
        value = int.from_bytes(self.take(width, what), "little")
        if value > limit:
            raise OsmetFormatError(f"{what} {value} does not fit in u{limit.bit_length()}")
        return value

    def count(self, cap: int, what: str) -> int:
        n = self.varint(U64_MAX, what)
        if n > cap:
            raise OsmetFormatError(f"{what} {n} is over the limit of {cap}")
        return n

    def string(self, what: str) -> str:
        data = self.take(self.count(MAX_STRING, f"{what} length"), what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise OsmetFormatError(f"{what} is not valid UTF-8") from e


def read_header(f: BinaryIO) -> Header:
    """The header at f's position; the magic and the version are checked before any
    length is read, so a file of another kind is refused after at most 13 bytes."""
    return _read_header(_Reader(f))


def _read_header(r: _Reader) -> Header:
    magic = r.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise OsmetFormatError(f"not an osmet file (magic {magic.hex()}, expected {MAGIC.hex()})")
    version = r.varint(U32_MAX, "version")
    if version != VERSION:
        raise OsmetFormatError(f"osmet version {version} is not supported (only {VERSION})")
    app_version = r.string("app version")
    sector_size = r.varint(U32_MAX, "sector size")
    header = Header(
        sector_size=sector_size,
        os_description=r.string("OS description"),
        os_architecture=r.string("OS architecture"),
        app_version=app_version,
        version=version,
    )
    validate_header(header)
    return header


def _read_body(r: _Reader) -> Body:
    partitions = []
    for i in range(r.count(MAX_PARTITIONS, "partition count")):
        where = f"partition {i}"
        start = r.varint(U64_MAX, f"{where} start")
        end = r.varint(U64_MAX, f"{where} end")
        mappings = []
        for _ in range(r.count(MAX_MAPPINGS, f"{where} mapping count")):
            extent = Extent(
                logical=r.varint(U64_MAX, "logical offset"),
                physical=r.varint(U64_MAX, "physical offset"),
                length=r.varint(U64_MAX, "length"),
            )
            mappings.append(Mapping(extent, r.take(DIGEST_SIZE, "object checksum")))
        partitions.append(Partition(start, end, tuple(mappings)))
    checksum = r.take(DIGEST_SIZE, "image checksum")
    body = Body(tuple(partitions), checksum, r.varint(U64_MAX, "image size"))
    validate(body)
    return body


def read(f: BinaryIO) -> tuple[Header, Body]:
    """Header and body from f's position; f is left at the first byte of the xz stream."""
    r = _Reader(f)  # one reader for both: error offsets count from the file's start
    header = _read_header(r)
    return header, _read_body(r)
