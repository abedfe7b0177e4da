"""Boot-loader back ends, chosen by `sysroot.bootloader` in the repo config (ostree's
key and values: none, auto, grub2, systemd-boot; BootloaderKind).

- `none`: BLS entries only, in `boot/loader.N/entries`, switched by the one symlink
  swap `boot/loader -> loader.N` (libostree's scheme; a BLS-aware loader reads them).
- `grub2` (grub2.py): as `none`, plus a `grub.cfg` generated into each loader.N from
  its entries, and `boot/grub/grub.cfg -> ../loader/grub.cfg`, for GRUBs without BLS
  support (Debian's): the same swap switches the menu.
- `systemd-boot` (systemd_boot.py, deploy/sdwriter.py): for /boot on FAT (the ESP),
  where no symlink can exist: `boot/loader` is a real directory and entry file names
  decide what systemd-boot boots.
- `auto`: systemd-boot when /boot is FAT or boot/loader already is a real directory;
  grub2 when boot/grub/grub.cfg or boot/grub2/grub.cfg exists; else none.

Each back end owns everything in which it differs from the others: its on-disk scheme
(BootScheme; deploy/ maps it to the writer class), how the active entries, the commit
marker and the boot serials are read, what cleanup removes, and its part of the boot
invariant. A new concern that differs per back end (boot counting) is one more
abstract method on Backend, so no back end can be left without it.

Boot counting (sysroot.boot-counting-tries=N in the repo config, ostree's proposed
key; 0 or absent: off, and every file is written exactly as without it): when a write
makes a new deployment the default (the transaction decides: CountPlan), the back
end arms it with N tries (arm(), part of the write, around its commit point); at
each boot the boot loader counts a try; a good boot blesses it (bless()), a bad one
may say so at once (mark_bad()); when no try is left the boot loader boots the
previous deployment. counting_state() reads where that stands. N is the repo key's
unless the system's /etc/greenboot/greenboot.conf sets GREENBOOT_MAX_BOOT_ATTEMPTS
(deploy/counttries.py sets Backend.tries for the write; the key stays the switch).
- systemd-boot: the counter is in the default entry's file name (systemd_boot.py);
  systemd-boot counts and falls back itself, systemd-bless-boot may bless instead.
- grub2: greenboot's grubenv variables, counted by the script grub.cfg then carries
  (grub2.py), in boot/grub/grubenv (formats/grubenv.py).
- none: refused (check_counting()): the boot loader is someone else's, and no BLS
  loader we could leave it to counts in loader.N (systemd-boot cannot read a
  symlinked loader/, Fedora's blscfg GRUB does not count).

A back end's write_config() runs after the entries of loader.N are written, before the
swap; post_swap() after it. `layout` arguments are deploy/layout.py's SysrootLayout
(only its paths are used here; boot/ does not import deploy/).
"""

from __future__ import annotations

import abc
import enum
import errno
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sysroot.boot import grub2, systemd_boot
from sysroot.boot.bls import BootEntry, strverscmp_key
from sysroot.boot.kargs import KernelArgs
from sysroot.errors import FormatError, SysrootError
from sysroot.formats import grubenv
from sysroot.util import fsutil

COUNTING_KEY = "boot-counting-tries"  # in [sysroot] of the repo config
MAX_TRIES = grub2.MAX_TRIES  # one digit: GRUB script steps through fixed values


class BootLayout(Protocol):
    """The paths back ends use of deploy/layout.py's SysrootLayout (boot/ does not import
    deploy/, so it names what it needs)."""

    @property
    def boot(self) -> str: ...
    @property
    def loader_link(self) -> str: ...
    @property
    def loader_entries_dir(self) -> str: ...
    def path(self, *parts: str) -> str: ...
    def loader_dir(self, bootversion: int) -> str: ...
    def entries_dir(self, bootversion: int) -> str: ...
    def bootlink_base(self, bootversion: int) -> str: ...
    def bootlink_dir(self, bootversion: int, subbootversion: int) -> str: ...


