"""The osmet file format (sysroot/formats/osmet.py) against the documented layout:
coreos-installer's header and body in bincode 1.x varint encoding, then an xz stream.

The bytes a real coreos-installer writes are modelled here by hand (explicit bytes and
`struct`, never our encoder), and what our encoder writes is parsed by a reader of this
file's own, so that a mistake shared by our reader and writer cannot pass unseen.
"""

from __future__ import annotations

import io
import lzma
import struct
import tracemalloc
from dataclasses import replace

import pytest

from sysroot.errors import SysrootError
from sysroot.formats import osmet
from sysroot.formats.osmet import (
    Body,
    Extent,
    Header,
    Mapping,
    OsmetFormatError,
    Partition,
    canonicalize,
)

MiB = 1 << 20
GiB = 1 << 30
OBJ_A = bytes(range(32))
OBJ_B = bytes(range(32, 64))
IMAGE_SHA = bytes(range(64, 96))
PACKED = b"packed image bytes " * 100


def xz(data: bytes) -> bytes:
    # as coreos-installer's xz2 encoder writes it: one xz stream, CRC64 check
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=0)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


# ------------------------------------------------------------------ a file by hand

ROOT_START, ROOT_END = 385 * MiB, 5 * GiB + MiB  # root ends past 2^32: a 9-byte varint
IMAGE_SIZE = 5 * GiB + 2 * MiB


def hand_header(sector: bytes) -> bytes:
    return (
        b"OSMET\x00\x00\x00"  # magic
        + b"\x01"  # version 1
        + b"\x06"
        + b"0.18.0"  # app_version: length, bytes
        + sector  # sector_size
        + b"\x10"
        + b"Fedora CoreOS 39"
        + b"\x06"
        + b"x86_64"
    )


HAND_BODY = (
    b"\x02"  # two partitions
    # boot: [1 MiB, 385 MiB), one mapping
    + b"\xfc"
    + u32(MiB)
    + b"\xfc"
    + u32(ROOT_START)
    + b"\x01"
    + b"\x00"  # logical 0
    + b"\xfb"
    + u16(4096)  # physical 4096
    + b"\xfc"
    + u32(70000)  # length 70000 (> u16)
    + OBJ_A
    # root: [385 MiB, 5 GiB + 1 MiB), two mappings
    + b"\xfc"
    + u32(ROOT_START)
    + b"\xfd"
    + u64(ROOT_END)
    + b"\x02"
    + b"\xfa"  # logical 250: the largest one-byte value
    + b"\x00"  # physical 0
    + b"\xfb"
    + u16(251)  # length 251: the smallest two-byte value
    + OBJ_B
    + b"\xfc"
    + u32(0x10000)  # logical 65536: the smallest four-byte value
    + b"\xfd"
    + u64((1 << 32) + 5)  # physical past 2^32
    + b"\xfb"
    + u16(0xFFFF)  # length 65535: the largest two-byte value
    + OBJ_A
    + IMAGE_SHA  # checksum: 32 raw bytes
    + b"\xfd"
    + u64(IMAGE_SIZE)  # size
)

HAND_PARTITIONS = (
    Partition(MiB, ROOT_START, (Mapping(Extent(0, 4096, 70000), OBJ_A),)),
    Partition(
        ROOT_START,
        ROOT_END,
        (
            Mapping(Extent(250, 0, 251), OBJ_B),
            Mapping(Extent(0x10000, (1 << 32) + 5, 0xFFFF), OBJ_A),
        ),
    ),
)
HAND = Body(HAND_PARTITIONS, IMAGE_SHA, IMAGE_SIZE)
SECTORS = {512: b"\xfb\x00\x02", 4096: b"\xfb\x00\x10"}


HEADER_512 = hand_header(SECTORS[512])


def hand_file(sector: int = 512) -> bytes:
    return hand_header(SECTORS[sector]) + HAND_BODY


@pytest.mark.parametrize("sector", sorted(SECTORS))
def test_reads_a_hand_assembled_file(sector):
    meta = hand_file(sector)
    f = io.BytesIO(meta + xz(PACKED))
    header, body = osmet.read(f)
    assert header == Header(
        sector_size=sector,
        os_description="Fedora CoreOS 39",
        os_architecture="x86_64",
        app_version="0.18.0",
        version=1,
    )
    assert body == HAND
    # the xz stream starts right after the body, and is the one written
    assert f.tell() == len(meta)
    assert lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(f.read()) == PACKED


def test_read_header_alone_stops_at_the_body():
    f = io.BytesIO(hand_file(4096))
    assert osmet.read_header(f).sector_size == 4096
    assert f.read() == HAND_BODY


