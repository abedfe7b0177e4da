"""Boot Loader Specification type #1 entries (`loader/entries/*.conf`).

Entries keep their key order and repeated keys (several `initrd` lines), so an entry
read and written back is unchanged. Written the way libostree writes them: `key value`
lines, single space, in the order title, version, options, devicetree, linux, initrd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sysroot.boot import words
from sysroot.errors import FormatError

_LINE = re.compile(r"([A-Za-z][^ \t]*)[ \t](.*)", re.DOTALL)
KEY_ORDER = ("title", "version", "options", "devicetree", "linux", "initrd")
# values that are one word each (paths on the boot file system)
PATH_KEYS = ("linux", "initrd", "devicetree", "fdtdir", "efi")


@dataclass
class BootEntry:
    items: list[tuple[str, str]] = field(default_factory=list)
    filename: str = ""

    @classmethod
    def parse(cls, text: str, *, filename: str = "entry") -> BootEntry:
        """Read an entry as libostree does, so both tools see the same in a hand-edited
        one: a line that starts with an ASCII letter is `key value`, split at the first
        space or tab, the value kept exactly as written; any other line (comment, blank,
        indented, no value) is ignored. A repeated key replaces the earlier value, except
        `initrd`: later ones are extra (overlay) initrds."""
        items: list[tuple[str, str]] = []
        for line in text.split("\n"):
            m = _LINE.match(line)
            if m is None:
                continue
            key, value = m.groups()
            earlier = [i for i, (k, _) in enumerate(items) if k == key]
            if earlier and key != "initrd":
                items[earlier[0]] = (key, value)
            else:
                items.append((key, value))
        return cls(items, filename)

    def to_text(self) -> str:
        """The entry's file content; FormatError for a value that would not read back
        as written (see validate())."""
        self.validate()
        return "".join(f"{k} {v}\n" for k, v in self.items)

    def validate(self) -> None:
        """The last gate before an entry is written (words.py): each key a plain word,
        paths one word, `options` words separated by single spaces, any other value
        one line. Raises FormatError naming the entry."""
        where = f"'{self.filename}'" if self.filename else "boot entry"
        for key, value in self.items:
            # as parse() reads a key: an ASCII letter first, then no blank
            if not re.fullmatch(r"[A-Za-z]\S*", key, re.ASCII):
                raise FormatError(f"{where}: invalid key {words.shown(key)}")
            words.check_word(key, f"key in {where}")
            what = f"'{key}' value in {where}"
            if key in PATH_KEYS:
                words.check_word(value, what)
            elif key == "options":
                for word in value.split(" "):
                    words.check_word(word, f"kernel argument in {where}")
            else:
                words.check_line(value, what)

    def get(self, key: str) -> str | None:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]

    def set(self, key: str, value: str) -> None:
        """Replace the first `key` line (dropping later ones), or add it in ostree's order."""
        out, placed = [], False
        for k, v in self.items:
            if k == key:
                if not placed:
                    out.append((key, value))
                    placed = True
                continue
            out.append((k, v))
        if not placed:
            out.append((key, value))
            out.sort(
                key=lambda kv: KEY_ORDER.index(kv[0]) if kv[0] in KEY_ORDER else len(KEY_ORDER)
            )
        self.items = out

    def add(self, key: str, value: str) -> None:
        self.items.append((key, value))

    def require(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise FormatError(f"{self.filename}: boot entry has no '{key}' line")
        return value


def strverscmp_key(text: str) -> list[tuple[int, int, str]]:
    """Sort key approximating glibc strverscmp for BLS `version` values."""
    parts = re.findall(r"\d+|\D+", text)
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]