class RepoConfig(Protocol):
    """The configuration backend_for() reads (a repository's KeyFile)."""

    def get(self, group: str, key: str, default: str | None = None) -> str | None: ...


class ConfiguredRepo(Protocol):
    """What backend_for() needs of a repository (store/'s Repo): boot/ knows files, not
    repositories."""

    @property
    def path(self) -> str: ...
    @property
    def config(self) -> RepoConfig: ...


# What a write's commit point changes (Backend.commit_marker()): (bootversion,
# subbootversion) for the loader.N scheme, ("entries", default entry's file name) for
# systemd-boot. Only compared for equality.
CommitMarker = tuple[int, int] | tuple[str, str | None]
# (deployment, its entry) in boot order, as the writer hands them to a back end; the
# deployment is deploy/'s and opaque here
WrittenEntries = Sequence[tuple[object, BootEntry]]


class BootloaderKind(enum.Enum):
    """The values of sysroot.bootloader, spelled exactly as ostree's config has them."""

    NONE = "none"
    GRUB2 = "grub2"
    SYSTEMD_BOOT = "systemd-boot"
    AUTO = "auto"

    def resolve(self, layout: BootLayout) -> BootloaderKind:
        """AUTO as detect() decides for this sysroot; any other kind is itself."""
        return detect(layout) if self is BootloaderKind.AUTO else self


class BootScheme(enum.Enum):
    """How the next boot is switched on disk: what every reader and writer follows."""

    LOADER_SYMLINK = "symlink"  # boot/loader -> loader.N, swapped in one rename
    ENTRIES_DIR = "entries-dir"  # boot/loader a real directory: entry names decide


@dataclass
class BootListing:
    """The active boot configuration as its scheme reads it."""

    entries: list[BootEntry]  # in boot order
    marker: CommitMarker  # what a write's commit point changes (see commit_marker())
    bootversion: int = 0
    subbootversion: int = 0
    garbage: list[str] = field(default_factory=list)  # ENTRIES_DIR: debris, file names


class CountPlan(enum.Enum):
    """What a write does to the boot counting of its new default (the transaction
    decides, deploy/transaction.py)."""

    ARM = "arm"  # a new default, not the booted one: N tries
    KEEP = "keep"  # the default stays: its counting goes on as it is
    CLEAR = "clear"  # the booted deployment becomes the default: not counted


class CountStatus(enum.Enum):
    """Where the counting of the default stands."""

    OFF = "off"  # not counted: never armed, or (systemd-boot) blessed
    ARMED = "armed"  # tries left, not blessed yet
    BLESSED = "blessed"  # marked good (grub2: boot_success=1)
    BAD = "bad"  # no tries left: the next boot falls back (or, alone, boots it)
    FELL_BACK = "fell-back"  # ran out of tries: the previous deployment boots


@dataclass(frozen=True)
class CountingState:
    status: CountStatus
    deployment: str | None = None  # the counted one, as deployment_key() names it
    tries_left: int | None = None
    tries_done: int | None = None  # systemd-boot only (grubenv does not keep it)


def deployment_key(osname: str, csum: str, serial: int) -> str:
    """How counting names a deployment: its directory under ostree/deploy/."""
    return f"{osname}/deploy/{csum}.{serial}"


def entry_deployment(layout: BootLayout, entry: BootEntry) -> str | None:
    """The deployment_key() of what entry boots (its ostree= argument, through the
    boot.N link in the loader.N scheme); None when that does not resolve."""
    try:
        words = KernelArgs.parse(entry.get("options") or "").get("ostree")
    except SysrootError:
        return None
    if not words or words[-1] is None:
        return None
    value = words[-1]
    if value.startswith("/ostree/deploy/"):
        return value.removeprefix("/ostree/deploy/")
    try:
        target = os.readlink(layout.path(value.lstrip("/")))
    except OSError:
        return None
    prefix = "../../../deploy/"
    return target.removeprefix(prefix) if target.startswith(prefix) else None


