"""`sysroot install to-disk` end to end, on 4 GiB sparse images attached as loop devices:
the layout as sfdisk reads it, the sysroot as the real ostree reads it (admin status,
fsck), the boot invariant, the ESP read with mtools (the host has no vfat)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sysroot.boot.backends import BootloaderKind
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.install.attach import attached_image
from sysroot.install.partition import ESP_TYPE, LINUX_FS_TYPE, MIB
from sysroot.install.todisk import InstallOptions, install_to_disk
from tests.install.conftest import IDS, Loops, Source, install_cli, make_image, sh


def copy_esp(device: str, dest: Path, work: Path) -> Path:
    """The ESP's files, with mtools from a byte copy of the partition (independent of
    sysroot's own ESP code)."""
    image = work / "esp-copy.img"
    sh("dd", f"if={device}", f"of={image}", "bs=1M", "status=none")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    names = (
        subprocess.run(
            ["mdir", "-b", "-i", str(image), "::/"], capture_output=True, check=True, env=env
        )
        .stdout.decode()
        .split()
    )
    dest.mkdir()
    subprocess.run(
        ["mcopy", "-s", "-p", "-n", "-i", str(image), *names, str(dest)], check=True, env=env
    )
    return dest


@pytest.mark.parametrize("sector", [512, 4096])
@pytest.mark.parametrize("bootloader", ["systemd-boot", "grub2"])
def test_install_to_image(
    tmp_path: Path, loops: Loops, ostree, source: Source, bootloader: str, sector: int
) -> None:
    image = make_image(tmp_path / "disk.img")
    proc = install_cli(
        str(image),
        f"--source-repo={source.repo}",
        f"--ref={source.ref}",
        f"--bootloader={bootloader}",
        "--karg=console=ttyS0",
        "--stateroot=testos",
        f"--sector-size={sector}",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert source.commit in proc.stdout.decode()
    assert sh("losetup", "--associated", str(image)).stdout == b"", "loop device left attached"

    dev = loops.attach(image, sector_size=sector, read_only=True)
    table = json.loads(sh("sfdisk", "--json", dev).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    assert table.get("sectorsize", 512) == sector
    parts = table["partitions"]
    types = [p["type"] for p in parts]
    sizes = [p["size"] * sector for p in parts]
    if bootloader == "systemd-boot":
        assert types == [ESP_TYPE, LINUX_FS_TYPE]
        assert sizes[0] == 512 * MIB
        esp_dev, boot_dev, root_dev = f"{dev}p1", None, f"{dev}p2"
    else:
        assert types == [ESP_TYPE, LINUX_FS_TYPE, LINUX_FS_TYPE]
        assert sizes[:2] == [64 * MIB, 512 * MIB]
        esp_dev, boot_dev, root_dev = f"{dev}p1", f"{dev}p2", f"{dev}p3"
    assert all(p["start"] * sector % MIB == 0 for p in parts), "not MiB-aligned"
    # the root takes the rest of the disk: what is left after it is less than 1 MiB + the
    # backup GPT
    end = (parts[-1]["start"] + parts[-1]["size"]) * sector
    assert 4 * (1 << 30) - end < 2 * MIB

    mnt = loops.mount(root_dev, tmp_path / "mnt", "-o", "ro")
    esp = copy_esp(esp_dev, tmp_path / "esp", tmp_path)
    assert (esp / "EFI/BOOT/BOOTX64.EFI").stat().st_size > 0
    if boot_dev:
        loops.mount(boot_dev, mnt / "boot", "-o", "ro")
        assert (mnt / "boot/grub/grub.cfg").exists()
    else:
        assert (esp / "loader/loader.conf").exists()
        loops.mount(str(esp), mnt / "boot", "--bind")

    repo_config = (mnt / "ostree/repo/config").read_text()
    assert f"bootloader={bootloader}" in repo_config
    assert "readonly=true" in repo_config
    if bootloader == "systemd-boot":
        # ostree 2022.7 refuses to open a repo whose sysroot.bootloader it does not know
        # (systemd-boot came later): its fsck reads a copy without that line, bound over it
        patched = tmp_path / "config-for-ostree"
        patched.write_text(repo_config.replace("bootloader=systemd-boot\n", ""))
        loops.mount(str(patched), mnt / "ostree/repo/config", "--bind")
    if bootloader == "grub2":
        status = ostree("admin", "status", f"--sysroot={mnt}").stdout.decode()
    else:
        # nor can it read boot/loader as a directory (the entries-dir scheme): ours
        status = sh(
            sys.executable, "-m", "sysroot", "admin", "status", f"--sysroot={mnt}"
        ).stdout.decode()
    assert f"testos {source.commit}.0" in status, status
    fsck = ostree("fsck", f"--repo={mnt}/ostree/repo", check=False)
    assert fsck.returncode == 0, fsck.stderr.decode()
    assert check_boot_invariant(str(mnt)) == []

    root_uuid = sh("blkid", "-s", "UUID", "-o", "value", root_dev).stdout.decode().strip()
    entries = list((mnt / "boot/loader/entries").glob("*.conf"))
    assert len(entries) == 1
    options = next(
        ln for ln in entries[0].read_text().splitlines() if ln.startswith("options ")
    ).split()
    assert f"root=UUID={root_uuid}" in options
    assert "console=ttyS0" in options
    deploy = mnt / f"ostree/deploy/testos/deploy/{source.commit}.0"
    fstab = (deploy / "etc/fstab").read_text()
    boot_uuid = sh("blkid", "-s", "UUID", "-o", "value", boot_dev or esp_dev).stdout.decode()
    assert f"UUID={boot_uuid.strip()} /boot " in fstab
    if boot_dev:
        # GRUB's image finds /boot by that UUID (its built-in config) and can read the
        # boot-counting environment (its loadenv module)
        efi = (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes()
        assert f"--fs-uuid --set=root {boot_uuid.strip()}".encode() in efi
        assert b"loadenv" in efi


def test_fixed_ids_land_on_the_disk(tmp_path: Path, loops: Loops, source: Source) -> None:
    """The library takes every identity from the caller: disk GUID, partition UUIDs,
    file system UUIDs, the ESP's volume id (for reproducible images)."""
    image = make_image(tmp_path / "disk.img")
    with attached_image(str(image)) as dev:
        options = InstallOptions(
            dev, str(source.repo), source.ref, bootloader=BootloaderKind.GRUB2, ids=IDS
        )
        install_to_disk(options)
    dev = loops.attach(image, read_only=True)
    table = json.loads(sh("sfdisk", "--json", dev).stdout)["partitiontable"]
    assert table["id"].lower() == IDS.table.disk_guid
    assert [p["uuid"].lower() for p in table["partitions"]] == [
        IDS.table.esp_uuid,
        IDS.table.boot_uuid,
        IDS.table.root_uuid,
    ]
    assert [p["name"] for p in table["partitions"]] == ["esp", "boot", "root"]

    def fs_uuid(part: str) -> str:
        return sh("blkid", "-s", "UUID", "-o", "value", part).stdout.decode().strip()

    assert fs_uuid(f"{dev}p1") == IDS.esp_fs_uuid
    assert fs_uuid(f"{dev}p2") == IDS.boot_fs_uuid
    assert fs_uuid(f"{dev}p3") == IDS.root_fs_uuid
