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

`admin deploy` is held to the same reserve (deployspace.py), which ostree 2022.7
does not do.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass

from sysroot.errors import FormatError, SysrootError
from sysroot.formats.keyfile import KeyFile
from sysroot.util.units import format_size

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
    def from_config(cls, config: KeyFile) -> FreeSpacePolicy:
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
