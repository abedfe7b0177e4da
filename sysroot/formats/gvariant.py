"""GVariant binary serialization, for the fixed set of types OSTree uses.

OSTree stores every metadata object as a GVariant in normal form, so byte-exact
compatibility needs a byte-exact encoder. Values map to Python as:

    y n q i u x t  -> int         b -> bool        d -> float
    s o g          -> str         ay -> bytes      v -> Variant
    a{..}          -> dict (insertion order is kept: OSTree does not sort)
    a*             -> list        (...) / {..} -> tuple       m* -> None or value

Numbers are little-endian, as GVariant is on the machines we run on; OSTree's
big-endian fields are converted by the callers (see objects.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn

from sysroot.errors import FormatError

_BASIC_FIXED = {
    "y": (1, "<B"),
    "b": (1, "<B"),
    "n": (2, "<h"),
    "q": (2, "<H"),
    "i": (4, "<i"),
    "u": (4, "<I"),
    "h": (4, "<i"),
    "x": (8, "<q"),
    "t": (8, "<Q"),
    "d": (8, "<d"),
}
_STRINGS = "sog"


@dataclass(frozen=True)
class Variant:
    """A value of type 'v': a type string and a value of that type."""

    signature: str
    value: Any

    def __repr__(self) -> str:
        return f"Variant({self.signature!r}, {self.value!r})"


class MultiDict(dict[Any, Any]):
    """An a{..} value with repeated keys, which GVariantBuilder (and so `ostree commit`)
    can produce. Lookups see the first entry, like g_variant_lookup_value(); items()
    returns every entry in order, so it re-encodes to the same bytes.
    """

    def __init__(self, pairs: Iterable[tuple[Any, Any]]):
        super().__init__()
        self.pairs = list(pairs)
        for key, val in self.pairs:
            self.setdefault(key, val)

    # every pair in order, repeated keys included, where dict's view would drop them
    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(self.pairs)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("MultiDict is read-only: build a new one with make_dict()")

    __setitem__ = __delitem__ = update = pop = popitem = clear = _read_only

    def __reduce__(
        self,
    ) -> tuple[type[MultiDict], tuple[list[tuple[Any, Any]]]]:  # copy and pickle through the pairs
        return (MultiDict, (self.pairs,))

    def __repr__(self) -> str:
        return f"MultiDict({self.pairs!r})"


def make_dict(pairs: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """A dict of the (key, value) pairs; a MultiDict when a key repeats."""
    pairs = list(pairs)
    d = dict(pairs)
    return d if len(d) == len(pairs) else MultiDict(pairs)


class GType:
    """A parsed type: kind is the leading character ('a', '(', '{', 'm', or a basic)."""

    __slots__ = ("string", "kind", "children", "fixed_size", "alignment", "_struct")

    fixed_size: int | None  # None: the size varies with the value
    alignment: int
    _struct: struct.Struct | None

    def __init__(self, string: str, kind: str, children: tuple[GType, ...]):
        self.string = string
        self.kind = kind
        self.children = children
        self._struct = None
        if kind in _BASIC_FIXED:
            self.fixed_size, fmt = _BASIC_FIXED[kind]
            self.alignment = self.fixed_size
            self._struct = struct.Struct(fmt)
        elif kind in _STRINGS:
            self.fixed_size, self.alignment = None, 1
        elif kind == "v":
            self.fixed_size, self.alignment = None, 8
        elif kind in "am":
            self.fixed_size, self.alignment = None, children[0].alignment
        else:  # struct or dict entry
            self.alignment = max((c.alignment for c in children), default=1)
            size: int | None = 0
            for c in children:
                if size is None or c.fixed_size is None:
                    size = None  # one variable-sized member makes the struct so
                else:
                    size = _align(size, c.alignment) + c.fixed_size
            if size is not None:
                size = _align(size, self.alignment) if children else 1
            self.fixed_size = size

    def __repr__(self) -> str:
        return f"GType({self.string!r})"


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


@cache
def parse_type(signature: str) -> GType:
    t, rest = _parse_one(signature)
    if rest:
        raise FormatError(f"invalid GVariant type string {signature!r}")
    return t


def parse_types(signature: str) -> tuple[GType, ...]:
    """A sequence of complete types (a D-Bus signature holds several); FormatError if
    it is not one."""
    types = []
    rest = signature
    while rest:
        t, rest = _parse_one(rest)
        types.append(t)
    return tuple(types)


def _parse_one(s: str) -> tuple[GType, str]:
    if not s:
        raise FormatError("truncated GVariant type string")
    c = s[0]
    if c in _BASIC_FIXED or c in _STRINGS or c == "v":
        return GType(c, c, ()), s[1:]
    if c in "am":
        child, rest = _parse_one(s[1:])
        return GType(s[: len(s) - len(rest)], c, (child,)), rest
    if c in "({":
        close = ")" if c == "(" else "}"
        rest = s[1:]
        children = []
        while rest and rest[0] != close:
            child, rest = _parse_one(rest)
            children.append(child)
        if not rest:
            raise FormatError(f"unterminated GVariant type string {s!r}")
        rest = rest[1:]
        if c == "{" and (
            len(children) != 2 or children[0].kind not in set(_BASIC_FIXED) | set(_STRINGS)
        ):
            raise FormatError(f"invalid dict entry type in {s!r}")
        return GType(s[: len(s) - len(rest)], c, tuple(children)), rest
    raise FormatError(f"invalid character {c!r} in GVariant type string")


def _offset_size(container_size: int) -> int:
    if container_size <= 0xFF:
        return 1
    if container_size <= 0xFFFF:
        return 2
    if container_size <= 0xFFFFFFFF:
        return 4
    return 8


def append_offsets(buf: bytearray, offsets: list[int]) -> None:
    """Append a framing-offset table, choosing the width for the final size (for
    hand-framed encoders of hot types, e.g. DirTree.serialize)."""
    if not offsets:
        return
    body = len(buf)
    for width in (1, 2, 4, 8):
        if body + len(offsets) * width <= (1 << (8 * width)) - 1 or width == 8:
            break
    for off in offsets:
        buf += off.to_bytes(width, "little")


# ---------------------------------------------------------------- encoding


def encode(signature: str | GType, value: Any) -> bytes:
    t = parse_type(signature) if isinstance(signature, str) else signature
    buf = bytearray()
    _encode_into(buf, t, value)
    return bytes(buf)


def _pad(buf: bytearray, alignment: int) -> None:
    if alignment > 1:
        buf += b"\0" * (-len(buf) % alignment)


def _encode_into(buf: bytearray, t: GType, value: Any) -> None:
    """Append value serialized as t; buf must start at an alignment boundary of t."""
    k = t.kind
    if t._struct is not None:
        buf += t._struct.pack(int(value) if k != "d" else value)
    elif k in _STRINGS:
        data = value.encode("utf-8")
        if b"\0" in data:
            raise FormatError("string contains a NUL byte")
        buf += data + b"\0"
    elif k == "v":
        child = parse_type(value.signature)
        _encode_into(buf, child, value.value)
        buf += b"\0" + value.signature.encode("ascii")
    elif k == "a":
        _encode_array(buf, t.children[0], value)
    elif k == "m":
        if value is not None:
            child = t.children[0]
            _encode_into(buf, child, value)
            if child.fixed_size is None:
                buf += b"\0"
    else:
        _encode_struct(buf, t.children, value, t)


def _encode_array(buf: bytearray, elem: GType, value: Any) -> None:
    if elem.kind == "y":
        buf += bytes(value)
        return
    if elem.kind == "{" and isinstance(value, dict):
        value = list(value.items())
    if elem.fixed_size is not None:
        for item in value:
            _encode_into(buf, elem, item)
        return
    if not value:
        return
    sub = bytearray()
    offsets = []
    for item in value:
        _pad(sub, elem.alignment)
        _encode_into(sub, elem, item)
        offsets.append(len(sub))
    append_offsets(sub, offsets)
    buf += sub


def _encode_struct(buf: bytearray, children: tuple[GType, ...], value: Any, t: GType) -> None:
    if len(value) != len(children):
        raise FormatError(
            f"value for {t.string} has {len(value)} members, expected {len(children)}"
        )
    if not children:
        buf += b"\0"
        return
    sub = bytearray()
    offsets = []
    last = len(children) - 1
    for i, (child, item) in enumerate(zip(children, value, strict=True)):
        _pad(sub, child.alignment)
        _encode_into(sub, child, item)
        if child.fixed_size is None and i != last:
            offsets.append(len(sub))
    if t.fixed_size is not None:
        _pad(sub, t.alignment)
    else:
        offsets.reverse()
        append_offsets(sub, offsets)
    buf += sub


# ---------------------------------------------------------------- decoding


def decode(signature: str | GType, data: bytes | memoryview) -> Any:
    """Decode data as the given type; raises FormatError on malformed input."""
    t = parse_type(signature) if isinstance(signature, str) else signature
    try:
        return _decode(t, memoryview(data))
    except FormatError:
        raise
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise FormatError(f"malformed {t.string} data: {e}") from e


def _read_uint(view: memoryview, start: int, width: int) -> int:
    return int.from_bytes(view[start : start + width], "little")


def _decode(t: GType, view: memoryview) -> Any:
    k = t.kind
    if t._struct is not None:
        if len(view) != t.fixed_size:
            raise FormatError(f"{k} value has {len(view)} bytes, expected {t.fixed_size}")
        v = t._struct.unpack(view)[0]
        if k == "b":
            if v > 1:
                raise FormatError("boolean value is neither 0 nor 1")
            return bool(v)
        return v
    if k in _STRINGS:
        if not view or view[-1] != 0:
            raise FormatError("string is not NUL-terminated")
        raw = bytes(view[:-1])
        if b"\0" in raw:
            raise FormatError("string contains a NUL byte")
        return raw.decode("utf-8")
    if k == "v":
        raw = bytes(view)
        nul = raw.rfind(b"\0")
        if nul < 0:
            raise FormatError("variant has no type signature")
        sig = raw[nul + 1 :].decode("ascii")
        child = parse_type(sig)
        return Variant(sig, _decode(child, view[:nul]))
    if k == "a":
        return _decode_array(t.children[0], view)
    if k == "m":
        if not view:
            return None
        child = t.children[0]
        if child.fixed_size is None:
            if view[-1] != 0:
                raise FormatError("maybe value lacks its trailing zero")
            view = view[:-1]
        return _decode(child, view)
    return _decode_struct(t, view)


def _decode_array(elem: GType, view: memoryview) -> Any:
    if elem.kind == "y":
        return bytes(view)
    dict_like = elem.kind == "{"
    if elem.fixed_size is not None:
        size = elem.fixed_size
        if len(view) % size:
            raise FormatError(f"array of {elem.string} has a size not a multiple of {size}")
        items = [_decode(elem, view[i : i + size]) for i in range(0, len(view), size)]
        return make_dict(items) if dict_like else items
    n = len(view)
    if n == 0:
        return {} if dict_like else []
    width = _offset_size(n)
    last_end = _read_uint(view, n - width, width)
    table = n - last_end
    if last_end > n or table % width or table == 0:
        raise FormatError(f"array of {elem.string} has a bad framing offset table")
    count = table // width
    items = []
    start = 0
    for i in range(count):
        end = _read_uint(view, last_end + i * width, width)
        start = _align(start, elem.alignment)
        if end < start or end > last_end:
            raise FormatError(f"array of {elem.string} has an out-of-range element offset")
        items.append(_decode(elem, view[start:end]))
        start = end
    return make_dict(items) if dict_like else items


def _decode_struct(t: GType, view: memoryview) -> tuple[Any, ...]:
    children = t.children
    n = len(view)
    if t.fixed_size is not None and n != t.fixed_size:
        raise FormatError(f"{t.string} value has {n} bytes, expected {t.fixed_size}")
    if not children:
        return ()
    width = _offset_size(n)
    frame = 0
    pos = 0
    last = len(children) - 1
    n_offsets = sum(1 for i, c in enumerate(children) if c.fixed_size is None and i != last)
    limit = n - width * n_offsets
    out = []
    for i, child in enumerate(children):
        pos = _align(pos, child.alignment)
        if child.fixed_size is not None:
            end = pos + child.fixed_size
        elif i == last:
            end = n - width * n_offsets
        else:
            frame += 1
            end = _read_uint(view, n - width * frame, width)
        if end < pos or end > limit:
            raise FormatError(f"{t.string} value has an out-of-range member offset")
        out.append(_decode(child, view[pos:end]))
        pos = end
    return tuple(out)


def is_normal_form(signature: str, data: bytes) -> bool:
    """True when data re-encodes to itself: the check OSTree applies to metadata."""
    try:
        return encode(signature, decode(signature, data)) == bytes(data)
    except FormatError:
        return False