def counting_tries(repo: ConfiguredRepo) -> int:
    """sysroot.boot-counting-tries of the repo config: 0 (off) to MAX_TRIES."""
    value = repo.config.get("sysroot", COUNTING_KEY)
    if value is None or not value.strip():
        return 0
    if not re.fullmatch(r"[0-9]{1,3}", value.strip()) or int(value) > MAX_TRIES:
        raise SysrootError(
            f"Invalid sysroot.{COUNTING_KEY} '{value}' in {repo.path}/config "
            f"(expected 0 to {MAX_TRIES}; 0 turns boot counting off)"
        )
    return int(value)


# ---------------------------------------------------------------- the loader.N scheme
def read_bootversion(layout: BootLayout) -> int:
    try:
        target = os.readlink(layout.loader_link)
    except FileNotFoundError:
        return 0
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise SysrootError(f"{layout.loader_link}: not a symbolic link") from None
        raise
    if target == "loader.0":
        return 0
    if target == "loader.1":
        return 1
    raise SysrootError(
        f"{layout.loader_link}: invalid target '{target}' (expected loader.0 or loader.1)"
    )


def read_subbootversion(layout: BootLayout, bootversion: int) -> int:
    try:
        target = os.readlink(layout.bootlink_base(bootversion))
    except FileNotFoundError:
        return 0
    if target == f"boot.{bootversion}.0":
        return 0
    if target == f"boot.{bootversion}.1":
        return 1
    raise SysrootError(f"{layout.bootlink_base(bootversion)}: invalid target '{target}'")


def read_loader_entries(entries_dir: str) -> list[BootEntry]:
    """Our entries of a loader.N/entries, newest first: BLS `version` descending,
    entries without version last (libostree's order)."""
    try:
        names = os.listdir(entries_dir)
    except FileNotFoundError:
        return []
    entries = []
    for name in names:
        if not (name.startswith("ostree-") and name.endswith(".conf")):
            continue
        path = os.path.join(entries_dir, name)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                entries.append(BootEntry.parse(f.read(), filename=path))
        except UnicodeDecodeError:
            raise FormatError(f"{path}: boot entry is not valid UTF-8") from None
    versioned = [e for e in entries if e.get("version") is not None]
    versioned.sort(key=lambda e: strverscmp_key(e.require("version")), reverse=True)
    return versioned + [e for e in entries if e.get("version") is None]


