"""/etc/greenboot/greenboot.conf, read the way greenboot reads it, without running bash.

greenboot `source`s the file as bash. We accept the subset such files are made of:
`KEY=VALUE` and `KEY=( word ... )` (also `+=` and a leading `export`), words unquoted,
'single-quoted' or "double-quoted" with backslash escapes, `#` comments, arrays spanning
lines. Anything that would need bash to evaluate (`$var`, `$(...)`, backquotes, commands)
is not run: that line is ignored with a warning, so the setting keeps its default.
Unknown keys are ignored silently (the file also configures the check scripts, which
source it themselves). A value we cannot use becomes the default, with a warning.

Keys: GREENBOOT_MAX_BOOT_ATTEMPTS (default 3), DISABLED_HEALTHCHECKS (a bash array of
script names), and ours, which greenboot ignores: SYSROOT_HEALTHCHECK_TIMEOUT (seconds,
or "infinity") and SYSROOT_HEALTHCHECK_TIMEOUTS=( "name.sh=SECONDS" ... ).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from sysroot.health.model import HealthConfig

CONFIG_PATH = "etc/greenboot/greenboot.conf"  # relative to the root
MAX_CONFIG_SIZE = 1 << 20

_NAME = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)(\+?=)")
_WORD_END = " \t\n;)"


class _Unsupported(Exception):
    """A construct only bash could evaluate; the assignment is ignored."""


@dataclass
class _Lexer:
    text: str
    pos: int = 0
    line: int = 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        c = self.peek()
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def skip_blanks(self, newlines: bool = False) -> None:
        """Spaces, tabs, comments (a `#` where a word could start), and optionally
        newlines."""
        while True:
            c = self.peek()
            if c in (" ", "\t") or (newlines and c == "\n"):
                self.take()
            elif self.text.startswith("\\\n", self.pos):  # a line continuation
                self.take()
                self.take()
            elif c == "#":
                while self.peek() not in ("", "\n"):
                    self.take()
            else:
                return

    def word(self) -> str:
        """One shell word: quoted and unquoted parts joined, quotes removed."""
        out: list[str] = []
        while (c := self.peek()) and c not in _WORD_END:
            self.take()
            if c == "'":
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise _Unsupported("unterminated '")
                out.append(self.text[self.pos : end])
                self.line += self.text.count("\n", self.pos, end)
                self.pos = end + 1
            elif c == '"':
                out.append(self._double_quoted())
            elif c == "\\":
                nxt = self.take()
                if nxt == "":
                    raise _Unsupported("trailing backslash")
                if nxt != "\n":  # backslash-newline joins lines
                    out.append(nxt)
            elif c in "$`":
                raise _Unsupported(f"needs bash to expand {c}")
            elif c in "(<>|&":
                raise _Unsupported(f"unexpected {c!r}")
            else:
                out.append(c)
        return "".join(out)

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            c = self.take()
            if c == "":
                raise _Unsupported('unterminated "')
            if c == '"':
                return "".join(out)
            if c in "$`":
                raise _Unsupported(f"needs bash to expand {c}")
            if c == "\\" and self.peek() in ('"', "\\", "$", "`", "\n"):
                nxt = self.take()
                if nxt != "\n":
                    out.append(nxt)
            else:
                out.append(c)

    def skip_line(self) -> None:
        while self.peek() not in ("", "\n"):
            self.take()


def parse_assignments(text: str, warnings: list[str], where: str) -> dict[str, list[str]]:
    """The variables the file sets, each as bash holds it: a list (a scalar is element 0).
    Lines we cannot take are reported in warnings and ignored."""
    lx = _Lexer(text)
    values: dict[str, list[str]] = {}
    while True:
        lx.skip_blanks(newlines=True)
        if lx.peek() == "":
            return values
        if lx.peek() == ";":
            lx.take()
            continue
        start_line = lx.line
        m = _NAME.match(lx.text, lx.pos)
        try:
            if m is None:
                raise _Unsupported("not a KEY=VALUE assignment")
            name, op = m.group(1), m.group(2)
            lx.pos = m.end()
            if lx.peek() == "(":
                lx.take()
                words: list[str] = []
                while True:
                    lx.skip_blanks(newlines=True)
                    if lx.peek() == ")":
                        lx.take()
                        break
                    if lx.peek() in ("", ";"):
                        raise _Unsupported("unterminated (")
                    words.append(lx.word())
                new = values.get(name, []) + words if op == "+=" else words
            else:
                scalar = lx.word()
                old = values.get(name, [])
                if op == "+=":
                    new = [(old[0] if old else "") + scalar, *old[1:]]
                else:
                    new = [scalar, *old[1:]]  # bash: assigning a scalar sets element 0
            lx.skip_blanks()
            if lx.peek() not in ("", "\n", ";"):
                raise _Unsupported("more than one assignment or a command")
            values[name] = new
        except _Unsupported as e:
            if "unterminated" in str(e) or "trailing" in str(e):
                # bash would refuse the whole file from here on; so do we
                warnings.append(f"{where} line {start_line}: {e}; ignoring the rest of the file")
                return values
            warnings.append(f"{where} line {start_line}: {e}; line ignored")
            lx.skip_line()


def _read(path: str, warnings: list[str]) -> str | None:
    """The file's text, or None when there is none we can use (missing: silently, as
    greenboot's `test -f`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        warnings.append(f"{path}: {e.strerror}; using the defaults")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            warnings.append(f"{path}: not a regular file; using the defaults")
            return None
        data = os.read(fd, MAX_CONFIG_SIZE + 1)
    except OSError as e:
        warnings.append(f"{path}: {e.strerror}; using the defaults")
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_SIZE:
        warnings.append(f"{path}: larger than {MAX_CONFIG_SIZE} bytes; using the defaults")
        return None
    # file names are compared as os.listdir() gives them: undecodable bytes survive
    return data.decode("utf-8", "surrogateescape")


