"""Commits that failed to boot, remembered per stateroot so that `admin upgrade` does
not deploy the same failed commit again unless asked (`--allow-failed`).

Boot counting (bootcount.py) records a commit here when its deployment ran out of
tries and the fall-back was made permanent, or when the booted counted default was
marked bad. The failed deployment's origin records it too, but cleanup deletes that
deployment sooner or later; this record stays: `ostree/deploy/$os/failed-commits`,
beside the stateroot's deploy/ and var/ (not in var/: that is the OS's own /var).

One line per commit, `CHECKSUM TIME` (UTC, ISO 8601), oldest first, at most
MAX_ENTRIES (the oldest go first). Written whole, atomically (fsutil.atomic_write:
temp name, fsync, rename, fsync of the directory), so a crash leaves the old record or
the new one. Read tolerantly: lines that are not a record, or a file that is not a
small text file, are ignored with one warning line; the next record written drops
them. Deleting a line (or the file) allows that commit again.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time

from sysroot.deploy.layout import SysrootLayout
from sysroot.util import fsutil

NAME = "failed-commits"
MAX_ENTRIES = 32  # a failed commit per update: far more than a system meets
MAX_SIZE = 64 << 10
_HEADER = "# sysroot: commits that failed to boot; `admin upgrade --allow-failed` deploys one\n"
_LINE = re.compile(r"([0-9a-f]{64}) ([0-9T:Z-]{1,32})")


def path(layout: SysrootLayout, osname: str) -> str:
    return os.path.join(layout.stateroot(osname), NAME)


def read(layout: SysrootLayout, osname: str) -> tuple[dict[str, str], str | None]:
    """({checksum: time} oldest first, a warning when part of the file was ignored)."""
    p = path(layout, osname)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        return {}, f"{p}: {e.strerror}; ignored"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}, f"{p}: not a regular file; ignored"
        data = os.read(fd, MAX_SIZE + 1)
    except OSError as e:
        return {}, f"{p}: {e.strerror}; ignored"
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE:
        return {}, f"{p}: larger than {MAX_SIZE} bytes; ignored"
    found: dict[str, str] = {}
    bad = 0
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line.strip())
        if m is None:
            bad += 1
            continue
        found.pop(m.group(1), None)  # the last record of a commit counts
        found[m.group(1)] = m.group(2)
    warning = f"{p}: {bad} unreadable line(s) ignored" if bad else None
    return found, warning


def _warn(warning: str | None) -> None:
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)


def load(layout: SysrootLayout, osname: str) -> dict[str, str]:
    """{checksum: time} of the commits recorded as failed in osname; what could not be
    read is told in one warning line on stderr."""
    found, warning = read(layout, osname)
    _warn(warning)
    return found


def record(layout: SysrootLayout, osname: str, checksum: str, *, fsync: bool = True) -> None:
    """Remember checksum as failed now (a commit already recorded moves to the end)."""
    found, warning = read(layout, osname)
    _warn(warning)
    found.pop(checksum, None)
    found[checksum] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kept = list(found.items())[-MAX_ENTRIES:]
    text = _HEADER + "".join(f"{c} {t}\n" for c, t in kept)
    fsutil.atomic_write(path(layout, osname), text.encode(), fsync=fsync)
