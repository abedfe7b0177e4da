"""systemd-boot with /boot on FAT (the ESP mounted at /boot): entry names as the switch.

Why not libostree's scheme: it decides the next boot with one symlink swap,
`boot/loader -> loader.N`. FAT has no symlinks (and no hard links), so `boot/loader`
must be a real directory and the next boot has to be decided some other way.

systemd-boot reads `loader/entries/*.conf` and, for entries without `sort-key` (ours
have none), sorts them by file name DESCENDING with a version compare (digit runs
compare as numbers) and boots the first. So the name is the switch:

- default (index 0): `ostree-<G>-9999-<os>.conf`;
- the others of the same configuration: `ostree-<G-1>-<R>-<os>.conf`, R = 9998 - (index-1),
  so they sort right below the default in boot order.

A new list is written (sdwriter.py) while the current default is (Gc, 9999): first the
non-defaults as (Gc, R), which all sort below the current default, so the next boot
does not change; then the new default as (Gc+1, 9999): creating that one file is the
commit; then every other entry is deleted. Each file is written as `NAME.tmp` (never
matching *.conf), fsynced and renamed.

Reading (select()) models systemd-boot: the default is the highest (G, R) among our
names whose `linux` file exists; valid non-defaults have G = Gdefault-1 and R < 9999
(by R descending); anything else is debris of an interrupted round, ignored here and
deleted by the next write or cleanup, always before the kernels or deployments it
names, and never able to change what boots (it sorts below the default or does not
boot).

Boot counting (sysroot.boot-counting-tries, backends.SystemdBootBackend): the new
default is written as `ostree-<G>-9999-<os>+N.conf`. systemd-boot takes the counter
from after the last `+` (`+LEFT` or `+LEFT-DONE`); newer versions leave it out of the
entry's id, 252 (Debian 12) keeps it, and for these names the order above decides
either way (G and R differ before the counter). It renames the file at each boot to
`+<LEFT-1>-<DONE+1>`; a good boot renames it back to no counter (bless()). An entry
with LEFT = 0 is "bad": systemd-boot sorts it after every other entry, so the next
boot takes the entry below it, the previous deployment. select() models that: a bad
round default stays the head of its round (its members are still G-1) but sorts
last, and the default is the first member that is not bad. A bad entry is only ever
a head. What boots when a head is bad is the first entry that is not: select() takes
its round (see there), so the reader agrees with systemd-boot also while a write
that replaces a counted default is being finished (sdwriter.py), with one exception:
a write cut short before its commit whose old counted default then runs out of
tries, before any command cleans up, boots the cut write's second entry (the reader
shows the old one's).

One more FAT hazard: a rename interrupted by a power cut can leave two directory
entries pointing at the same clusters, and unlinking either frees the data of the
other. remove_leftover() therefore unlinks a leftover only when it shares no data with
a sibling (FIEMAP; where that is unsupported, when no sibling has the same bytes).
"""

from __future__ import annotations

import errno
import filecmp
import os
import re
import sys
from dataclasses import dataclass, field, replace

from sysroot.boot import words
from sysroot.boot.bls import BootEntry
from sysroot.errors import FormatError
from sysroot.util import fsutil

DEFAULT_R = 9999
MAX_ENTRIES = 9998  # the default plus R = 9998 .. 1 (R = 0 kept free)
_ENTRY_RE = re.compile(r"^ostree-([0-9]+)-([0-9]+)-(.+?)(?:\+([0-9]+)(?:-([0-9]+))?)?\.conf$")
# systemd-boot takes a counter from the last `+` of any name: a stateroot name ending
# like one would be read as a counter, so the scheme refuses it
_COUNTER_LIKE = re.compile(r"\+[0-9]+(-[0-9]+)?$")
MAX_COUNTER_DIGITS = 9  # systemd-boot ignores counters above INT_MAX
FAT_TYPES = ("vfat", "msdos", "fuse.fusefat")


