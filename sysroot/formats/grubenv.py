"""GRUB's environment block (`grubenv`): what `load_env`/`save_env` read and write at
boot and `grub-editenv` edits from Linux.

The file is one block (1024 bytes as grub-editenv creates it; GRUB's `save_env` only
rewrites the blocks a file already has, so its size never changes): the signature
line `# GRUB Environment Block\\n`, then `name=value\\n` lines, then `#` up to the end.
In a value, `\\` and newline are written with a `\\` before them. Reading follows
grub-core/lib/envblk.c: a line that starts with `#` is a comment; otherwise the name
runs to the first `=` (across lines, as GRUB does) and the value to the first
unescaped newline; a block that ends inside a line ends the listing there.

Values here are str (bytes decoded as UTF-8 with surrogateescape, so any byte reads
back unchanged).
"""

from __future__ import annotations

import os
import re

from sysroot.errors import FormatError
from sysroot.util import fsutil

SIGNATURE = b"# GRUB Environment Block\n"
BLOCK_SIZE = 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def parse(data: bytes, *, source: str = "grubenv") -> list[tuple[str, str]]:
    """(name, value) in file order, as `grub-editenv FILE list` prints them (a name set
    twice is listed twice; GRUB's load_env takes the later one)."""
    if not data.startswith(SIGNATURE):
        raise FormatError(f"{source}: not a GRUB environment block (no signature)")
    out = []
    p, end = len(SIGNATURE), len(data)
    while p < end:
        if data[p] != ord("#"):
            eq = data.find(b"=", p)
            if eq < 0:
                break  # GRUB: broken, the listing ends
            q = eq + 1
            while q < end and data[q] != ord("\n"):
                q += 2 if data[q] == ord("\\") else 1
            if q >= end:
                break
            value = re.sub(rb"\\(.)", rb"\1", data[eq + 1 : q], flags=re.DOTALL)
            out.append((_decode(data[p:eq]), _decode(value)))
            p = q
        # to the next line, skipping escaped characters (envblk.c find_next_line)
        while p < end and data[p] != ord("\n"):
            p += 2 if data[p] == ord("\\") else 1
        p += 1
    return out


def values(data: bytes, *, source: str = "grubenv") -> dict[str, str]:
    """name -> value as GRUB's load_env ends up with them (the last one wins)."""
    return dict(parse(data, source=source))


def render(variables: dict[str, str], size: int = BLOCK_SIZE, *, source: str = "grubenv") -> bytes:
    """The whole block for variables (in their order), padded with `#` to size.
    FormatError when a name is no GRUB variable name, a value holds a NUL byte, or
    it does not fit (GRUB could not grow the file at boot either)."""
    body = bytearray(SIGNATURE)
    for name, value in variables.items():
        if not _NAME.fullmatch(name):
            raise FormatError(f"{source}: invalid variable name {name!r}")
        raw = _encode(value)
        if b"\0" in raw:
            raise FormatError(f"{source}: the value of {name} holds a NUL byte")
        body += name.encode() + b"=" + re.sub(rb"([\\\n])", rb"\\\1", raw) + b"\n"
    if len(body) > size:
        raise FormatError(f"{source}: the variables do not fit in its {size} bytes")
    return bytes(body) + b"#" * (size - len(body))


def read(path: str) -> dict[str, str] | None:
    """The variables of the file at path; None when it does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return values(data, source=path)


def update(path: str, changes: dict[str, str | None], *, fsync: bool = True) -> dict[str, str]:
    """Set (or, for None, unset) variables in the file at path, keeping the others and
    the file's size (at least one block), by writing the whole block to a temporary
    file and renaming it over path. Returns the variables written."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = None
    current = values(data, source=path) if data is not None else {}
    for name, value in changes.items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value  # in its place if set already, as grub-editenv
    size = max(BLOCK_SIZE, len(data)) if data is not None else BLOCK_SIZE
    block = render(current, size, source=path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    fsutil.atomic_write(path, block, mode=0o644, fsync=fsync)
    return current