def remove_path(path: str) -> None:
    """Unlink a file or symlink, or remove a directory tree; nothing if absent."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        with fsutil.errors_about(path):  # rmtree names only the entry that failed
            shutil.rmtree(path)


# ---------------------------------------------------------------- back ends
class Backend(abc.ABC):
    """What every back end answers. The hooks of a write default to nothing to do.
    tries: sysroot.boot-counting-tries (0: off); for a back end read from boot/
    (on_disk()), what its files say."""

    kind: BootloaderKind
    scheme: BootScheme

    def __init__(self, tries: int = 0) -> None:
        self.tries = tries

    def write_config(self, layout: BootLayout, bootversion: int, entries: WrittenEntries) -> None:
        """Called after the entries of loader.N are written, before the swap.
        entries: (deployment, BootEntry) in boot order."""
        for path, text in self.config_files(layout, bootversion, [entry for _d, entry in entries]):
            fsutil.atomic_write(path, text.encode(), mode=0o644)

    def post_swap(self, layout: BootLayout, bootversion: int, entries: WrittenEntries) -> None:
        """Called after boot/loader points at the new configuration."""
        return None  # nothing to do unless a back end links its config somewhere

    def config_files(
        self, layout: BootLayout, bootversion: int, entries: list[BootEntry]
    ) -> list[tuple[str, str]]:
        """(path, text) of the loader's own configuration made from entries (checked,
        so it raises before anything is written). None here."""
        return []

    def check_config(
        self, layout: BootLayout, bootversion: int, entries: list[BootEntry]
    ) -> list[str]:
        """This back end's part of the boot invariant: problems, [] if none."""
        return []

    @abc.abstractmethod
    def edits_entries_in_place(self) -> bool:
        """Whether a change of kernel arguments may rewrite the live entries in place
        (else it takes a whole write round)."""

    @abc.abstractmethod
    def refuse_other_scheme(self, layout: BootLayout, name: str) -> None:
        """SysrootError when boot/ already uses another scheme (name: the configured
        value, for the message): switching schemes is not supported."""

    @abc.abstractmethod
    def read(self, layout: BootLayout) -> BootListing:
        """The active entries, in boot order, with the versions and the commit marker."""

    @abc.abstractmethod
    def commit_marker(self, layout: BootLayout) -> CommitMarker:
        """What a write's commit point changes: equal before and after a write means the
        write did not commit."""

    @abc.abstractmethod
    def boot_serials(self, found: list[tuple[str, int]]) -> list[int]:
        """The boot serial of each deployment in boot order, from (bootcsum, serial its
        entry names)."""

    @abc.abstractmethod
    def remove_inactive(
        self, layout: BootLayout, listing: BootListing, kernel_dirs: list[str]
    ) -> None:
        """Cleanup's first step: what no configuration uses any more, before any
        deployment or kernel it names goes. kernel_dirs: those of live deployments."""

    @abc.abstractmethod
    def remove_kernel_dir(self, kernels_dir: str, name: str, fsync: bool) -> None:
        """Delete boot/ostree/NAME, which no deployment uses."""

    # ------------------------------------------------------------ boot counting
    @abc.abstractmethod
    def check_counting(self) -> None:
        """SysrootError when counting is configured (tries) but this back end cannot
        count: refused before anything is written."""

    @abc.abstractmethod
    def arm(self, layout: BootLayout, plan: CountPlan, n_entries: int, *, committed: bool) -> str:
        """Part of a write with counting on: called before its commit point
        (committed=False) and after it (True), for a list of n_entries. Returns the
        counter the new default entry's file name carries ('' for none). Nothing is
        counted without an entry to fall back to (n_entries < 2)."""

    @abc.abstractmethod
    def counting_state(self, layout: BootLayout) -> CountingState:
        """Where the counting of the live configuration's default stands."""

    @abc.abstractmethod
    def bless(self, layout: BootLayout, booted: str) -> bool:
        """Mark the booted deployment (deployment_key()) good: its counting ends.
        Only when it is the counted default; after a fall-back nothing changes (the
        bad one stays behind). True when something changed."""

    @abc.abstractmethod
    def mark_bad(self, layout: BootLayout, booted: str) -> bool:
        """The booted counted default failed: no tries left, the next boot falls
        back. True when something changed."""


