"""Static delta bytes without ostree: names, superblock, parts, opcodes, bspatch.
(tests/store/test_static_delta_oracle.py checks all of it against ostree's deltas.)"""

from __future__ import annotations

import hashlib
import lzma
import random

import pytest

from sysroot.errors import FormatError
from sysroot.formats import gvariant, leb128
from sysroot.formats import static_delta as sd
from sysroot.formats.bspatch import bspatch
from sysroot.formats.objects import Commit, ObjectType, bswap32, bswap64

pytestmark = pytest.mark.unit

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()


def test_names_and_paths_round_trip():
    for name in (sd.DeltaName(A, B), sd.DeltaName(None, B)):
        assert sd.DeltaName.parse(str(name)) == name
        _, prefix, rest = name.relpath.split("/")
        assert sd.DeltaName.from_dirnames(prefix, rest) == name
        assert "=" not in name.relpath
    # base64 without its '=', '_' for '/': 32 bytes of 0xff are 42 '/' and "8="
    assert sd.mbase64("ff" * 32) == "_" * 42 + "8"
    for bad in ("", "x", f"{A}-", f"{A[:10]}-{B}", f"{A}-{B}-{A}", A.upper()):
        with pytest.raises(FormatError):
            sd.DeltaName.parse(bad)
    assert sd.DeltaName.from_dirnames("zz", "not-a-delta") is None


# ---------------------------------------------------------------- bspatch


def _ctrl(n: int) -> bytes:
    return (abs(n) | ((1 << 63) if n < 0 else 0)).to_bytes(8, "little")


def _reference(old: bytes, newsize: int, patch: bytes) -> bytes:
    """bspatch written the slow, obvious way, byte by byte."""
    new = bytearray(newsize)
    oldpos = newpos = pos = 0

    def num(p: int) -> int:
        mag = int.from_bytes(patch[p : p + 8], "little") & ((1 << 63) - 1)
        return -mag if patch[p + 7] & 0x80 else mag

    while newpos < newsize:
        c0, c1, c2 = num(pos), num(pos + 8), num(pos + 16)
        pos += 24
        for i in range(c0):
            o = old[oldpos + i] if 0 <= oldpos + i < len(old) else 0
            new[newpos + i] = (patch[pos + i] + o) & 0xFF
        pos += c0
        newpos += c0
        oldpos += c0
        new[newpos : newpos + c1] = patch[pos : pos + c1]
        pos += c1
        newpos += c1
        oldpos += c2
    return bytes(new)


def _random_patch(rnd: random.Random, oldsize: int) -> tuple[bytes, int]:
    out = bytearray()
    newsize = 0
    for _ in range(rnd.randint(1, 6)):
        c0, c1, c2 = rnd.randint(0, 300), rnd.randint(0, 50), rnd.randint(-400, 400)
        out += _ctrl(c0) + _ctrl(c1) + _ctrl(c2) + rnd.randbytes(c0) + rnd.randbytes(c1)
        newsize += c0 + c1
    return bytes(out), newsize


def test_bspatch_matches_the_obvious_implementation():
    rnd = random.Random(19)
    for _ in range(300):
        old = rnd.randbytes(rnd.randint(0, 500))
        patch, newsize = _random_patch(rnd, len(old))
        assert bspatch(old, newsize, patch) == _reference(old, newsize, patch)


def test_bspatch_adds_bytes_modulo_256_and_reads_old_only_in_range():
    old = bytes([0xFF, 0x80, 0x01])
    # 5 diff bytes starting 1 before old (oldpos -1 via a first triple), then 2 extra
    patch = _ctrl(0) + _ctrl(0) + _ctrl(-1) + _ctrl(5) + _ctrl(2) + _ctrl(0)
    patch += bytes([7, 1, 0x80, 0xFF, 9]) + b"XY"
    assert bspatch(old, 7, patch) == bytes([7, 0x00, 0x00, 0x00, 9]) + b"XY"


@pytest.mark.parametrize(
    "patch, why",
    [
        (b"\0" * 23, "truncated control"),
        (_ctrl(-1) + _ctrl(0) + _ctrl(0), "invalid control"),
        (_ctrl(0) + _ctrl(1 << 31) + _ctrl(0), "invalid control"),
        (_ctrl(11) + _ctrl(0) + _ctrl(0) + b"\0" * 11, "past the new file"),
        (_ctrl(4) + _ctrl(7) + _ctrl(0) + b"\0" * 11, "past the new file"),
        (_ctrl(10) + _ctrl(0) + _ctrl(0) + b"\0" * 9, "truncated diff"),
        (_ctrl(0) + _ctrl(10) + _ctrl(0) + b"\0" * 9, "truncated extra"),
        (_ctrl(0) + _ctrl(0) + _ctrl(5), "truncated control"),  # no progress: runs dry
    ],
)
def test_hostile_bspatch_is_refused(patch, why):
    with pytest.raises(FormatError, match=why):
        bspatch(b"old bytes", 10, patch)


# ---------------------------------------------------------------- parts and ops


