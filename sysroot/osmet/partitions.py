"""The partitions of a whole disk and what each holds, as the kernel and blkid see them.

Byte ranges come from sysfs (`start` and `size` count 512-byte units whatever the
logical sector size); the file system type and label from `blkid -p` (probing the
device itself, so it works without udev, as in a build container).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from sysroot.errors import SysrootError
from sysroot.util.run import run

ESP_TYPE_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
_SYS_BLOCK = "/sys/class/block"


class PartitionRole(enum.Enum):
    ROOT = "root"  # ext4 labelled root: the repository and the deployments
    BOOT = "boot"  # ext4 labelled boot: /boot of a grub2 disk
    ESP = "esp"  # the EFI system partition (FAT): /boot of a systemd-boot disk
    OTHER = "other"


@dataclass(frozen=True)
class DiskPartition:
    device: str  # /dev/loop3p2
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    fstype: str
    label: str
    role: PartitionRole

    @property
    def end(self) -> int:
        return self.start + self.size


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def _probe(device: str) -> dict[str, str]:
    proc = run(["blkid", "-p", "-o", "export", device], check=False)
    out: dict[str, str] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _role(fields: dict[str, str]) -> PartitionRole:
    fstype, label = fields.get("TYPE", ""), fields.get("LABEL", "")
    if fstype == "ext4" and label in ("root", "boot"):
        return PartitionRole(label)
    if fstype == "vfat" and fields.get("PART_ENTRY_TYPE", "").lower() == ESP_TYPE_GUID:
        return PartitionRole.ESP
    return PartitionRole.OTHER


def disk_partitions(device: str) -> list[DiskPartition]:
    """The partitions of whole-disk device, in disk order."""
    name = os.path.basename(os.path.realpath(device))
    base = os.path.join(_SYS_BLOCK, name)
    if not os.path.isdir(base):
        raise SysrootError(f"{device}: not a block device the kernel knows")
    out = []
    for entry in sorted(os.listdir(base)):
        part_dir = os.path.join(base, entry)
        if not os.path.exists(os.path.join(part_dir, "partition")):
            continue
        node = f"/dev/{entry}"
        fields = _probe(node)
        out.append(
            DiskPartition(
                device=node,
                number=int(_read(os.path.join(part_dir, "partition"))),
                start=int(_read(os.path.join(part_dir, "start"))) * 512,
                size=int(_read(os.path.join(part_dir, "size"))) * 512,
                fstype=fields.get("TYPE", ""),
                label=fields.get("LABEL", ""),
                role=_role(fields),
            )
        )
    return sorted(out, key=lambda p: p.start)


def only(partitions: list[DiskPartition], role: PartitionRole, device: str) -> DiskPartition:
    found = [p for p in partitions if p.role is role]
    if len(found) != 1:
        what = {
            PartitionRole.ROOT: "an ext4 file system labelled root",
            PartitionRole.BOOT: "an ext4 file system labelled boot",
            PartitionRole.ESP: "an EFI system partition",
        }.get(role, role.value)
        raise SysrootError(f"{device}: {len(found)} partitions hold {what}; expected one")
    return found[0]