class NoneBackend(Backend):
    """BLS entries only, switched by the boot/loader -> loader.N swap."""

    kind = BootloaderKind.NONE
    scheme = BootScheme.LOADER_SYMLINK

    def edits_entries_in_place(self) -> bool:
        return True  # loader.N is ours alone; each file is replaced atomically

    def refuse_other_scheme(self, layout: BootLayout, name: str) -> None:
        loader = layout.loader_link
        if systemd_boot.uses_entries_dir(loader):
            raise SysrootError(
                f"sysroot.bootloader={name}, but {loader} is a directory "
                "(the systemd-boot scheme): use systemd-boot or auto"
            )

    def read(self, layout: BootLayout) -> BootListing:
        bv = read_bootversion(layout)
        sub = read_subbootversion(layout, bv)
        return BootListing(read_loader_entries(layout.entries_dir(bv)), (bv, sub), bv, sub)

    def commit_marker(self, layout: BootLayout) -> CommitMarker:
        bv = read_bootversion(layout)
        return (bv, read_subbootversion(layout, bv))

    def boot_serials(self, found: list[tuple[str, int]]) -> list[int]:
        return [serial for _bootcsum, serial in found]  # ostree=/ostree/boot.N/.../SERIAL

    def remove_inactive(
        self, layout: BootLayout, listing: BootListing, kernel_dirs: list[str]
    ) -> None:
        """The inactive boot/loader.N and ostree/boot.N* halves, and temporaries."""
        bv, sub = listing.bootversion, listing.subbootversion
        other = 1 - bv
        for p in (
            layout.loader_dir(other),
            layout.bootlink_base(other),
            layout.bootlink_dir(other, 0),
            layout.bootlink_dir(other, 1),
            layout.bootlink_dir(bv, 1 - sub),
            os.path.join(layout.boot, "loader.tmp"),
            layout.path("ostree", "boot.0.tmp"),
            layout.path("ostree", "boot.1.tmp"),
        ):
            remove_path(p)

    def remove_kernel_dir(self, kernels_dir: str, name: str, fsync: bool) -> None:
        """Rename out of the way first: the writer takes an existing `$os-$bootcsum` as
        complete, so an interrupted delete must never leave a partial one under that
        name."""
        if name.startswith("."):
            remove_path(os.path.join(kernels_dir, name))  # already a temporary name
            return
        doomed = os.path.join(kernels_dir, f".{name}.tmp")  # the writer's staging name
        shutil.rmtree(doomed, ignore_errors=True)
        os.rename(os.path.join(kernels_dir, name), doomed)
        if fsync:
            fsutil.fsync_dir(kernels_dir)
        remove_path(doomed)

    def check_counting(self) -> None:
        if self.tries:
            raise SysrootError(
                f"sysroot.{COUNTING_KEY}={self.tries} needs sysroot.bootloader=grub2 or "
                "systemd-boot: with none nothing counts boots (set it to 0 to turn "
                "counting off)"
            )

    def arm(self, layout: BootLayout, plan: CountPlan, n_entries: int, *, committed: bool) -> str:
        self.check_counting()
        return ""

    def counting_state(self, layout: BootLayout) -> CountingState:
        return CountingState(CountStatus.OFF)

    def bless(self, layout: BootLayout, booted: str) -> bool:
        return False  # nothing was armed

    def mark_bad(self, layout: BootLayout, booted: str) -> bool:
        return False