@dataclass(frozen=True)
class EntryName:
    g: int
    r: int
    osname: str
    left: int | None = None  # boot counting: tries left (None: not counted)
    done: int | None = None  # and tries done, when the name says (`+LEFT-DONE`)

    @property
    def filename(self) -> str:
        """The entry's file name; FormatError for a stateroot name that is no name."""
        words.check_name(self.osname, "stateroot name")
        if _COUNTER_LIKE.search(self.osname):
            raise FormatError(
                f"Invalid stateroot name {self.osname!r} for systemd-boot: "
                "it ends like a boot counter"
            )
        return f"ostree-{self.g}-{self.r}-{self.osname}{self.counter}.conf"

    @property
    def counter(self) -> str:
        """The counter part of the name: `+LEFT`, `+LEFT-DONE` or ''."""
        if self.left is None:
            return ""
        return f"+{self.left}" + (f"-{self.done}" if self.done is not None else "")

    @property
    def order(self) -> tuple[int, int]:
        return (self.g, self.r)

    @property
    def bad(self) -> bool:
        """No tries left: systemd-boot sorts the entry after all others."""
        return self.left == 0

    def counted(self, left: int | None, done: int | None = None) -> EntryName:
        """This name with another counter (left None: without one)."""
        return replace(self, left=left, done=done if left is not None else None)

    @classmethod
    def parse(cls, filename: str) -> EntryName | None:
        """None for a name this scheme never writes (debris, see select())."""
        m = _ENTRY_RE.fullmatch(filename)
        if m is None or len(m.group(1)) > 9 or len(m.group(2)) > 9:
            return None
        left, done = m.group(4), m.group(5)
        if any(c is not None and len(c) > MAX_COUNTER_DIGITS for c in (left, done)):
            return None
        try:
            words.check_name(m.group(3), "stateroot name")
        except FormatError:
            return None
        return cls(
            int(m.group(1)),
            int(m.group(2)),
            m.group(3),
            int(left) if left is not None else None,
            int(done) if done is not None else None,
        )


def non_default_r(index: int) -> int:
    return DEFAULT_R - index  # index 1 -> 9998, 2 -> 9997, ...


@dataclass
class Selection:
    """What the boot loader sees in loader/entries, sorted into the three kinds."""

    default: tuple[EntryName, BootEntry] | None = None
    others: list[tuple[EntryName, BootEntry]] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)  # file names (ours only)
    # the round's head: the default as written, also when it went bad and the
    # default is the member below it (boot counting)
    head: tuple[EntryName, BootEntry] | None = None

    @property
    def fell_back(self) -> bool:
        """Whether the round's head ran out of tries and another entry boots."""
        return (
            self.head is not None and self.default is not None and self.head[0] != self.default[0]
        )

    @property
    def entries(self) -> list[BootEntry]:
        return [e for _, e in ([self.default] if self.default else []) + self.others]


def uses_entries_dir(loader: str) -> bool:
    """Whether boot/loader is a real directory: this scheme, not the symlink swap."""
    return os.path.isdir(loader) and not os.path.islink(loader)


def is_fat(path: str) -> bool:
    try:
        return fsutil.fs_type(path) in FAT_TYPES
    except OSError:
        return False


def our_conf(name: str) -> bool:
    """Entry files this scheme owns: other *.conf (other systems on a shared ESP) stay."""
    return name.startswith("ostree-") and name.endswith(".conf")


def _read(path: str) -> BootEntry:
    try:
        with open(path, encoding="utf-8") as f:
            return BootEntry.parse(f.read(), filename=path)
    except UnicodeDecodeError:
        raise FormatError(f"{path}: boot entry is not valid UTF-8") from None


def linux_exists(boot: str, entry: BootEntry) -> bool:
    linux = entry.get("linux")
    return linux is not None and os.path.isfile(os.path.join(boot, linux.lstrip("/")))


