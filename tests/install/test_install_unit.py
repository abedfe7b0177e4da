"""The pure parts of install/: the disk guard over a made-up sysfs and /proc (holders:
this host's kernel has no device-mapper to make a real one), the GPT layouts and
sfdisk's script, partition names, the FAT type, sizes, the partition-table probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from sysroot.boot.backends import BootloaderKind
from sysroot.cli.commands.install import parse_size
from sysroot.errors import UsageError
from sysroot.install.disks import SystemPaths, has_partition_table, users
from sysroot.install.filesystems import fat_type
from sysroot.install.partition import (
    ESP_TYPE,
    LINUX_FS_TYPE,
    MIB,
    LayoutIds,
    Role,
    layout_for,
    partition_path,
    sfdisk_script,
)

pytestmark = pytest.mark.unit

IDS = LayoutIds("d15c0000-0000-4000-8000-000000000000", "e5", "b0", "r0")


def fake_system(tmp_path: Path, mountinfo: str = "", holders: dict[str, str] | None = None):
    """A sysfs with disk loop7 (7:7) and its partitions loop7p1 (259:1), loop7p2
    (259:2); holders: partition or disk -> the dm device holding it."""
    sys_block = tmp_path / "sys/class/block"
    (sys_block / "loop7/holders").mkdir(parents=True)
    (sys_block / "loop7/dev").write_text("7:7\n")
    # partitions are listed under the disk's own directory too, with a `partition` file
    for part, dev in (("loop7p1", "259:1"), ("loop7p2", "259:2")):
        d = sys_block / "loop7" / part
        (d / "holders").mkdir(parents=True)
        (d / "partition").write_text("1\n")
        (d / "dev").write_text(dev + "\n")
        (sys_block / part / "holders").mkdir(parents=True)
        (sys_block / part / "dev").write_text(dev + "\n")
    for held, holder in (holders or {}).items():
        (sys_block / held / "holders" / holder).mkdir()
        (sys_block / holder / "dm").mkdir(parents=True)
        (sys_block / holder / "dm/name").write_text("vg-root\n")
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    return SystemPaths(str(sys_block), str(tmp_path / "mountinfo"), str(tmp_path / "swaps"))


def test_an_unused_disk_has_no_users(tmp_path) -> None:
    other = "36 25 8:1 / /home rw - ext4 /dev/sda1 rw\n"
    assert users("loop7", fake_system(tmp_path, mountinfo=other)) == []


def test_a_mounted_partition_is_a_user(tmp_path) -> None:
    mountinfo = "36 25 259:2 / /mnt/data rw,relatime - ext4 /dev/loop7p2 rw\n"
    assert users("loop7", fake_system(tmp_path, mountinfo=mountinfo)) == [
        "/dev/loop7p2 is mounted at /mnt/data"
    ]


def test_a_mounted_whole_disk_is_a_user(tmp_path) -> None:
    mountinfo = "36 25 7:7 / /mnt rw - ext4 /dev/loop7 rw\n"
    assert users("loop7", fake_system(tmp_path, mountinfo=mountinfo)) == [
        "/dev/loop7 is mounted at /mnt"
    ]


def test_a_device_mapper_holder_is_named(tmp_path) -> None:
    paths = fake_system(tmp_path, holders={"loop7p1": "dm-3"})
    assert users("loop7", paths) == ["/dev/loop7p1 is held by dm-3 (vg-root)"]
    paths = fake_system(tmp_path / "b", holders={"loop7": "dm-4"})
    assert users("loop7", paths) == ["/dev/loop7 is held by dm-4 (vg-root)"]


def test_layouts_per_boot_loader() -> None:
    sd = layout_for(BootloaderKind.SYSTEMD_BOOT, IDS)
    assert [(p.role, p.size) for p in sd.partitions] == [(Role.ESP, 512 * MIB), (Role.ROOT, None)]
    grub = layout_for(BootloaderKind.GRUB2, IDS, root_size=2048 * MIB)
    assert [(p.role, p.size, p.uuid) for p in grub.partitions] == [
        (Role.ESP, 64 * MIB, "e5"),
        (Role.BOOT, 512 * MIB, "b0"),
        (Role.ROOT, 2048 * MIB, "r0"),
    ]
    with pytest.raises(UsageError):
        layout_for(BootloaderKind.GRUB2, IDS, root_size=MIB + 1)
    with pytest.raises(UsageError):
        layout_for(BootloaderKind.NONE, IDS)


def test_sfdisk_script() -> None:
    script = sfdisk_script(layout_for(BootloaderKind.SYSTEMD_BOOT, IDS))
    assert script == (
        "label: gpt\n"
        f"label-id: {IDS.disk_guid}\n"
        f"size=512MiB, type={ESP_TYPE}, uuid=e5, name=esp\n"
        f"type={LINUX_FS_TYPE}, uuid=r0, name=root\n"
    )


def test_partition_paths() -> None:
    assert partition_path("/dev/sda", 2) == "/dev/sda2"
    assert partition_path("/dev/nvme0n1", 1) == "/dev/nvme0n1p1"
    assert partition_path("/dev/loop12", 3) == "/dev/loop12p3"


def test_fat_type() -> None:
    assert fat_type(512 * MIB, 512) == ["-F", "32"]
    assert fat_type(512 * MIB, 4096) == ["-F", "32"]
    assert fat_type(64 * MIB, 4096) == []  # too few clusters for FAT32


def test_parse_size() -> None:
    assert parse_size("8G") == 8 << 30
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("1048576") == 1 << 20
    with pytest.raises(UsageError):
        parse_size("lots")


@pytest.mark.parametrize(
    ("offset", "data", "found"),
    [
        (510, b"\x55\xaa", True),  # MBR or GPT's protective MBR
        (512, b"EFI PART", True),  # GPT header, 512-byte sectors
        (4096, b"EFI PART", True),  # GPT header, 4 KiB sectors
        (1024, b"EFI PART", False),
        (0, b"", False),
    ],
)
def test_has_partition_table(tmp_path, offset: int, data: bytes, found: bool) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(16384))
    with open(disk, "r+b") as f:
        f.seek(offset)
        f.write(data)
    assert has_partition_table(str(disk), 512) is found
