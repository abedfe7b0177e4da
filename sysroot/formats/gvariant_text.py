"""GVariant text format, as GLib's g_variant_parse() reads it and g_variant_print() writes it.

Parsing serves `commit --add-metadata=K=V`; printing serves `show`, `log --raw` and
`--print-metadata-key`. Both follow GLib 2.74 (Debian 12, what ostree 2022.7 links)
closely enough that the same text gives the same bytes and the same value prints the same,
including GLib's error positions ("START-END:message", byte offsets into the text).

Type inference works like GLib's: every parsed node has a *pattern*, a type string that
may contain wildcards -- `*` any type, `N` any number, `S` any string kind, and an `M`
prefix meaning "this or a maybe of it". Patterns of array elements are coalesced into
one; the result is made definite (N -> i, S -> s, M dropped) and values are built for it.

`print_value(..., byteswap=True)` reproduces what `ostree show` prints on little-endian
machines: ostree byte-swaps the whole variant before printing (so the big-endian fields
it defines come out right), which turns native integers such as int32 42 into 704643072.
"""

from __future__ import annotations

import math
import re
import struct
import unicodedata
from typing import Any, NoReturn

from sysroot.errors import SysrootError, UsageError
from sysroot.formats.gvariant import GType, Variant, make_dict, parse_type, parse_types

MAX_DEPTH = 128  # G_VARIANT_MAX_RECURSION_DEPTH

_KEYWORD_TYPES = {
    "boolean": "b",
    "byte": "y",
    "int16": "n",
    "uint16": "q",
    "int32": "i",
    "handle": "h",
    "uint32": "u",
    "int64": "x",
    "uint64": "t",
    "objectpath": "o",
    "signature": "g",
    "string": "s",
    "double": "d",
}
_INT_RANGES = {
    "y": (0, 0xFF),
    "n": (-(1 << 15), (1 << 15) - 1),
    "q": (0, 0xFFFF),
    "i": (-(1 << 31), (1 << 31) - 1),
    "u": (0, 0xFFFFFFFF),
    "h": (-(1 << 31), (1 << 31) - 1),
    "x": (-(1 << 63), (1 << 63) - 1),
    "t": (0, (1 << 64) - 1),
}
_NUMERIC = "ynqiuxthd"
_BASIC = "bynqiuxthdsog"
_SPACE = " \t\n\v\f\r"  # g_ascii_isspace


class GVariantParseError(UsageError):
    """Text that g_variant_parse() would reject; the message carries GLib's position."""


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_alnum(c: str) -> bool:
    return _is_alpha(c) or "0" <= c <= "9"


# ------------------------------------------------------------------ tokens


