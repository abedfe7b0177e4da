"""Unsigned LEB128 numbers: seven bits a byte, low bits first, the top bit set on every
byte but the last. The .xz index and ostree's `ostree.sizes` metadata both use them."""

from __future__ import annotations

from sysroot.errors import FormatError

# a 64-bit value takes at most ten bytes; more is a hostile or broken input
_MAX_BYTES = 10


def encode(value: int) -> bytes:
    if value < 0:
        raise ValueError("LEB128 numbers are unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """The number at pos and the position after it; FormatError if data ends inside it
    or it is longer than a 64-bit number can be."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + _MAX_BYTES)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i + 1
    raise FormatError("a truncated or overlong number")
