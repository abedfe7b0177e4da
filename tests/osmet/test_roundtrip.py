"""build -> pack -> unpack gives the image back bit for bit, for both back ends and
both sector sizes; the root partition's objects AND the /boot copies of the kernel
and initramfs (ext4 /boot for grub2, the FAT ESP for systemd-boot) are mapped, not
packed; and the file unpacks from a repository of every mode."""

from __future__ import annotations

import json
import os
import struct

import pytest

from tests.osmet.conftest import (
    DATA_FILE_SIZE,
    DATA_FILES,
    INITRAMFS_SIZE,
    KERNEL_SIZE,
    Artifacts,
    Commit,
    osmet_cli,
    sha256_file,
)

CASES = [("grub2", 512), ("grub2", 4096), ("systemd-boot", 512), ("systemd-boot", 4096)]


def table_starts(raw: os.PathLike, sector_size: int) -> dict[str, int]:
    """partition name -> its first byte, read from the image's GPT (by hand: sfdisk
    reads an image file with 512-byte sectors only)."""
    with open(raw, "rb") as f:
        f.seek(sector_size)
        header = f.read(92)
        assert header[:8] == b"EFI PART"
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        f.seek(entries_lba * sector_size)
        table = f.read(count * entry_size)
    starts = {}
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if entry[:16] == bytes(16):
            continue
        (first,) = struct.unpack_from("<Q", entry, 32)
        name = entry[56:128].decode("utf-16-le").rstrip("\0")
        starts[name] = first * sector_size
    return starts


def info(path: os.PathLike) -> dict:
    proc = osmet_cli("info", "--json", path)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("bootloader", "sector_size"), CASES)
def test_round_trip_to_a_file(
    artifacts: Artifacts, commit: Commit, tmp_path, bootloader: str, sector_size: int
) -> None:
    image = artifacts.image(bootloader, sector_size)
    raw_sha = sha256_file(image.raw)
    assert raw_sha == image.sha256  # meta.json's
    packed = artifacts.osmet(bootloader, sector_size)

    desc = info(packed)
    assert desc["sha256"] == raw_sha
    assert desc["size"] == image.size == os.path.getsize(image.raw)
    assert desc["sector_size"] == sector_size
    # the boot file system first, then root; both with mappings
    starts = table_starts(image.raw, sector_size)
    boot_name = "boot" if bootloader == "grub2" else "esp"
    parts = desc["partitions"]
    assert [p["start_offset"] for p in parts] == [starts[boot_name], starts["root"]]
    boot, root = parts
    # exactly the kernel and the initramfs (extents are trimmed to the file's size)
    assert boot["mappings"] >= 2
    assert boot["mapped_bytes"] == KERNEL_SIZE + INITRAMFS_SIZE
    # every data file, the kernel and initramfs of usr/lib/modules, and the small files
    assert root["mappings"] >= DATA_FILES + 2
    assert root["mapped_bytes"] >= DATA_FILES * DATA_FILE_SIZE + KERNEL_SIZE + INITRAMFS_SIZE

    out = tmp_path / "image.raw"
    proc = osmet_cli("unpack", f"--osmet={packed}", f"--repo={commit.repo}", out)
    assert proc.returncode == 0, proc.stderr.decode()
    assert os.path.getsize(out) == image.size
    assert sha256_file(out) == raw_sha
    assert os.listdir(tmp_path) == ["image.raw"]  # no temp file left beside it


@pytest.mark.parametrize("mode", ["bare", "bare-user", "archive"])
def test_unpacks_from_a_repository_of_each_mode(
    artifacts: Artifacts, repos, tmp_path, mode: str
) -> None:
    image = artifacts.image("grub2", 4096)
    packed = artifacts.osmet("grub2", 4096)
    out = tmp_path / "image.raw"
    proc = osmet_cli("unpack", f"--osmet={packed}", f"--repo={repos(mode)}", out)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sha256_file(out) == image.sha256
