"""Boot Loader Specification type #1 entries (`loader/entries/*.conf`).

Entries keep their key order and repeated keys (several `initrd` lines), so an entry
read and written back is unchanged. Written the way libostree writes them: `key value`
lines, single space, in the order title, version, options, devicetree, linux, initrd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sysroot.errors import FormatError

_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
KEY_ORDER = ("title", "version", "options", "devicetree", "linux", "initrd")


@dataclass
class BootEntry:
    items: list[tuple[str, str]] = field(default_factory=list)
    filename: str = ""

    @classmethod
    def parse(cls, text: str, *, filename: str = "entry") -> BootEntry:
        items = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            if "\t" in key:
                key, _, rest = key.partition("\t")
                value = f"{rest} {value}".strip()
            if not _KEY.match(key):
                raise FormatError(f"{filename}:{lineno}: invalid boot entry line {raw!r}")
            items.append((key, value.strip()))
        entry = cls(items, filename)
        return entry

    def to_text(self) -> str:
        return "".join(f"{k} {v}\n" for k, v in self.items)

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
            out.sort(key=lambda kv: KEY_ORDER.index(kv[0]) if kv[0] in KEY_ORDER
                     else len(KEY_ORDER))
        self.items = out

    def add(self, key: str, value: str) -> None:
        self.items.append((key, value))

    def require(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise FormatError(f"{self.filename}: boot entry has no '{key}' line")
        return value


def strverscmp_key(text: str) -> list:
    """Sort key approximating glibc strverscmp for BLS `version` values."""
    parts = re.findall(r"\d+|\D+", text)
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]
