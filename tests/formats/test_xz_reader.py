"""formats/xz.py, reading: the index as a table of contents, each block decoded by
liblzma on its own, and a block whose bytes are those of a zero block already decoded
given as a ZeroRun without decoding it again — all with liblzma's checks, and any
stream laid out otherwise left to a plain decoder."""

from __future__ import annotations

import io
import lzma
import random
import struct
import zlib

import pytest

from sysroot.errors import FormatError
from sysroot.formats import xz
from sysroot.formats.xz import ZERO_BLOCK, BlockReader, StreamLayout, XzWriter, ZeroRun

MIB = 1 << 20


def _data() -> bytes:
    rng = random.Random(11)
    return b"".join(
        [
            rng.randbytes(17 * 4096),  # a data block larger than the zero cache looks at
            bytes(5 * ZERO_BLOCK),  # five zero blocks: decoded once, then four ZeroRuns
            b"abc" * 4096,  # a small data block, compressed to far less than 64 KiB
            bytes(3 * ZERO_BLOCK),
            b"end",
        ]
    )


def _ours(data: bytes) -> bytes:
    out = io.BytesIO()
    w = XzWriter(out, preset=0, block_size=2 * MIB)
    w.write(data)
    w.close()
    return out.getvalue()


def _layout(stream: bytes) -> StreamLayout | None:
    return xz.stream_layout(io.BytesIO(stream), 0, len(stream))


def _pieces(stream: bytes) -> list[bytes | ZeroRun]:
    layout = _layout(stream)
    assert layout is not None
    return [
        bytes(p) if isinstance(p, bytes) else p
        for p in BlockReader(io.BytesIO(stream), layout).pieces()
    ]


def _joined(pieces: list[bytes | ZeroRun]) -> bytes:
    return b"".join(bytes(p.length) if isinstance(p, ZeroRun) else p for p in pieces)


def test_our_stream_reads_back_with_repeated_zero_blocks_undecoded(monkeypatch) -> None:
    data = _data()
    stream = _ours(data)
    decoded = []
    real = BlockReader._decode

    def counting(self, block, raw):
        decoded.append(block)
        return real(self, block, raw)

    monkeypatch.setattr(BlockReader, "_decode", counting)
    pieces = _pieces(stream)
    assert _joined(pieces) == data
    runs = [p for p in pieces if isinstance(p, ZeroRun)]
    # eight zero blocks in all: the first is decoded (and found to be zeros), the
    # other seven are runs
    assert [r.length for r in runs] == [ZERO_BLOCK] * 7
    layout = _layout(stream)
    assert layout is not None
    assert len(decoded) == len(layout.blocks) - 7
    assert all(len(p) <= MIB for p in pieces if isinstance(p, bytes))


def test_a_single_block_stream_as_liblzma_writes_it() -> None:
    """coreos-installer's files hold one liblzma stream of one block (CRC64)."""
    data = _data()
    stream = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    layout = _layout(stream)
    assert layout is not None and len(layout.blocks) == 1
    pieces = _pieces(stream)
    assert _joined(pieces) == data
    assert all(isinstance(p, bytes) and len(p) <= MIB for p in pieces)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s + bytes(4),  # stream padding
        lambda s: s + s,  # two streams
        lambda s: s[:-1],  # truncated
        lambda s: s[:-12] + b"\0" + s[-11:],  # a damaged footer
        lambda s: b"\0" + s[1:],  # a damaged header
        lambda s: s[:20],
        lambda s: b"",
    ],
    ids=["padding", "two-streams", "truncated", "footer", "header", "short", "empty"],
)
def test_other_layouts_are_left_to_a_plain_decoder(damage) -> None:
    assert _layout(damage(_ours(_data()))) is None


def _block_offsets(stream: bytes) -> list[xz.Block]:
    layout = _layout(stream)
    assert layout is not None
    return layout.blocks


def _zero_blocks(stream: bytes) -> list[xz.Block]:
    return [b for b in _block_offsets(stream) if b.uncompressed == ZERO_BLOCK]


def test_a_flipped_byte_in_a_repeated_zero_block_is_caught() -> None:
    stream = bytearray(_ours(_data()))
    third = _zero_blocks(bytes(stream))[2]
    stream[third.offset + third.unpadded // 2] ^= 0x01
    with pytest.raises(FormatError):
        _pieces(bytes(stream))


def test_a_flipped_byte_in_a_data_block_is_caught() -> None:
    stream = bytearray(_ours(_data()))
    first = _block_offsets(bytes(stream))[0]
    stream[first.offset + first.unpadded // 2] ^= 0x01
    with pytest.raises(FormatError):
        _pieces(bytes(stream))


@pytest.mark.parametrize("which", [0, 3], ids=["decoded", "cached"])
def test_an_index_lying_about_a_zero_blocks_size_is_caught(which: int) -> None:
    """The index is rewritten with a consistent CRC32, so only the sizes tell."""
    stream = _ours(_data())
    blocks = _block_offsets(stream)
    records = [(b.unpadded, b.uncompressed) for b in blocks]
    lie = blocks.index(_zero_blocks(stream)[which])
    records[lie] = (records[lie][0], ZERO_BLOCK - 1)
    index_at = blocks[-1].offset + blocks[-1].padded
    forged = stream[:index_at] + xz._index_and_footer(records, stream[6:8])
    assert _layout(forged) is not None
    with pytest.raises(FormatError):
        _pieces(forged)


def test_a_huge_block_count_in_the_index_reads_nothing() -> None:
    stream = _ours(b"x")
    index = b"\x00" + bytes([0xFF] * 9 + [0x01])
    index += bytes(-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    backward = struct.pack("<I", len(index) // 4 - 1)
    footer = struct.pack("<I", zlib.crc32(backward + stream[6:8])) + backward + stream[6:8] + b"YZ"
    assert _layout(stream[:12] + index + footer) is None
