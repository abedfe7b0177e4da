"""GLib key files (repo `config`, `.origin`, remotes.d), read and written as GLib does.

Comments, blank lines and the order of groups and keys survive a round trip, so a
config edited by `sysroot config set` differs from the original only in that key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sysroot.errors import FormatError

_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(value: str) -> str:
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in _ESCAPES:
            out.append(_ESCAPES[value[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def escape(value: str) -> str:
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    # like g_key_file_set_string: all leading blanks escaped, later tabs kept literally
    lead = len(out) - len(out.lstrip(" \t"))
    return out[:lead].replace(" ", "\\s").replace("\t", "\\t") + out[lead:]


@dataclass
class _Group:
    name: str
    # lines: ("key", key, raw value) or ("raw", text, "") for comments/blank lines
    lines: list[tuple[str, str, str]] = field(default_factory=list)


class KeyFile:
    def __init__(self) -> None:
        self._head: list[str] = []  # comments before the first group
        self._groups: list[_Group] = []

    # -------------------------------------------------------------- parse/serialize
    @classmethod
    def parse(cls, text: str, *, source: str = "key file") -> KeyFile:
        kf = cls()
        current: _Group | None = None
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                if current is None:
                    kf._head.append(line)
                else:
                    current.lines.append(("raw", line, ""))
                continue
            if stripped.startswith("["):
                if not stripped.endswith("]") or len(stripped) < 3:
                    raise FormatError(f"{source}:{lineno}: invalid group line {line!r}")
                name = stripped[1:-1]
                # A repeated group continues the first one, as GLib merges them.
                current = kf._group(name)
                if current is None:
                    current = _Group(name)
                    kf._groups.append(current)
                continue
            if "=" not in line:
                raise FormatError(f"{source}:{lineno}: line {line!r} is not key=value")
            if current is None:
                raise FormatError(f"{source}:{lineno}: key outside of any group")
            key, _, value = line.partition("=")
            key = key.rstrip()
            if not key:
                raise FormatError(f"{source}:{lineno}: empty key name")
            current.lines.append(("key", key, value.lstrip()))
        return kf

    def to_text(self) -> str:
        out: list[str] = list(self._head)
        for i, group in enumerate(self._groups):
            if i > 0 and (not out or out[-1].strip()):
                out.append("")
            out.append(f"[{group.name}]")
            for kind, a, b in group.lines:
                out.append(f"{a}={b}" if kind == "key" else a)
        # GLib drops trailing blank lines of the last group
        while out and not out[-1].strip():
            out.pop()
        return "\n".join(out) + "\n" if out else ""

    # -------------------------------------------------------------- access
    def _group(self, name: str) -> _Group | None:
        for g in self._groups:
            if g.name == name:
                return g
        return None

    def groups(self) -> list[str]:
        return [g.name for g in self._groups]

    def has_group(self, name: str) -> bool:
        return self._group(name) is not None

    def keys(self, group: str) -> list[str]:
        g = self._group(group)
        return [a for kind, a, _ in g.lines if kind == "key"] if g else []

    def get(self, group: str, key: str, default: str | None = None) -> str | None:
        g = self._group(group)
        if g is None:
            return default
        for kind, a, b in reversed(g.lines):
            if kind == "key" and a == key:
                return unescape(b)
        return default

    def get_bool(self, group: str, key: str, default: bool) -> bool:
        value = self.get(group, key)
        if value is None:
            return default
        if value.strip() in ("true", "1"):
            return True
        if value.strip() in ("false", "0"):
            return False
        raise FormatError(
            f"key '{key}' in group '{group}' has value '{value}' which is not a boolean"
        )

    def get_int(self, group: str, key: str, default: int) -> int:
        value = self.get(group, key)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise FormatError(
                f"key '{key}' in group '{group}' has value '{value}' which is not an integer"
            ) from None

    def get_list(self, group: str, key: str) -> list[str]:
        value = self.get(group, key)
        if value is None:
            return []
        return [v for v in value.split(";") if v]

    def set(self, group: str, key: str, value: str) -> None:
        g = self._group(group)
        if g is None:
            g = _Group(group)
            self._groups.append(g)
        for i, (kind, a, _) in enumerate(g.lines):
            if kind == "key" and a == key:
                g.lines[i] = ("key", key, escape(value))
                return
        # insert after the last key so trailing comments/blank lines stay at the end
        pos = len(g.lines)
        while pos > 0 and g.lines[pos - 1][0] == "raw" and not g.lines[pos - 1][1].strip():
            pos -= 1
        g.lines.insert(pos, ("key", key, escape(value)))

    def set_list(self, group: str, key: str, values: list[str]) -> None:
        self.set(group, key, "".join(f"{v};" for v in values))

    def remove_key(self, group: str, key: str) -> bool:
        g = self._group(group)
        if g is None:
            return False
        before = len(g.lines)
        g.lines = [ln for ln in g.lines if not (ln[0] == "key" and ln[1] == key)]
        return len(g.lines) != before

    def remove_group(self, group: str) -> bool:
        before = len(self._groups)
        self._groups = [g for g in self._groups if g.name != group]
        return len(self._groups) != before
