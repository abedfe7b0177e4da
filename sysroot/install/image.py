"""Reproducible disk images: the same commit gives the same bytes, build after build.

An install through the kernel (install to-disk) never does: ext4 written by the kernel
carries the clock (ctime, crtime, the superblock's write and mount times), the
allocator's timing and the journal. An image is therefore made in two steps:

1. stage(): the whole installed tree (the same fill_sysroot() as install to-disk) is
   written into plain directories: root/, esp/ and for grub2 boot/, each bound at
   root/boot during the deploy as its file system would be mounted there (so the
   deploy copies across it, as it must across a real mount). Then every time stamp
   is clamped to the commit's timestamp (SOURCE_DATE_EPOCH's rule: never later).
2. assemble(): an image file of a size derived from the tree, the GPT written with
   sfdisk (ids given), each file system built from its staged tree in user space
   (mke2fs -d at the partition's offset; the FAT with mtools, copied in).

Every identity comes from the commit (ids_for_commit) and every time stamp is the
commit's. What stays the host's: mke2fs 1.47.0 adds a directory's entries in the
order readdir gives them, and that order is the staging file system's (on ext4 it
follows that file system's hash seed: the same on one host, not across machines).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sysroot.boot.backends import BootloaderKind
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.state import Deployment
from sysroot.install import filesystems
from sysroot.install.attach import attached_image, mounted
from sysroot.install.partition import MIB, LayoutIds, Role, layout_for, sfdisk_script
from sysroot.install.todisk import InstallIds, Payload, check_payload, fill_sysroot
from sysroot.util.fsutil import set_immutable
from sysroot.util.run import run

# uuid5 namespace of the ids derived from a commit (a fixed random value)
_ID_NAMESPACE = uuid.UUID("9b3a6f0e-55c4-4d57-a0e6-2f4a3c1d7e81")
_COPY_CHUNK = 4 << 20
_ROOT_MIN = 512 * MIB
_GPT_ROOM = MIB  # before the first partition; the backup GPT fits in the last MiB


def ids_for_commit(checksum: str) -> InstallIds:
    """Every identity of an image, derived from the commit: the same commit, the same ids."""

    def role(name: str) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"{checksum}:{name}"))

    volume = hashlib.sha256(f"{checksum}:esp-volume".encode()).hexdigest()[:8].upper()
    table = LayoutIds(role("disk"), role("esp"), role("boot"), role("root"))
    return InstallIds(table, role("root-fs"), role("boot-fs"), volume)


@dataclass(frozen=True)
class Stage:
    """A staged install: the trees of each file system."""

    dir: str
    bootloader: BootloaderKind
    deployment: Deployment
    epoch: int

    @property
    def root(self) -> str:
        return os.path.join(self.dir, "root")

    @property
    def esp(self) -> str:
        return os.path.join(self.dir, "esp")

    @property
    def boot(self) -> str:
        """The ext4 /boot's tree (grub2)."""
        return os.path.join(self.dir, "boot")

    @property
    def deployment_dir(self) -> str:
        d = self.deployment
        return Sysroot(self.root).layout.deploy_dir(d.osname, d.csum, d.deployserial)


def stage(payload: Payload, ids: InstallIds, epoch: int, stage_dir: str) -> Stage:
    """The installed trees of payload under stage_dir (made; must not exist). Needs root
    and a private mount namespace (a bind mount at root/boot during the deploy)."""
    check_payload(payload)
    os.makedirs(stage_dir)
    work = os.path.join(stage_dir, "work")
    root, esp = os.path.join(stage_dir, "root"), os.path.join(stage_dir, "esp")
    boot = os.path.join(stage_dir, "boot")
    for d in (work, root, esp):
        os.makedirs(d)
    grub = payload.bootloader is BootloaderKind.GRUB2
    if grub:
        os.makedirs(boot)
    with mounted(boot if grub else esp, os.path.join(root, "boot"), bind=True):
        deployment = fill_sysroot(root, esp, payload, ids, work)
    staged = Stage(stage_dir, payload.bootloader, deployment, epoch)
    # libostree's chattr +i on the deployment root is put back in the image (build_ext4)
    set_immutable(staged.deployment_dir, False)
    for tree in (root, esp, boot) if grub else (root, esp):
        clamp_times(tree, epoch)
    return staged


