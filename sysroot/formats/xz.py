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

import itertools
import lzma
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sysroot.errors import FormatError
from sysroot.formats import leb128

ZERO_BLOCK = 4 << 20
_MAGIC = b"\xfd7zXZ\x00"
_FOOTER_MAGIC = b"YZ"
_CHECK_CRC64 = 0x04
_FLAGS = bytes([0, _CHECK_CRC64])
_HEADER_SIZE = _FOOTER_SIZE = 12
# an index larger than this (about four million blocks) is not read: such a stream is
# decoded as one piece instead (see stream_blocks)
_MAX_INDEX = 16 << 20


def _header(flags: bytes) -> bytes:
    return _MAGIC + flags + struct.pack("<I", zlib.crc32(flags))


def _index_and_footer(records: list[tuple[int, int]], flags: bytes) -> bytes:
    """The index of (unpadded, uncompressed) block records and the stream footer."""
    index = bytearray(b"\x00" + leb128.encode(len(records)))
    for unpadded, uncompressed in records:
        index += leb128.encode(unpadded) + leb128.encode(uncompressed)
    index += bytes(-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    backward = struct.pack("<I", len(index) // 4 - 1)
    footer = struct.pack("<I", zlib.crc32(backward + flags)) + backward + flags + _FOOTER_MAGIC
    return bytes(index) + footer


def _index_size(footer: bytes) -> int:
    """The size of the index the 12-byte stream footer points back to."""
    if len(footer) != _FOOTER_SIZE or footer[10:] != _FOOTER_MAGIC:
        raise FormatError("xz: no stream footer")
    if struct.unpack_from("<I", footer)[0] != zlib.crc32(footer[4:10]):
        raise FormatError("xz: the stream footer's CRC32 is wrong")
    backward: int = struct.unpack_from("<I", footer, 4)[0]
    return (backward + 1) * 4


def _records(index: bytes) -> list[tuple[int, int]]:
    """The (unpadded, uncompressed) records of an index, checked against its CRC32."""
    if len(index) < 8 or index[0] != 0:
        raise FormatError("xz: no index where the footer says")
    if struct.unpack_from("<I", index, len(index) - 4)[0] != zlib.crc32(index[:-4]):
        raise FormatError("xz: the index's CRC32 is wrong")
    count, pos = leb128.decode(index, 1)
    if count > len(index) // 2:  # each record takes at least two bytes
        raise FormatError("xz: the index counts more blocks than it holds")
    records = []
    for _ in range(count):
        unpadded, pos = leb128.decode(index, pos)
        uncompressed, pos = leb128.decode(index, pos)
        if unpadded < 5:  # a block header, a byte of data and no check: never smaller
            raise FormatError("xz: a block in the index is too small")
        records.append((unpadded, uncompressed))
    if pos > len(index) - 4 or any(index[pos:-4]):
        raise FormatError("xz: the index's padding is wrong")
    return records


def _single_block(stream: bytes) -> tuple[bytes, int, int]:
    """(block with its padding and check, unpadded size, uncompressed size) of a
    one-block stream liblzma wrote."""
    index_at = len(stream) - 12 - _index_size(stream[-12:])
    records = _records(stream[index_at:-12])
    if len(records) != 1:
        raise FormatError(f"xz: {len(records)} blocks where one was made")
    unpadded, uncompressed = records[0]
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
        self._emit(_header(_FLAGS))

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
        self._emit(_index_and_footer(self._records, _FLAGS))


# --- reading ------------------------------------------------------------------------
#
# Decoding what XzWriter wrote through one liblzma decoder spends most of its time
# expanding the reused zero blocks (about 4 s for a 1 GB image here). Read block by
# block instead, with the index as the table of contents, and any block whose bytes
# are those of a block already decoded to nothing but zeros is a run of zeros without
# being decoded again: the same bytes (header, data, padding and check) decode to the
# same output, since every block starts with a fresh LZMA2 dictionary.

_OUT = 1 << 20  # the most one decoded piece holds
_SMALL_BLOCK = 64 << 10  # blocks up to this size are candidates for the zero cache
_ZERO_CACHE = 16  # distinct zero blocks remembered


@dataclass(frozen=True)
class Block:
    """A block of a stream as its index describes it."""

    offset: int  # in the file, of its header
    unpadded: int
    uncompressed: int

    @property
    def padded(self) -> int:
        return (self.unpadded + 3) & ~3


@dataclass(frozen=True)
class ZeroRun:
    """length zero bytes of the decoded stream."""

    length: int


@dataclass(frozen=True)
class StreamLayout:
    flags: bytes
    blocks: list[Block]


def stream_layout(f: BinaryIO, start: int, end: int) -> StreamLayout | None:
    """The blocks of the .xz stream that fills f[start:end], read from its index; None
    when the bytes are laid out otherwise (several streams, stream padding, an index
    too large, a damaged header or index) — such a stream is for a plain decoder, which
    also names what is wrong with it."""
    try:
        return _layout(f, start, end)
    except FormatError:
        return None


def _layout(f: BinaryIO, start: int, end: int) -> StreamLayout:
    if end - start < _HEADER_SIZE + 8 + _FOOTER_SIZE:
        raise FormatError("xz: too short")
    f.seek(start)
    header = f.read(_HEADER_SIZE)
    flags = header[6:8]
    if header != _header(flags) or flags[0] != 0 or flags[1] > 0x0F:
        raise FormatError("xz: no stream header")
    f.seek(end - _FOOTER_SIZE)
    footer = f.read(_FOOTER_SIZE)
    index_size = _index_size(footer)
    if footer[8:10] != flags:
        raise FormatError("xz: header and footer disagree")
    index_at = end - _FOOTER_SIZE - index_size
    if index_size > _MAX_INDEX or index_at < start + _HEADER_SIZE:
        raise FormatError("xz: the index does not fit")
    f.seek(index_at)
    records = _records(f.read(index_size))
    blocks, at = [], start + _HEADER_SIZE
    for unpadded, uncompressed in records:
        block = Block(at, unpadded, uncompressed)
        blocks.append(block)
        at += block.padded
    if at != index_at:
        raise FormatError("xz: the blocks do not end where the index begins")
    return StreamLayout(flags, blocks)


class BlockReader:
    """The decoded stream as pieces: bytes of at most 1 MiB, or ZeroRuns for blocks
    known to hold nothing but zeros. Each block is decoded by liblzma as a stream of its
    own (this stream's header, the block, a one-record index and a footer), so its
    check and the index's sizes for it are verified by liblzma as usual."""

    def __init__(self, f: BinaryIO, layout: StreamLayout):
        self._f = f
        self._layout = layout
        self._zero_blocks: dict[bytes, int] = {}

    def pieces(self) -> Iterator[bytes | ZeroRun]:
        for block in self._layout.blocks:
            self._f.seek(block.offset)
            if block.padded > _SMALL_BLOCK:
                yield from self._decode(block, self._read_in_pieces(block.padded))
                continue
            raw = self._f.read(block.padded)
            known = self._zero_blocks.get(raw)
            if known is not None:
                if known != block.uncompressed:
                    raise FormatError("xz: the index gives a block the wrong size")
                if known:
                    yield ZeroRun(known)
                continue
            zero = True
            for piece in self._decode(block, [raw]):
                zero = zero and piece.count(0) == len(piece)
                yield piece
            if zero and len(self._zero_blocks) < _ZERO_CACHE:
                self._zero_blocks[raw] = block.uncompressed

    def _read_in_pieces(self, n: int) -> Iterator[bytes]:
        while n:
            data = self._f.read(min(n, _OUT))
            if not data:
                raise FormatError("xz: the file ends inside a block")
            n -= len(data)
            yield data

    def _decode(self, block: Block, raw: Iterable[bytes]) -> Iterator[bytes]:
        flags = self._layout.flags
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        tail = _index_and_footer([(block.unpadded, block.uncompressed)], flags)
        try:
            d.decompress(_header(flags))
            for data in itertools.chain(raw, [tail]):
                out = d.decompress(data, max_length=_OUT)
                while True:
                    if out:
                        yield out
                    if d.eof or d.needs_input:
                        break
                    out = d.decompress(b"", max_length=_OUT)
        except (lzma.LZMAError, EOFError) as e:
            raise FormatError(f"xz: {e}") from None
        if not d.eof or d.unused_data:
            raise FormatError("xz: a block is cut short")