class Grub2Backend(NoneBackend):
    """As none, plus loader.N/grub.cfg made from its entries (grub2.py), and boot
    counting in grubenv (greenboot's variables)."""

    kind = BootloaderKind.GRUB2

    def config_files(
        self, layout: BootLayout, bootversion: int, entries: list[BootEntry]
    ) -> list[tuple[str, str]]:
        path = os.path.join(layout.loader_dir(bootversion), grub2.CONFIG_NAME)
        return [(path, grub2.render_config(entries, self.tries))]

    def post_swap(self, layout: BootLayout, bootversion: int, entries: WrittenEntries) -> None:
        """Point GRUB's grub.cfg at the live loader's, once (a link, so later swaps
        switch it too)."""
        directory = grub2.grub_dir(layout.boot)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        link = os.path.join(directory, grub2.CONFIG_NAME)
        try:
            if os.readlink(link) == grub2.LINK_TARGET:
                return
        except OSError:
            pass  # missing, or a regular file (a distribution's generated one): replaced
        fsutil.atomic_symlink(grub2.LINK_TARGET, link)

    def check_config(
        self, layout: BootLayout, bootversion: int, entries: list[BootEntry]
    ) -> list[str]:
        """loader.N/grub.cfg is exactly what render_config() makes of its entries."""
        cfg = os.path.join(layout.loader_dir(bootversion), grub2.CONFIG_NAME)
        try:  # render_config refuses entries no writer of ours makes (words.py)
            expected = grub2.render_config(entries, self.tries)
        except SysrootError as e:
            return [f"{cfg}: {e}"]
        with open(cfg, encoding="utf-8") as f:
            if f.read() != expected:
                return [f"{cfg} does not match the entries of loader.{bootversion}"]
        return []

    # ------------------------------------------------------------ boot counting
    def check_counting(self) -> None:
        return None  # grub.cfg carries the script, grubenv the state

    def arm(self, layout: BootLayout, plan: CountPlan, n_entries: int, *, committed: bool) -> str:
        """ARM before the commit: then a write cut short leaves the old default
        counted at worst (a good boot blesses it), never the new one uncounted.
        CLEAR after it: then a cut leaves the booted (known) one counted at worst,
        never the old, untested default uncounted."""
        path = grub2.env_path(layout.boot)
        if plan is CountPlan.ARM and not committed and n_entries >= 2:
            grubenv.update(path, {"boot_counter": str(self.tries), "boot_success": "0"})
        elif plan is CountPlan.CLEAR and committed and os.path.exists(path):
            env = grubenv.read(path) or {}
            if "boot_counter" in env or env.get("boot_success") == "0":
                grubenv.update(path, {"boot_success": "1", "boot_counter": None})
        return ""

    def _live(self, layout: BootLayout) -> tuple[str | None, dict[str, str]]:
        """(the key of the live default, grubenv) when the live grub.cfg counts."""
        listing = self.read(layout)
        cfg = os.path.join(layout.loader_dir(listing.bootversion), grub2.CONFIG_NAME)
        try:
            with open(cfg, encoding="utf-8") as f:
                counting = grub2.counting_tries(f.read())
        except (OSError, UnicodeDecodeError):
            counting = 0
        if not counting or not listing.entries:
            return None, {}
        env = grubenv.read(grub2.env_path(layout.boot)) or {}
        return entry_deployment(layout, listing.entries[0]), env

    def counting_state(self, layout: BootLayout) -> CountingState:
        default, env = self._live(layout)
        counter, success = env.get("boot_counter"), env.get("boot_success")
        if default is None:
            return CountingState(CountStatus.OFF)
        if success == "1" and counter is None:
            return CountingState(CountStatus.BLESSED, default)
        if success != "0" or counter is None:
            return CountingState(CountStatus.OFF, default)
        if counter == "-1":
            return CountingState(CountStatus.FELL_BACK, default, 0)
        if counter in {str(n) for n in range(1, MAX_TRIES + 1)}:
            return CountingState(CountStatus.ARMED, default, int(counter))
        return CountingState(CountStatus.BAD, default, 0)  # the script falls back

    def bless(self, layout: BootLayout, booted: str) -> bool:
        default, env = self._live(layout)
        if default != booted or env.get("boot_counter") == "-1":
            return False  # not the counted one (GRUB booted entry 1: it fell back)
        if env.get("boot_success") == "1" and "boot_counter" not in env:
            return False
        grubenv.update(grub2.env_path(layout.boot), {"boot_success": "1", "boot_counter": None})
        return True

    def mark_bad(self, layout: BootLayout, booted: str) -> bool:
        default, env = self._live(layout)
        if default != booted or self.counting_state(layout).status is not CountStatus.ARMED:
            return False
        grubenv.update(grub2.env_path(layout.boot), {"boot_counter": "0"})
        return True