def clamp_times(tree: str, epoch: int) -> None:
    """Every mtime later than epoch becomes epoch, every atime epoch (symlinks too)."""
    limit = epoch * 1_000_000_000
    for parent, dirs, files in os.walk(tree):
        for name in dirs + files:
            _clamp(os.path.join(parent, name), limit)
    _clamp(tree, limit)


def _clamp(path: str, limit: int) -> None:
    st = os.lstat(path)
    os.utime(path, ns=(limit, min(st.st_mtime_ns, limit)), follow_symlinks=False)


def tree_bytes(tree: str) -> int:
    """The space tree's files take as ext4 would store them (4 KiB blocks, each
    inode once) plus its inodes."""
    seen: set[int] = set()
    total = 0
    for parent, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(parent, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += -(-st.st_size // 4096) * 4096 + 256
    return total


def root_size_for(stage_: Stage) -> int:
    """The root partition's size: the tree twice over (room for a second deployment's
    new files and ext4's own metadata), at least 512 MiB, whole MiB."""
    size = max(_ROOT_MIN, 2 * tree_bytes(stage_.root) + 128 * MIB)
    return -(-size // MIB) * MIB


@dataclass(frozen=True)
class Partition:
    role: Role
    offset: int
    size: int


def assemble(stage_: Stage, ids: InstallIds, image: str, sector_size: int) -> list[Partition]:
    """A new raw image at image (which must not exist) with sector_size sectors."""
    layout = layout_for(stage_.bootloader, ids.table, root_size_for(stage_))
    total = 2 * _GPT_ROOM + sum(p.size or 0 for p in layout.partitions)
    with open(image, "xb") as f:
        f.truncate(total)
    # sfdisk (util-linux 2.38) takes the sector size from the device only: a loop device
    # with the image's sector size, for the table alone (the file systems go in by offset)
    with attached_image(image, sector_size) as device:
        run(["sfdisk", "--quiet", device], input=sfdisk_script(layout).encode())
        table = json.loads(run(["sfdisk", "--json", device]).stdout)["partitiontable"]
    parts = [
        Partition(spec.role, p["start"] * sector_size, p["size"] * sector_size)
        for spec, p in zip(layout.partitions, table["partitions"], strict=True)
    ]
    for part in parts:
        if part.role is Role.ESP:
            _write_fat(stage_, ids, image, part, sector_size)
        elif part.role is Role.BOOT:
            filesystems.build_ext4(
                image, part.offset, part.size, stage_.boot, ids.boot_fs_uuid, "boot", stage_.epoch
            )
        else:
            immutable = "/" + os.path.relpath(stage_.deployment_dir, stage_.root)
            filesystems.build_ext4(
                image,
                part.offset,
                part.size,
                stage_.root,
                ids.root_fs_uuid,
                "root",
                stage_.epoch,
                immutable=(immutable,),
            )
    with open(image, "rb+") as f:
        os.fsync(f.fileno())
    return parts


def _write_fat(stage_: Stage, ids: InstallIds, image: str, part: Partition, sector: int) -> None:
    fat = image + ".esp"
    try:
        filesystems.build_fat(fat, part.size, ids.esp_volume_id, sector, stage_.esp, stage_.epoch)
        copy_sparse(fat, image, part.offset)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fat)


def copy_sparse(source: str, dest: str, offset: int) -> None:
    """source's bytes into dest at offset, skipping runs of zeros (dest is new and
    sparse: they are zeros already)."""
    with open(source, "rb") as src, open(dest, "rb+") as dst:
        pos = 0
        while chunk := src.read(_COPY_CHUNK):
            for start, piece in _nonzero(chunk):
                dst.seek(offset + pos + start)
                dst.write(piece)
            pos += len(chunk)


def _nonzero(chunk: bytes, block: int = 65536) -> Iterator[tuple[int, bytes]]:
    zero = bytes(block)
    for start in range(0, len(chunk), block):
        piece = chunk[start : start + block]
        if piece != zero[: len(piece)]:
            yield start, piece