def select(boot: str, entries_dir: str) -> Selection:
    """Sort the entries of entries_dir as systemd-boot and the reader see them."""
    try:
        names = os.listdir(entries_dir)
    except FileNotFoundError:
        return Selection()
    parsed = []
    garbage = []
    for name in names:
        if not our_conf(name):
            continue
        en = EntryName.parse(name)
        path = os.path.join(entries_dir, name)
        if en is None or os.path.islink(path) or not os.path.isfile(path):
            garbage.append(name)
        else:
            parsed.append(en)
    parsed.sort(key=lambda en: en.order, reverse=True)
    sel = Selection(garbage=garbage)
    cache: dict[str, BootEntry] = {}
    bootable = []  # in (G, R) order, up to the first that is not bad
    for en in parsed:
        try:
            entry = cache[en.filename] = _read(os.path.join(entries_dir, en.filename))
        except (FormatError, OSError):
            continue  # systemd-boot skips what it cannot parse; so does the choice
        if linux_exists(boot, entry):
            bootable.append(en)
            if not en.bad:
                break
    if not bootable:
        sel.garbage += [en.filename for en in parsed]
        return sel
    head = bootable[0]
    if head.bad and not bootable[-1].bad:
        # systemd-boot boots the first entry that is not bad: the round is its round,
        # headed by itself (R = 9999: the bad one is an older round's head) or by the
        # (bad) head one level up, when that exists (an older round that comes back
        # when the newer head goes bad before it was removed)
        good = bootable[-1]
        up = next((en for en in parsed if en.order == (good.g + 1, DEFAULT_R)), None)
        head = good if good.r == DEFAULT_R else up or head
    members = [head] + [en for en in parsed if en.g == head.g - 1 and en.r < DEFAULT_R]
    sel.garbage += [en.filename for en in parsed if en not in members]
    # systemd-boot's order: bad entries last; the default is the first that boots
    members.sort(key=lambda en: en.bad)  # stable: (G, R) descending otherwise
    entries = [
        (en, cache.get(en.filename) or _read(os.path.join(entries_dir, en.filename)))
        for en in members
    ]
    default = next((e for e in entries if linux_exists(boot, e[1])), entries[0])
    sel.head = next(e for e in entries if e[0] == head)
    sel.default = default
    sel.others = [e for e in entries if e is not default]
    return sel


# ---------------------------------------------------------------- leftovers on FAT
def _rename_partner(a: str, b: str) -> bool:
    """Whether names a and b can be the two ends of one of our renames (X.tmp or X.N.tmp
    to X): the only pairs an interrupted rename can leave sharing clusters."""
    return any(
        re.fullmatch(re.escape(final) + r"(\.[0-9]+)?\.tmp", tmp) for tmp, final in ((a, b), (b, a))
    )


def _may_share(path: str, sibling: str) -> bool:
    try:
        return fsutil.shares_extents(path, sibling)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
            raise
    # No FIEMAP (e.g. a FAT driver in user space): only a rename's two ends can share,
    # and they then read the same bytes. Different bytes prove them separate; the same
    # bytes might not be, so those count as shared.
    if not _rename_partner(os.path.basename(path), os.path.basename(sibling)):
        return False
    return os.path.getsize(path) == os.path.getsize(sibling) and filecmp.cmp(
        path, sibling, shallow=False
    )


def remove_leftover(path: str) -> bool:
    """Unlink path unless it may share its data with a live sibling (see the module
    docstring); such a one stays, with a warning. True when removed (or absent)."""
    parent, name = os.path.split(path)
    try:
        siblings = [n for n in os.listdir(parent) if n != name]
    except FileNotFoundError:
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return not os.path.lexists(path)
    for sib in siblings:
        sp = os.path.join(parent, sib)
        if os.path.isfile(sp) and not os.path.islink(sp) and _may_share(path, sp):
            print(
                f"warning: {path} may share its data with {sp} (a rename interrupted "
                "on FAT); left in place: run fsck.fat on the boot file system",
                file=sys.stderr,
            )
            return False
    os.unlink(path)
    return True


def remove_tmp_under(directory: str) -> None:
    """Leftover `*.tmp` files of interrupted writes under directory (recursively)."""
    for dirpath, _dirs, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith(".tmp"):
                remove_leftover(os.path.join(dirpath, name))
