"""Where an unpacked image goes: a new image file, or a whole disk.

A disk is written the way coreos-installer writes one: its first MiB (the protective
MBR and the GPT) is zeroed and synced first and the image's own first MiB is held back
until the whole image has been written and its SHA-256 and size checked; only then is
it written, synced, and the kernel asked to read the new table. So a disk never holds
a table in front of an unverified image, and any failure wipes what was written of
the table (both ends). A file appears under its name only when complete and verified.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from sysroot.errors import SysrootError, UsageError
from sysroot.formats.osmet import Body, Header
from sysroot.formats.xz import ZeroRun
from sysroot.install.disks import guard
from sysroot.install.partition import reread
from sysroot.osmet.unpack import (
    CHUNK,
    ObjectSource,
    image_chunks,
    open_osmet,
    piece_size,
    zero_views,
)
from sysroot.store.repo import Repo
from sysroot.util import blockdev, fsutil
from sysroot.util.run import run

MIB = 1 << 20
_ZERO = bytes(CHUNK)

Progress = Callable[[int, int], None]  # (bytes written, bytes in all)


@dataclass(frozen=True)
class UnpackResult:
    header: Header
    body: Body
    target: str
    device: bool


def _opened(osmet_path: str, repo_path: str) -> tuple[BinaryIO, Header, Body, Repo, ObjectSource]:
    f, header, body = open_osmet(osmet_path)
    try:
        repo = Repo.open(repo_path)
    except BaseException:
        f.close()
        raise
    objects = ObjectSource(repo)
    missing = objects.missing(body)
    if missing:
        f.close()
        repo.close()
        raise SysrootError(
            f"{repo_path} lacks {len(missing)} content objects {osmet_path} needs"
            f" (first: {missing[0]})"
        )
    return f, header, body, repo, objects


def unpack_to_file(
    osmet_path: str, repo_path: str, path: str, progress: Progress | None = None
) -> UnpackResult:
    """A new image file at path (refused if it exists); sparse where the image is zero."""
    if os.path.lexists(path):
        raise UsageError(f"{path} exists")
    f, header, body, repo, objects = _opened(osmet_path, repo_path)
    with f, repo, fsutil.atomic_output(path) as out:
        done = 0
        for piece in image_chunks(f, body, objects, osmet_path):
            size = piece_size(piece)
            if isinstance(piece, ZeroRun) or (size == CHUNK and piece == _ZERO):
                out.seek(size, os.SEEK_CUR)  # a hole
            else:
                out.write(piece)
            done += size
            if progress is not None:
                progress(done, body.size)
        out.truncate(body.size)
    return UnpackResult(header, body, path, False)


def unpack_to_disk(
    osmet_path: str, repo_path: str, device: str, progress: Progress | None = None
) -> UnpackResult:
    """The image onto whole disk device, which nothing may be using."""
    disk = guard(device)
    f, header, body, repo, objects = _opened(osmet_path, repo_path)
    with f, repo:
        if header.sector_size != disk.logical_sector_size:
            raise UsageError(
                f"{osmet_path} is for {header.sector_size}-byte sectors,"
                f" {device} has {disk.logical_sector_size}-byte sectors"
            )
        if body.size > disk.size:
            raise UsageError(
                f"{device} ({disk.size} bytes) is smaller than the image ({body.size} bytes)"
            )
        try:
            fd = os.open(device, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
        except OSError as e:
            raise SysrootError(f"{device}: {e.strerror}") from None
        with os.fdopen(fd, "r+b", buffering=0) as dev:
            try:
                _write_disk(dev, f, body, objects, osmet_path, progress)
            except BaseException:
                _wipe(dev, body.size)
                raise
            with contextlib.suppress(OSError):
                blockdev.reread_partitions(dev.fileno())
    reread(device)  # partx for loop devices, then udevadm settle
    return UnpackResult(header, body, device, True)


def _write_disk(
    dev: BinaryIO,
    f: BinaryIO,
    body: Body,
    objects: ObjectSource,
    osmet_path: str,
    progress: Progress | None,
) -> None:
    dev.write(bytes(min(MIB, body.size)))  # no table while the image is unverified
    os.fsync(dev.fileno())
    head = bytearray()
    produced = 0
    zeroing = _Zeroing(dev)
    for piece in image_chunks(f, body, objects, osmet_path):
        at = produced
        produced += piece_size(piece)
        if isinstance(piece, ZeroRun) and at >= MIB:
            zeroing.zero(at, piece.length)
        else:
            views = zero_views(piece.length) if isinstance(piece, ZeroRun) else [piece]
            for view in views:
                if len(head) < MIB:  # the first MiB is held back
                    take = MIB - len(head)
                    head += view[:take]
                    view = view[take:]
                    dev.seek(len(head))
                if view:
                    _write_all(dev, view)
        if progress is not None:
            progress(produced, body.size)
    os.fsync(dev.fileno())  # the verified body is on the disk before its table
    dev.seek(0)
    _write_all(dev, bytes(head))
    os.fsync(dev.fileno())


class _Zeroing:
    """Zero ranges of the disk written by the kernel (BLKZEROOUT) where they cover
    whole pages, so a disk's free space costs neither copies nor, on a device with
    WRITE ZEROES, transfers; by plain writes at the edges, and everywhere once the
    kernel has refused."""

    PAGE = 4096  # whole pages: none of the range shares a cached page with data

    def __init__(self, dev: BinaryIO):
        self._dev = dev
        self._kernel = True

    def zero(self, at: int, length: int) -> None:
        end = at + length
        first = -(-at // self.PAGE) * self.PAGE
        last = end // self.PAGE * self.PAGE
        if self._kernel and last - first >= 16 * self.PAGE:
            try:
                blockdev.zero_out(self._dev.fileno(), first, last - first)
            except OSError:
                self._kernel = False
            else:
                self._write(at, first - at)
                self._write(last, end - last)
                self._dev.seek(end)
                return
        self._write(at, length)

    def _write(self, at: int, length: int) -> None:
        self._dev.seek(at)
        for zeros in zero_views(length):
            _write_all(self._dev, zeros)


def _write_all(dev: BinaryIO, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = dev.write(view)
        if not n:
            raise SysrootError("the disk took no more bytes")
        view = view[n:]


def _wipe(dev: BinaryIO, size: int) -> None:
    """Zero the image's table at both ends (the primary GPT in the first MiB, the
    backup in the image's last MiB), then let wipefs remove any other signature."""
    with contextlib.suppress(OSError):
        for at in (0, max(0, size - MIB)):
            dev.seek(at)
            _write_all(dev, bytes(min(MIB, size)))
        os.fsync(dev.fileno())
    name = os.readlink(f"/proc/self/fd/{dev.fileno()}")
    if shutil.which("wipefs"):
        run(["wipefs", "--all", "--force", name], check=False)
