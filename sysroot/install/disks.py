"""Whole disks: the candidates for an install, and the guard that refuses one in use.

A disk is in use when the file system of any of its partitions (or of the disk itself)
is mounted, when it or a partition is a swap device, or when something holds it: a
device-mapper target (LVM, dm-crypt), an md array. The guard reads the kernel's own
records (/proc/self/mountinfo by major:minor, /proc/swaps, sysfs `holders/`), so it
works for loop devices too. The roots are parameters so tests can point them at a
made-up tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyudev

from sysroot.errors import SysrootError

# the first sectors a GPT or MBR partition table lives in (GPT header at LBA 1)
_MBR_SIGNATURE_OFFSET = 510
_GPT_MAGIC = b"EFI PART"


class DiskInUseError(SysrootError):
    """The target disk is mounted, swapped on or held by another device."""


class NotAWholeDiskError(SysrootError):
    """The target is not a whole block device (a partition, a file, nothing)."""


class ExistingTableError(SysrootError):
    """The target has a partition table and --wipe was not given."""


@dataclass(frozen=True)
class SystemPaths:
    """Where the kernel's records are read."""

    sys_block: str = "/sys/class/block"
    mountinfo: str = "/proc/self/mountinfo"
    swaps: str = "/proc/swaps"


@dataclass(frozen=True)
class Disk:
    name: str  # kernel name: sda, nvme0n1, loop3
    path: str  # /dev/NAME
    model: str
    serial: str
    size: int  # bytes
    logical_sector_size: int

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "model": self.model,
            "serial": self.serial,
            "size": self.size,
            "logical-sector-size": self.logical_sector_size,
        }


def _read(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return default


def _disk_from_udev(device: pyudev.Device) -> Disk:
    sys = device.sys_path
    props = device.properties
    model = props.get("ID_MODEL") or _read(os.path.join(sys, "device/model"))
    serial = props.get("ID_SERIAL_SHORT") or _read(os.path.join(sys, "device/serial"))
    if not model and device.sys_name.startswith("loop"):
        model = "loop: " + _read(os.path.join(sys, "loop/backing_file"))
    # sysfs `size` counts 512-byte units whatever the logical sector size
    size = int(_read(os.path.join(sys, "size"), "0")) * 512
    sector = int(_read(os.path.join(sys, "queue/logical_block_size"), "512"))
    node = device.device_node or f"/dev/{device.sys_name}"
    return Disk(device.sys_name, node, model.strip(), serial.strip(), size, sector)


def list_disks() -> list[Disk]:
    """The whole disks an install could go to: not partitions, not empty (a loop device
    with nothing attached, an empty card reader), not read-only, not zram/ram."""
    context = pyudev.Context()
    out = []
    for device in context.list_devices(subsystem="block", DEVTYPE="disk"):
        if device.sys_name.startswith(("zram", "ram")):
            continue
        disk = _disk_from_udev(device)
        if disk.size == 0 or _read(os.path.join(device.sys_path, "ro")) == "1":
            continue
        out.append(disk)
    return sorted(out, key=lambda d: d.name)


def disk_info(device_path: str) -> Disk:
    """The Disk of a block device node; NotAWholeDiskError for anything else."""
    try:
        st = os.stat(device_path)
    except OSError as e:
        raise NotAWholeDiskError(f"{device_path}: {e.strerror}") from None
    try:
        device = pyudev.Devices.from_device_number(pyudev.Context(), "block", st.st_rdev)
    except (pyudev.DeviceNotFoundError, ValueError):
        raise NotAWholeDiskError(f"{device_path}: not a block device") from None
    if device.device_type != "disk":
        raise NotAWholeDiskError(f"{device_path}: a partition, not a whole disk")
    return _disk_from_udev(device)


def _partitions(name: str, paths: SystemPaths) -> list[str]:
    """The kernel names of the partitions of disk name."""
    base = os.path.join(paths.sys_block, name)
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    return [e for e in entries if os.path.exists(os.path.join(base, e, "partition"))]


def _devnum(name: str, paths: SystemPaths) -> str:
    return _read(os.path.join(paths.sys_block, name, "dev"))


def _holders(name: str, paths: SystemPaths) -> Iterator[str]:
    base = os.path.join(paths.sys_block, name, "holders")
    try:
        holders = sorted(os.listdir(base))
    except OSError:
        return
    for holder in holders:
        dm_name = _read(os.path.join(paths.sys_block, holder, "dm/name"))
        yield f"{holder} ({dm_name})" if dm_name else holder


def users(name: str, paths: SystemPaths = SystemPaths()) -> list[str]:
    """What uses disk name or its partitions, one phrase each; empty when unused."""
    devices = [name, *_partitions(name, paths)]
    numbers = {_devnum(d, paths): d for d in devices}
    found = []
    for line in _read(paths.mountinfo).splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] in numbers:
            found.append(f"/dev/{numbers[fields[2]]} is mounted at {fields[4]}")
    for line in _read(paths.swaps).splitlines()[1:]:
        swap = line.split()[0] if line.split() else ""
        try:
            st = os.stat(swap)
        except OSError:
            continue
        number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        if number in numbers and st.st_rdev:
            found.append(f"/dev/{numbers[number]} is used as swap")
    for device in devices:
        for holder in _holders(device, paths):
            found.append(f"/dev/{device} is held by {holder}")
    return found


def guard(device_path: str, paths: SystemPaths = SystemPaths()) -> Disk:
    """The Disk at device_path, if nothing uses it; DiskInUseError naming the users."""
    disk = disk_info(device_path)
    found = users(disk.name, paths)
    if found:
        raise DiskInUseError(f"{device_path} is in use: " + "; ".join(found))
    return disk


def gpt_sector_size(path: str) -> int | None:
    """The sector size a GPT was written for (its header sits at LBA 1), or None."""
    with open(path, "rb") as f:
        head = f.read(4096 + 8)
    for sector in (512, 4096):
        if head[sector : sector + 8] == _GPT_MAGIC:
            return sector
    return None


def has_partition_table(device_path: str, sector_size: int) -> bool:
    """Whether device_path starts with an MBR signature or a GPT header (at either
    sector size's LBA 1: what a firmware or the kernel would take for a table)."""
    with open(device_path, "rb") as f:
        head = f.read(2 * max(sector_size, 4096))
    if head[_MBR_SIGNATURE_OFFSET : _MBR_SIGNATURE_OFFSET + 2] == b"\x55\xaa":
        return True
    return any(head[lba : lba + 8] == _GPT_MAGIC for lba in (512, 4096))
