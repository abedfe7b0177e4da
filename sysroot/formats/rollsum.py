"""ostree's rollsum chunking and chunk matching (shared/docs/static-deltas.md §4.3), used
by the static-delta generator to rebuild a changed file from pieces of its old version.

A buffer is cut where bup's rolling sum (64-byte window) has its low 13 bits all set,
restarting the sum after every cut; chunks are capped at 32 KiB, and once no cut is left
in the rest of the buffer it is cut in fixed 32 KiB pieces. A new chunk matches the first
old chunk with the same crc32, length and bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

WINDOW = 64
CHAR_OFFSET = 31
BLOB_BITS = 13
BLOB_MASK = (1 << BLOB_BITS) - 1
MAX_CHUNK = 32768
MIN_MATCH_PERCENT = 50  # below this share of matched chunks ostree does not use rollsum
_S1_INIT = WINDOW * CHAR_OFFSET
_S2_INIT = WINDOW * (WINDOW - 1) * CHAR_OFFSET
_DROP_BIAS = WINDOW * CHAR_OFFSET
# The sum at a byte depends only on the 64 bytes ending there: each byte adds its value
# to s2 once per step it spends in the window (1 for the newest ... 64 for the oldest)
# and takes it all back when it leaves. So s2 = _S2_INIT + sum((a + 1) * buf[k - a]),
# a convolution, computed for a whole buffer at once as one big-integer product with a
# byte in each 3-byte lane (a lane's sum stays below 2**20: no carries between lanes).
_LANE = 3
_RAMP = sum((a + 1) << (8 * _LANE * a) for a in range(WINDOW))
_TARGET = (BLOB_MASK - _S2_INIT) & BLOB_MASK  # what the weighted sum must be, mod 2**13
_LOW_BYTE = bytes(0xFF if v == _TARGET & 0xFF else 0 for v in range(256))
_HIGH_BITS = bytes(0xFF if v & (BLOB_MASK >> 8) == _TARGET >> 8 else 0 for v in range(256))


def _cut_map(buf: bytes) -> bytes:
    """0xFF at every byte where the sum over the 64 bytes ending there (zeros before
    the buffer) makes a cut, 0 elsewhere."""
    n = len(buf)
    lanes = bytearray(_LANE * n)
    lanes[0::_LANE] = buf
    sums = (int.from_bytes(lanes, "little") * _RAMP).to_bytes(_LANE * (n + WINDOW) + 8, "little")
    low = int.from_bytes(sums[0 : _LANE * n : _LANE].translate(_LOW_BYTE), "little")
    high = int.from_bytes(sums[1 : _LANE * n : _LANE].translate(_HIGH_BITS), "little")
    return (low & high).to_bytes(n, "little")


class Cutter:
    """bupsplit_find_ofs for any start in one buffer."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.map = _cut_map(buf)

    def find(self, start: int) -> int:
        """The length up to and including the first byte from start where the sum,
        started fresh at start, has its low bits all set; 0 if there is none."""
        buf, n = self.buf, len(self.buf)
        head = start
        if start > 0:
            # the first 63 sums' windows reach before start, where a fresh state has
            # zeros: compute those few directly
            s1 = s2 = 0
            head = min(n, start + WINDOW - 1)
            for k in range(start, head):
                s1 += buf[k]
                s2 += s1
                if (s2 + _S2_INIT) & BLOB_MASK == BLOB_MASK:
                    return k - start + 1
        k = self.map.find(0xFF, head)
        return 0 if k < 0 else k - start + 1


def find_cut(buf: bytes, start: int) -> int:
    return Cutter(buf).find(start)


def find_cut_reference(buf: bytes, start: int) -> int:
    """find_cut byte by byte, as bupsplit.c does it (for tests)."""
    s1, s2 = _S1_INIT, _S2_INIT
    window = bytearray(WINDOW)
    for count, add in enumerate(buf[start:]):
        drop = window[count % WINDOW]
        window[count % WINDOW] = add
        s1 = (s1 + add - drop) & 0xFFFFFFFF
        s2 = (s2 + s1 - WINDOW * (drop + CHAR_OFFSET)) & 0xFFFFFFFF
        if s2 & BLOB_MASK == BLOB_MASK:
            return count + 1
    return 0


@dataclass(frozen=True)
class Chunk:
    crc: int
    start: int
    length: int


def chunks(buf: bytes) -> list[Chunk]:
    """The buffer's chunks in file order."""
    out: list[Chunk] = []
    start = 0
    fixed = False
    view = memoryview(buf)
    cutter = Cutter(buf)
    while start < len(buf):
        remaining = len(buf) - start
        if not fixed:
            n = cutter.find(start)
            if n == 0:
                fixed = True
                n = min(MAX_CHUNK, remaining)
            n = min(n, MAX_CHUNK)
        else:
            n = min(MAX_CHUNK, remaining)
        out.append(Chunk(zlib.crc32(view[start : start + n]), start, n))
        start += n
    return out


@dataclass(frozen=True)
class Match:
    to_start: int
    length: int
    from_start: int


@dataclass(frozen=True)
class Matches:
    matches: list[Match]  # sorted by to_start
    total: int  # chunks of the new buffer

    @property
    def percent(self) -> int:
        return len(self.matches) * 100 // self.total if self.total else 0

    @property
    def usable(self) -> bool:
        return self.total > 0 and self.percent >= MIN_MATCH_PERCENT


def match(old: bytes, new: bytes) -> Matches:
    by_crc: dict[int, list[Chunk]] = {}
    for c in chunks(old):
        by_crc.setdefault(c.crc, []).append(c)
    found: list[Match] = []
    new_chunks = chunks(new)
    for c in new_chunks:
        piece = new[c.start : c.start + c.length]
        for o in by_crc.get(c.crc, ()):
            if o.length == c.length and old[o.start : o.start + o.length] == piece:
                found.append(Match(c.start, c.length, o.start))
                break
    return Matches(found, len(new_chunks))
