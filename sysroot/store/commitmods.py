"""What may go into the store on import, shared by the directory and tarball importers.

`CommitModifier` adjusts each file's uid, gid, mode and xattrs on the way in (ostree's
commit modifier flags), `PathFilter` carries the per-path rules of `--statoverride` and
`--skip-list`, and `check_utf8` refuses names GVariant cannot hold.

ostree 2022.7 applies them in this order (checked against it): `--mode-ro-executables`,
then the filter (`--owner-uid/gid`, the statoverride), then `--canonical-permissions`.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sysroot.errors import SysrootError
from sysroot.formats.ghash import GHashTableModel
from sysroot.formats.objects import DirMeta, FileHeader
from sysroot.store.repo import Repo

Xattr = tuple[bytes, bytes]  # (name with its NUL, value), as a commit records it


# A float as g_ascii_strtod reads the start of a statoverride line (decimal or hex).
_STRTOD = re.compile(
    r"\s*[+-]?(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)


def _strtod(text: str) -> float:
    m = _STRTOD.match(text)
    if not m:
        return 0.0  # strtod's answer when nothing parses
    number = m.group(0).strip()
    sign = -1.0 if number.startswith("-") else 1.0
    digits = number.lstrip("+-")
    if digits[:2].lower() == "0x":
        return sign * float.fromhex(digits)
    return sign * float(digits)


def _mode_bits(text: str, line: str) -> int:
    """ostree casts the double to a 32-bit int; bits beyond the permission bits
    would change a file's type, so they are refused rather than stored."""
    value = _strtod(text)
    bits = int(value) & 0xFFFFFFFF if abs(value) < 1 << 63 else -1
    if bits < 0 or bits & ~0o7777:
        raise SysrootError(f"Invalid mode in statoverride line '{line}': only permission bits")
    return bits


@dataclass
class PathFilter:
    """`--statoverride` and `--skip-list`, by path from the layer's root ("/", "/usr/bin").

    As ostree: a matched mode addition is used up (a second layer does not get it again)
    and so is a skip entry, an override applies to every layer; additions and skip
    entries never used are errors at the end (`unmatched`). The walk that calls these
    is single-threaded, so the tables need no lock.
    """

    mode_adds: dict[str, int] = field(default_factory=dict)
    mode_overrides: dict[str, int] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)
    # ostree reports what is left in its hash tables' order, which removals shape
    _adds_order: GHashTableModel = field(default_factory=GHashTableModel)
    _skip_order: GHashTableModel = field(default_factory=GHashTableModel)

    def add_statoverride_line(self, line: str) -> None:
        if " " not in line:
            raise SysrootError("Malformed statoverride file (no space found)")
        path = line.partition(" ")[2]
        if line.startswith("="):
            self.mode_overrides[path] = _mode_bits(line[1:], line)
        else:
            self.mode_adds[path] = _mode_bits(line, line)
            self._adds_order.insert(path)

    def add_skip(self, path: str) -> None:
        self.skip.add(path)
        self._skip_order.insert(path)

    def unmatched_adds(self) -> list[str]:
        return self._adds_order.keys()

    def unmatched_skips(self) -> list[str]:
        return self._skip_order.keys()

    def mode(self, path: str, mode: int) -> int:
        add = self.mode_adds.pop(path, None)
        if add is not None:
            self._adds_order.remove(path)
            return mode | add
        override = self.mode_overrides.get(path)
        if override is not None:
            return stat.S_IFMT(mode) | override
        return mode

    def skips(self, path: str) -> bool:
        if path in self.skip:
            self.skip.remove(path)
            self._skip_order.remove(path)
            return True
        return False

    @property
    def active(self) -> bool:
        return bool(self.mode_adds or self.mode_overrides or self.skip)


@dataclass(frozen=True)
class CommitModifier:
    """How file metadata is adjusted on the way into the repository."""

    skip_xattrs: bool = False
    canonical_permissions: bool = False
    owner_uid: int | None = None
    owner_gid: int | None = None
    consume: bool = False
    ro_executables: bool = False  # --mode-ro-executables: no write bits on executables
    path_filter: PathFilter | None = field(default=None, compare=False)

    def dir_meta(
        self, uid: int, gid: int, mode: int, xattrs: Iterable[Xattr], path: str | None = None
    ) -> DirMeta:
        uid, gid, mode = self.ids_mode(uid, gid, mode, path)
        return DirMeta(uid, gid, mode, () if self._drop_xattrs else tuple(xattrs))

    def file_header(
        self,
        st_uid: int,
        st_gid: int,
        st_mode: int,
        target: str,
        xattrs: Iterable[Xattr],
        path: str | None = None,
    ) -> FileHeader:
        uid, gid, mode = self.ids_mode(st_uid, st_gid, st_mode, path)
        return self.header(uid, gid, mode, target, xattrs)

    def header(
        self, uid: int, gid: int, mode: int, target: str, xattrs: Iterable[Xattr]
    ) -> FileHeader:
        """A header with ids and mode already modified (ids_mode); drops xattrs if asked."""
        return FileHeader(uid, gid, mode, target, () if self._drop_xattrs else tuple(xattrs))

    def skips(self, path: str) -> bool:
        return self.path_filter is not None and self.path_filter.skips(path)

    @property
    def _drop_xattrs(self) -> bool:
        return self.skip_xattrs or self.canonical_permissions

    def ids_mode(
        self, uid: int, gid: int, mode: int, path: str | None = None
    ) -> tuple[int, int, int]:
        """path (from the layer's root) is for the statoverride; None: no path rules."""
        if self.ro_executables and stat.S_ISREG(mode) and mode & 0o111:
            mode &= ~0o222
        if self.path_filter is not None and path is not None:
            mode = self.path_filter.mode(path, mode)
        if self.owner_uid is not None:
            uid = self.owner_uid
        if self.owner_gid is not None:
            gid = self.owner_gid
        if self.canonical_permissions:
            uid = gid = 0
            if stat.S_ISREG(mode):
                mode &= stat.S_IFREG | 0o755
            elif stat.S_ISDIR(mode):
                mode &= stat.S_IFDIR | 0o755
        return uid, gid, mode

    @property
    def reads_xattrs(self) -> bool:
        return not self._drop_xattrs

    @property
    def changes_metadata(self) -> bool:
        """Whether any file's uid, gid, mode or xattrs may differ from its source."""
        return (
            self.skip_xattrs
            or self.canonical_permissions
            or self.owner_uid is not None
            or self.owner_gid is not None
            or self.ro_executables
            or (self.path_filter is not None and self.path_filter.active)
        )


