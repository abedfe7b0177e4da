"""The free-space guard: `[core] min-free-space-percent` and `min-free-space-size`.

As in libostree 2022.7, a transaction refuses a content object that would leave less
free space than the repo config keeps in reserve:

- `min-free-space-size=<N>MB|GB|TB` (powers of 2), when above 0, is the reserve and
  the percent is ignored (it must still be valid);
- otherwise `min-free-space-percent` (0-99, default 3) of the file system's blocks
  (so `min-free-space-size=0MB` alone leaves the default 3% in force);
- `min-free-space-percent=0` with no size (or 0MB) turns the guard off. Metadata
  objects are never refused.

An object of `size` bytes asks for `size // f_bsize + 1` blocks and is refused when
the free blocks (f_bfree as root, f_bavail otherwise) minus those would drop below the
reserve, with ostree's message ("Writing content object: min-free-space-percent '3%'
would be exceeded, at least 4.1 kB requested") so scripts matching it keep working.

Where ostree deducts each object from a budget taken once at the start of the
transaction, this measures the file system with fstatvfs (a microsecond) before each
object: objects staged by other threads, by the pull's forked workers or by other
processes are then counted as they land, with no counter shared across processes.
Within one process, objects admitted but not yet written are held as pending blocks,
so parallel threads cannot all pass on the same free space. When the size is not
known up front (an HTTP pull streams .filez), the file system is measured again every
MiB and once the object is written; an object refused then is deleted at once. So
the reserve is crossed, if at all, only for a moment and by at most one object (or one
MiB) per worker in flight.

`admin deploy` is held to the same reserve (check_deploy_space), which ostree 2022.7
does not do.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass

from sysroot.errors import FormatError, SysrootError

DEFAULT_PERCENT = 3
STREAM_CHECK_BYTES = 1 << 20  # re-measure a stream of unknown size this often
_SIZE_RE = re.compile(r"([0-9]+)(G|M|T)B", re.ASCII)
_SHIFTS = {"M": 20, "G": 30, "T": 40}


class FreeSpaceError(SysrootError):
    """A write refused because it would cross the configured free-space reserve."""


@dataclass(frozen=True)
class FreeSpacePolicy:
    percent: int = DEFAULT_PERCENT
    size_mb: int = 0  # when > 0 it is the reserve, and percent is not used

    @property
    def enabled(self) -> bool:
        return self.size_mb > 0 or self.percent > 0

    @classmethod
    def from_config(cls, config) -> FreeSpacePolicy:
        """Read both keys; FormatError (ostree's wording) for an invalid value."""
        pct_text = config.get("core", "min-free-space-percent")
        size_text = config.get("core", "min-free-space-size")
        # Both are always read and validated; a size of 0MB leaves the percent in force.
        percent = DEFAULT_PERCENT if pct_text is None else parse_percent(pct_text)
        return cls(percent, 0 if size_text is None else parse_size_mb(size_text))

    def describe(self) -> str:
        if self.size_mb > 0:
            return f"min-free-space-size {self.size_mb}MB"
        return f"min-free-space-percent '{self.percent}%'"

    def reserved_blocks(self, st: os.statvfs_result) -> int:
        if self.size_mb > 0:
            return (self.size_mb << 20) // st.f_bsize
        return st.f_blocks * self.percent // 100


def parse_percent(text: str) -> int:
    # Stricter than ostree, which reads a value with g_ascii_strtoull and so takes
    # "abc" or "" as 0 (guard silently off) and "5x" as 5: a typo must not quietly
    # turn the guard off, so anything but a plain number is refused as well.
    value = text.strip()
    if not re.fullmatch(r"[0-9]+", value, re.ASCII) or int(value) > 99:
        raise FormatError(f"Invalid min-free-space-percent '{text}'")
    return int(value)


def parse_size_mb(text: str) -> int:
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise FormatError(
            f"Invalid min-free-space-size '{text}': It should be of the "
            "format '123MB', '123GB' or '123TB'"
        )
    shifts = _SHIFTS[m.group(2)]
    number = int(m.group(1))
    if number >> (64 - shifts) or number >= 1 << 64:  # ostree: the bytes fit in 64 bits
        raise FormatError(f"Invalid min-free-space-size '{text}': Value was too high")
    return number << (shifts - 20)


def format_size(size: int) -> str:
    """GLib's g_format_size(): SI units, one decimal, a no-break space before the unit."""
    if size < 1000:
        return f"{size}\u00a0byte" if size == 1 else f"{size}\u00a0bytes"
    unit, factor = "kB", 1000
    for name, f in (
        ("MB", 1000**2),
        ("GB", 1000**3),
        ("TB", 1000**4),
        ("PB", 1000**5),
        ("EB", 1000**6),
    ):
        if size >= f:
            unit, factor = name, f
    return f"{size / factor:.1f}\u00a0{unit}"


class SpaceGuard:
    """The guard of one transaction; a no-op when the policy is off."""

    def __init__(self, policy: FreeSpacePolicy, dirfd: int):
        self.policy = policy
        self._dirfd = dirfd
        self._pending = 0  # blocks admitted in this process, not yet on disk
        self._mutex = threading.Lock()
        self.blocksize = os.fstatvfs(dirfd).f_bsize if policy.enabled else 4096

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    def in_forked_child(self) -> None:
        """A forked copy starts with nothing pending and a lock of its own."""
        self._pending = 0
        self._mutex = threading.Lock()

    def error(self, required: int) -> FreeSpaceError:
        return FreeSpaceError(
            f"Writing content object: {self.policy.describe()} would be "
            f"exceeded, at least {format_size(required)} requested"
        )

    def admit(self, size: int) -> int:
        """Admit an object of size bytes (0: unknown yet) or raise FreeSpaceError; the
        blocks returned stay pending until release()."""
        if not self.policy.enabled:
            return 0
        blocks = size // self.blocksize + 1
        with self._mutex:
            self._check(blocks, self._pending + blocks)
            self._pending += blocks
        return blocks

    def check_stream(self, written: int) -> None:
        """Re-measure during a stream: written bytes are on disk by now (and counted
        by the file system), so only what is pending besides must still fit."""
        if not self.policy.enabled:
            return
        with self._mutex:
            self._check(written // self.blocksize + 1, self._pending)

    def release(self, blocks: int) -> None:
        if blocks:
            with self._mutex:
                self._pending -= blocks

    def translate(self, e: OSError, written: int) -> BaseException:
        """ENOSPC while the guard is on means the reserve was crossed (a stream of
        unknown size can get there between two measurements): say so, as ostree, which
        knows each size up front, would have."""
        if self.policy.enabled and e.errno == errno.ENOSPC:
            return self.error((written // self.blocksize + 1) * self.blocksize)
        return e

    def _check(self, blocks: int, needed: int) -> None:
        st = os.fstatvfs(self._dirfd)
        free = st.f_bfree if os.getuid() == 0 else st.f_bavail
        if free - needed < self.policy.reserved_blocks(st):
            raise self.error(blocks * self.blocksize)


def check_deploy_space(repo, commit: str, deploy_parent: str) -> None:
    """Refuse a deployment of commit under deploy_parent that would cross the repo's
    reserve, before anything of it is written.

    ostree 2022.7 applies the guard only to writes into the repo, so `ostree admin
    deploy` fills the file system past the reserve (or to ENOSPC, leaving a half-made
    deployment to clean up). The deployment lives on the repo's file system and eats
    the same space, so it is held to the same reserve: counted are the blocks it will
    write, a block per directory and, per copied file, size // f_bsize + 1 (every file
    when the checkout cannot hardlink from the repo, and /usr/etc, copied to /etc).
    Hardlinks cost nothing.
    """
    from sysroot.store.checkout import TreeEntry, TreeReader
    from sysroot.store.modes import RepoMode

    policy: FreeSpacePolicy = repo.free_space
    if not policy.enabled:
        return
    fd = os.open(deploy_parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstatvfs(fd)
        same_fs = os.fstat(fd).st_dev == os.fstat(repo.dfd).st_dev
    finally:
        os.close(fd)
    bsize = st.f_bsize
    links = same_fs and repo.mode is RepoMode.BARE  # what a root checkout hardlinks
    reader = TreeReader(repo, commit)
    blocks = 0
    stack = [(reader.root, False)]
    while stack:
        entry, in_etc = stack.pop()
        copies = 2 if in_etc else 1  # usr/etc is checked out, then copied to /etc
        blocks += copies
        tree = reader.dirtree(entry.tree)
        for name, csum in tree.files:
            if in_etc or not links:
                info = reader.file_info(csum, "/".join(("", *entry.components, name)))
                n = (0 if links else 1) + (1 if in_etc else 0)
                blocks += n * (info.size // bsize + 1)
        for name, subtree, submeta in tree.dirs:
            child = TreeEntry(entry.components + (name,), submeta, subtree)
            stack.append((child, in_etc or child.components == ("usr", "etc")))
    free = st.f_bfree if os.getuid() == 0 else st.f_bavail
    if free - blocks < policy.reserved_blocks(st):
        raise FreeSpaceError(
            f"Deploying {commit}: {policy.describe()} would be exceeded, "
            f"at least {format_size(blocks * bsize)} requested"
        )
