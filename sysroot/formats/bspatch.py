"""bspatch for the raw bsdiff stream ostree stores in delta parts (shared/docs/
static-deltas.md §3.6): no BSDIFF40/ENDSLEY header, no size field, no bzip2, just
control triples, each followed by its diff and extra bytes.

Every length is checked against what is left of the patch and of the new file, so a
hostile patch can neither write out of bounds nor make us allocate more than newsize.
"""

from __future__ import annotations

from sysroot.errors import FormatError

_INT_MAX = 0x7FFFFFFF


def _offtin(buf: bytes, pos: int) -> int:
    """bsdiff's sign-magnitude little-endian 64-bit number."""
    raw = buf[pos : pos + 8]
    mag = int.from_bytes(raw, "little") & ~(1 << 63)
    return -mag if raw[7] & 0x80 else mag


def _add_bytes(diff: bytes, old: bytes) -> bytes:
    """diff[i] + old[i] mod 256 for equal lengths, without a Python-level loop: add the
    low 7 bits of every byte (no carry can cross a byte), then xor in the top bits."""
    n = len(diff)
    low = int.from_bytes(b"\x7f" * n, "little")
    a = int.from_bytes(diff, "little")
    b = int.from_bytes(old, "little")
    return (((a & low) + (b & low)) ^ ((a ^ b) & ~low & ((1 << (8 * n)) - 1))).to_bytes(n, "little")


def bspatch(old: bytes, newsize: int, patch: bytes) -> bytes:
    new = bytearray()
    oldpos = pos = 0
    oldsize = len(old)
    while len(new) < newsize:
        if pos + 24 > len(patch):
            raise FormatError("bspatch: truncated control data")
        ctrl0, ctrl1, ctrl2 = (_offtin(patch, pos + i) for i in (0, 8, 16))
        pos += 24
        if not 0 <= ctrl0 <= _INT_MAX or not 0 <= ctrl1 <= _INT_MAX:
            raise FormatError("bspatch: invalid control data")
        if len(new) + ctrl0 > newsize:
            raise FormatError("bspatch: diff data would write past the new file")
        if pos + ctrl0 > len(patch):
            raise FormatError("bspatch: truncated diff data")
        diff = patch[pos : pos + ctrl0]
        pos += ctrl0
        # old bytes count only inside [0, oldsize); elsewhere the diff byte stands alone
        lo = min(max(oldpos, 0), oldpos + ctrl0)
        hi = max(min(oldpos + ctrl0, oldsize), lo)
        head, tail = lo - oldpos, hi - oldpos
        new += diff[:head]
        new += _add_bytes(diff[head:tail], old[lo:hi]) if hi > lo else diff[head:tail]
        new += diff[tail:]
        oldpos += ctrl0
        if len(new) + ctrl1 > newsize:
            raise FormatError("bspatch: extra data would write past the new file")
        if pos + ctrl1 > len(patch):
            raise FormatError("bspatch: truncated extra data")
        new += patch[pos : pos + ctrl1]
        pos += ctrl1
        oldpos += ctrl2
    return bytes(new)
