"""Scenario 9's osmet file: a metal image of the guest's own commit, packed on the host.

The image is made as a user would make one, by `sysroot install to-disk` onto an image
file (of the sector size the guest's osmet target disk has), from the repository of
the back end's cached disk: so it holds commit 1, the very commit the guest booted and
has in its /ostree/repo, and the guest can rebuild it from there. The image is packed
with `sysroot osmet pack --fast` (xz preset 0: the file is a few MB either way, and
preset 9 costs minutes) and then deleted; what is kept is the osmet file and, for the
guest, a small ext4 image holding it (made by `mkfs.ext4 -d`, no mount), attached
read-only as one more virtio disk, where the guest mounts it as `--osmet-dir`.

Cached like the disks: keyed by the disk it comes from (whose key covers sysroot/, so
the installer and packer too), the back end, the sector size and this recipe.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

from sysroot.util.run import run
from vmtest.cache import cached, hash_inputs
from vmtest.disk import OS, BaseDisk, install_argv, private_call, sysroot_cli
from vmtest.imagefile import loop_device, parse_partitions

RECIPE = "osmet-1"
# the packed image, and so the guest's osmet target disk: as small as holds the commit
# (systemd-boot: 512 MiB of ESP and 1 GiB of root, 688 MB used), since the guest writes
# and hashes every byte of it under TCG (2 GiB: 335 s in the guest under a load of 10)
IMAGE_MIB = 1536
FILES_LABEL = "osmet"
FILES_SLACK_MIB = 16  # the ext4 image: the osmet file plus room for the file system
ARCHITECTURE = "x86_64"  # `uname -m` of the guest, as the packer records the host's


@dataclass(frozen=True)
class OsmetFiles:
    files_image: str  # ext4, the osmet file in its top directory
    name: str  # the osmet file's name
    sector_size: int
    image_bytes: int  # the size of the image it rebuilds


def osmet_name(sector_size: int) -> str:
    """The names `sysroot build create` gives its osmet files."""
    kind = "metal4k" if sector_size == 4096 else "metal"
    return f"{OS}-1-{kind}.{ARCHITECTURE}.osmet"


def make_image_privately(disk_image: str, image: str, backend: str, sector_size: str) -> None:
    """In a private mount namespace (disk.private_call): the root file system of the
    cached disk attached and mounted read-only (noload: no journal replay writes the
    cache), and `install to-disk` of testos/stable from its repository onto image."""
    parts = parse_partitions(run(["sfdisk", "--json", disk_image]).stdout.decode())
    with loop_device(disk_image, parts[-1], read_only=True) as dev:
        root = tempfile.mkdtemp(prefix="vmosmet-root-")
        run(["mount", "-o", "ro,noload", dev, root])
        try:
            repo = os.path.join(root, "ostree/repo")
            sysroot_cli(*install_argv(image, repo, backend), f"--sector-size={sector_size}")
        finally:
            run(["umount", root])
            os.rmdir(root)


def build_osmet(disk: BaseDisk, sector_size: int, log) -> OsmetFiles:
    product = os.path.dirname(disk.image)  # its name carries the disk's key
    key = hash_inputs(
        RECIPE, disk.backend, str(sector_size), os.path.basename(product), trees=[__file__]
    )

    def build(path: str) -> None:
        os.makedirs(os.path.join(path, "files"))
        name = osmet_name(sector_size)
        with tempfile.TemporaryDirectory(prefix="vmosmet-") as work:
            image = os.path.join(work, "metal.img")
            with open(image, "wb") as f:
                f.truncate(IMAGE_MIB << 20)
            t0 = time.monotonic()
            private_call(
                "vmtest.osmet_files",
                "make_image_privately",
                disk.image,
                image,
                disk.backend,
                str(sector_size),
            )
            t1 = time.monotonic()
            output = os.path.join(path, "files", name)
            description = f"{OS} 1 ({disk.backend}, {sector_size}-byte sectors)"
            sysroot_cli(
                "osmet", "pack", "--fast", f"--description={description}", "--output", output, image
            )
            t2 = time.monotonic()
        log(f"osmet {disk.backend}: install to-disk {t1 - t0:.0f} s, pack --fast {t2 - t1:.0f} s")
        size = os.path.getsize(output) + (FILES_SLACK_MIB << 20)
        files_image = os.path.join(path, "files.img")
        with open(files_image, "wb") as f:
            f.truncate(-(-size // (1 << 20)) << 20)
        files = os.path.join(path, "files")
        run(["mkfs.ext4", "-q", "-F", "-L", FILES_LABEL, "-d", files, files_image])

    path = cached(f"osmet-{disk.backend}", key, build, log)
    return OsmetFiles(
        os.path.join(path, "files.img"), osmet_name(sector_size), sector_size, IMAGE_MIB << 20
    )
