"""Reading a sysroot's state the way libostree does: boot version, deployments (from
the BLS entries of the active `boot/loader.N`), the booted deployment, the staged one
(its record read through stagedrecord.py), the lock. A loaded state is a snapshot:
nothing else changes it; reload after every change.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace

from sysroot.boot import backends
from sysroot.boot.backends import Backend, BootListing, BootScheme, CommitMarker
from sysroot.boot.bls import BootEntry
from sysroot.boot.kargs import KernelArgs
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.stagedrecord import StagedRecord, legacy_locked, read_record
from sysroot.errors import FormatError, SysrootError
from sysroot.formats.keyfile import KeyFile
from sysroot.store.lock import ofd_lock

_BOOTLINK_RE = re.compile(r"^/ostree/boot\.([01])/([^/]+)/([0-9a-f]{64})/([0-9]+)$")
# systemd-boot scheme: ostree= names the deployment; the boot checksum is in `linux`
_DEPLOY_KARG_RE = re.compile(r"^/ostree/deploy/([^/]+)/deploy/([0-9a-f]{64})\.([0-9]+)$")
_KERNEL_PATH_RE = re.compile(r"^(?:/boot)?/ostree/([^/]+)-([0-9a-f]{64})/[^/]+$")
_DEPLOY_TARGET_RE = re.compile(r"^\.\./\.\./\.\./deploy/([^/]+)/deploy/([0-9a-f]{64})\.([0-9]+)$")
DEPLOY_DIR_RE = re.compile(r"^([0-9a-f]{64})\.([0-9]+)$")
DEPLOY_TARGET_RE = _DEPLOY_TARGET_RE  # an ostree/boot.N.S/$os/$bootcsum/$serial link


@dataclass(frozen=True)
class Deployment:
    """One deployment, as listed by the active boot entries."""

    osname: str
    csum: str
    deployserial: int
    bootcsum: str
    bootserial: int = 0
    index: int = 0
    kargs: str = ""  # the entry's options, ostree= included (rewritten in place)
    entry: BootEntry | None = field(default=None, compare=False, repr=False)
    origin: KeyFile | None = field(default=None, compare=False, repr=False)
    # staged: waiting in /run/ostree/staged-deployment for finalize-staged (staged.py)
    staged: bool = field(default=False, compare=False)
    finalization_locked: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.csum}.{self.deployserial}"

    @property
    def identity(self) -> tuple[str, str, int]:
        return (self.osname, self.csum, self.deployserial)

    @property
    def pinned(self) -> bool:
        if self.origin is None:
            return False
        try:
            return self.origin.get_bool("libostree-transient", "pinned", False)
        except FormatError:
            return False  # as libostree: a value that is not a boolean is not a pin

    @property
    def origin_refspec(self) -> str | None:
        return self.origin.get("origin", "refspec") if self.origin else None


def read_origin(path: str) -> KeyFile | None:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: origin file is not valid UTF-8") from None
    return KeyFile.parse(text, source=path)


def parse_ostree_karg(value: str) -> tuple[int, str, str, int]:
    m = _BOOTLINK_RE.match(value)
    if not m:
        raise FormatError(f"Invalid ostree= argument '{value}'")
    return int(m.group(1)), m.group(2), m.group(3), int(m.group(4))


def options_without_ostree(options: str) -> str:
    kargs = KernelArgs.parse(options)
    kargs.words = [w for w in kargs.words if not w.startswith("ostree=")]
    return str(kargs)


def read_staged(layout: SysrootLayout) -> tuple[Deployment | None, StagedRecord | None, str | None]:
    """(the staged deployment, its record, None), or (None, None, None) when nothing is
    staged. A record that cannot be used is not fatal here (it would break every
    command until someone deletes it): (None, None, why), status warns with it and
    finalize fails with it (stamped), and the deployments load without it."""
    try:
        record = read_record()
        if record is None:
            return None, None, None
        t = record.target
        origin = read_origin(layout.origin_path(t.osname, t.csum, t.serial))
    except FormatError as e:
        return None, None, str(e)
    locked = record.locked or legacy_locked()
    staged = Deployment(
        t.osname,
        t.csum,
        t.serial,
        t.bootcsum,
        0,
        0,
        " ".join(record.kargs or ()),
        None,
        origin,
        staged=True,
        finalization_locked=locked,
    )
    return staged, record, None


def commit_marker(layout: SysrootLayout) -> CommitMarker:
    """What a write's commit point changes: (bootversion, subbootversion) for the symlink
    swap, the default entry's name for the systemd-boot scheme. Equal before and after a
    write means the write did not commit."""
    return backends.on_disk(layout).commit_marker(layout)


class SysrootState:
    """A loaded snapshot of the sysroot; reload after every change."""

    def __init__(self, root: str):
        self.layout = SysrootLayout(os.path.abspath(root))
        self.bootversion = 0
        self.subbootversion = 0
        self.deployments: list[Deployment] = []
        self.booted: Deployment | None = None
        # the back end boot/ is laid out for (backends.on_disk()): it reads the entries
        self.backend: Backend = backends.NoneBackend()
        self.listing = BootListing([], (0, 0))
        self.marker: CommitMarker = (0, 0)
        self.staged: Deployment | None = None  # also deployments[0] when set
        self.staged_record: StagedRecord | None = None  # its record (stagedrecord.py)
        self.staged_error: str | None = None  # why the staged record was not usable

    @property
    def scheme(self) -> BootScheme:
        return self.backend.scheme

    @property
    def garbage_entries(self) -> list[str]:
        """Systemd-boot scheme: debris entries, by file name (else none)."""
        return self.listing.garbage

    @classmethod
    def load(cls, root: str) -> SysrootState:
        state = cls(root)
        state._load()
        return state

    def require_initialized(self) -> None:
        if not os.path.isdir(self.layout.deploy_base) or not os.path.isdir(
            os.path.join(self.layout.repo, "objects")
        ):
            raise SysrootError(
                f"{self.layout.root} is not an initialized sysroot "
                "(no ostree/deploy or ostree/repo); run admin init-fs"
            )

    def _load(self) -> None:
        self.backend = backends.on_disk(self.layout)
        listing = self.listing = self.backend.read(self.layout)
        self.bootversion, self.subbootversion = listing.bootversion, listing.subbootversion
        self.marker = listing.marker
        deployments = [self._deployment_from_entry(entry) for entry in listing.entries]
        serials = self.backend.boot_serials([(d.bootcsum, d.bootserial) for d in deployments])
        self.deployments = [
            Deployment(
                d.osname, d.csum, d.deployserial, d.bootcsum, serial, i, d.kargs, d.entry, d.origin
            )
            for i, (d, serial) in enumerate(zip(deployments, serials, strict=True))
        ]
        self.booted = self._find_booted()
        if self.booted is not None:
            # as libostree: only a booted system has staged deployments, listed first
            staged, self.staged_record, self.staged_error = read_staged(self.layout)
            if staged is not None:
                self.deployments = [staged] + [
                    replace(d, index=i + 1) for i, d in enumerate(self.deployments)
                ]
                self.staged = staged

    def _deployment_from_entry(self, entry: BootEntry) -> Deployment:
        options = entry.get("options")
        if options is None:
            raise FormatError(f"{entry.filename}: boot entry has no 'options' line")
        ostree_args = KernelArgs.parse(options).get("ostree")
        if not ostree_args or ostree_args[-1] is None:
            raise FormatError(f"{entry.filename}: no ostree= kernel argument in options")
        direct = _DEPLOY_KARG_RE.match(ostree_args[-1])
        if direct:
            return self._deployment_from_direct(entry, options, direct)
        try:
            _bv, osname, bootcsum, bootserial = parse_ostree_karg(ostree_args[-1])
        except FormatError as e:
            raise FormatError(f"{entry.filename}: {e}") from None
        link = self.layout.path(ostree_args[-1].lstrip("/"))
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            raise FormatError(f"{entry.filename}: ostree= target {link} does not exist") from None
        except OSError as e:
            raise FormatError(f"{entry.filename}: ostree= target {link}: {e.strerror}") from None
        m = _DEPLOY_TARGET_RE.match(target)
        if not m:
            raise FormatError(f"{link}: invalid deployment link target '{target}'")
        link_os, csum, serial = m.group(1), m.group(2), int(m.group(3))
        if not os.path.isdir(self.layout.deploy_dir(link_os, csum, int(serial))):
            raise FormatError(f"{entry.filename}: deployment {csum}.{serial} is missing")
        origin = read_origin(self.layout.origin_path(link_os, csum, serial))
        return Deployment(link_os, csum, serial, bootcsum, bootserial, 0, options, entry, origin)

    def _deployment_from_direct(
        self, entry: BootEntry, options: str, m: re.Match[str]
    ) -> Deployment:
        """ostree=/ostree/deploy/$os/deploy/$csum.$serial (systemd-boot scheme)."""
        osname, csum, serial = m.group(1), m.group(2), int(m.group(3))
        k = _KERNEL_PATH_RE.match(entry.get("linux") or "")
        if not k:
            raise FormatError(
                f"{entry.filename}: linux {entry.get('linux')!r} is not /ostree/$os-$bootcsum/FILE"
            )
        if not os.path.isdir(self.layout.deploy_dir(osname, csum, serial)):
            raise FormatError(f"{entry.filename}: deployment {csum}.{serial} is missing")
        origin = read_origin(self.layout.origin_path(osname, csum, serial))
        return Deployment(osname, csum, serial, k.group(2), 0, 0, options, entry, origin)

    def _find_booted(self) -> Deployment | None:
        """The running deployment: only when / is this sysroot's deployment."""
        if not os.path.exists("/run/ostree-booted"):
            return None
        try:
            root_st = os.stat("/")
        except OSError:
            return None
        for d in self.deployments:
            try:
                st = os.stat(self.layout.deploy_dir(d.osname, d.csum, d.deployserial))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (root_st.st_dev, root_st.st_ino):
                return d
        return None

    def boot_entries(self) -> list[BootEntry]:
        """The active boot entries, in boot order: each deployment's but the staged
        one's, which has none until it is finalized."""
        return [d.entry for d in self.deployments if d.entry is not None]

    def without_staged(self) -> SysrootState:
        """This state as the boot configuration has it: without the staged deployment."""
        if self.staged is None:
            return self
        other = copy.copy(self)
        other.deployments = [
            replace(d, index=i) for i, d in enumerate(d for d in self.deployments if not d.staged)
        ]
        other.staged = other.staged_record = None
        return other

    # ---------------------------------------------------------------- queries
    def stateroots(self) -> list[str]:
        try:
            return sorted(
                n
                for n in os.listdir(self.layout.deploy_base)
                if os.path.isdir(os.path.join(self.layout.deploy_base, n))
            )
        except FileNotFoundError:
            return []

    def merge_deployment(self, osname: str) -> Deployment | None:
        """The booted deployment if it is of osname, else the first of osname."""
        if self.booted is not None and self.booted.osname == osname:
            return self.booted
        for d in self.deployments:
            if d.osname == osname:
                return d
        return None

    def default_osname(self) -> str:
        if self.booted is not None:
            return self.booted.osname
        if self.deployments:
            return self.deployments[0].osname
        roots = self.stateroots()
        if len(roots) == 1:
            return roots[0]
        raise SysrootError("No stateroot given and none can be inferred: use --os=NAME")

    def pending_and_rollback(self, osname: str) -> tuple[Deployment | None, Deployment | None]:
        """ostree's pending (before booted) and rollback (after booted) deployments."""
        if self.booted is None:
            return None, None
        pending = rollback = None
        seen_booted = False
        for d in self.deployments:
            if d.identity == self.booted.identity:
                seen_booted = True
                continue
            if d.osname != osname:
                continue
            if not seen_booted and pending is None:
                pending = d
            elif seen_booted and rollback is None:
                rollback = d
        return pending, rollback

    def deployment_path(self, d: Deployment) -> str:
        return self.layout.deploy_dir(d.osname, d.csum, d.deployserial)


