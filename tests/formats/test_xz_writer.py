"""formats/xz.py: the stream it writes is one ordinary .xz stream (xz(1) tests and lists
it, Python's lzma reads it), whatever the sizes of the writes, with the free space as
reused zero blocks."""

from __future__ import annotations

import io
import lzma
import random
import subprocess
from pathlib import Path

import pytest

from sysroot.formats.xz import ZERO_BLOCK, XzWriter

MIB = 1 << 20


def _data() -> bytes:
    rng = random.Random(7)
    parts = [
        rng.randbytes(5000),
        bytes(9 * MIB),  # two zero blocks and a tail of zeros
        b"abc" * 1000,
        bytes(3 * MIB),  # too short for a zero block
        rng.randbytes(100),
        bytes(ZERO_BLOCK - 4096),  # one page short
        b"x",
        bytes(ZERO_BLOCK + 123),  # not page-aligned in the stream
        rng.randbytes(3 * MIB),
        bytes(17 * MIB),
        b"end",
    ]
    return b"".join(parts)


def _write(data: bytes, chunk: int, block_size: int = 2 * MIB) -> bytes:
    out = io.BytesIO()
    w = XzWriter(out, preset=1, block_size=block_size)
    for at in range(0, len(data), chunk):
        w.write(data[at : at + chunk])
    w.close()
    assert w.written == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1000, 4096, 7777, MIB, 64 * MIB])
def test_any_write_sizes_give_the_same_stream(chunk: int) -> None:
    data = _data()
    stream = _write(data, chunk)
    assert lzma.decompress(stream, format=lzma.FORMAT_XZ) == data
    assert stream == _write(data, 4096)  # blocks are cut by the data, not by the writes


def test_xz_tests_and_lists_one_stream_of_many_blocks(tmp_path: Path) -> None:
    data = _data()
    path = tmp_path / "s.xz"
    path.write_bytes(_write(data, MIB))
    subprocess.run(["xz", "-t", str(path)], check=True)
    assert subprocess.run(["xz", "-dc", str(path)], capture_output=True, check=True).stdout == data
    listing = subprocess.run(
        ["xz", "--robot", "--list", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    streams, blocks = next(line.split("\t")[1:3] for line in listing if line.startswith("file"))
    assert streams == "1"
    assert int(blocks) >= 7  # the zero stretches are blocks of their own
    check = next(line for line in listing if line.startswith("file")).split("\t")[6]
    assert check == "CRC64"


def test_zeros_cost_one_block_each_time() -> None:
    stream = _write(bytes(64 * MIB), MIB)
    one = _write(bytes(ZERO_BLOCK), MIB)
    # sixteen copies of the same block: a few hundred bytes each, no matter the preset
    assert len(stream) < 16 * len(one)
    assert lzma.decompress(stream) == bytes(64 * MIB)


def test_an_empty_stream() -> None:
    assert lzma.decompress(_write(b"", MIB)) == b""
