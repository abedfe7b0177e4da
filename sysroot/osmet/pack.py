"""Pack a metal image (an image file or a whole disk) against its own repository.

The root (and an ext4 /boot) are mounted read-only, the ESP read with our own FAT
reader; the CLI runs this in a private mount namespace of its own (util/mounts.py), so
nobody else sees those mounts and a killed process leaves none. The disk is read twice:
once whole for its SHA-256, once for the bytes outside the mapped extents, which go to
xz (formats/xz.py: free space costs no compression time). Then the file proves itself:
read back with our reader and unpacked against the mounted repository, it must give
the image's size and SHA-256. Only then is it renamed to its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sysroot.errors import SysrootError, UsageError
from sysroot.formats.osmet import Body, Header, Mapping, Partition, canonicalize, encode
from sysroot.formats.xz import XzWriter
from sysroot.install.attach import attached_image, mounted
from sysroot.install.disks import gpt_sector_size
from sysroot.install.partition import wait_for_partitions
from sysroot.osmet import scan
from sysroot.osmet.partitions import DiskPartition, PartitionRole, disk_partitions, only
from sysroot.osmet.unpack import ObjectSource, image_chunks, open_osmet
from sysroot.store.repo import Repo
from sysroot.util import blockdev, fsutil
from sysroot.util.run import run

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackOptions:
    source: str  # an image file, or a whole-disk block device
    output: str
    description: str | None = None  # None: PRETTY_NAME of the deployment's os-release
    checksum: str | None = None  # the image's SHA-256 as the caller knows it (hex)
    fast: bool = False  # xz preset 0 instead of 9
    app_version: str = "sysroot"
    architecture: str = field(default_factory=platform.machine)


@dataclass(frozen=True)
class PackResult:
    header: Header
    body: Body
    stats: scan.ScanStats
    mapped_bytes: int  # left out of the packed stream
    packed_bytes: int  # the xz stream's length
    file_size: int
    dropped: int  # canonicalization: extents inside others
    clamped: int


def pack(options: PackOptions) -> PackResult:
    if options.checksum is not None:
        try:
            if len(bytes.fromhex(options.checksum)) != 32:
                raise ValueError
        except ValueError:
            raise UsageError(f"--checksum {options.checksum!r}: not a SHA-256 in hex") from None
    if os.path.lexists(options.output):
        raise UsageError(f"{options.output} exists")
    with _source_device(options.source) as device, fsutil.atomic_output(options.output) as out:
        return _pack_device(options, device, out)


@contextlib.contextmanager
def _source_device(source: str) -> Iterator[str]:
    if blockdev.is_block_device(source):
        yield source
        return
    try:
        sector = gpt_sector_size(source)
    except OSError as e:
        raise UsageError(f"{source}: {e.strerror}") from None
    if sector is None:
        raise UsageError(f"{source}: no GPT partition table (not a metal image)")
    with attached_image(source, sector, read_only=True) as device:
        # the kernel's scan at attach may show no partition of a read-only loop device
        wait_for_partitions(device, _table_entries(device))
        yield device


def _table_entries(device: str) -> int:
    """How many partitions device's table has (read by partx from the disk itself)."""
    return len(run(["partx", "--show", "--noheadings", "-o", "NR", device]).stdout.split())


