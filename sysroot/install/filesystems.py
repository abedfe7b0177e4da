"""The file systems of an installed disk: ext4 for root and /boot, vfat for the ESP.

The ESP is never mounted (a kernel without vfat must do): its content goes in with
mtools. mtools will not write to a block device here (it asks for a drive geometry a
loop partition does not have), so the FAT is built in a file of exactly the
partition's size and sector size, filled with `mcopy`, then written to the partition.
"""

from __future__ import annotations

import os
import tempfile

from sysroot.util.run import run

_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
_FAT32_MIN_CLUSTERS = 65525
_COPY_CHUNK = 4 << 20


def mkfs_ext4(device: str, uuid: str, label: str) -> None:
    run(["mkfs.ext4", "-q", "-F", "-U", uuid, "-L", label, device])


def fat_type(size: int, sector_size: int) -> list[str]:
    """FAT32 (what UEFI names) where the size allows it with one-sector clusters; on a
    small ESP with 4 KiB sectors mkfs.vfat chooses (FAT16, which firmware reads too)."""
    return ["-F", "32"] if size // sector_size >= _FAT32_MIN_CLUSTERS else []


def _device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def make_esp(device: str, volume_id: str, sector_size: int, content: str) -> None:
    """A FAT file system on device holding the files under content/ (mtools)."""
    size = _device_size(device)
    with tempfile.TemporaryDirectory(prefix="sysroot-esp-") as work:
        image = os.path.join(work, "esp.img")
        with open(image, "wb") as f:
            f.truncate(size)
        run(
            [
                "mkfs.vfat",
                *fat_type(size, sector_size),
                "-S",
                str(sector_size),
                "-i",
                volume_id,
                "-n",
                "ESP",
                image,
            ]
        )
        names = sorted(os.listdir(content))
        if names:
            run(
                [
                    "mcopy",
                    "-s",
                    "-p",
                    "-i",
                    image,
                    *[os.path.join(content, n) for n in names],
                    "::/",
                ],
                env=_MTOOLS_ENV,
            )
        _copy_into(image, device)


def _copy_into(image: str, device: str) -> None:
    with open(image, "rb") as src, open(device, "r+b") as dst:
        while chunk := src.read(_COPY_CHUNK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def copy_esp_out(device: str, dest: str) -> None:
    """The files of the FAT on device, copied into dest (mtools, through a file copy)."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sysroot-esp-") as work:
        image = os.path.join(work, "esp.img")
        with open(device, "rb") as src, open(image, "wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                out.write(chunk)
        names = run(["mdir", "-b", "-i", image, "::/"], env=_MTOOLS_ENV).stdout.decode().split()
        if names:
            run(["mcopy", "-s", "-p", "-n", "-i", image, *names, dest], env=_MTOOLS_ENV)