def _seconds(value: str) -> float | None:
    """A timeout: positive seconds, or "infinity" for none. ValueError otherwise."""
    if value.strip().lower() == "infinity":
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds


def load_config(root: str, environ: Mapping[str, str] | None = None) -> HealthConfig:
    """greenboot.conf under root. environ supplies GREENBOOT_MAX_BOOT_ATTEMPTS when the
    file does not set it (greenboot sources the file after reading the environment)."""
    path = os.path.join(root, CONFIG_PATH)
    warnings: list[str] = []
    text = _read(path, warnings)
    values = parse_assignments(text, warnings, path) if text is not None else {}
    default = HealthConfig()

    attempts = default.max_boot_attempts
    raw: str | None = None
    if "GREENBOOT_MAX_BOOT_ATTEMPTS" in values:
        raw = values["GREENBOOT_MAX_BOOT_ATTEMPTS"][0]
    elif environ is not None:
        raw = environ.get("GREENBOOT_MAX_BOOT_ATTEMPTS")
    if raw is not None:
        if re.fullmatch(r"[0-9]+", raw.strip()) and int(raw) > 0:
            attempts = int(raw)
        else:
            warnings.append(
                f"{path}: GREENBOOT_MAX_BOOT_ATTEMPTS={raw!r} is not a positive integer;"
                f" using {attempts}"
            )

    timeout = default.timeout
    if "SYSROOT_HEALTHCHECK_TIMEOUT" in values:
        value = values["SYSROOT_HEALTHCHECK_TIMEOUT"][0]
        try:
            timeout = _seconds(value)
        except ValueError:
            warnings.append(
                f"{path}: SYSROOT_HEALTHCHECK_TIMEOUT={value!r} is not a positive number"
                f" of seconds or 'infinity'; using {timeout}"
            )

    timeouts: list[tuple[str, float | None]] = []
    for entry in values.get("SYSROOT_HEALTHCHECK_TIMEOUTS", []):
        name, eq, seconds = entry.rpartition("=")
        try:
            if not eq or not name or "/" in name:
                raise ValueError(entry)
            timeouts.append((name, _seconds(seconds)))
        except ValueError:
            warnings.append(
                f"{path}: SYSROOT_HEALTHCHECK_TIMEOUTS entry {entry!r} is not NAME=SECONDS; ignored"
            )

    return HealthConfig(
        max_boot_attempts=attempts,
        disabled=tuple(values.get("DISABLED_HEALTHCHECKS", [])),
        timeout=timeout,
        timeouts=tuple(timeouts),
        warnings=tuple(warnings),
    )
