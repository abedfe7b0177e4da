"""GVariant text format: parsing (for `commit --add-metadata=K=V`) and printing
(for `show`, `log`, `--print-metadata-key`), in the form g_variant_parse/print use.
"""

from __future__ import annotations

import re
from typing import Any

from sysroot.errors import UsageError
from sysroot.formats.gvariant import GType, Variant, parse_type

_TYPE_KEYWORDS = {
    "boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u",
    "int64": "x", "uint64": "t", "handle": "h", "double": "d", "string": "s",
    "objectpath": "o", "signature": "g",
}
_INT_RANGES = {
    "y": (0, 0xFF), "n": (-(1 << 15), (1 << 15) - 1), "q": (0, 0xFFFF),
    "i": (-(1 << 31), (1 << 31) - 1), "u": (0, 0xFFFFFFFF), "h": (-(1 << 31), (1 << 31) - 1),
    "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1),
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|inf|nan))
      | (?P<type>@[^\s\[\](){}<>,:]+)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[\[\](){}<>,:])
    )""",
    re.VERBOSE,
)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise UsageError(f"Invalid GVariant text {text!r} at offset {pos}")
            kind = m.lastgroup
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise UsageError(f"Unexpected end of GVariant text {self.text!r}")
        self.i += 1
        return tok

    def expect(self, punct: str) -> None:
        kind, val = self.take()
        if kind != "punct" or val != punct:
            raise UsageError(f"Expected '{punct}' in GVariant text {self.text!r}")

    # A value is parsed to (type string, python value).
    def value(self, want: GType | None = None) -> tuple[str, Any]:
        kind, val = self.take()
        if kind == "type":
            t = parse_type(val[1:])
            return self.value(t)
        if kind == "word" and val in _TYPE_KEYWORDS:
            return self.value(parse_type(_TYPE_KEYWORDS[val]))
        if kind == "word" and val in ("true", "false"):
            return self._check(want, "b", val == "true")
        if kind == "str":
            return self._check(want, want.kind if want and want.kind in "sog" else "s",
                               _unquote(val))
        if kind == "num":
            return self._number(val, want)
        if kind == "punct" and val == "[":
            return self._array(want)
        if kind == "punct" and val == "(":
            return self._tuple(want)
        if kind == "punct" and val == "<":
            sig, inner = self.value()
            self.expect(">")
            return self._check(want, "v", Variant(sig, inner))
        raise UsageError(f"Cannot parse {val!r} in GVariant text {self.text!r}")

    def _check(self, want: GType | None, sig: str, value: Any) -> tuple[str, Any]:
        if want is not None and want.string != sig:
            raise UsageError(f"Value in {self.text!r} is of type {sig}, expected {want.string}")
        return sig, value

    def _number(self, text: str, want: GType | None) -> tuple[str, Any]:
        sig = want.kind if want is not None else None
        is_float = any(c in text for c in ".eE") and not text.lower().startswith(("0x", "-0x"))
        if sig == "d" or (sig is None and (is_float or text in ("inf", "nan"))):
            return "d", float(text)
        sig = sig or "i"
        if sig not in _INT_RANGES:
            raise UsageError(f"Number {text} where type {sig} is expected")
        value = int(text, 0)
        lo, hi = _INT_RANGES[sig]
        if not lo <= value <= hi:
            raise UsageError(f"Number {text} is out of range for type {sig}")
        return sig, value

    def _array(self, want: GType | None) -> tuple[str, Any]:
        elem = want.children[0] if want is not None and want.kind == "a" else None
        items = []
        tok = self.peek()
        if tok == ("punct", "]"):
            self.take()
            if elem is None:
                raise UsageError(f"Cannot infer the type of an empty array in {self.text!r}")
            return want.string, b"" if elem.kind == "y" else []
        while True:
            sig, v = self.value(elem)
            if elem is None:
                elem = parse_type(sig)
            items.append(v)
            kind, val = self.take()
            if val == "]":
                break
            if val != ",":
                raise UsageError(f"Expected ',' or ']' in GVariant text {self.text!r}")
        sig = "a" + elem.string
        return sig, bytes(items) if elem.kind == "y" else items

    def _tuple(self, want: GType | None) -> tuple[str, Any]:
        children = list(want.children) if want is not None and want.kind == "(" else None
        sigs, items = [], []
        if self.peek() == ("punct", ")"):
            self.take()
            return "()", ()
        while True:
            child = children[len(items)] if children and len(items) < len(children) else None
            sig, v = self.value(child)
            sigs.append(sig)
            items.append(v)
            kind, val = self.take()
            if val == ")":
                break
            if val != ",":
                raise UsageError(f"Expected ',' or ')' in GVariant text {self.text!r}")
        return "(" + "".join(sigs) + ")", tuple(items)


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    out = []
    i = 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
               "\\": "\\", "'": "'", '"': '"'}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in escapes:
                out.append(escapes[n])
                i += 2
                continue
            if n == "u" and i + 5 < len(body) + 0:
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
                continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_text(text: str) -> Variant:
    """Parse GVariant text (e.g. `true`, `42`, `'s'`, `uint64 3`, `@as []`)."""
    p = _Parser(text)
    sig, value = p.value()
    if p.peek() is not None:
        raise UsageError(f"Trailing data in GVariant text {text!r}")
    return Variant(sig, value)


# ------------------------------------------------------------------- printing


def _quote(s: str) -> str:
    quote = "'" if "'" not in s or '"' in s else '"'
    out = [quote]
    for ch in s:
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif ord(ch) < 0x20 or ch == "\x7f" or not ch.isprintable():
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


def _fmt_double(v: float) -> str:
    text = f"{v:.17g}"
    if float(f"{v:.15g}") == v:
        text = f"{v:.15g}"
    if text in ("inf", "-inf", "nan"):
        return text
    if "." not in text and "e" not in text and "n" not in text:
        text += ".0"
    return text


_NUM_PREFIX = {"y": "byte ", "n": "int16 ", "q": "uint16 ", "u": "uint32 ", "x": "int64 ",
               "t": "uint64 ", "h": "handle ", "i": "", "d": ""}


def print_value(sig: str | GType, value: Any, type_annotate: bool = True) -> str:
    """g_variant_print(): the text form of value of type sig."""
    t = parse_type(sig) if isinstance(sig, str) else sig
    return _print(t, value, type_annotate)


def _print(t: GType, v: Any, ann: bool) -> str:
    k = t.kind
    if k == "b":
        return "true" if v else "false"
    if k in _NUM_PREFIX:
        text = _fmt_double(v) if k == "d" else (f"0x{v:02x}" if k == "y" else str(v))
        return (_NUM_PREFIX[k] if ann else "") + text
    if k == "s":
        return _quote(v)
    if k == "o":
        return ("objectpath " if ann else "") + _quote(v)
    if k == "g":
        return ("signature " if ann else "") + _quote(v)
    if k == "v":
        return "<" + _print(parse_type(v.signature), v.value, True) + ">"
    if k == "m":
        if v is None:
            return ("@" + t.string + " " if ann else "") + "nothing"
        inner = _print(t.children[0], v, ann)
        return ("just " + inner) if t.children[0].kind == "m" else inner
    if k == "a":
        elem = t.children[0]
        if elem.kind == "y" and v and isinstance(v, (bytes, bytearray)):
            return _print_bytestring(bytes(v), t, ann)
        items = list(v.items()) if isinstance(v, dict) else list(v)
        if not items:
            return ("@" + t.string + " " if ann else "") + ("{}" if elem.kind == "{" else "[]")
        if elem.kind == "{":
            parts = []
            for i, (key, val) in enumerate(items):
                a = ann and i == 0
                parts.append(_print(elem.children[0], key, a) + ": " +
                             _print(elem.children[1], val, a))
            return "{" + ", ".join(parts) + "}"
        parts = [_print(elem, item, ann and i == 0) for i, item in enumerate(items)]
        return "[" + ", ".join(parts) + "]"
    if k == "(":
        parts = [_print(c, item, ann) for c, item in zip(t.children, v, strict=True)]
        if len(parts) == 1:
            return "(" + parts[0] + ",)"
        return "(" + ", ".join(parts) + ")"
    if k == "{":
        return "{" + _print(t.children[0], v[0], ann) + ", " + _print(t.children[1], v[1], ann) \
            + "}"
    raise UsageError(f"cannot print type {t.string}")


def _print_bytestring(v: bytes, t: GType, ann: bool) -> str:
    # GLib prints a byte array as a b'' string when it is NUL-terminated printable text.
    if v.endswith(b"\0") and b"\0" not in v[:-1]:
        try:
            text = v[:-1].decode("utf-8")
            if all(ch.isprintable() or ch in "\n\t" for ch in text):
                return "b" + _quote(text)
        except UnicodeDecodeError:
            pass
    parts = [f"0x{b:02x}" for b in v]
    return "[" + ("byte " if ann else "") + ", ".join(parts) + "]"
