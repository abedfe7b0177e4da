"""Boot-loader back ends, chosen by `sysroot.bootloader` in the repo config (ostree's
key and values: none, auto, grub2, systemd-boot).

- `none`: BLS entries only, in `boot/loader.N/entries`, switched by the one symlink
  swap `boot/loader -> loader.N` (libostree's scheme; a BLS-aware loader reads them).
- `grub2` (grub2.py): as `none`, plus a `grub.cfg` generated into each loader.N from
  its entries, and `boot/grub/grub.cfg -> ../loader/grub.cfg`, for GRUBs without BLS
  support (Debian's): the same swap switches the menu.
- `systemd-boot` (systemd_boot.py, deploy/sdwriter.py): for /boot on FAT (the ESP),
  where no symlink can exist: `boot/loader` is a real directory and entry file names
  decide what systemd-boot boots.
- `auto`: systemd-boot when /boot is FAT or boot/loader already is a real directory;
  grub2 when boot/grub/grub.cfg or boot/grub2/grub.cfg exists; else none.

A back end's write_config() runs after the entries of loader.N are written, before the
swap; post_swap() after it.
"""

from __future__ import annotations

import os

from sysroot.boot import systemd_boot
from sysroot.boot.grub2 import Grub2Backend
from sysroot.errors import SysrootError


class NoneBackend:
    name = "none"

    def write_config(self, layout, bootversion: int, entries) -> None:
        """Called after the entries of loader.N are written, before the swap."""

    def post_swap(self, layout, bootversion: int, entries) -> None:
        """Called after boot/loader points at the new configuration."""


class SystemdBootBackend(NoneBackend):
    """Selects the entries-directory writer (sdwriter.py); nothing to add to it."""

    name = systemd_boot.NAME


_BACKENDS = {"none": NoneBackend, "grub2": Grub2Backend,
             systemd_boot.NAME: SystemdBootBackend}


def detect(layout) -> str:
    """What `auto` means for this sysroot."""
    if systemd_boot.uses_entries_dir(layout.loader_link) or systemd_boot.is_fat(layout.boot):
        return systemd_boot.NAME
    if any(os.path.lexists(os.path.join(layout.boot, d, "grub.cfg")) for d in ("grub", "grub2")):
        return "grub2"
    return "none"


def backend_for(layout, repo):
    name = repo.config.get("sysroot", "bootloader", "auto") or "auto"
    if name == "auto":
        name = detect(layout)
    try:
        backend = _BACKENDS[name]()
    except KeyError:
        raise SysrootError(f"Unsupported sysroot.bootloader '{name}' in {repo.path}/config "
                           f"(supported: auto, {', '.join(sorted(_BACKENDS))})") from None
    loader = layout.loader_link
    if backend.name == systemd_boot.NAME:
        if os.path.islink(loader):
            raise SysrootError(f"sysroot.bootloader={name}, but {loader} is a symlink "
                               "(the loader.N scheme): switching schemes is not supported")
    elif systemd_boot.uses_entries_dir(loader):
        raise SysrootError(f"sysroot.bootloader={name}, but {loader} is a directory "
                           "(the systemd-boot scheme): use systemd-boot or auto")
    return backend
