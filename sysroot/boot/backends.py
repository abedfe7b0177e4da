"""Boot-loader back ends, chosen by `sysroot.bootloader` in the repo config.

`none` writes BLS entries only (a BLS-aware boot loader reads `boot/loader/entries`).
Other back ends add their own configuration next to the entries before the swap.
"""

from __future__ import annotations

from sysroot.errors import SysrootError


class NoneBackend:
    name = "none"

    def write_config(self, layout, bootversion: int, entries) -> None:
        """Called after the entries of loader.N are written, before the swap."""

    def post_swap(self, layout, bootversion: int, entries) -> None:
        """Called after boot/loader points at the new configuration."""


_BACKENDS = {"none": NoneBackend, "auto": NoneBackend}


def backend_for(layout, repo):
    name = repo.config.get("sysroot", "bootloader", "auto") or "auto"
    try:
        return _BACKENDS[name]()
    except KeyError:
        raise SysrootError(f"Unsupported sysroot.bootloader '{name}' in {repo.path}/config "
                           f"(supported: {', '.join(sorted(_BACKENDS))})") from None
