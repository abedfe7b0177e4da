"""Which byte ranges of a disk are copies of content objects of its own repository.

Root partition: every regular `.file` object under ostree/repo/objects, by FIEMAP (the
deployments are hard links to these same inodes, so they are covered too). /boot (an
ext4 partition, or the ESP of a systemd-boot disk, read through our own FAT reader as
this kernel may have no vfat): the kernels and initramfs images are copies, not links;
a file there is matched to an object of the same size and SHA-256. Files of 1 KiB or
less are not worth a mapping (a mapping costs tens of bytes).

Extents are trimmed to the file's size: the slack of a last block then stays in the
packed stream, whatever it holds, instead of being assumed zero.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sysroot.errors import SysrootError
from sysroot.formats import fat
from sysroot.formats.objects import is_checksum
from sysroot.formats.osmet import Extent, Mapping
from sysroot.osmet.partitions import DiskPartition
from sysroot.util import fiemap, fsutil

_MIN_BOOT_FILE = 1024
_HASH_CHUNK = 1 << 20
# coreos-installer refuses these rather than quietly keeping the bytes in the packed
# stream: an image that needs them is not what the packer expects, and would bloat
REFUSED_FLAGS = (
    fiemap.ExtentFlag.NOT_ALIGNED
    | fiemap.ExtentFlag.DATA_INLINE
    | fiemap.ExtentFlag.DATA_TAIL
    | fiemap.ExtentFlag.MERGED
    | fiemap.ExtentFlag.ENCODED
    | fiemap.ExtentFlag.DELALLOC
    | fiemap.ExtentFlag.UNWRITTEN
    | fiemap.ExtentFlag.UNKNOWN
)


@dataclass
class ScanStats:
    objects: int = 0  # .file objects seen
    mapped_objects: int = 0
    empty_objects: int = 0
    boot_files: int = 0  # /boot files big enough to be worth matching
    boot_matched: int = 0
    extents: int = 0


@dataclass(frozen=True)
class RepoObject:
    checksum: bytes
    path: str
    size: int


@dataclass
class BootFile:
    """A /boot file: its extents on the boot partition, once known (FAT) or on demand."""

    partition: DiskPartition
    path: str  # where to read it (a mounted path), or "" for a FAT file read by extents
    size: int
    extents: tuple[Extent, ...] | None = None  # known up front for FAT files
    digest: bytes | None = None
    matched: bytes | None = field(default=None)  # the object checksum


def repo_objects(root: str) -> Iterator[RepoObject]:
    """The regular `.file` objects of the repository under the mounted root."""
    top = os.path.join(root, "ostree", "repo", "objects")
    if not os.path.isdir(top):
        raise SysrootError(f"{top}: no repository on the root partition")
    for prefix in sorted(os.listdir(top)):
        sub = os.path.join(top, prefix)
        if len(prefix) != 2 or not os.path.isdir(sub):
            continue
        for name in sorted(os.listdir(sub)):
            stem, _, ext = name.partition(".")
            if ext != "file":
                continue
            path = os.path.join(sub, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink object of a bare repository has no data
            if not is_checksum(prefix + stem):
                raise SysrootError(f"{path}: malformed object name")
            yield RepoObject(bytes.fromhex(prefix + stem), path, st.st_size)


def file_extents(path: str, size: int) -> tuple[Extent, ...]:
    """path's extents from FIEMAP, trimmed to size; refused flags are an error."""
    found = []
    for e in fiemap.path_extents(path):
        bad = e.flags & REFUSED_FLAGS
        if bad:
            raise SysrootError(f"{path}: an extent with flags {bad!r}, which osmet refuses")
        if e.logical >= size:
            continue
        found.append(Extent(e.logical, e.physical, min(e.length, size - e.logical)))
    return tuple(found)


def _digest_extents(disk: BinaryIO, base: int, extents: tuple[Extent, ...]) -> bytes:
    """The SHA-256 of a file read through its extents (at base on disk)."""
    h = hashlib.sha256()
    for e in sorted(extents, key=lambda x: x.logical):
        disk.seek(base + e.physical)
        left = e.length
        while left:
            chunk = disk.read(min(left, _HASH_CHUNK))
            if not chunk:
                raise SysrootError("the disk ends inside a file of its ESP")
            h.update(chunk)
            left -= len(chunk)
    return h.digest()


def mounted_boot_files(top: str, partition: DiskPartition) -> list[BootFile]:
    out = []
    for parent, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size > _MIN_BOOT_FILE:
                out.append(BootFile(partition, path, st.st_size))
    return out


def fat_boot_files(disk: BinaryIO, partition: DiskPartition) -> list[BootFile]:
    try:
        files = list(fat.walk_files(disk, partition.start, partition.size))
    except fat.FatFormatError as e:
        raise SysrootError(f"{partition.device}: {e}") from None
    out = []
    for f in files:
        if f.size > _MIN_BOOT_FILE:
            extents = tuple(Extent(x.logical, x.physical, x.length) for x in f.extents)
            out.append(BootFile(partition, "", f.size, extents))
    return out


@dataclass(frozen=True)
class ScanResult:
    root: list[Mapping]
    boot: dict[DiskPartition, list[Mapping]]  # of the partitions /boot files were read from
    stats: ScanStats


def scan(root: str, boot_files: list[BootFile], disk: BinaryIO) -> ScanResult:
    """Mappings of the root partition's objects (mounted at root), and of the /boot
    files that are copies of one (FAT files are hashed through disk, the whole disk)."""
    stats = ScanStats(boot_files=len(boot_files))
    by_size: dict[int, list[BootFile]] = {}
    for bf in boot_files:
        by_size.setdefault(bf.size, []).append(bf)
    root_maps: list[Mapping] = []
    for obj in repo_objects(root):
        stats.objects += 1
        if obj.size == 0:
            stats.empty_objects += 1
            continue
        extents = file_extents(obj.path, obj.size)
        root_maps.extend(Mapping(e, obj.checksum) for e in extents)
        stats.extents += len(extents)
        stats.mapped_objects += 1
        candidates = [bf for bf in by_size.get(obj.size, ()) if bf.matched is None]
        if not candidates:
            continue
        digest = fsutil.file_sha256(obj.path)
        for bf in candidates:
            if bf.digest is None:
                if bf.extents is not None:
                    bf.digest = _digest_extents(disk, bf.partition.start, bf.extents)
                else:
                    bf.digest = fsutil.file_sha256(bf.path)
            if bf.digest == digest:
                bf.matched = obj.checksum
    boot_maps: dict[DiskPartition, list[Mapping]] = {}
    for bf in boot_files:
        if bf.matched is None:
            continue
        stats.boot_matched += 1
        extents = bf.extents if bf.extents is not None else file_extents(bf.path, bf.size)
        maps = boot_maps.setdefault(bf.partition, [])
        maps.extend(Mapping(e, bf.matched) for e in extents)
        stats.extents += len(extents)
    return ScanResult(root_maps, boot_maps, stats)