class SystemdBootBackend(Backend):
    """boot/loader a real directory, entry names as the switch (systemd_boot.py); the
    writer is deploy/sdwriter.py."""

    kind = BootloaderKind.SYSTEMD_BOOT
    scheme = BootScheme.ENTRIES_DIR

    def edits_entries_in_place(self) -> bool:
        return False  # names decide the boot: every change is a whole round

    def refuse_other_scheme(self, layout: BootLayout, name: str) -> None:
        loader = layout.loader_link
        if os.path.islink(loader):
            raise SysrootError(
                f"sysroot.bootloader={name}, but {loader} is a symlink "
                "(the loader.N scheme): switching schemes is not supported"
            )

    def read(self, layout: BootLayout) -> BootListing:
        # no loader.N / boot.N.S halves: versions stay 0 (refs ostree/0/0/N)
        sel = systemd_boot.select(layout.boot, layout.loader_entries_dir)
        return BootListing(sel.entries, self._marker(sel), garbage=sel.garbage)

    def commit_marker(self, layout: BootLayout) -> CommitMarker:
        return self._marker(systemd_boot.select(layout.boot, layout.loader_entries_dir))

    @staticmethod
    def _marker(sel: systemd_boot.Selection) -> CommitMarker:
        return ("entries", sel.default[0].filename if sel.default else None)

    def boot_serials(self, found: list[tuple[str, int]]) -> list[int]:
        # no link farm to read them from: by order among deployments of one bootcsum
        seen: dict[str, int] = {}
        serials: list[int] = []
        for bootcsum, _serial in found:
            seen[bootcsum] = seen.get(bootcsum, -1) + 1
            serials.append(seen[bootcsum])
        return serials

    def remove_inactive(
        self, layout: BootLayout, listing: BootListing, kernel_dirs: list[str]
    ) -> None:
        """Entries no configuration uses, and leftovers of interrupted file writes (only
        those sharing no data with a live file, see systemd_boot.remove_leftover())."""
        edir = layout.loader_entries_dir
        for name in sorted(listing.garbage):
            systemd_boot.remove_leftover(os.path.join(edir, name))
        systemd_boot.remove_tmp_under(edir)
        if os.path.isdir(edir):
            fsutil.fsync_dir(edir)  # gone before the kernels and deployments they name
        for kdir in kernel_dirs:
            if os.path.isdir(kdir):
                systemd_boot.remove_tmp_under(kdir)

    def remove_kernel_dir(self, kernels_dir: str, name: str, fsync: bool) -> None:
        """In place, files first, then directories, deepest first: a directory renamed
        on FAT may share its clusters with its old name after a power cut (the writer
        verifies existing kernel directories instead)."""
        path = os.path.join(kernels_dir, name)
        if name.startswith("."):
            remove_path(path)  # a temporary name: nothing takes it as complete
            return
        for dirpath, dirnames, filenames in os.walk(path, topdown=False):
            for fname in filenames:
                os.unlink(os.path.join(dirpath, fname))
            for dname in dirnames:
                os.rmdir(os.path.join(dirpath, dname))
        os.rmdir(path)

    # ------------------------------------------------------------ boot counting
    def check_counting(self) -> None:
        return None  # systemd-boot counts in the entry names

    def arm(self, layout: BootLayout, plan: CountPlan, n_entries: int, *, committed: bool) -> str:
        """The counter is in the new default's name, so it takes effect exactly at
        the commit (creating that file). KEEP carries the live default's counter
        over to its new name, unless it went bad (then another entry is the default)."""
        if committed or n_entries < 2:
            return ""
        if plan is CountPlan.ARM:
            return f"+{self.tries}"
        if plan is CountPlan.KEEP:
            sel = systemd_boot.select(layout.boot, layout.loader_entries_dir)
            if sel.default is not None and not sel.default[0].bad:
                return sel.default[0].counter
        return ""

    def _head(
        self, layout: BootLayout
    ) -> tuple[systemd_boot.Selection, systemd_boot.EntryName, str] | None:
        """(the selection, its round's head, the head's deployment_key()) when the head
        is counted and names a deployment; None otherwise."""
        sel = systemd_boot.select(layout.boot, layout.loader_entries_dir)
        if sel.head is None or sel.head[0].left is None:
            return None
        key = entry_deployment(layout, sel.head[1])
        return None if key is None else (sel, sel.head[0], key)

    def counting_state(self, layout: BootLayout) -> CountingState:
        found = self._head(layout)
        if found is None:
            return CountingState(CountStatus.OFF)
        sel, head, key = found
        status = (
            CountStatus.FELL_BACK
            if sel.fell_back
            else CountStatus.BAD
            if head.bad
            else CountStatus.ARMED
        )
        return CountingState(status, key, head.left, head.done or 0)

    def _rename_head(
        self, layout: BootLayout, head: systemd_boot.EntryName, new: systemd_boot.EntryName
    ) -> None:
        """One rename, as systemd-bless-boot does it; never over an existing name. (Not
        renameat2's no-replace: FAT drivers in user space lack it, and FAT has no
        hard links to emulate it; the sysroot lock keeps our own writers out.)"""
        edir = layout.loader_entries_dir
        old, target = head.filename, os.path.join(edir, new.filename)
        if os.path.lexists(target):
            raise SysrootError(f"Cannot rename {edir}/{old}: {new.filename} exists already")
        try:
            os.rename(os.path.join(edir, old), target)
        except FileNotFoundError:  # systemd-bless-boot (or a boot) renamed it meanwhile
            raise SysrootError(f"{edir}/{old} was renamed meanwhile: try again") from None
        fsutil.fsync_dir(edir)

    def bless(self, layout: BootLayout, booted: str) -> bool:
        """As `systemd-bless-boot good`: the counter leaves the name."""
        found = self._head(layout)
        if found is None or found[2] != booted or found[0].fell_back:
            return False
        head = found[1]
        self._rename_head(layout, head, head.counted(None))
        return True

    def mark_bad(self, layout: BootLayout, booted: str) -> bool:
        """As `systemd-bless-boot bad`: `+0-DONE` (`+0` when none were done)."""
        found = self._head(layout)
        if found is None or found[2] != booted or found[1].bad:
            return False
        head = found[1]
        self._rename_head(layout, head, head.counted(0, head.done or None))
        return True


