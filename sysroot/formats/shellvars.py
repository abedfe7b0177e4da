"""Shell variable assignments read without a shell: the subset configuration files
that are `source`d by bash scripts are made of (greenboot's greenboot.conf).

`KEY=VALUE` and `KEY=( word ... )` (also `+=` and a leading `export`), words unquoted,
'single-quoted' or "double-quoted" with backslash escapes, `#` comments, arrays spanning
lines, `;` between assignments. Anything that would need bash to evaluate (`$var`,
`$(...)`, backquotes, commands) is never run: that line is ignored with a warning, so
the setting keeps its default; an unterminated quote ends the file (bash would refuse
the rest of it). Each variable comes back as bash holds it: a list, a scalar being
element 0. Callers decide what the values mean.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass

MAX_SIZE = 1 << 20  # such a file is a few lines; more is not one of them

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


def read_text(
    path: str, warnings: list[str], max_size: int = MAX_SIZE, *, follow_symlinks: bool = True
) -> str | None:
    """The file's text, or None when there is none we can use (missing: silently, as
    greenboot's `test -f`). follow_symlinks=False: a symlink is not followed (a tree
    that is not the running system's may point anywhere on this one), and is refused
    with a warning."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        why = "a symlink, not followed" if e.errno == errno.ELOOP else e.strerror
        warnings.append(f"{path}: {why}; using the defaults")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            warnings.append(f"{path}: not a regular file; using the defaults")
            return None
        data = os.read(fd, max_size + 1)
    except OSError as e:
        warnings.append(f"{path}: {e.strerror}; using the defaults")
        return None
    finally:
        os.close(fd)
    if len(data) > max_size:
        warnings.append(f"{path}: larger than {max_size} bytes; using the defaults")
        return None
    # file names are compared as os.listdir() gives them: undecodable bytes survive
    return data.decode("utf-8", "surrogateescape")
