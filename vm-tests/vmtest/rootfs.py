"""Stage 1: a Debian 12 root file system with systemd, a kernel, dracut and Python.

debootstrap's minbase plus what a booted image-based system needs; the kernel is
installed afterwards with apt inside the tree, so that apt sees `dracut` already
providing the initramfs tool (debootstrap's resolver would pick initramfs-tools).
"""

from __future__ import annotations

import os

from sysroot.util.run import run
from vmtest.cache import cached, hash_inputs
from vmtest.chroot import chroot, mounted_api_fs

RECIPE = "rootfs-5"
SUITE = "bookworm"
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "udev",
    "dracut",
    "kmod",
    "python3",
    "e2fsprogs",
    "dosfstools",
]
# what sysroot's pull, signatures and journal records use; installed with apt, as
# debootstrap does not resolve the virtual packages python3-cryptography depends on
PYTHON_PACKAGES = ["python3-urllib3", "python3-cryptography", "python3-systemd", "gpgv"]
# what `sysroot install to-disk` runs in the guest (scenario 9): udev's view of the
# disks, sfdisk, the ESP written with mtools, dmsetup for the busy-disk check, and
# the boot loaders' EFI binaries it puts on the new disk
INSTALL_PACKAGES = [
    "python3-pyudev",
    "fdisk",
    "mtools",
    "dmsetup",
    "grub-efi-amd64-bin",
    "systemd-boot-efi",
]
KERNEL_PACKAGE = "linux-image-amd64"


def debian_mirror() -> str:
    """The mirror apt already uses on this machine (deb822 or one-line sources)."""
    candidates = []
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1:
                candidates.append(words[1])
            elif line.startswith("deb ") and len(words) > 2:
                candidates += [w for w in words[1:] if "://" in w][:1]
    for uri in candidates:
        if "security" not in uri:
            return uri
    return "http://deb.debian.org/debian"


def build_rootfs(log) -> str:
    mirror = debian_mirror()
    key = hash_inputs(
        RECIPE, SUITE, mirror, *BASE_PACKAGES, *PYTHON_PACKAGES, *INSTALL_PACKAGES, KERNEL_PACKAGE
    )

    def build(path: str) -> None:
        os.makedirs(path)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                SUITE,
                path,
                mirror,
            ],
            capture=True,
        )
        with mounted_api_fs(path):
            chroot(
                path,
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                KERNEL_PACKAGE,
                *PYTHON_PACKAGES,
                *INSTALL_PACKAGES,
            )
            chroot(path, "apt-get", "clean")

    return cached("rootfs", key, build, log)