def for_repo(modifier: CommitModifier, repo: Repo) -> CommitModifier:
    """bare-user-only repos and core.disable-xattrs narrow what may be stored."""
    if repo.mode.forces_canonical_permissions():
        modifier = replace(modifier, canonical_permissions=True)
    if repo.disable_xattrs:
        modifier = replace(modifier, skip_xattrs=True)
    return modifier


def check_utf8(name: str, what: str, where: str) -> None:
    """OSTree stores names and link targets as GVariant strings, which must be UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        raise SysrootError(f"Invalid UTF-8 in {what} {raw!r} in {where}") from None


@dataclass(frozen=True)
class _Group:
    """A group of the match in a --tar-pathname-filter replacement."""

    ref: int | str


_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "v": "\v", "r": "\r", "f": "\f", "a": "\a", "e": "\x1b"}


@dataclass(frozen=True)
class PathnameFilter:
    """`--tar-pathname-filter=REGEX,REPLACEMENT`: every match in a member's path
    (and a hard link's target) replaced, as g_regex_replace does. The path is the
    archive's with leading "/" and "./" removed, a directory's ending in "/".

    The regex is Python's (close to PCRE for what paths need); the replacement is
    GLib's syntax: \\0-\\99 and \\g<N|name> for groups, \\t \\n \\v \\r \\f \\a \\e, \\\\.
    Other escapes (GLib's case changes, \\x) are refused before anything is read
    (ostree aborts on an escape GLib does not know)."""

    regex: re.Pattern[str]
    parts: tuple[str | _Group, ...]  # literal text, or a group

    @classmethod
    def parse(cls, spec: str) -> PathnameFilter:
        pattern, sep, replacement = spec.partition(",")
        if not sep:
            raise SysrootError("Missing ',' in --tar-pathname-filter")
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise SysrootError(
                f"--tar-pathname-filter: Error while compiling regular expression "
                f"‘{pattern}’ at char {e.pos or 0}: {e.msg}"
            ) from None
        return cls(regex, _replacement_parts(replacement, regex))

    def apply(self, path: str) -> str:
        def expand(m: re.Match[str]) -> str:
            return "".join(p if isinstance(p, str) else (m.group(p.ref) or "") for p in self.parts)

        return self.regex.sub(expand, path)


def _replacement_parts(text: str, regex: re.Pattern[str]) -> tuple[str | _Group, ...]:
    parts: list[str | _Group] = []
    literal = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            literal += c
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        group: str | int | None = None
        if nxt.isdigit():
            j = i + 2 if not (i + 2 < len(text) and text[i + 2].isdigit()) else i + 3
            group, i = int(text[i + 1 : j]), j
        elif nxt == "g" and text[i + 2 : i + 3] == "<" and ">" in text[i + 3 :]:
            end = text.index(">", i + 3)
            name = text[i + 3 : end]
            group, i = (int(name) if name.isdigit() else name), end + 1
        elif nxt in _SIMPLE_ESCAPES:
            literal, i = literal + _SIMPLE_ESCAPES[nxt], i + 2
        elif nxt == "\\":
            literal, i = literal + "\\", i + 2
        else:
            raise SysrootError(
                f"--tar-pathname-filter: Error while parsing replacement text "
                f"“{text}” at char {i}: unknown escape sequence"
            )
        if group is None:
            continue
        if (
            isinstance(group, int)
            and group > regex.groups
            or (isinstance(group, str) and group not in regex.groupindex)
        ):
            # GLib replaces a group the regex does not have with nothing, like an
            # unmatched one; a missing name is an error there too
            if isinstance(group, str):
                raise SysrootError(f"--tar-pathname-filter: unknown group name '{group}'")
            continue
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(_Group(group))
    if literal:
        parts.append(literal)
    return tuple(parts)