class _Tokens:
    """GLib's token stream: one token of lookahead, positions in characters."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0  # end of the current token
        self.start = 0  # start of the current token
        self.token: str | None = None

    def _prepare(self) -> str:
        """The current token, read from the text if it was not yet."""
        if self.token is not None:
            return self.token
        t, i = self.text, self.pos
        while i < len(t) and t[i] in _SPACE:
            i += 1
        self.start = i
        if i == len(t):
            self.token = ""
            self.pos = i
            return ""
        c = t[i]
        end = i + 1
        if c == "b" and end < len(t) and t[end] in "'\"":
            end = self._quoted(end)
        elif "a" <= c <= "z":  # GLib starts words only with lower-case letters
            while end < len(t) and _is_alnum(t[end]):
                end += 1
        elif c in "-+." or "0" <= c <= "9":
            while end < len(t) and (_is_alnum(t[end]) or t[end] in "-+."):
                end += 1
        elif c == "@":
            depth = 0
            while end < len(t) and t[end] not in ",:>]" and t[end] not in _SPACE:
                if t[end] in "({":
                    depth += 1
                elif t[end] in ")}":
                    if depth == 0:
                        break
                    depth -= 1
                end += 1
        elif c in "'\"":
            end = self._quoted(i)
        self.token = t[i:end]
        self.pos = end
        return self.token

    def _quoted(self, i: int) -> int:
        t, quote = self.text, self.text[i]
        end = i + 1
        while end < len(t) and t[end] != quote:
            end += 2 if t[end] == "\\" else 1
        return min(end + 1, len(t))

    def peek(self) -> str:
        return self._prepare()

    def next(self) -> str:
        tok = self.peek()
        self.token = None
        return tok

    def consume(self, token: str) -> bool:
        if self.peek() == token:
            self.next()
            return True
        return False

    def require(self, token: str, purpose: str) -> None:
        if not self.consume(token):
            self.error(f"expected '{token}'{purpose}")

    def error(self, message: str, whole_token: bool = False) -> NoReturn:
        self._prepare()
        raise _err(self.text, (self.start, self.pos if whole_token else self.start), message)


def _err(
    text: str, ref: tuple[int, int], message: str, other: tuple[int, int] | None = None
) -> GVariantParseError:
    def b(pos: int) -> int:  # GLib counts bytes, not characters
        return len(text[:pos].encode())

    start, end = b(ref[0]), b(ref[1])
    where = str(start) if start == end else f"{start}-{end}"
    if other is not None:
        where += f",{b(other[0])}-{b(other[1])}"
    return GVariantParseError(f"{where}:{message}")


# ------------------------------------------------------------------ patterns


def _skip(p: str, i: int) -> int:
    """Index just past the one complete type (or pattern) starting at p[i]."""
    while p[i] in "amM":
        i += 1
    if p[i] in "({":
        close = ")" if p[i] == "(" else "}"
        i += 1
        while p[i] != close:
            i = _skip(p, i)
    return i + 1


def _coalesce(left: str, right: str) -> str | None:
    """The most general pattern matching both, or None (GLib's pattern_coalesce)."""
    out: list[str] = []
    pats, idx = [left, right], [0, 0]
    while idx[0] < len(left) and idx[1] < len(right):
        a, b = left[idx[0]], right[idx[1]]
        if a == b:
            out.append(a)
            idx[0] += 1
            idx[1] += 1
            continue
        for one, other in ((0, 1), (1, 0)):
            o, t = pats[one][idx[one]], pats[other][idx[other]]
            if o == "*" and t not in ")}":
                end = _skip(pats[other], idx[other])
                out.append(pats[other][idx[other] : end])
                idx[one] += 1
                idx[other] = end
            elif o == "M" and t == "m":
                out.append("m")
                idx[other] += 1
            elif o == "M" and t != "*":
                idx[one] += 1
            elif (o == "N" and t in _NUMERIC) or (o == "S" and t in "sog"):
                out.append(t)
                idx[one] += 1
                idx[other] += 1
            else:
                continue
            break
        else:
            return None
    if idx[0] < len(left) or idx[1] < len(right):
        return None
    return "".join(out)


# ------------------------------------------------------------------ syntax tree


class _Node:
    """A parsed value; ref is its (start, end) in the text."""

    maybe_wraps = True  # a plain value also parses as a maybe ("just" is implied)

    def __init__(self, text: str, ref: tuple[int, int]):
        self.text = text
        self.ref = ref

    def error(self, message: str, other: _Node | None = None) -> GVariantParseError:
        return _err(self.text, self.ref, message, other.ref if other else None)

    def type_error(self, t: GType) -> GVariantParseError:
        return self.error(f"can not parse as value of type '{t.string}'")

    def pattern(self) -> str:
        raise NotImplementedError

    def value(self, t: GType) -> Any:
        if self.maybe_wraps:
            while t.kind == "m":  # a maybe holding this value ("just" implied)
                t = t.children[0]
        return self.base_value(t)

    def base_value(self, t: GType) -> Any:
        raise NotImplementedError


def _resolve(node: _Node) -> tuple[str, Any]:
    """Pick the default type for node's pattern and build its value."""
    pattern = node.pattern()
    if "*" in pattern:
        raise node.error("unable to infer type")
    sig = pattern.replace("M", "").replace("S", "s").replace("N", "i")
    return sig, node.value(parse_type(sig))


def _common_pattern(items: list[_Node]) -> str:
    pattern = items[0].pattern()
    for i in range(1, len(items)):
        here = items[i].pattern()
        merged = _coalesce(pattern, here)
        if merged is None:
            for j in range(i):  # report the first earlier element it conflicts with
                if _coalesce(here, items[j].pattern()) is None:
                    raise items[j].error("unable to find a common type", items[i])
            raise items[i].error("unable to find a common type")
        pattern = merged
    return pattern


class _Bool(_Node):
    def __init__(self, text: str, ref: tuple[int, int], v: bool):
        super().__init__(text, ref)
        self.v = v

    def pattern(self) -> str:
        return "Mb"

    def base_value(self, t: GType) -> Any:
        if t.kind != "b":
            raise self.type_error(t)
        return self.v


_DOUBLE_PREFIX = re.compile(
    r"[+-]?(?:inf(?:inity)?|nan|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)",
    re.IGNORECASE,
)
_DBL_MIN = 2.2250738585072014e-308


class _Number(_Node):
    def __init__(self, text: str, ref: tuple[int, int], token: str):
        super().__init__(text, ref)
        self.token = token

    def pattern(self) -> str:
        tok = self.token
        if "." in tok or ("e" in tok and not tok.startswith("0x")) or "inf" in tok or "nan" in tok:
            return "Md"
        return "MN"

    def _bad_char(self, offset: int) -> GVariantParseError:
        pos = self.ref[0] + offset
        return _err(self.text, (pos, pos + 1), "invalid character in number")

    def base_value(self, t: GType) -> Any:
        if t.kind == "d":
            return self._double()
        if t.kind not in _INT_RANGES:
            raise self.type_error(t)
        tok = self.token
        negative = tok.startswith("-")
        body = tok[1:] if negative else tok
        offset = len(tok) - len(body)
        m = re.match(r"\+?(0[xX](?=[0-9a-fA-F])[0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)", body)
        if body == "":
            magnitude = 0  # GLib reads a lone "-" as zero
        elif m is None:
            raise self._bad_char(offset)
        else:
            if m.end() != len(body):
                raise self._bad_char(offset + m.end())
            digits = m.group(1)
            magnitude = int(
                digits, 16 if digits[1:2] in ("x", "X") else 8 if digits.startswith("0") else 10
            )
        if magnitude > (1 << 64) - 1:
            raise self.error("integer too big for any type")
        value = -magnitude if negative else magnitude
        lo, hi = _INT_RANGES[t.kind]
        if not lo <= value <= hi:
            raise self.error(f"number out of range for type '{t.kind}'")
        return value

    def _double(self) -> float:
        tok = self.token
        m = _DOUBLE_PREFIX.match(tok)
        if m is None:
            raise self._bad_char(0)
        if m.end() != len(tok):
            raise self._bad_char(m.end())
        text = m.group(0)
        try:
            v = float.fromhex(text) if "x" in text.lower() else float(text)
        except (ValueError, OverflowError):
            raise self.error("number too big for any type") from None
        lowered = text.lower()
        mantissa = (
            re.sub(r"p.*", "", lowered.replace("0x", ""))
            if "0x" in lowered
            else re.sub(r"e.*", "", lowered)
        )
        overflow = math.isinf(v) and "inf" not in text.lower()
        underflow = (v != 0 and abs(v) < _DBL_MIN) or (v == 0 and re.search(r"[1-9a-f]", mantissa))
        if overflow or underflow:  # strtod's ERANGE
            raise self.error("number too big for any type")
        return v


def _valid_object_path(s: str) -> bool:
    return s == "/" or re.fullmatch(r"(/[A-Za-z0-9_]+)+", s) is not None


def _valid_signature(s: str) -> bool:
    if any(c not in "ybnqiuxtdsoghva(){}" for c in s):
        return False  # D-Bus types only (GLib accepts a bare dict entry too)
    try:
        parse_types(s)
    except SysrootError:
        return False
    return True


class _String(_Node):
    def __init__(self, text: str, ref: tuple[int, int], v: str):
        super().__init__(text, ref)
        self.v = v

    def pattern(self) -> str:
        return "MS"

    def base_value(self, t: GType) -> Any:
        if t.kind == "s":
            return self.v
        if t.kind == "o":
            if not _valid_object_path(self.v):
                raise self.error("not a valid object path")
            return self.v
        if t.kind == "g":
            if not _valid_signature(self.v):
                raise self.error("not a valid signature")
            return self.v
        raise self.type_error(t)


class _ByteString(_Node):
    def __init__(self, text: str, ref: tuple[int, int], v: bytes):
        super().__init__(text, ref)
        self.v = v

    def pattern(self) -> str:
        return "May"

    def base_value(self, t: GType) -> Any:
        if t.string != "ay":
            raise self.type_error(t)
        return self.v


class _Array(_Node):
    def __init__(self, text: str, ref: tuple[int, int], items: list[_Node]):
        super().__init__(text, ref)
        self.items = items

    def pattern(self) -> str:
        return "Ma" + (_common_pattern(self.items) if self.items else "*")

    def base_value(self, t: GType) -> Any:
        if t.kind != "a":
            raise self.type_error(t)
        elem = t.children[0]
        values = [item.value(elem) for item in self.items]
        if elem.kind == "y":
            return bytes(values)
        if elem.kind == "{":
            return make_dict(values)
        return values


class _Tuple(_Node):
    def __init__(self, text: str, ref: tuple[int, int], items: list[_Node]):
        super().__init__(text, ref)
        self.items = items

    def pattern(self) -> str:
        return "M(" + "".join(item.pattern() for item in self.items) + ")"

    def base_value(self, t: GType) -> Any:
        if t.kind != "(" or len(t.children) != len(self.items):
            raise self.type_error(t)
        return tuple(item.value(c) for item, c in zip(self.items, t.children, strict=True))


class _Dict(_Node):
    """`{k: v, ...}` (a dictionary) or `{k, v}` (a single dict entry, entry=True)."""

    def __init__(
        self, text: str, ref: tuple[int, int], keys: list[_Node], values: list[_Node], entry: bool
    ):
        super().__init__(text, ref)
        self.keys, self.values, self.entry = keys, values, entry

    def pattern(self) -> str:
        if not self.keys:
            return "Ma{**}"
        key = self.keys[0].pattern().lstrip("M")
        if len(key) != 1 or key not in _BASIC + "NS":
            raise self.error("dictionary keys must have basic types")
        # like GLib, only the first entry decides the types
        inner = "{" + key + self.values[0].pattern() + "}"
        return "M" + inner if self.entry else "Ma" + inner

    def base_value(self, t: GType) -> Any:
        if self.entry:
            if t.kind != "{":
                raise self.type_error(t)
            return (self.keys[0].value(t.children[0]), self.values[0].value(t.children[1]))
        if t.kind != "a" or t.children[0].kind != "{":
            raise self.type_error(t)
        kt, vt = t.children[0].children
        return make_dict(
            [(k.value(kt), v.value(vt)) for k, v in zip(self.keys, self.values, strict=True)]
        )


class _Variant(_Node):
    def __init__(self, text: str, ref: tuple[int, int], child: _Node):
        super().__init__(text, ref)
        self.child = child

    def pattern(self) -> str:
        return "Mv"

    def base_value(self, t: GType) -> Any:
        if t.kind != "v":
            raise self.type_error(t)
        return Variant(*_resolve(self.child))


class _Maybe(_Node):
    """`just X` or `nothing`."""

    maybe_wraps = False

    def __init__(self, text: str, ref: tuple[int, int], child: _Node | None):
        super().__init__(text, ref)
        self.child = child

    def pattern(self) -> str:
        return "m" + (self.child.pattern() if self.child else "*")

    def base_value(self, t: GType) -> Any:
        if t.kind != "m":
            raise self.type_error(t)
        return None if self.child is None else self.child.value(t.children[0])


class _Typed(_Node):
    """`@TYPE value` or `KEYWORD value` (e.g. `uint64 3`)."""

    maybe_wraps = False

    def __init__(self, text: str, ref: tuple[int, int], sig: str, child: _Node):
        super().__init__(text, ref)
        self.sig = sig
        self.child = child

    def pattern(self) -> str:
        return self.sig

    def base_value(self, t: GType) -> Any:
        if t.string != self.sig:
            raise self.type_error(t)
        return self.child.value(t)


# ------------------------------------------------------------------ parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _Tokens(text)

    def parse(self, depth: int = MAX_DEPTH) -> _Node:
        toks = self.toks
        if depth == 0:
            toks.error("variant nested too deeply", True)
        tok = toks.peek()
        start = toks.start
        first = tok[:1]
        text = self.text

        def ref() -> tuple[int, int]:  # taken once the value's last token is read
            return (start, toks.pos)

        if tok == "[":
            items = self._array(depth)
            return _Array(text, ref(), items)
        if tok == "(":
            items = self._tuple(depth)
            return _Tuple(text, ref(), items)
        if tok == "<":
            toks.next()
            child = self.parse(depth - 1)
            toks.require(">", " to follow variant value")
            return _Variant(text, ref(), child)
        if tok == "{":
            keys, values, entry = self._dict(depth)
            return _Dict(text, ref(), keys, values, entry)
        if tok in ("true", "false"):
            toks.next()
            return _Bool(text, ref(), tok == "true")
        if (first and first in "-+.0123456789") or tok in ("inf", "nan"):
            toks.next()
            return _Number(text, ref(), tok)
        if tok in ("just", "nothing"):
            toks.next()
            maybe = self.parse(depth - 1) if tok == "just" else None
            return _Maybe(text, ref(), maybe)
        if first == "@" or ("a" <= first <= "z" and len(tok) >= 2 and _is_alpha(tok[1])):
            sig, child = self._typedecl(depth)
            return _Typed(text, ref(), sig, child)
        if first in ("'", '"'):
            toks.next()
            return _String(text, ref(), self._string(tok, start))
        if tok[:2] in ("b'", 'b"'):
            toks.next()
            return _ByteString(text, ref(), self._bytestring(tok, start))
        toks.error("expected value")

    def _array(self, depth: int) -> list[_Node]:
        toks = self.toks
        toks.next()
        items: list[_Node] = []
        while not toks.consume("]"):
            if items:
                toks.require(",", " or ']' to follow array element")
            items.append(self.parse(depth - 1))
        return items

    def _tuple(self, depth: int) -> list[_Node]:
        toks = self.toks
        toks.next()
        items: list[_Node] = []
        need_comma = False
        while not toks.consume(")"):
            if need_comma:
                toks.require(",", " or ')' to follow tuple element")
            items.append(self.parse(depth - 1))
            if len(items) == 1:
                toks.require(",", " after first tuple element")
            else:
                need_comma = True
        return items

    def _dict(self, depth: int) -> tuple[list[_Node], list[_Node], bool]:
        """(keys, values, a lone dict entry `{k, v}`)."""
        toks = self.toks
        toks.next()
        keys: list[_Node] = []
        values: list[_Node] = []
        if toks.consume("}"):
            return keys, values, False
        keys.append(self.parse(depth - 1))
        entry = toks.consume(",")
        if not entry:
            toks.require(":", " or ',' to follow dictionary entry key")
        values.append(self.parse(depth - 1))
        if entry:
            toks.require("}", " at end of dictionary entry")
            return keys, values, True
        while not toks.consume("}"):
            toks.require(",", " or '}' to follow dictionary entry")
            keys.append(self.parse(depth - 1))
            toks.require(":", " to follow dictionary entry key")
            values.append(self.parse(depth - 1))
        return keys, values, False

    def _typedecl(self, depth: int) -> tuple[str, _Node]:
        toks = self.toks
        tok = toks.peek()
        if tok.startswith("@"):
            try:
                sig = parse_type(tok[1:]).string
            except SysrootError:
                toks.error("invalid type declaration", True)
        elif tok in _KEYWORD_TYPES:
            sig = _KEYWORD_TYPES[tok]
        else:
            toks.error("unknown keyword", True)
        toks.next()
        return sig, self.parse(depth - 1)

    def _string(self, tok: str, start: int) -> str:
        quote, out, i = tok[0], [], 1
        ref = (start, start + len(tok))
        while True:
            if i >= len(tok):
                raise _err(self.text, ref, "unterminated string constant")
            c = tok[i]
            if c == quote:
                break
            if c == "\\":
                i += 1
                if i >= len(tok):
                    raise _err(self.text, ref, "unterminated string constant")
                e = tok[i]
                if e in "uU":
                    n = 4 if e == "u" else 8
                    out.append(self._unicode(tok, i + 1, n, start))
                    i += 1 + n
                    continue
                if e in _C_ESCAPES:
                    out.append(_C_ESCAPES[e])
                    i += 1
                    continue
                if e == "\n":  # line continuation
                    i += 1
                    continue
            out.append(tok[i])
            i += 1
        return "".join(out)

    def _unicode(self, tok: str, i: int, n: int, start: int) -> str:
        digits = tok[i : i + n]
        valid = 0
        while valid < len(digits) and digits[valid] in "0123456789abcdefABCDEF":
            valid += 1
        code = int(digits, 16) if valid == n else 0
        # GLib accepts surrogates and values past U+10FFFF and then crashes; refuse them
        if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise _err(
                self.text, (start + i, start + i + valid), f"invalid {n}-character unicode escape"
            )
        return chr(code)

    def _bytestring(self, tok: str, start: int) -> bytes:
        quote, out, i = tok[1], bytearray(), 2
        ref = (start, start + len(tok))
        while True:
            if i >= len(tok):
                raise _err(self.text, ref, "unterminated string constant")
            c = tok[i]
            if c == quote:
                break
            if c == "\\":
                i += 1
                if i >= len(tok):
                    raise _err(self.text, ref, "unterminated string constant")
                e = tok[i]
                if "0" <= e <= "7":
                    val, n = 0, 0
                    while n < 3 and i < len(tok) and "0" <= tok[i] <= "7":
                        val = (val << 3) | (ord(tok[i]) - 48)
                        i += 1
                        n += 1
                    out.append(val & 0xFF)
                    continue
                if e in _C_ESCAPES:
                    out += _C_ESCAPES[e].encode()
                    i += 1
                    continue
                if e == "\n":
                    i += 1
                    continue
            out += tok[i].encode()
            i += 1
        # GLib builds the value from a C string: it ends at the first NUL, plus one NUL
        return bytes(out).split(b"\0", 1)[0] + b"\0"


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def parse_text(text: str) -> Variant:
    """g_variant_parse() with no expected type: `42`, `'s'`, `uint64 3`, `@as []`, ...

    Raises GVariantParseError with GLib's message, e.g. "0-10:number out of range for
    type 'i'".
    """
    parser = _Parser(text)
    node = parser.parse()
    if parser.toks.peek() != "":
        parser.toks.error("expected end of input")
    return Variant(*_resolve(node))


def parse_typed(text: str, sig: str) -> Any:
    """g_variant_parse() with an expected type; returns the Python value."""
    parser = _Parser(text)
    node = parser.parse()
    if parser.toks.peek() != "":
        parser.toks.error("expected end of input")
    return node.value(parse_type(sig))


# ------------------------------------------------------------------- byteswap

_SWAP_FORMATS = {"n": "h", "q": "H", "i": "i", "u": "I", "h": "i", "x": "q", "t": "Q", "d": "d"}


def byteswap(sig: str | GType, value: Any) -> Any:
    """g_variant_byteswap(): every multi-byte number read with the other byte order."""
    t = parse_type(sig) if isinstance(sig, str) else sig
    return _swap(t, value)


def _swap(t: GType, v: Any) -> Any:
    k = t.kind
    if k in _SWAP_FORMATS:
        fmt = _SWAP_FORMATS[k]
        return struct.unpack(">" + fmt, struct.pack("<" + fmt, v))[0]
    if k == "v":
        return Variant(v.signature, _swap(parse_type(v.signature), v.value))
    if k == "m":
        return None if v is None else _swap(t.children[0], v)
    if k == "a":
        elem = t.children[0]
        if elem.alignment == 1:  # no multi-byte numbers inside
            return v
        if isinstance(v, dict):
            kt, vt = elem.children
            return make_dict((_swap(kt, key), _swap(vt, val)) for key, val in v.items())
        return [_swap(elem, item) for item in v]
    if k in "({":
        return tuple(_swap(c, item) for c, item in zip(t.children, v, strict=True))
    return v


# ------------------------------------------------------------------- printing


def print_value(
    sig: str | GType, value: Any, type_annotate: bool = True, *, byteswap: bool = False
) -> str:
    """g_variant_print(): the text form of value of type sig.

    byteswap=True prints it the way ostree's `show` does (g_variant_byteswap first).
    """
    t = parse_type(sig) if isinstance(sig, str) else sig
    if byteswap:
        value = _swap(t, value)
    out: list[str] = []
    _print(out, t, value, type_annotate)
    return "".join(out)


_STRING_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
_NUM_PREFIX = {
    "y": "byte ",
    "n": "int16 ",
    "q": "uint16 ",
    "u": "uint32 ",
    "x": "int64 ",
    "t": "uint64 ",
    "h": "handle ",
    "i": "",
    "d": "",
}


def _isprint(ch: str) -> bool:
    # g_unichar_isprint: everything but control, format, unassigned and surrogates
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cn", "Cs")


def _quote(s: str) -> str:
    quote = '"' if "'" in s else "'"
    out = [quote]
    for ch in s:
        if ch == quote or ch == "\\":
            out.append("\\")
        if _isprint(ch):
            out.append(ch)
        elif ch in _STRING_ESCAPES:
            out.append("\\" + _STRING_ESCAPES[ch])
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


_STRESCAPE = {
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x5C: "\\\\",
    0x22: '\\"',
}


def _strescape(data: bytes) -> str:
    """g_strescape(): C escapes, octal for control and non-ASCII bytes."""
    out = []
    for b in data:
        if b in _STRESCAPE:
            out.append(_STRESCAPE[b])
        elif b < 0x20 or b >= 0x7F:
            out.append(f"\\{b:03o}")
        else:
            out.append(chr(b))
    return "".join(out)


def format_double(v: float) -> str:
    """GLib's double format: %.17g, plus ".0" when it would read back as an integer."""
    # C prints the sign of a NaN; Python does not
    text = ("-nan" if math.copysign(1.0, v) < 0 else "nan") if math.isnan(v) else f"{v:.17g}"
    if not any(c in text for c in ".enN"):
        text += ".0"
    return text


def _print(out: list[str], t: GType, v: Any, ann: bool) -> None:
    k = t.kind
    if k == "b":
        out.append("true" if v else "false")
    elif k in _NUM_PREFIX:
        if ann:
            out.append(_NUM_PREFIX[k])
        out.append(format_double(v) if k == "d" else f"0x{v:02x}" if k == "y" else str(v))
    elif k == "s":
        out.append(_quote(v))
    elif k in "og":
        if ann:
            out.append("objectpath " if k == "o" else "signature ")
        out.append(f"'{v}'")
    elif k == "v":
        out.append("<")
        _print(out, parse_type(v.signature), v.value, True)
        out.append(">")
    elif k == "m":
        if ann:
            out.append(f"@{t.string} ")
        if v is None:
            out.append("nothing")
        else:
            inner = t.children[0]
            while inner.kind == "m":
                inner = inner.children[0]
            _print(out, inner, v, False)
    elif k == "a":
        _print_array(out, t, v, ann)
    elif k == "(":
        out.append("(")
        for i, (c, item) in enumerate(zip(t.children, v, strict=True)):
            if i:
                out.append(", ")
            _print(out, c, item, ann)
        if len(t.children) == 1:
            out.append(",")
        out.append(")")
    elif k == "{":
        out.append("{")
        _print(out, t.children[0], v[0], ann)
        out.append(", ")
        _print(out, t.children[1], v[1], ann)
        out.append("}")
    else:
        raise UsageError(f"cannot print GVariant type {t.string}")


def _print_array(out: list[str], t: GType, v: Any, ann: bool) -> None:
    elem = t.children[0]
    if elem.kind == "y":
        data = bytes(v)
        nul = data.find(b"\0")
        if data and nul == len(data) - 1:  # exactly one NUL, at the end: a bytestring
            body = _strescape(data[:-1])
            out.append(f'b"{body}"' if b"'" in data else f"b'{body}'")
            return
    items = list(v.items()) if isinstance(v, dict) else list(v)
    is_dict = elem.kind == "{"
    if not items:
        if ann:
            out.append(f"@{t.string} ")
        out.append("{}" if is_dict else "[]")
        return
    out.append("{" if is_dict else "[")
    for i, item in enumerate(items):
        if i:
            out.append(", ")
        if is_dict:
            _print(out, elem.children[0], item[0], ann)
            out.append(": ")
            _print(out, elem.children[1], item[1], ann)
        else:
            _print(out, elem, item, ann)
        ann = False
    out.append("}" if is_dict else "]")
