"""FAT12/16/32 read in user space: where each file's bytes lie in the file system.

osmet packs a disk image minus the byte ranges that are copies of OSTree objects; the
kernel and initramfs on a systemd-boot ESP are such copies, and this machine's kernel
has no vfat (no mount, no FIEMAP), so the FAT is read here, after Microsoft's FAT
specification ("FAT: General Overview of On-Disk Format", 1.03):

- the type comes from the count of data clusters (< 4085 FAT12, < 65525 FAT16, else
  FAT32), never from the label string in the boot sector;
- the root directory is a fixed region (FAT12/16) or a cluster chain (FAT32);
- long names (VFAT) are used when their checksum matches the 8.3 entry that follows
  them, else the 8.3 name, lower-cased per the NT case bits as Linux shows it.

The image is hostile until read: every count is bounded, every cluster is checked to
lie in the data region, and no cluster may be reached twice (a loop within a chain, a
cross-link between files or a directory that contains its own ancestor), so the walk
ends after at most one visit per cluster. Any of it is one FatFormatError line. The FAT
is read once (< 1 MiB for a 512 MiB FAT32 ESP) and bounded by MAX_FAT_BYTES.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

from sysroot.errors import SysrootError

MAX_DEPTH = 32
# The FAT specification's limit for one directory (2 MiB of entries); Linux refuses more.
MAX_DIR_ENTRIES = 65536
# Directories in all: keeps the pending walk's memory small on a hostile image.
MAX_DIRECTORIES = 65536
# A 2 TiB FAT32 of 32 KiB clusters has a 256 MiB FAT; an ESP's is well below 4 MiB.
MAX_FAT_BYTES = 128 << 20

_ENTRY = 32
_ATTR_VOLUME = 0x08
_ATTR_DIRECTORY = 0x10
_ATTR_LFN = 0x0F  # read-only|hidden|system|volume: old systems skip such entries
_ATTR_MASK = 0x3F  # the two high attribute bits are reserved
_ORDER_MASK = 0x3F  # a long-name entry's sequence number (0x40 marks the last one)
_LFN_LAST = 0x40
_LFN_CHARS = 13
_CASE_LOWER_BASE = 0x08
_CASE_LOWER_EXT = 0x10
_DELETED = 0xE5
_KANJI_E5 = 0x05  # a name whose first byte is really 0xE5

# jump, OEM name, then the BIOS parameter block shared by all three types
_BPB = struct.Struct("<3s8sHBHBHHBHHHII")
_BPB32 = struct.Struct("<IHHI")  # FATSz32, ExtFlags, FSVer, RootClus (at byte 36)
_DIRENT = struct.Struct("<11sBBBHHHHHHHI")
_SECTOR_SIZES = (512, 1024, 2048, 4096)


class FatFormatError(SysrootError):
    """A FAT file system that cannot be read safely (one line, naming what is wrong)."""


@dataclass(frozen=True)
class FatExtent:
    logical: int  # byte offset in the file
    physical: int  # byte offset from the file system's start
    length: int


@dataclass(frozen=True)
class FatFile:
    path: str  # absolute, "/"-separated, long names
    size: int
    extents: tuple[FatExtent, ...]  # in logical order; none for an empty file


class FatType(Enum):
    FAT12 = 12
    FAT16 = 16
    FAT32 = 32

    @classmethod
    def from_clusters(cls, count: int) -> FatType:
        # the specification's thresholds, exactly (its own "<" comparisons)
        if count < 4085:
            return cls.FAT12
        if count < 65525:
            return cls.FAT16
        return cls.FAT32

    def bad_cluster(self) -> int:
        # values from here up are bad (the first) or end-of-chain (0x...F8 and above)
        return {FatType.FAT12: 0xFF7, FatType.FAT16: 0xFFF7, FatType.FAT32: 0x0FFFFFF7}[self]


@dataclass(frozen=True)
class _Geometry:
    fat_type: FatType
    cluster_size: int
    clusters: int  # data clusters, numbered 2 .. clusters + 1
    fat_start: int  # byte offset of the FAT in use
    root_start: int  # FAT12/16: byte offset of the fixed root directory
    root_entries: int  # FAT12/16: its entry count
    root_cluster: int  # FAT32: first cluster of the root directory
    data_start: int  # byte offset of cluster 2
    size: int  # bytes the file system spans


def walk_files(f: BinaryIO, offset: int, length: int) -> Iterator[FatFile]:
    """Every regular file of the FAT at [offset, offset + length) of f, depth first in
    directory order. The boot sector is checked at the call; later damage raises
    FatFormatError from the iteration."""
    geometry = _read_geometry(_read(f, offset, 0, 512, "boot sector"), length)
    fat = _read(f, offset, geometry.fat_start, _fat_bytes(geometry), "FAT")
    return _Walker(f, offset, geometry, fat).walk()


def _read(f: BinaryIO, base: int, at: int, size: int, what: str) -> bytes:
    f.seek(base + at)
    data = f.read(size)
    if len(data) != size:
        raise FatFormatError(f"FAT: {what} at byte {at} is cut short (image truncated)")
    return data


def _read_geometry(boot: bytes, length: int) -> _Geometry:
    (
        _jump,
        _oem,
        sector,
        per_cluster,
        reserved,
        fats,
        root_entries,
        total16,
        _media,
        fat_sectors16,
        _per_track,
        _heads,
        _hidden,
        total32,
    ) = _BPB.unpack_from(boot)
    fat_sectors32, ext_flags, _version, root_cluster = _BPB32.unpack_from(boot, 36)
    if sector not in _SECTOR_SIZES:
        raise FatFormatError(f"FAT: {sector} bytes per sector (not a FAT file system?)")
    if per_cluster == 0 or per_cluster & (per_cluster - 1) or per_cluster > 128:
        raise FatFormatError(f"FAT: {per_cluster} sectors per cluster")
    if reserved == 0 or fats == 0:
        raise FatFormatError(f"FAT: {reserved} reserved sectors, {fats} FATs")
    total = total16 or total32
    fat_sectors = fat_sectors16 or fat_sectors32
    if total == 0 or fat_sectors == 0:
        raise FatFormatError("FAT: the boot sector gives a zero size or a zero FAT size")
    if total * sector > length:
        raise FatFormatError(
            f"FAT: the file system's {total * sector} bytes exceed the {length} bytes given"
        )
    root_sectors = (root_entries * _ENTRY + sector - 1) // sector
    meta_sectors = reserved + fats * fat_sectors + root_sectors
    if meta_sectors >= total:
        raise FatFormatError(f"FAT: no data region ({meta_sectors} of {total} sectors used)")
    clusters = (total - meta_sectors) // per_cluster
    fat_type = FatType.from_clusters(clusters)
    if clusters == 0 or clusters + 2 > fat_type.bad_cluster():
        raise FatFormatError(f"FAT: {clusters} clusters")
    active = 0
    if fat_type is FatType.FAT32:
        if root_entries != 0 or fat_sectors16 != 0:
            raise FatFormatError("FAT: a FAT32 file system with a FAT16 root directory or FAT")
        if ext_flags & 0x80:  # mirroring off: one FAT is the active one
            active = ext_flags & 0x0F
            if active >= fats:
                raise FatFormatError(f"FAT: active FAT {active} of {fats}")
    elif root_entries == 0:
        raise FatFormatError(f"FAT: a {fat_type.name} file system with no root directory")
    if (fat_sectors * sector * 8) // fat_type.value < clusters + 2:
        raise FatFormatError(f"FAT: a FAT of {fat_sectors} sectors is too short for {clusters}")
    data_start = meta_sectors * sector
    if fat_type is FatType.FAT32 and not 2 <= root_cluster < clusters + 2:
        raise FatFormatError(f"FAT: root directory cluster {root_cluster} is out of range")
    return _Geometry(
        fat_type=fat_type,
        cluster_size=per_cluster * sector,
        clusters=clusters,
        fat_start=(reserved + active * fat_sectors) * sector,
        root_start=(reserved + fats * fat_sectors) * sector,
        root_entries=root_entries,
        root_cluster=root_cluster,
        data_start=data_start,
        size=total * sector,
    )


def _fat_bytes(g: _Geometry) -> int:
    """Only the entries of existing clusters are read, never the FAT's slack."""
    size = ((g.clusters + 2) * g.fat_type.value + 7) // 8
    if size > MAX_FAT_BYTES:
        raise FatFormatError(f"FAT: a FAT of {size} bytes (more than sysroot reads)")
    return size


