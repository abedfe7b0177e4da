"""The GPT layout of an installed disk, per boot loader, written with sfdisk.

- systemd-boot: ESP (512 MiB, vfat, mounted at /boot) + root (ext4, the rest).
- grub2: ESP (64 MiB, only GRUB's EFI binary) + /boot (ext4, 512 MiB) + root (ext4).

The disk GUID and every partition UUID come from the caller, so the same inputs give
the same table. After writing, the kernel is asked to show the partitions (BLKRRPART
through `blockdev --rereadpt`, then `partx -u`, a few times, waiting a little longer
each time; `udevadm settle` when udev runs) until their device nodes exist. Any failure
from the first write on wipes the table again (partitioned()): a half-written disk
never looks bootable.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sysroot.boot.backends import BootloaderKind
from sysroot.errors import SysrootError, UsageError
from sysroot.util.run import run

MIB = 1 << 20
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

log = logging.getLogger(__name__)


class Role(enum.Enum):
    ESP = "esp"
    BOOT = "boot"  # ext4 /boot (grub2)
    ROOT = "root"

    @property
    def type_guid(self) -> str:
        return ESP_TYPE if self is Role.ESP else LINUX_FS_TYPE


@dataclass(frozen=True)
class PartitionSpec:
    role: Role
    size: int | None  # bytes; None: the rest of the disk
    uuid: str
    label: str


@dataclass(frozen=True)
class LayoutIds:
    """The fixed identities of a table: the disk GUID and one UUID per role."""

    disk_guid: str
    esp_uuid: str
    boot_uuid: str
    root_uuid: str


@dataclass(frozen=True)
class Layout:
    disk_guid: str
    partitions: tuple[PartitionSpec, ...]

    def index(self, role: Role) -> int:
        """The 0-based position of role's partition."""
        for i, spec in enumerate(self.partitions):
            if spec.role is role:
                return i
        raise KeyError(role)

    def has(self, role: Role) -> bool:
        return any(spec.role is role for spec in self.partitions)


class PartitionError(SysrootError):
    """The table could not be written, or the kernel does not show its partitions."""


def layout_for(kind: BootloaderKind, ids: LayoutIds, root_size: int | None = None) -> Layout:
    if kind is BootloaderKind.SYSTEMD_BOOT:
        parts = [PartitionSpec(Role.ESP, 512 * MIB, ids.esp_uuid, "esp")]
    elif kind is BootloaderKind.GRUB2:
        parts = [
            PartitionSpec(Role.ESP, 64 * MIB, ids.esp_uuid, "esp"),
            PartitionSpec(Role.BOOT, 512 * MIB, ids.boot_uuid, "boot"),
        ]
    else:
        raise UsageError(f"no disk layout for boot loader {kind.value}")
    if root_size is not None and (root_size <= 0 or root_size % MIB):
        raise UsageError(f"root size {root_size}: must be a positive number of whole MiB")
    parts.append(PartitionSpec(Role.ROOT, root_size, ids.root_uuid, "root"))
    return Layout(ids.disk_guid, tuple(parts))


def sfdisk_script(layout: Layout) -> str:
    """sfdisk's input for layout: MiB-aligned partitions in order."""
    lines = ["label: gpt", f"label-id: {layout.disk_guid}"]
    for spec in layout.partitions:
        size = f"size={spec.size // MIB}MiB, " if spec.size is not None else ""
        lines.append(f"{size}type={spec.role.type_guid}, uuid={spec.uuid}, name={spec.label}")
    return "\n".join(lines) + "\n"


def partition_path(device: str, number: int) -> str:
    """The node of partition number (1-based): sda1, but nvme0n1p1 and loop0p1."""
    sep = "p" if device[-1:].isdigit() else ""
    return f"{device}{sep}{number}"


def _shown(paths: list[str]) -> bool:
    return all(os.path.exists(p) for p in paths)


def reread(device: str) -> None:
    """Ask the kernel to read device's table again (BLKRRPART), then to add what it
    still misses (BLKPG via partx: a loop device's re-read may add nothing)."""
    run(["blockdev", "--rereadpt", device], check=False)
    run(["partx", "-u", device], check=False)
    if shutil.which("udevadm"):
        run(["udevadm", "settle", "--timeout=10"], check=False)


def wait_for_partitions(
    device: str, count: int, *, attempts: int = 6, sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """The device nodes of partitions 1..count, once the kernel shows them all."""
    paths = [partition_path(device, n) for n in range(1, count + 1)]
    delay = 0.05
    for _ in range(attempts):
        reread(device)
        if _shown(paths):
            return paths
        sleep(delay)  # backing off while the kernel (or udev) catches up
        delay *= 2
    missing = [p for p in paths if not os.path.exists(p)]
    raise PartitionError(f"{device}: the kernel does not show {', '.join(missing)}")


def write_table(device: str, layout: Layout) -> None:
    run(["sfdisk", "--quiet", "--wipe=always", device], input=sfdisk_script(layout).encode())


def wipe_table(device: str) -> None:
    """Erase every signature of the whole disk (protective MBR, both GPT headers) and
    drop the kernel's partitions of it."""
    run(["wipefs", "--all", "--force", device])
    with open(device, "rb+") as f:
        os.fsync(f.fileno())
    run(["partx", "-d", device], check=False)  # wipefs's re-read may have done it


def _wipe_after_failure(device: str) -> None:
    try:
        wipe_table(device)
    except (SysrootError, OSError) as e:  # the failure that brought us here goes on
        log.error("%s: the new partition table could not be wiped: %s", device, e)


@contextlib.contextmanager
def partitioned(device: str, layout: Layout) -> Iterator[list[str]]:
    """Write layout's table to device and yield its partitions' nodes in table order;
    when anything fails, from the write on to the end of the with-block, the table is
    wiped before the error goes on."""
    try:
        write_table(device, layout)
        yield wait_for_partitions(device, len(layout.partitions))
    except BaseException:
        _wipe_after_failure(device)
        raise