@pytest.mark.parametrize("sector", sorted(SECTORS))
def test_encode_writes_the_hand_assembled_bytes(sector):
    header = Header(4096 if sector == 4096 else 512, "Fedora CoreOS 39", "x86_64", "0.18.0")
    assert osmet.encode(header, HAND) == hand_file(sector)


# ------------------------------------------------------------------ an independent reader


class Plain:
    """bincode varint, read by this test alone; asserts every varint is in its shortest
    form (bincode writes nothing else)."""

    WIDTHS = {251: (2, 251), 252: (4, 1 << 16), 253: (8, 1 << 32), 254: (16, 1 << 64)}

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n
        self.pos += n
        return out

    def int(self) -> int:
        first = self.raw(1)[0]
        if first < 251:
            return first
        width, least = self.WIDTHS[first]
        value = int.from_bytes(self.raw(width), "little")
        assert value >= least, f"varint {value} written wider than needed"
        return value

    def str(self) -> str:
        return self.raw(self.int()).decode()


def plain_parse(data: bytes) -> tuple[tuple, tuple]:
    p = Plain(data)
    header = (p.raw(8), p.int(), p.str(), p.int(), p.str(), p.str())
    partitions = []
    for _ in range(p.int()):
        start, end = p.int(), p.int()
        maps = [((p.int(), p.int(), p.int()), p.raw(32)) for _ in range(p.int())]
        partitions.append((start, end, maps))
    body = (partitions, p.raw(32), p.int())
    assert p.pos == len(data)
    return header, body


WIDE = Body(
    partitions=(
        Partition(0, 250, (Mapping(Extent(0, 0, 250), OBJ_A),)),
        Partition(
            251,
            1 << 40,
            tuple(
                Mapping(Extent(logical, physical, length), bytes([i]) * 32)
                for i, (logical, physical, length) in enumerate(
                    [
                        (0xFFFF, 1, 0x10000),
                        ((1 << 64) - 1, 1 << 32, 1),
                        (1 << 32, (1 << 32) + 1, (1 << 40) - 251 - (1 << 32) - 1),
                    ]
                )
            ),
        ),
        Partition((1 << 64) - 2, (1 << 64) - 1, ()),
    ),
    checksum=IMAGE_SHA,
    size=(1 << 64) - 1,
)
WIDE_HEADER = Header(
    sector_size=(1 << 31),
    os_description="Grüße ☃ " * 300,
    os_architecture="aarch64",
    app_version="",
)


def test_encode_is_read_by_an_independent_reader():
    header, body = plain_parse(osmet.encode(WIDE_HEADER, WIDE))
    assert header == (osmet.MAGIC, 1, "", 1 << 31, WIDE_HEADER.os_description, "aarch64")
    partitions, checksum, size = body
    assert (checksum, size) == (IMAGE_SHA, (1 << 64) - 1)
    assert partitions == [
        (
            p.start_offset,
            p.end_offset,
            [
                ((m.extent.logical, m.extent.physical, m.extent.length), m.object)
                for m in p.mappings
            ],
        )
        for p in WIDE.partitions
    ]


@pytest.mark.parametrize(
    "value,encoded",
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfb\xfb\x00"),
        (0xFFFF, b"\xfb\xff\xff"),
        (0x10000, b"\xfc\x00\x00\x01\x00"),
        ((1 << 32) - 1, b"\xfc\xff\xff\xff\xff"),
        (1 << 32, b"\xfd" + u64(1 << 32)),
        ((1 << 64) - 1, b"\xfd" + b"\xff" * 8),
    ],
)
def test_varint_boundaries(value, encoded):
    # a mapping's logical offset, then physical 0 and length 1
    body = Body((Partition(0, 1, (Mapping(Extent(value, 0, 1), OBJ_A),)),), IMAGE_SHA, 1)
    data = osmet.encode_body(body)
    assert data == b"\x01\x00\x01\x01" + encoded + b"\x00\x01" + OBJ_A + IMAGE_SHA + b"\x01"
    f = io.BytesIO(HEADER_512 + data)
    assert osmet.read(f)[1] == body


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("body", [HAND, WIDE], ids=["hand", "wide"])
def test_round_trip(body):
    data = osmet.encode(WIDE_HEADER, body)
    f = io.BytesIO(data + xz(b"x"))
    assert osmet.read(f) == (WIDE_HEADER, body)
    assert f.tell() == len(data)


# ------------------------------------------------------------------ hostile input


