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
from itertools import accumulate

WINDOW = 64
CHAR_OFFSET = 31
BLOB_BITS = 13
BLOB_MASK = (1 << BLOB_BITS) - 1
MAX_CHUNK = 32768
MIN_MATCH_PERCENT = 50  # below this share of matched chunks ostree does not use rollsum
_S1_INIT = WINDOW * CHAR_OFFSET
_S2_INIT = WINDOW * (WINDOW - 1) * CHAR_OFFSET
_DROP_BIAS = WINDOW * CHAR_OFFSET
_BLOCK = 16384  # bytes summed per step while looking for a cut


def find_cut(buf: bytes | memoryview, start: int) -> int:
    """bupsplit_find_ofs over buf[start:] from a fresh state: the length up to and
    including the first byte where the sum's low bits are all set, 0 if there is none.

    The sum is linear, so it is computed a block at a time with accumulate() instead
    of byte by byte; only the low 13 bits matter, so Python's unbounded ints need no
    32-bit wraparound (2**32 is a multiple of 2**13)."""
    s1, s2 = _S1_INIT, _S2_INIT
    end = len(buf)
    pos = start
    zeros = bytes(WINDOW)
    while pos < end:
        stop = min(end, pos + _BLOCK)
        adds = buf[pos:stop]
        lo = pos - WINDOW
        if lo >= start:
            drops = bytes(buf[lo : stop - WINDOW])
        else:  # the window starts out as zeros
            drops = zeros[: start - lo] + bytes(buf[start : stop - WINDOW])
        s1s = list(accumulate(map(int.__sub__, adds, drops), initial=s1))
        s1 = s1s[-1]
        steps = map(int.__sub__, s1s[1:], [WINDOW * d + _DROP_BIAS for d in drops])
        s2s = list(accumulate(steps, initial=s2))
        s2 = s2s[-1]
        low = [v & BLOB_MASK for v in s2s[1:]]
        try:
            return pos - start + low.index(BLOB_MASK) + 1
        except ValueError:
            pos = stop
    return 0


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
    while start < len(buf):
        remaining = len(buf) - start
        if not fixed:
            n = find_cut(view, start)
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
