"""An .xz writer whose long runs of zeros cost no compression time.

A disk image is mostly free space, and liblzma at preset 9 takes about 20 s a GiB to
squeeze zeros. An .xz stream may hold many blocks, each compressed on its own; a
block that holds ZERO_BLOCK zeros is the same bytes every time. So this writer cuts
the stream into blocks: each run of data is compressed as a block of its own (by
liblzma, through Python's lzma, which also computes the block's CRC64), and every
ZERO_BLOCK-long, ZERO_BLOCK-aligned stretch of zeros is the one precompressed zero
block written again. The result is one ordinary stream (xz(1), liblzma, Python's lzma
and coreos-installer's xz2 read it), with the stream header, index and footer written
here as the .xz file format 1.0.4 lays them out.

The blocks are taken out of single-block streams liblzma made: the block is what lies
between the 12-byte stream header and the index, and the index's one record gives its
unpadded and uncompressed sizes.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from typing import BinaryIO

from sysroot.errors import FormatError

ZERO_BLOCK = 4 << 20
_MAGIC = b"\xfd7zXZ\x00"
_FOOTER_MAGIC = b"YZ"
_CHECK_CRC64 = 0x04
_FLAGS = bytes([0, _CHECK_CRC64])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FormatError("xz index: a bad number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _single_block(stream: bytes) -> tuple[bytes, int, int]:
    """(block with its padding and check, unpadded size, uncompressed size) of a
    one-block stream liblzma wrote."""
    backward = struct.unpack_from("<I", stream, len(stream) - 8)[0]
    index_size = (backward + 1) * 4
    index_at = len(stream) - 12 - index_size
    index = stream[index_at : index_at + index_size]
    if index[0] != 0:
        raise FormatError("xz: no index where the footer says")
    count, pos = _read_varint(index, 1)
    if count != 1:
        raise FormatError(f"xz: {count} blocks where one was made")
    unpadded, pos = _read_varint(index, pos)
    uncompressed, pos = _read_varint(index, pos)
    return stream[12:index_at], unpadded, uncompressed


def _compress_block(data: bytes, preset: int) -> tuple[bytes, int, int]:
    return _single_block(
        lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
    )


_PAGE = 4096
_ZERO_PAGE = bytes(_PAGE)
_ZEROS = bytes(ZERO_BLOCK)


class XzWriter:
    """write() data, then close(); the stream goes to out as it is made.

    The data is looked at in 4 KiB pages of the stream: once ZERO_BLOCK / 4 KiB zero
    pages follow each other, what came before them is compressed as a block and they
    become the precompressed zero block. Data is held until then, or until block_size
    of it is pending."""

    def __init__(self, out: BinaryIO, preset: int = 9, block_size: int = 32 << 20):
        self._out = out
        self._preset = preset
        self._block_size = max(block_size, ZERO_BLOCK)
        self._pending = bytearray()  # not yet in a block; its last _zeros bytes are zero
        self._zeros = 0
        self._tail = b""  # less than a page, waiting for the rest of it
        self._records: list[tuple[int, int]] = []
        self._zero: tuple[bytes, int, int] | None = None
        self.written = 0  # bytes of the compressed stream so far
        self._emit(_MAGIC + _FLAGS + struct.pack("<I", zlib.crc32(_FLAGS)))

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def _block(self, block: tuple[bytes, int, int]) -> None:
        data, unpadded, uncompressed = block
        self._emit(data)
        self._records.append((unpadded, uncompressed))

    def _flush(self, upto: int) -> None:
        """pending[:upto] as one block."""
        if upto:
            self._block(_compress_block(bytes(self._pending[:upto]), self._preset))
            del self._pending[:upto]

    def write(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else data
        whole = len(buf) - len(buf) % _PAGE
        self._tail = bytes(buf[whole:])
        view = bytes(buf)  # slices compare with memcmp (memoryview's compare is slow)
        at = 0
        while at < whole:
            # the common case, free space: as many zeros as would complete a zero
            # block (or as the data has) compared at once
            take = min(ZERO_BLOCK - self._zeros, whole - at)
            if view[at : at + take] == _ZEROS[:take]:
                self._pending += view[at : at + take]
                self._zeros += take
                at += take
                if self._zeros == ZERO_BLOCK:
                    self._flush(len(self._pending) - ZERO_BLOCK)
                    self._pending.clear()
                    self._zeros = 0
                    self._zero_block()
                continue
            page = view[at : at + _PAGE]
            at += _PAGE
            self._pending += page
            if page == _ZERO_PAGE:
                self._zeros += _PAGE
            else:
                self._zeros = 0
                if len(self._pending) >= self._block_size:
                    self._flush(len(self._pending))

    def _zero_block(self) -> None:
        if self._zero is None:
            self._zero = _compress_block(_ZEROS, self._preset)
        self._block(self._zero)

    def close(self) -> None:
        self._pending += self._tail
        self._tail = b""
        self._flush(len(self._pending))
        index = bytearray(b"\x00" + _varint(len(self._records)))
        for unpadded, uncompressed in self._records:
            index += _varint(unpadded) + _varint(uncompressed)
        index += bytes(-len(index) % 4)
        index += struct.pack("<I", zlib.crc32(index))
        self._emit(bytes(index))
        backward = struct.pack("<I", len(index) // 4 - 1)
        self._emit(struct.pack("<I", zlib.crc32(backward + _FLAGS)) + backward + _FLAGS)
        self._emit(_FOOTER_MAGIC)