def _pack_device(options: PackOptions, device: str, out: BinaryIO) -> PackResult:
    parts = disk_partitions(device)
    root = only(parts, PartitionRole.ROOT, options.source)
    boots = [p for p in parts if p.role in (PartitionRole.BOOT, PartitionRole.ESP)]
    work = tempfile.mkdtemp(prefix="sysroot-osmet-")
    try:
        with contextlib.ExitStack() as stack:
            top = stack.enter_context(
                mounted(root.device, os.path.join(work, "root"), read_only=True)
            )
            with open(device, "rb") as disk:
                boot_files: list[scan.BootFile] = []
                for p in boots:
                    boot_files += _boot_files(p, disk, stack, work)
                found = scan.scan(top, boot_files, disk)
                body, dropped, clamped = _body(root, found, disk)
                if options.checksum is not None and body.checksum.hex() != options.checksum:
                    raise SysrootError(
                        f"{options.source}: its SHA-256 is {body.checksum.hex()},"
                        f" not {options.checksum.lower()}"
                    )
            header = Header(
                sector_size=_sector_size(device),
                os_description=(
                    options.description if options.description is not None else _pretty_name(top)
                ),
                os_architecture=options.architecture,
                app_version=options.app_version,
            )
            packed = _write(out, header, body, device, options.fast)
            _verify(out, body, os.path.join(top, "ostree", "repo"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mapped = sum(m.extent.length for p in body.partitions for m in p.mappings)
    size = out.tell()
    return PackResult(header, body, found.stats, mapped, packed, size, dropped, clamped)


def _boot_files(
    part: DiskPartition, disk: BinaryIO, stack: contextlib.ExitStack[bool | None], work: str
) -> list[scan.BootFile]:
    if part.role is PartitionRole.ESP:  # FAT: read by our reader, no mount
        return scan.fat_boot_files(disk, part)
    top = stack.enter_context(
        mounted(part.device, os.path.join(work, f"part{part.number}"), read_only=True)
    )
    return scan.mounted_boot_files(top, part)


def _body(root: DiskPartition, found: scan.ScanResult, disk: BinaryIO) -> tuple[Body, int, int]:
    by_start: dict[int, list[Mapping]] = {root.start: list(found.root)}
    ends = {root.start: root.end}
    for part, maps in found.boot.items():
        by_start.setdefault(part.start, []).extend(maps)
        ends[part.start] = part.end
    partitions = []
    dropped = clamped = 0
    for start in sorted(by_start):
        canonical, d, c = canonicalize(by_start[start])
        dropped, clamped = dropped + d, clamped + c
        if canonical:
            partitions.append(Partition(start, ends[start], canonical))
    size = blockdev.size_bytes(disk.fileno())
    digest = hashlib.sha256()
    disk.seek(0)
    while chunk := disk.read(_CHUNK):
        digest.update(chunk)
    return Body(tuple(partitions), digest.digest(), size), dropped, clamped


def _sector_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return blockdev.logical_sector_size(fd)
    finally:
        os.close(fd)


def _pretty_name(root: str) -> str:
    """PRETTY_NAME of the first deployment's os-release; "" when there is none."""
    deploy = os.path.join(root, "ostree", "deploy")
    with contextlib.suppress(OSError):
        for stateroot in sorted(os.listdir(deploy)):
            top = os.path.join(deploy, stateroot, "deploy")
            for name in sorted(os.listdir(top)):
                for rel in ("usr/lib/os-release", "etc/os-release"):
                    with (
                        contextlib.suppress(OSError, UnicodeDecodeError),
                        open(os.path.join(top, name, rel), encoding="utf-8") as f,
                    ):
                        for line in f:
                            key, _, value = line.strip().partition("=")
                            if key == "PRETTY_NAME":
                                return value.strip().strip("\"'")
    return ""


def _write(out: BinaryIO, header: Header, body: Body, device: str, fast: bool) -> int:
    """header, body and the packed stream into out; the xz stream's length."""
    out.write(encode(header, body))
    xz = XzWriter(out, preset=0 if fast else 9)
    with open(device, "rb") as disk:

        def keep(n: int) -> None:
            while n:
                chunk = disk.read(min(n, _CHUNK))
                if not chunk:
                    raise SysrootError(f"{device}: shorter than its partitions say")
                xz.write(chunk)
                n -= len(chunk)

        pos = 0
        for part in body.partitions:
            for m in part.mappings:
                at = part.start_offset + m.extent.physical
                keep(at - pos)
                pos = at + m.extent.length
                disk.seek(pos)
        keep(body.size - pos)
    xz.close()
    out.flush()
    return xz.written


def _verify(out: BinaryIO, body: Body, repo_path: str) -> None:
    """The written file, read back by our reader, must unpack to the image."""
    out.flush()
    os.fsync(out.fileno())
    f, _, read_body = open_osmet(os.readlink(f"/proc/self/fd/{out.fileno()}"))
    with f, Repo.open(repo_path) as repo:
        if read_body != body:
            raise SysrootError("the written osmet file reads back differently (a bug)")
        for _chunk in image_chunks(f, read_body, ObjectSource(repo), "the new osmet file"):
            pass