def test_ops_take_the_arity_of_the_current_object():
    objects = ((ObjectType.DIR_TREE, A), (ObjectType.FILE, B), (ObjectType.FILE, A))
    stream = b"S\x05\x00" + b"S\x00\x00\x03\x05" + b"r\x00o\x00\x00\x08w\x08\x00B\x00\x04Rc"
    ops = sd.iter_ops(stream, objects)
    assert [(op.code.name, op.args) for op in ops][:2] == [
        ("OPEN_SPLICE_AND_CLOSE", (5, 0)),
        ("OPEN_SPLICE_AND_CLOSE", (0, 0, 3, 5)),
    ]
    assert [op.code for op in ops][2:] == [
        sd.OpCode.SET_READ_SOURCE,
        sd.OpCode.OPEN,
        sd.OpCode.WRITE,
        sd.OpCode.BSPATCH,
        sd.OpCode.UNSET_READ_SOURCE,
        sd.OpCode.CLOSE,
    ]
    with pytest.raises(FormatError, match="Unknown opcode 122 at offset 3"):
        sd.iter_ops(b"S\x05\x00z", objects)
    with pytest.raises(FormatError, match="Unexpected EOF reading varint"):
        sd.iter_ops(b"S\x05", objects)
    with pytest.raises(FormatError, match="more objects"):
        sd.iter_ops(b"S\x00\x00" + b"S\x00\x00\x00\x00" * 3, objects)


def _part(kind: int, payload: bytes) -> bytes:
    body = lzma.compress(payload, format=lzma.FORMAT_XZ) if kind == 0x78 else payload
    return bytes([kind]) + body


def test_parts_uncompressed_and_xz_with_their_checksum():
    payload = gvariant.encode(
        sd.PART_PAYLOAD_TYPE, ([(0, 0, bswap32(0o100644))], [[]], b"blob", b"S\x00\x00\x04\x00")
    )
    for kind in (0x00, 0x78):
        data = _part(kind, payload)
        assert sd.decompress_part(data, hashlib.sha256(data).hexdigest()) == payload
        with pytest.raises(FormatError, match="Checksum mismatch"):
            sd.decompress_part(data, A)
    parsed = sd.parse_part_payload(payload)
    assert parsed.modes == ((0, 0, 0o100644),) and parsed.blob == b"blob"
    with pytest.raises(FormatError, match="Invalid compression type"):
        sd.decompress_part(b"g" + payload, None)
    with pytest.raises(FormatError, match="Truncated"):
        sd.decompress_part(_part(0x78, payload)[:-10], None)


def test_an_xz_bomb_stops_at_the_cap(monkeypatch):
    monkeypatch.setattr(sd, "MAX_PART_PAYLOAD", 1 << 20)
    with pytest.raises(FormatError, match="too large"):
        sd.decompress_part(_part(0x78, bytes(8 << 20)), None)


# ---------------------------------------------------------------- superblock


def _superblock(endianness: int | None = 0x6C, **kw) -> bytes:
    commit = Commit({}, None, "s", "", 1000, A, B).serialize()
    meta = {} if endianness is None else {sd.ENDIANNESS_KEY: gvariant.Variant("y", endianness)}
    big = endianness == 0x42
    u64 = bswap64 if big else (lambda v: v)
    u32 = bswap32 if big else (lambda v: v)
    objects = bytes([2]) + bytes.fromhex(A) + bytes([1]) + bytes.fromhex(B)
    fields = (
        meta,
        bswap64(kw.get("timestamp", 1234)),
        bytes.fromhex(A),
        bytes.fromhex(hashlib.sha256(commit).hexdigest()),
        commit,
        b"",
        [(u32(0), bytes.fromhex(B), u64(100), u64(90), objects)],
        [(1, bytes.fromhex(A), u64(5_001_564), u64(5_000_000))],
    )
    return gvariant.encode(sd._SUPERBLOCK_READ_TYPE, fields)


@pytest.mark.parametrize("endianness", [0x6C, 0x42])
def test_superblock_fields_in_either_byte_order(endianness):
    sb = sd.parse_superblock(_superblock(endianness))
    assert sb.big_endian is (endianness == 0x42)
    assert (sb.timestamp, sb.from_, sb.signed, sb.n_parents) == (1234, A, False, 0)
    assert sb.commit.subject == "s"
    assert hashlib.sha256(sb.commit_bytes).hexdigest() == sb.to
    (part,) = sb.parts
    assert (part.version, part.size, part.usize, part.checksum) == (0, 100, 90, B)
    assert part.objects == ((ObjectType.DIR_TREE, A), (ObjectType.FILE, B))
    assert sb.fallbacks == (sd.Fallback(ObjectType.FILE, A, 5_001_564, 5_000_000),)


def test_a_signed_superblock_is_unwrapped():
    inner = _superblock()
    signed = gvariant.encode(
        sd.SIGNED_TYPE,
        (
            int.from_bytes(sd.SIGNED_MAGIC, "little"),
            inner,
            {"ostree.sign.dummy": gvariant.Variant("aay", [b"sig"])},
        ),
    )
    assert signed.startswith(sd.SIGNED_MAGIC)
    sb = sd.parse_superblock(signed)
    assert sb.signed and sb.to == sd.parse_superblock(inner).to


def test_every_truncation_and_flip_is_a_format_error_or_parses():
    data = _superblock()
    rnd = random.Random(5)
    cases = [data[:n] for n in range(len(data))]
    for _ in range(400):
        b = bytearray(data)
        b[rnd.randrange(len(b))] = rnd.randrange(256)
        cases.append(bytes(b))
    for case in cases:
        try:
            sd.parse_superblock(case)
        except FormatError:
            pass


def test_part_object_list_must_be_whole_entries():
    fields = list(gvariant.decode(sd._SUPERBLOCK_READ_TYPE, _superblock()))
    v, c, s, u, objs = fields[6][0]
    fields[6] = [(v, c, s, u, objs[:-1])]
    with pytest.raises(FormatError, match="Invalid checksum array length"):
        sd.parse_superblock(gvariant.encode(sd._SUPERBLOCK_READ_TYPE, tuple(fields)))


def test_leb128_limit_is_ten_bytes():
    assert leb128.decode(b"\xae\x01", 0) == (174, 2)
    with pytest.raises(FormatError):
        sd.iter_ops(b"r" + b"\xff" * 10 + b"\x01", ())
