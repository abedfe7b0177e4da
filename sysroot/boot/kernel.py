"""Finding the kernel, initramfs and device tree in an OS tree, as libostree does.

Modern layout: `usr/lib/modules/$kver/{vmlinuz,initramfs.img,devicetree,dtb/}`.
Legacy layout: `usr/lib/ostree-boot/` or `boot/` with `vmlinuz-$kver-$bootcsum` names.
The boot checksum names the `/boot/ostree/$os-$bootcsum/` directory, so deployments
with the same kernel share it. The kernel version (a directory name from the commit)
ends up in boot entries: one with whitespace or a control character is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Protocol

from sysroot.boot import words
from sysroot.errors import SysrootError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class KernelLayout:
    """Paths relative to the deployment root; installed names for /boot."""

    kver: str | None
    kernel: str
    kernel_name: str
    initramfs: str | None
    initramfs_name: str | None
    devicetree: str | None
    devicetree_name: str | None
    dtb_dir: str | None
    hmac: str | None
    hmac_name: str | None
    bootcsum: str

    def files(self) -> list[tuple[str, str]]:
        """(source path in tree, installed name) of each single file to install."""
        out = [(self.kernel, self.kernel_name)]
        for src, name in (
            (self.initramfs, self.initramfs_name),
            (self.devicetree, self.devicetree_name),
            (self.hmac, self.hmac_name),
        ):
            if src is not None:
                assert name is not None  # a file and its installed name are set together
                out.append((src, name))
        return out


def _is_file(root: str, rel: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(os.path.join(root, rel)).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


class _Hash(Protocol):
    """What the boot checksum needs of a hashlib object."""

    def update(self, data: bytes, /) -> None: ...


def _hash_into(h: _Hash, path: str) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _hash_dir(h: _Hash, path: str) -> None:
    for name in sorted(os.listdir(path), key=os.fsencode):
        child = os.path.join(path, name)
        if os.path.isdir(child) and not os.path.islink(child):
            _hash_dir(h, child)
        else:
            _hash_into(h, child)


def _modern(root: str) -> KernelLayout | None:
    base = "usr/lib/modules"
    try:
        kvers = os.listdir(os.path.join(root, base))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for kver in kvers:
        d = f"{base}/{kver}"
        if not _is_file(root, f"{d}/vmlinuz"):
            continue
        initramfs = next(
            (f"{d}/{n}" for n in ("initramfs.img", "initramfs") if _is_file(root, f"{d}/{n}")), None
        )
        devicetree = f"{d}/devicetree" if _is_file(root, f"{d}/devicetree") else None
        dtb = (
            f"{d}/dtb"
            if devicetree is None and os.path.isdir(os.path.join(root, f"{d}/dtb"))
            else None
        )
        hmac = f"{d}/.vmlinuz.hmac" if _is_file(root, f"{d}/.vmlinuz.hmac") else None

        def at(rel: str | None) -> str | None:
            return os.path.join(root, rel) if rel else None

        kernel = os.path.join(root, f"{d}/vmlinuz")
        bootcsum = hash_boot_files(kernel, at(initramfs), at(devicetree), at(dtb))
        return KernelLayout(
            kver=kver,
            kernel=f"{d}/vmlinuz",
            kernel_name=f"vmlinuz-{kver}",
            initramfs=initramfs,
            initramfs_name=f"initramfs-{kver}.img" if initramfs else None,
            devicetree=devicetree,
            devicetree_name=f"devicetree-{kver}" if devicetree else None,
            dtb_dir=dtb,
            hmac=hmac,
            hmac_name=f".vmlinuz-{kver}.hmac" if hmac else None,
            bootcsum=bootcsum,
        )
    return None


def hash_boot_files(
    kernel: str,
    initramfs: str | None = None,
    devicetree: str | None = None,
    dtb_dir: str | None = None,
) -> str:
    """The boot checksum of these files (libostree's: sha256 over kernel, initramfs, then
    the device tree or every file of the dtb directory). Also what an installed kernel
    directory is verified against where it cannot be published by one rename (FAT)."""
    h = hashlib.sha256()
    _hash_into(h, kernel)
    if initramfs:
        _hash_into(h, initramfs)
    if devicetree:
        _hash_into(h, devicetree)
    elif dtb_dir:
        _hash_dir(h, dtb_dir)
    return h.hexdigest()


_LEGACY = re.compile(r"^(vmlinuz|initramfs|devicetree)-(.*)-([0-9a-f]{64})$")


def _legacy(root: str) -> KernelLayout | None:
    for d in ("usr/lib/ostree-boot", "boot"):
        try:
            names = sorted(os.listdir(os.path.join(root, d)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        found: dict[str, tuple[str, str]] = {}
        checksums: set[str] = set()
        for name in names:
            m = _LEGACY.match(name)
            if m and _is_file(root, f"{d}/{name}"):
                kind, rest, csum = m.groups()
                found.setdefault(kind, (f"{d}/{name}", f"{kind}-{rest}"))
                checksums.add(csum)
        if "vmlinuz" not in found:
            continue
        if len(checksums) > 1:
            raise SysrootError(
                f"Mismatched kernel checksums in {d}: " + ", ".join(sorted(checksums))
            )
        kernel, kname = found["vmlinuz"]
        initramfs, iname = found.get("initramfs", (None, None))
        dt, dtname = found.get("devicetree", (None, None))
        return KernelLayout(
            kver=None,
            kernel=kernel,
            kernel_name=kname,
            initramfs=initramfs,
            initramfs_name=iname,
            devicetree=dt,
            devicetree_name=dtname,
            dtb_dir=None,
            hmac=None,
            hmac_name=None,
            bootcsum=checksums.pop(),
        )
    return None


def find_kernel(root: str) -> KernelLayout:
    """The kernel layout of the tree at root; SysrootError when there is none."""
    modern = _modern(root)
    legacy = _legacy(root)
    if modern and legacy and modern.initramfs is None and legacy.initramfs is not None:
        return legacy
    layout = modern or legacy
    if layout is None:
        raise SysrootError(
            f"Failed to find kernel in {root}: no usr/lib/modules/*/vmlinuz, "
            "usr/lib/ostree-boot/vmlinuz-* or boot/vmlinuz-*"
        )
    # the installed names (made of the kernel version) are paths in every boot entry
    for _src, name in layout.files():
        words.check_name(name, "kernel file name from the commit")
    return layout
