"""The file systems of an installed disk: ext4 for root and /boot, vfat for the ESP.

The ESP is never mounted (a kernel without vfat must do): its content goes in with
mtools. mtools will not write to a block device here (it asks for a drive geometry a
loop partition does not have), so the FAT is built in a file of exactly the
partition's size and sector size, filled with `mcopy`, then written to the partition.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile

from sysroot.errors import SysrootError
from sysroot.util.run import run

_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
_FAT32_MIN_CLUSTERS = 65525
_COPY_CHUNK = 4 << 20
_IMMUTABLE_FL = 0x10  # chattr +i


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
        build_fat(image, size, volume_id, sector_size, content)
        _copy_into(image, device)


def build_fat(
    image: str,
    size: int,
    volume_id: str,
    sector_size: int,
    content: str,
    epoch: int | None = None,
) -> None:
    """A new file image of size bytes: a FAT holding content/'s files.

    Reproducible: directories are made and files copied one directory at a time in
    sorted order (never in the order readdir gives, which depends on the host's file
    system); with epoch, every time stamp mtools writes is epoch (SOURCE_DATE_EPOCH;
    files keep their own, already clamped, mtimes with mcopy -m)."""
    env = dict(_MTOOLS_ENV)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    with open(image, "wb") as f:
        f.truncate(size)
    argv = ["mkfs.vfat", *fat_type(size, sector_size), "-S", str(sector_size)]
    if epoch is not None:
        # mkfs.vfat 4.2 dates the volume label's entry by the clock, SOURCE_DATE_EPOCH
        # or not: --invariant makes it a constant (-i still gives the volume id)
        argv.append("--invariant")
    run([*argv, "-i", volume_id, "-n", "ESP", image], env=env)
    dirs, files = _sorted_tree(content)
    if dirs:
        run(["mmd", "-i", image, *["::/" + d for d in dirs]], env=env)
    for parent, names in files:
        sources = [os.path.join(content, parent, n) for n in names]
        run(["mcopy", "-p", "-m", "-i", image, *sources, "::/" + parent], env=env)


def _sorted_tree(top: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """top's directories (parents first) and, per directory, its files: sorted, relative."""
    dirs: list[str] = []
    files: list[tuple[str, list[str]]] = []

    def walk(rel: str) -> None:
        names = sorted(os.listdir(os.path.join(top, rel)))
        here = [n for n in names if not os.path.isdir(os.path.join(top, rel, n))]
        if here:
            files.append((rel, here))
        for n in names:
            sub = os.path.join(rel, n) if rel else n
            if os.path.isdir(os.path.join(top, sub)):
                dirs.append(sub)
                walk(sub)

    walk("")
    return dirs, files


def build_ext4(
    image: str,
    offset: int,
    size: int,
    tree: str,
    uuid: str,
    label: str,
    epoch: int,
    *,
    immutable: tuple[str, ...] = (),
) -> None:
    """An ext4 of size bytes at offset in image, holding tree (mke2fs -d): nothing is
    mounted, so nothing of the host's timing gets in.

    mke2fs 1.47.0 takes UUID (-U), the directory hash seed (-E hash_seed) and the
    owner of / from the command line, and its own clock (the superblock's times, the
    inodes it makes, every crtime) from E2FSPROGS_FAKE_TIME. The atime and ctime of each
    inode it copies from tree it takes from stat(), which no one can set: they are set
    to epoch afterwards, one debugfs batch. It copies no inode flags: the directories
    in immutable (paths in the file system) get theirs (chattr +i) the same way."""
    env = {"E2FSPROGS_FAKE_TIME": str(epoch)}
    extended = f"offset={offset},hash_seed={uuid},root_owner=0:0,nodiscard"
    argv = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, "-U", uuid, "-L", label]
    run([*argv, "-E", extended, image, f"{size // 1024}k"], env=env)
    device = f"{image}?offset={offset}"  # debugfs opens it through the io options
    with tempfile.NamedTemporaryFile("w", prefix="sysroot-debugfs-", suffix=".cmd") as batch:
        for rel in _unique_inodes(tree):
            for field in ("atime", "ctime"):
                batch.write(f'sif "{rel}" {field} @{epoch}\n')
        for rel in immutable:
            flags = _inode_flags(device, rel)
            batch.write(f'sif "{rel}" flags {flags | _IMMUTABLE_FL:#x}\n')
        batch.flush()
        run(["debugfs", "-w", "-f", batch.name, device], env=env)


def _inode_flags(device: str, path: str) -> int:
    out = run(["debugfs", "-R", f'stat "{path}"', device]).stdout.decode()
    m = re.search(r"Flags: (0x[0-9a-f]+)", out)
    if not m:
        raise SysrootError(f"debugfs shows no flags for {path}")
    return int(m.group(1), 16)


def _unique_inodes(tree: str) -> list[str]:
    """One absolute path (as seen from tree) per inode the image will have, sorted.
    mke2fs -d links regular files that are hard links in tree, but gives every path of
    a hard-linked symlink an inode of its own: each symlink path is listed."""
    seen: set[int] = set()
    paths = ["/"]
    for parent, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(parent, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            rel = "/" + os.path.relpath(full, tree)
            if '"' in rel or "\n" in rel:
                raise SysrootError(f"{rel}: a name debugfs cannot be given; not building")
            paths.append(rel)
    return paths


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