_BACKENDS: dict[BootloaderKind, type[Backend]] = {
    BootloaderKind.NONE: NoneBackend,
    BootloaderKind.GRUB2: Grub2Backend,
    BootloaderKind.SYSTEMD_BOOT: SystemdBootBackend,
}


def detect(layout: BootLayout) -> BootloaderKind:
    """What `auto` means for this sysroot."""
    if systemd_boot.uses_entries_dir(layout.loader_link) or systemd_boot.is_fat(layout.boot):
        return BootloaderKind.SYSTEMD_BOOT
    if any(os.path.lexists(os.path.join(layout.boot, d, "grub.cfg")) for d in ("grub", "grub2")):
        return BootloaderKind.GRUB2
    return BootloaderKind.NONE


def on_disk(layout: BootLayout) -> Backend:
    """The back end whose files boot/ holds, for reading it without the repo config:
    systemd-boot when boot/loader is a real directory, grub2 when the live loader.N has
    a grub.cfg (which then must match its entries), else none."""
    if systemd_boot.uses_entries_dir(layout.loader_link):
        return SystemdBootBackend()
    cfg = os.path.join(layout.loader_link, grub2.CONFIG_NAME)
    if os.path.exists(cfg):
        try:  # counting as the live grub.cfg carries it (check_config compares)
            with open(cfg, encoding="utf-8") as f:
                tries = grub2.counting_tries(f.read())
        except (OSError, UnicodeDecodeError):
            tries = 0
        return Grub2Backend(tries)
    return NoneBackend()


def backend_for(layout: BootLayout, repo: ConfiguredRepo) -> Backend:
    """The configured back end (auto resolved); refused when boot/ uses another scheme."""
    value = repo.config.get("sysroot", "bootloader", "auto") or "auto"
    try:
        kind = BootloaderKind(value).resolve(layout)
    except ValueError:
        raise SysrootError(
            f"Unsupported sysroot.bootloader '{value}' in {repo.path}/config "
            f"(supported: auto, "
            f"{', '.join(sorted(k.value for k in _BACKENDS))})"
        ) from None
    backend = _BACKENDS[kind](counting_tries(repo))
    backend.refuse_other_scheme(layout, kind.value)
    backend.check_counting()
    return backend