@dataclass(frozen=True)
class _Entry:
    name: str
    directory: bool
    cluster: int
    size: int


class _Walker:
    def __init__(self, f: BinaryIO, offset: int, geometry: _Geometry, fat: bytes) -> None:
        self.f = f
        self.offset = offset
        self.g = geometry
        self.fat = fat
        # one byte per cluster: reached before (a loop, a cross-link or a directory cycle)
        self.used = bytearray(geometry.clusters + 2)

    def walk(self) -> Iterator[FatFile]:
        # (path, first cluster or 0 for the fixed root, depth); reversed so that the
        # walk goes in directory order
        pending: list[tuple[str, int, int]] = [("", 0, 0)]
        directories = 1
        while pending:
            path, cluster, depth = pending.pop()
            subdirs = []
            for entry in self._list(path, cluster):
                child = f"{path}/{entry.name}"
                if entry.directory:
                    if depth + 1 > MAX_DEPTH:
                        raise FatFormatError(f"FAT: {child} is nested deeper than {MAX_DEPTH}")
                    # counted when found, so the pending list stays bounded too
                    directories += 1
                    if directories > MAX_DIRECTORIES:
                        raise FatFormatError(f"FAT: more than {MAX_DIRECTORIES} directories")
                    subdirs.append((child, entry.cluster, depth + 1))
                else:
                    yield FatFile(child, entry.size, self._file_extents(child, entry))
            pending.extend(reversed(subdirs))

    def _list(self, path: str, cluster: int) -> list[_Entry]:
        where = path or "/"
        if cluster == 0 and self.g.fat_type is not FatType.FAT32:
            data = _read(
                self.f, self.offset, self.g.root_start, self.g.root_entries * _ENTRY, "root"
            )
        else:
            if cluster == 0:
                cluster = self.g.root_cluster
            runs = self._chain(where, cluster, None)
            if sum(length for _, length in runs) > MAX_DIR_ENTRIES * _ENTRY:
                raise FatFormatError(
                    f"FAT: directory {where} has more than {MAX_DIR_ENTRIES} entries"
                )
            data = b"".join(
                _read(self.f, self.offset, start, length, f"directory {where}")
                for start, length in runs
            )
        return _parse_directory(where, data, self.g)

    def _next(self, cluster: int) -> int:
        if self.g.fat_type is FatType.FAT12:
            at = cluster + cluster // 2
            pair = self.fat[at] | self.fat[at + 1] << 8
            return pair >> 4 if cluster & 1 else pair & 0xFFF
        if self.g.fat_type is FatType.FAT16:
            return int.from_bytes(self.fat[2 * cluster : 2 * cluster + 2], "little")
        # the top 4 bits of a FAT32 entry are reserved, not part of the number
        return int.from_bytes(self.fat[4 * cluster : 4 * cluster + 4], "little") & 0x0FFFFFFF

    def _chain(self, path: str, first: int, count: int | None) -> list[tuple[int, int]]:
        """(byte offset, length) runs of the chain from first: count clusters, or to its
        end for a directory (count None). Adjacent clusters make one run."""
        g = self.g
        runs: list[tuple[int, int]] = []
        cluster, taken = first, 0
        while True:
            if not 2 <= cluster < g.clusters + 2:
                raise FatFormatError(f"FAT: {path}: cluster {cluster} is out of range")
            if self.used[cluster]:
                raise FatFormatError(f"FAT: {path}: cluster {cluster} is reached twice (a loop?)")
            self.used[cluster] = 1
            start = g.data_start + (cluster - 2) * g.cluster_size
            if runs and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + g.cluster_size)
            else:
                runs.append((start, g.cluster_size))
            taken += 1
            if count is not None and taken == count:
                return runs  # a longer chain's tail holds no byte of the file
            if count is None and taken * g.cluster_size > MAX_DIR_ENTRIES * _ENTRY:
                return runs  # the caller reports the oversized directory
            nxt = self._next(cluster)
            if nxt >= g.fat_type.bad_cluster() + 1:  # end of chain
                if count is not None:
                    raise FatFormatError(f"FAT: {path}: the chain ends before the file's size")
                return runs
            if nxt == g.fat_type.bad_cluster() or nxt < 2:
                kind = {0: "free", 1: "reserved"}.get(nxt, "bad")
                raise FatFormatError(f"FAT: {path}: cluster {cluster} links to a {kind} cluster")
            cluster = nxt

    def _file_extents(self, path: str, entry: _Entry) -> tuple[FatExtent, ...]:
        if entry.size == 0:
            return ()
        count = (entry.size + self.g.cluster_size - 1) // self.g.cluster_size
        extents = []
        logical = 0
        for start, length in self._chain(path, entry.cluster, count):
            # the last run is trimmed to the size: its cluster's slack is not the file's
            take = min(length, entry.size - logical)
            extents.append(FatExtent(logical, start, take))
            logical += take
        return tuple(extents)