# Lock files this process holds, with how deep it is nested: an OFD lock taken again
# through a new file descriptor would wait on the process's own, so a command that holds
# the lock across several operations (admin upgrade) lets theirs pass through.
_HELD: dict[str, int] = {}


class SysrootLock:
    """`ostree/lock`, taken exclusively as libostree does (OFD lock, unlinked on release).
    Nested use within one process is allowed and shares the outermost lock."""

    def __init__(self, layout: SysrootLayout, *, wait: bool = True, timeout: float = 300):
        self.layout = layout
        self.wait = wait
        self.timeout = timeout
        self.fd: int | None = None
        self.nested = False

    def __enter__(self) -> SysrootLock:
        path = self.layout.lock
        if _HELD.get(path):
            _HELD[path] += 1
            self.nested = True
            return self
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            fd = os.open(
                path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, 0o600
            )
            if ofd_lock(fd, exclusive=True, wait=False):
                # The previous owner may have unlinked the file we locked: retry if so.
                if os.fstat(fd).st_nlink > 0:
                    self.fd = fd
                    _HELD[path] = 1
                    return self
                os.close(fd)
                continue
            os.close(fd)
            if not self.wait or time.monotonic() > deadline:
                raise SysrootError(
                    f"Sysroot {self.layout.root} is locked by another process ({path})"
                )
            if not announced:
                print("Waiting for sysroot lock...", file=sys.stderr)
                announced = True
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.nested:
            _HELD[self.layout.lock] -= 1
            self.nested = False
            return
        if self.fd is not None:
            _HELD.pop(self.layout.lock, None)
            try:
                os.unlink(self.layout.lock)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None
