"""What may go into a boot entry line, a grub.cfg word or a path: checked, never escaped.

A BLS entry is `key value` lines, grub.cfg a script, /proc/cmdline words split at
whitespace; none of them has an escape that every reader honours. So a value that
could end a line or split a word is refused before anything is written, by every
writer (entries, grub.cfg, systemd-boot names, kernel names, stateroot names):

- a *word* (one kernel argument, a path, a kernel version, a stateroot name): no
  whitespace and no control characters;
- a *line* (an entry's title): spaces allowed, no control characters;
- a *name* (a path component: stateroot, kernel version): a non-empty word without
  `/` that is not `.` or `..`.

Control characters are Unicode's Cc (C0, DEL, C1 such as NEL), the line and paragraph
separators, and lone surrogates (undecodable bytes of a file name read by Python).
ostree 2022.7 writes such values and then cannot read its own entries.
"""

from __future__ import annotations

import unicodedata

from sysroot.errors import FormatError, SysrootError

_BAD_CATEGORIES = ("Cc", "Zl", "Zp", "Cs")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in _BAD_CATEGORIES


def shown(value: str) -> str:
    """value quoted for one line of an error message: control characters escaped."""
    out = []
    for c in value:
        if c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        elif _is_control(c):
            out.append(f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "'" + "".join(out) + "'"


def _describe(c: str) -> str:
    if _is_control(c):
        return f"a control character (U+{ord(c):04X})"
    return "a space" if c == " " else f"whitespace (U+{ord(c):04X})"


def check_line(value: str, what: str, error: type[SysrootError] = FormatError) -> str:
    """value, when it can be one line of a boot entry (spaces allowed)."""
    for c in value:
        if _is_control(c):
            raise error(f"Invalid {what} {shown(value)}: contains {_describe(c)}")
    return value


def check_word(value: str, what: str, error: type[SysrootError] = FormatError) -> str:
    """value, when it can be one word: no whitespace, no control characters."""
    for c in value:
        if c.isspace() or _is_control(c):
            raise error(f"Invalid {what} {shown(value)}: contains {_describe(c)}")
    return value


def check_name(value: str, what: str, error: type[SysrootError] = FormatError) -> str:
    """value, when it can be one path component that stays where it is put."""
    if not value or "/" in value or value in (".", ".."):
        raise error(f"Invalid {what} {shown(value)}")
    return check_word(value, what, error)