def _lfn_checksum(short: bytes) -> int:
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def _short_name(raw: bytes, case: int, where: str) -> str:
    if raw[0] == _KANJI_E5:
        raw = b"\xe5" + raw[1:]
    # cp437: the OEM code page Linux's vfat and mtools default to
    base = raw[:8].decode("cp437").rstrip(" ")
    ext = raw[8:].decode("cp437").rstrip(" ")
    if case & _CASE_LOWER_BASE:
        base = base.lower()
    if case & _CASE_LOWER_EXT:
        ext = ext.lower()
    name = f"{base}.{ext}" if ext else base
    if not base or "/" in name or "\0" in name:
        raise FatFormatError(f"FAT: directory {where} has an invalid name {raw!r}")
    return name


class _LongName:
    """The VFAT long-name entries before an 8.3 entry, stored last part first."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.expect = 0  # the sequence number the next entry must carry
        self.checksum = -1

    def reset(self) -> None:
        self.parts, self.expect, self.checksum = [], 0, -1

    def add(self, entry: bytes) -> None:
        order, checksum = entry[0], entry[13]
        if order & _LFN_LAST:
            self.parts, self.expect, self.checksum = [], order & _ORDER_MASK, checksum
        if self.expect == 0 or order & _ORDER_MASK != self.expect or checksum != self.checksum:
            self.reset()  # out of sequence: the set is dropped, as Linux does
            return
        self.parts.append(entry[1:11] + entry[14:26] + entry[28:32])
        self.expect -= 1

    def take(self, short: bytes) -> str | None:
        """The long name if a whole set belongs to short (its checksum), else None."""
        parts, complete, checksum = self.parts, self.expect == 0, self.checksum
        self.reset()
        if not parts or not complete or checksum != _lfn_checksum(short):
            return None
        raw = b"".join(reversed(parts))
        units = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        if b"\0\0" in units:
            units = units[: units.index(b"\0\0")]
        try:
            name = b"".join(units).decode("utf-16-le")
        except UnicodeDecodeError:
            return None
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            return None
        return name


def _parse_directory(where: str, data: bytes, g: _Geometry) -> list[_Entry]:
    entries: list[_Entry] = []
    seen: set[str] = set()
    lfn = _LongName()
    for at in range(0, len(data) - _ENTRY + 1, _ENTRY):
        raw = data[at : at + _ENTRY]
        if raw[0] == 0:
            break  # the end of the directory: nothing after it is in use
        name, attr, case, _tenth, _ct, _cd, _ad, high, _wt, _wd, low, size = _DIRENT.unpack(raw)
        if raw[0] == _DELETED:
            lfn.reset()
            continue
        if attr & _ATTR_MASK == _ATTR_LFN:
            lfn.add(raw)
            continue
        long = lfn.take(name)
        if attr & _ATTR_VOLUME or name in (b".          ", b"..         "):
            continue
        # FAT12/16 keep other data in the high word (OS/2's extended attributes)
        cluster = (high << 16 | low) if g.fat_type is FatType.FAT32 else low
        final = long or _short_name(name, case, where)
        if final in seen:
            raise FatFormatError(f"FAT: directory {where} holds {final!r} twice")
        seen.add(final)
        directory = bool(attr & _ATTR_DIRECTORY)
        if directory and cluster == 0:
            raise FatFormatError(f"FAT: directory {where}/{final} has no cluster")
        entries.append(_Entry(final, directory, cluster, 0 if directory else size))
    return entries