class Counting(io.BytesIO):
    """Records how much each read asks for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.asked.append(-1 if n is None else n)
        return super().read(n)


def refused(data: bytes) -> str:
    with pytest.raises(OsmetFormatError) as e:
        osmet.read(io.BytesIO(data))
    assert isinstance(e.value, SysrootError)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_wrong_magic_is_named_and_nothing_else_is_read():
    # bincode would read this version, then a string of 2^62 bytes
    f = Counting(b"NOTOSMET" + b"\x01" + b"\xfd" + u64(1 << 62) + b"x" * 100)
    with pytest.raises(OsmetFormatError, match="not an osmet file.*4e4f544f534d4554"):
        osmet.read(f)
    assert sum(f.asked) <= 8 and -1 not in f.asked


def test_version_2_is_refused_before_anything_else():
    data = bytearray(hand_file())
    data[8] = 2
    f = Counting(bytes(data))
    with pytest.raises(OsmetFormatError, match="version 2"):
        osmet.read(f)
    assert sum(f.asked) == 9


def test_every_truncation_is_refused():
    data = hand_file()
    for n in range(len(data)):
        assert "truncated" in refused(data[:n]), n


def _header_with(app_version_bytes: bytes) -> bytes:
    return b"OSMET\x00\x00\x00\x01" + app_version_bytes


@pytest.mark.parametrize(
    "length",
    [b"\xfd" + u64(1 << 60), b"\xfe" + (1 << 60).to_bytes(16, "little"), b"\xfc" + u32(65537)],
)
def test_huge_string_length_is_refused_unread(length):
    f = Counting(_header_with(length) + b"x" * 1000)
    with pytest.raises(OsmetFormatError, match="over the limit"):
        osmet.read(f)
    assert max(f.asked) <= 16


def body_bytes(partitions, *, count=None, checksum=IMAGE_SHA, size=IMAGE_SIZE) -> bytes:
    """A body serialized by this test, with no validation: partitions are
    (start, end, [(logical, physical, length), ...])."""

    def v(n: int) -> bytes:
        if n < 251:
            return bytes((n,))
        for marker, fmt, limit in ((251, "<H", 1 << 16), (252, "<I", 1 << 32)):
            if n < limit:
                return bytes((marker,)) + struct.pack(fmt, n)
        return b"\xfd" + u64(n)

    out = v(len(partitions) if count is None else count)
    for start, end, maps in partitions:
        out += v(start) + v(end) + v(len(maps))
        for logical, physical, length in maps:
            out += v(logical) + v(physical) + v(length) + OBJ_A
    return out + checksum + v(size)


P_BOOT = (MiB, 2 * MiB, [(0, 0, 4096)])
P_ROOT = (2 * MiB, 4 * MiB, [(0, 0, 4096), (0, 8192, 4096)])


def test_the_test_body_writer_makes_valid_files():
    header, body = osmet.read(io.BytesIO(HEADER_512 + body_bytes([P_BOOT, P_ROOT])))
    assert len(body.partitions[1].mappings) == 2


@pytest.mark.parametrize(
    "partitions,message",
    [
        ([], "no partitions"),
        ([(MiB, 2 * MiB, [(0, 8192, 4096), (0, 0, 4096)])], "out of order"),
        ([(MiB, 2 * MiB, [(0, 0, 8192), (0, 4096, 8192)])], "overlaps"),
        ([(MiB, 2 * MiB, [(0, 0, 4096), (0, 0, 4096)])], "overlaps"),
        ([(MiB, 2 * MiB, [(0, MiB - 4096, 8192)])], "past the partition"),
        ([(MiB, 2 * MiB, [(0, MiB, 1)])], "past the partition"),
        ([(MiB, 2 * MiB, [(0, 0, 0)])], "length 0"),
        ([(2 * MiB, 3 * MiB, []), (MiB, 2 * MiB, [])], "before the previous one ends"),
        ([(MiB, 3 * MiB, []), (2 * MiB, 4 * MiB, [])], "before the previous one ends"),
        ([(MiB, MiB, [])], "not before end"),
        ([(MiB, IMAGE_SIZE + 1, [])], "past the image size"),
    ],
)
def test_invalid_structure_is_refused(partitions, message):
    assert message in refused(HEADER_512 + body_bytes(partitions))


def test_too_many_partitions_are_refused_unread():
    f = Counting(HEADER_512 + body_bytes([], count=osmet.MAX_PARTITIONS + 1))
    with pytest.raises(OsmetFormatError, match="partition count 129 is over"):
        osmet.read(f)


@pytest.mark.parametrize("count", [1 << 60, osmet.MAX_MAPPINGS])
def test_huge_mapping_count_allocates_nothing(count):
    # a count over the cap is refused at once; one under it runs out of bytes: either
    # way nothing is allocated for the mappings that are not there
    data = HEADER_512 + b"\x01\x00\x01" + b"\xfd" + u64(count) + b"\x00" * 100
    tracemalloc.start()
    try:
        message = refused(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ("over the limit" if count > osmet.MAX_MAPPINGS else "truncated") in message
    assert peak < 1 * MiB


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: d.replace(b"x86_64", b"x8\xff_64"), "OS architecture is not valid UTF-8"),
        (lambda d: d.replace(b"\xfb\x00\x02", b"\xfb\x00\x00", 1), "sector size 0"),
        (lambda d: d.replace(b"\xfb\x00\x02", b"\xfb\x00\x03", 1), "sector size 768"),
        (lambda d: d.replace(b"\xfb\x00\x02", b"\xfd" + u64(1 << 32), 1), "does not fit in u32"),
        (lambda d: d.replace(b"\xfb\x00\x02", b"\xff\x00\x02", 1), "invalid varint marker 255"),
    ],
)
def test_damaged_header_fields(damage, message):
    assert message in refused(damage(hand_file()))


def test_a_wider_varint_than_needed_is_read():
    # bincode's reader takes any width; so does ours (coreos-installer writes the shortest)
    data = hand_file()
    data = data[:8] + b"\xfb\x01\x00" + data[9:]
    assert osmet.read(io.BytesIO(data))[1] == HAND


def test_u64_overflow_in_u128_form_is_refused():
    data = HEADER_512 + b"\x01" + b"\xfe" + (1 << 64).to_bytes(16, "little")
    assert "does not fit in u64" in refused(data)


# ------------------------------------------------------------------ encode refuses


HEADER = Header(512, "d", "x86_64", "v")


def one_mapping(logical=0, physical=0, length=1, obj=OBJ_A) -> Body:
    return Body((Partition(0, 10, (Mapping(Extent(logical, physical, length), obj),)),), OBJ_B, 10)


@pytest.mark.parametrize(
    "header,body,message",
    [
        (HEADER, one_mapping(logical=-1), "logical offset -1 does not fit in u64"),
        (HEADER, one_mapping(logical=1 << 64), "does not fit in u64"),
        (HEADER, one_mapping(obj=b"short"), "object is not 32 bytes"),
        (HEADER, one_mapping(length=True), "not an integer"),
        (HEADER, replace(one_mapping(), checksum=b""), "image checksum is not 32 bytes"),
        (HEADER, replace(one_mapping(), size=1 << 64), "image size"),
        (replace(HEADER, sector_size=1 << 32), one_mapping(), "does not fit in u32"),
        (replace(HEADER, sector_size=-512), one_mapping(), "does not fit in u32"),
        (replace(HEADER, version=2), one_mapping(), "version 2"),
        (replace(HEADER, app_version="\udcff"), one_mapping(), "app version is not a valid"),
        (replace(HEADER, os_description="x" * 65537), one_mapping(), "at most 65536"),
        (HEADER, replace(one_mapping(), partitions=()), "no partitions"),
        (HEADER, one_mapping(physical=5, length=6), "past the partition"),
    ],
)
def test_encode_refuses(header, body, message):
    with pytest.raises(OsmetFormatError, match=message):
        osmet.encode(header, body)


# ------------------------------------------------------------------ canonicalize


def m(physical: int, length: int, logical: int = 0, obj: bytes = OBJ_A) -> Mapping:
    return Mapping(Extent(logical, physical, length), obj)


@pytest.mark.parametrize(
    "given,expected,dropped,clamped",
    [
        ([m(8192, 4096), m(0, 4096)], [m(0, 4096), m(8192, 4096)], 0, 0),  # sorted
        ([m(0, 4096), m(0, 4096, obj=OBJ_B)], [m(0, 4096)], 1, 0),  # duplicate: first kept
        ([m(0, 8192), m(4096, 1024)], [m(0, 8192)], 1, 0),  # contained
        ([m(0, 8192), m(4096, 4096)], [m(0, 8192)], 1, 0),  # contained, same end
        ([m(0, 4096), m(0, 8192, obj=OBJ_B)], [m(0, 8192, obj=OBJ_B)], 1, 0),  # tie: longest
        (
            [m(0, 8192), m(4096, 8192, logical=100, obj=OBJ_B)],
            [m(0, 8192), m(8192, 4096, logical=4196, obj=OBJ_B)],
            0,
            1,
        ),  # overlapping: clamped
        (
            [m(0, 8192), m(4096, 8192), m(6000, 1000), m(10000, 4000)],
            [m(0, 8192), m(8192, 4096, logical=4096), m(12288, 1712, logical=2288)],
            1,
            2,
        ),  # against the previous kept extent, as clamped
        ([m(0, 4096), m(100, 0), m(9000, 0)], [m(0, 4096)], 2, 0),  # empty extents
        ([], [], 0, 0),
    ],
)
def test_canonicalize(given, expected, dropped, clamped):
    out = canonicalize(iter(given))
    assert out == (tuple(expected), dropped, clamped)
    osmet.validate(Body((Partition(0, 1 << 20, out[0]),), IMAGE_SHA, 1 << 20))
