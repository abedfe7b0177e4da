"""The one place that knows where things live in a sysroot (libostree's layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SysrootLayout:
    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # /boot
    @property
    def boot(self) -> str:
        return self.path("boot")

    @property
    def loader_link(self) -> str:
        return self.path("boot", "loader")

    def loader_dir(self, bootversion: int) -> str:
        return self.path("boot", f"loader.{bootversion}")

    def entries_dir(self, bootversion: int) -> str:
        return self.path("boot", f"loader.{bootversion}", "entries")

    @property
    def loader_entries_dir(self) -> str:
        """`boot/loader/entries` where boot/loader is a real directory (FAT, systemd-boot)."""
        return self.path("boot", "loader", "entries")

    def kernel_dir_name(self, osname: str, bootcsum: str) -> str:
        return f"{osname}-{bootcsum}"

    def kernel_dir(self, osname: str, bootcsum: str) -> str:
        return self.path("boot", "ostree", self.kernel_dir_name(osname, bootcsum))

    # /ostree
    @property
    def ostree(self) -> str:
        return self.path("ostree")

    @property
    def repo(self) -> str:
        return self.path("ostree", "repo")

    @property
    def lock(self) -> str:
        return self.path("ostree", "lock")

    @property
    def deploy_base(self) -> str:
        return self.path("ostree", "deploy")

    def stateroot(self, osname: str) -> str:
        return self.path("ostree", "deploy", osname)

    def deploy_parent(self, osname: str) -> str:
        return self.path("ostree", "deploy", osname, "deploy")

    def var(self, osname: str) -> str:
        return self.path("ostree", "deploy", osname, "var")

    @staticmethod
    def deploy_name(csum: str, serial: int) -> str:
        return f"{csum}.{serial}"

    def deploy_dir(self, osname: str, csum: str, serial: int) -> str:
        return os.path.join(self.deploy_parent(osname), self.deploy_name(csum, serial))

    def origin_path(self, osname: str, csum: str, serial: int) -> str:
        return self.deploy_dir(osname, csum, serial) + ".origin"

    def bootlink_base(self, bootversion: int) -> str:
        return self.path("ostree", f"boot.{bootversion}")

    def bootlink_dir(self, bootversion: int, subbootversion: int) -> str:
        return self.path("ostree", f"boot.{bootversion}.{subbootversion}")

    @staticmethod
    def ostree_karg(bootversion: int, osname: str, bootcsum: str, bootserial: int) -> str:
        return f"/ostree/boot.{bootversion}/{osname}/{bootcsum}/{bootserial}"

    @staticmethod
    def deploy_karg(osname: str, csum: str, serial: int) -> str:
        """ostree= naming the deployment itself (no boot.N links: systemd-boot scheme)."""
        return f"/ostree/deploy/{osname}/deploy/{csum}.{serial}"

    @staticmethod
    def bootlink_target(osname: str, csum: str, serial: int) -> str:
        return f"../../../deploy/{osname}/deploy/{csum}.{serial}"
