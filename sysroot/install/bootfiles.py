"""The boot loader's own files: the EFI binary at the removable-media path, and its
configuration beside the entries sysroot writes.

- systemd-boot: EFI/BOOT/BOOTX64.EFI and loader/loader.conf on the ESP (= /boot).
- grub2: EFI/BOOT/BOOTX64.EFI on the ESP, a GRUB image whose built-in config finds
  /boot by its file system UUID and reads /boot/grub/grub.cfg (sysroot writes it).
"""

from __future__ import annotations

import os
import shutil

from sysroot.util.run import run

SYSTEMD_BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
REMOVABLE_PATH = "EFI/BOOT/BOOTX64.EFI"
GRUB_MODULES = (
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "linux",
    "search",
    "search_fs_uuid",
    "configfile",
    "echo",
    "test",
    "ls",
    "cat",
    "all_video",
    "efi_gop",
    "gzio",
    "serial",
    "terminal",
    "sleep",
    "reboot",
    "halt",
    "loadenv",  # the boot-counting script in grub.cfg: load_env/save_env
)


def install_systemd_boot(esp: str) -> None:
    os.makedirs(os.path.join(esp, "EFI/BOOT"), exist_ok=True)
    shutil.copyfile(SYSTEMD_BOOT_EFI, os.path.join(esp, REMOVABLE_PATH))
    os.makedirs(os.path.join(esp, "loader"), exist_ok=True)
    with open(os.path.join(esp, "loader/loader.conf"), "w") as f:
        f.write("timeout 3\n")


def install_grub(esp: str, boot_fs_uuid: str, work: str) -> None:
    early = os.path.join(work, "grub-early.cfg")
    with open(early, "w") as f:
        f.write(
            f"search --no-floppy --fs-uuid --set=root {boot_fs_uuid}\n"
            "set prefix=($root)/grub\n"
            "configfile ($root)/grub/grub.cfg\n"
        )
    os.makedirs(os.path.join(esp, "EFI/BOOT"), exist_ok=True)
    run(
        [
            "grub-mkimage",
            "-O",
            "x86_64-efi",
            "-o",
            os.path.join(esp, REMOVABLE_PATH),
            "-p",
            "/grub",
            "-c",
            early,
            *GRUB_MODULES,
        ]
    )
