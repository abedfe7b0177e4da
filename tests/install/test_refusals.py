"""What `install to-disk` refuses, and what a failure leaves: a disk in use (a mounted
partition, swap, a device-mapper holder) and a disk with a partition table (without
--wipe) are refused with one line before anything is written; a failure after the
partitioning began leaves no partition table behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sysroot.errors import SysrootError
from sysroot.install import todisk
from sysroot.install.attach import attached_image
from sysroot.install.todisk import InstallOptions, install_to_disk
from tests.conftest import one_error_line
from tests.install.conftest import GIB, IDS, MIB, Loops, Source, edge_digest, make_image, sh
from tests.install.conftest import install_cli as install_to


def install_cli(device: str, source: Source, *extra: str):
    return install_to(device, f"--source-repo={source.repo}", f"--ref={source.ref}", *extra)


def used_disk(tmp_path: Path, loops: Loops) -> str:
    """A loop device over an image with one GPT partition (partition 1, 64 MiB)."""
    image = make_image(tmp_path / "disk.img", 1 * GIB)
    dev = loops.attach(image)
    sh("sfdisk", "--quiet", dev, input=b"label: gpt\nsize=64MiB\nsize=64MiB\n")
    sh("partx", "-u", dev, check=False)
    assert os.path.exists(f"{dev}p1")
    return dev


def test_refuses_a_mounted_partition(tmp_path, loops: Loops, source: Source) -> None:
    dev = used_disk(tmp_path, loops)
    sh("mkfs.ext4", "-q", f"{dev}p2")
    mnt = loops.mount(f"{dev}p2", tmp_path / "mnt")
    before = edge_digest(dev)
    proc = install_cli(dev, source, "--wipe")  # --wipe: only the guard stands in the way
    line = one_error_line(proc)
    assert proc.returncode == 1
    assert f"{dev}p2 is mounted at {mnt}" in line, line
    assert edge_digest(dev) == before


def test_refuses_a_swap_partition(tmp_path, loops: Loops, source: Source) -> None:
    dev = used_disk(tmp_path, loops)
    sh("mkswap", f"{dev}p1")
    sh("swapon", f"{dev}p1")
    loops.callback(sh, "swapoff", f"{dev}p1", check=False)
    before = edge_digest(dev)
    proc = install_cli(dev, source, "--wipe")
    line = one_error_line(proc)
    assert f"{dev}p1 is used as swap" in line, line
    assert edge_digest(dev) == before


def test_refuses_an_existing_table_without_wipe(tmp_path, loops: Loops, source: Source) -> None:
    dev = used_disk(tmp_path, loops)
    before = edge_digest(dev)
    proc = install_cli(dev, source)
    line = one_error_line(proc)
    assert proc.returncode == 1
    assert "has a partition table already" in line, line
    assert "--wipe" in proc.stderr.decode()  # the hint
    assert edge_digest(dev) == before
    # asked to, it goes ahead (a small root: --root-size)
    proc = install_cli(dev, source, "--wipe", "--bootloader=grub2", "--root-size=256M")
    assert proc.returncode == 0, proc.stderr.decode()
    table = json.loads(sh("sfdisk", "--json", dev).stdout)["partitiontable"]
    assert [p["size"] * 512 for p in table["partitions"]] == [64 * MIB, 512 * MIB, 256 * MIB]


def test_a_missing_ref_is_refused_before_the_disk_is_touched(
    tmp_path, loops: Loops, source: Source
) -> None:
    dev = loops.attach(make_image(tmp_path / "disk.img", 1 * GIB))
    before = edge_digest(dev)
    proc = sh(
        sys.executable,
        "-m",
        "sysroot",
        "install",
        "to-disk",
        dev,
        f"--source-repo={source.repo}",
        "--ref=testos/nonexistent",
        check=False,
    )
    line = one_error_line(proc)
    assert "testos/nonexistent" in line, line
    assert edge_digest(dev) == before


def test_a_bad_stateroot_is_refused_before_the_disk_is_touched(
    tmp_path, loops: Loops, source: Source
) -> None:
    dev = loops.attach(make_image(tmp_path / "disk.img", 1 * GIB))
    before = edge_digest(dev)
    proc = install_cli(dev, source, "--stateroot=../x")
    assert "Invalid stateroot name" in one_error_line(proc)
    assert proc.returncode == 2
    assert edge_digest(dev) == before


def test_sector_size_is_only_for_image_files(tmp_path, loops: Loops, source: Source) -> None:
    dev = loops.attach(make_image(tmp_path / "disk.img", 1 * GIB))
    proc = install_cli(dev, source, "--sector-size=4096")
    assert "--sector-size is only for image files" in one_error_line(proc)
    assert proc.returncode == 2


def test_a_failed_install_leaves_no_partition_table(
    tmp_path, loops: Loops, source: Source, monkeypatch
) -> None:
    image = make_image(tmp_path / "disk.img", 2 * GIB)

    def broken_deploy(*args: object) -> None:
        raise SysrootError("deploy broke (planted by the test)")

    monkeypatch.setattr(todisk, "deploy_commit", broken_deploy)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with attached_image(str(image)) as dev:
        with pytest.raises(SysrootError, match="planted"):
            install_to_disk(InstallOptions(dev, str(source.repo), source.ref, ids=IDS))
        assert dev not in Path("/proc/self/mountinfo").read_text()
        assert not os.path.exists(f"{dev}p1"), "the kernel still shows partitions"
        assert sh("sfdisk", "--dump", dev, check=False).returncode != 0
        assert sh("wipefs", "--no-act", dev).stdout == b""
    assert sh("losetup", "--associated", str(image)).stdout == b""
    assert list(temp.iterdir()) == [], "temporary directories left"


KILLED_AFTER_DEPLOY = """
import os, signal, sys
import sysroot.install.todisk as todisk
deploy = todisk.deploy_commit
def killed(*args):
    deploy(*args)
    os.kill(os.getpid(), signal.SIGKILL)  # root (and /boot) mounted now
todisk.deploy_commit = killed
from sysroot.cli.main import main
main(sys.argv[1:])
"""


def test_a_killed_install_leaves_no_mount(tmp_path, loops: Loops, source: Source) -> None:
    """The CLI mounts in a mount namespace of its own: killed mid-way, it leaves no
    mount behind (its loop device stays: those are not per namespace)."""
    image = make_image(tmp_path / "disk.img", 2 * GIB)
    temp = tmp_path / "temp"
    temp.mkdir()

    def release() -> None:  # what a leaked install would leave, innermost first
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            if str(temp) in line.split()[4]:
                sh("umount", line.split()[4], check=False)
        for dev in sh("losetup", "--associated", str(image)).stdout.decode().splitlines():
            sh("losetup", "--detach", dev.split(":")[0], check=False)

    loops.callback(release)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_AFTER_DEPLOY,
            "install",
            "to-disk",
            str(image),
            f"--source-repo={source.repo}",
            f"--ref={source.ref}",
            "--bootloader=grub2",
        ],
        capture_output=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert str(temp) not in Path("/proc/self/mountinfo").read_text()
