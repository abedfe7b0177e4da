"""unpack onto a disk: the disk then holds the image byte for byte; --osmet-dir picks
the file made for the disk's sector size and architecture; a file for other sectors,
a repository lacking an object and a disk in use are refused before anything is
written; a damaged object or packed stream fails with one line and leaves no
partition table on the disk (and no file under the target's name)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from sysroot.formats import osmet
from sysroot.install.disks import has_partition_table
from sysroot.osmet import target
from tests.conftest import one_error_line
from tests.install.conftest import Loops, edge_digest, sh
from tests.osmet.conftest import (
    MIB,
    Artifacts,
    blank_disk,
    copy_repo,
    flip_byte,
    largest_object,
    osmet_cli,
    sha256_file,
    xz_offset,
)


def unpack(target_: str | Path, *args: object):
    return osmet_cli("unpack", *args, target_)


def disk_with_table(tmp_path: Path, loops: Loops, size: int, sector_size: int) -> str:
    """A loop device whose disk holds a GPT with one partition (not in use)."""
    dev = blank_disk(tmp_path, loops, size, sector_size)
    sh("sfdisk", "--quiet", dev, input=b"label: gpt\nsize=64MiB\n")
    sh("partx", "-u", dev, check=False)
    return dev


def other_architecture(src: Path, dest: Path, arch: str) -> Path:
    """src with another architecture in its header (the body and stream unchanged)."""
    with open(src, "rb") as f:
        header, body = osmet.read(f)
        stream = f.read()
    dest.write_bytes(osmet.encode(dataclasses.replace(header, os_architecture=arch), body) + stream)
    return dest


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_osmet_dir_picks_the_disks_file_and_writes_the_image(
    artifacts: Artifacts, tmp_path, loops: Loops, sector_size: int
) -> None:
    image = artifacts.image("grub2", sector_size)
    osmets = tmp_path / "osmet"
    osmets.mkdir()
    # in name order: another architecture, then each sector size: the choice must skip
    # what does not fit, whatever comes first
    other_architecture(artifacts.osmet("grub2", 512), osmets / "0-other.osmet", "riscv64")
    shutil.copy(artifacts.osmet("grub2", 4096), osmets / "1-metal4k.osmet")
    shutil.copy(artifacts.osmet("grub2", 512), osmets / "2-metal.osmet")
    dev = blank_disk(tmp_path, loops, image.size, sector_size)
    proc = unpack(dev, f"--osmet-dir={osmets}", f"--repo={artifacts.commit.repo}")
    assert proc.returncode == 0, proc.stderr.decode()
    chosen = "2-metal.osmet" if sector_size == 512 else "1-metal4k.osmet"
    assert chosen in proc.stdout.decode()
    assert sha256_file(dev, image.size) == image.sha256
    # the kernel read the new table
    assert os.path.exists(f"{dev}p3")


def test_the_first_mib_waits_for_the_verified_image(
    artifacts: Artifacts, tmp_path, loops: Loops
) -> None:
    """Until the last byte is written and checked, the disk's first MiB is zeros."""
    image = artifacts.image("grub2", 4096)
    dev = blank_disk(tmp_path, loops, image.size, 4096)
    heads = []

    def progress(done: int, total: int) -> None:
        if done == total:
            with open(dev, "rb") as f:
                heads.append(f.read(MIB))

    target.unpack_to_disk(
        str(artifacts.osmet("grub2", 4096)), str(artifacts.commit.repo), dev, progress
    )
    assert [head == bytes(MIB) for head in heads] == [True]
    assert sha256_file(dev, image.size) == image.sha256


def test_a_file_for_other_sectors_is_refused_before_writing(
    artifacts: Artifacts, tmp_path, loops: Loops
) -> None:
    image = artifacts.image("grub2", 4096)
    dev = disk_with_table(tmp_path, loops, image.size, 512)
    before = edge_digest(dev)
    line = one_error_line(
        unpack(dev, f"--osmet={artifacts.osmet('grub2', 4096)}", f"--repo={artifacts.commit.repo}")
    )
    assert "4096-byte sectors" in line and "512-byte sectors" in line, line
    assert edge_digest(dev) == before
    # and --osmet-dir with no file for the disk
    osmets = tmp_path / "osmet"
    osmets.mkdir()
    shutil.copy(artifacts.osmet("grub2", 4096), osmets / "metal4k.osmet")
    line = one_error_line(unpack(dev, f"--osmet-dir={osmets}", f"--repo={artifacts.commit.repo}"))
    assert "no osmet file" in line and "512-byte sectors" in line, line
    assert edge_digest(dev) == before


def test_a_repository_lacking_an_object_is_refused_before_writing(
    artifacts: Artifacts, repos, tmp_path, loops: Loops
) -> None:
    image = artifacts.image("grub2", 512)
    repo = copy_repo(repos("bare"), tmp_path / "repo")
    victim = largest_object(repo)
    victim.unlink()
    dev = disk_with_table(tmp_path, loops, image.size, 512)
    before = edge_digest(dev)
    line = one_error_line(unpack(dev, f"--osmet={artifacts.osmet('grub2', 512)}", f"--repo={repo}"))
    checksum = victim.parent.name + victim.name.split(".")[0]
    assert "lacks 1 content objects" in line and checksum in line, line
    assert edge_digest(dev) == before


def damaged_object(artifacts: Artifacts, repos, tmp_path: Path) -> tuple[Path, Path]:
    """(osmet file, a copy of the bare repository with one byte of an object flipped)"""
    repo = copy_repo(repos("bare"), tmp_path / "repo")
    victim = largest_object(repo)
    flip_byte(victim, victim.stat().st_size // 2)
    return artifacts.osmet("grub2", 512), repo


def damaged_stream(artifacts: Artifacts, repos, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the osmet file with one byte of its xz stream flipped, repository)"""
    src = artifacts.osmet("grub2", 512)
    copy = tmp_path / "damaged.osmet"
    shutil.copy(src, copy)
    start = xz_offset(copy)
    flip_byte(copy, start + (copy.stat().st_size - start) // 2)
    return copy, artifacts.commit.repo


DAMAGES = {"object": damaged_object, "stream": damaged_stream}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damage_leaves_no_partition_table_on_the_disk(
    artifacts: Artifacts, repos, tmp_path, loops: Loops, damage: str
) -> None:
    image = artifacts.image("grub2", 512)
    packed, repo = DAMAGES[damage](artifacts, repos, tmp_path)
    dev = blank_disk(tmp_path, loops, image.size, 512)
    line = one_error_line(unpack(dev, f"--osmet={packed}", f"--repo={repo}"))
    assert str(packed) in line, line
    assert not has_partition_table(dev, 512)
    proc = sh("sfdisk", "--dump", dev, check=False)
    assert proc.returncode != 0, proc.stdout.decode()
    with open(dev, "rb") as f:
        assert f.read(MIB) == bytes(MIB)
        # the image's backup GPT (its last MiB) is wiped too
        f.seek(image.size - MIB)
        assert f.read(MIB) == bytes(MIB)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damage_leaves_no_file(artifacts: Artifacts, repos, tmp_path, damage: str) -> None:
    packed, repo = DAMAGES[damage](artifacts, repos, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = one_error_line(unpack(out_dir / "image.raw", f"--osmet={packed}", f"--repo={repo}"))
    assert str(packed) in line, line
    assert os.listdir(out_dir) == []  # neither the file nor a temp file


@pytest.mark.parametrize("use", ["mounted", "swap"])
def test_a_disk_in_use_is_refused(artifacts: Artifacts, tmp_path, loops: Loops, use: str) -> None:
    image = artifacts.image("grub2", 512)
    dev = blank_disk(tmp_path, loops, image.size, 512)
    sh("sfdisk", "--quiet", dev, input=b"label: gpt\nsize=64MiB\nsize=64MiB\n")
    sh("partx", "-u", dev, check=False)
    if use == "mounted":
        sh("mkfs.ext4", "-q", f"{dev}p2")
        loops.mount(f"{dev}p2", tmp_path / "mnt")
        expected = f"{dev}p2 is mounted at"
    else:
        sh("mkswap", f"{dev}p1")
        sh("swapon", f"{dev}p1")
        loops.callback(sh, "swapoff", f"{dev}p1", check=False)
        expected = f"{dev}p1 is used as swap"
    before = edge_digest(dev)
    line = one_error_line(
        unpack(dev, f"--osmet={artifacts.osmet('grub2', 512)}", f"--repo={artifacts.commit.repo}")
    )
    assert expected in line, line
    assert edge_digest(dev) == before


def _used_disk(tmp_path: Path, loops: Loops, size: int, sector_size: int) -> str:
    """A loop device over an image whose every byte is 0xA5 (a disk that held data):
    the free space of the image must be written as zeros, not left as it was."""
    image = tmp_path / "used.img"
    with open(image, "wb") as f:
        block = b"\xa5" * (4 * MIB)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    loops.callback(image.unlink)
    return loops.attach(image, sector_size=sector_size)


@pytest.mark.parametrize("kernel_zeroes", [True, False], ids=["blkzeroout", "writes"])
def test_free_space_over_old_data_is_zeroed(
    artifacts: Artifacts, tmp_path, loops: Loops, monkeypatch, kernel_zeroes: bool
) -> None:
    """The image's free space (ZeroRuns of the packed stream) is zeroed by the kernel
    (BLKZEROOUT) where the ranges cover whole pages, by plain writes at their edges —
    and by plain writes everywhere when the kernel refuses."""
    image = artifacts.image("grub2", 512)
    dev = _used_disk(tmp_path, loops, image.size, 512)
    calls: list[int] = []
    real = target.blockdev.zero_out

    def zero_out(fd: int, start: int, length: int) -> None:
        calls.append(length)
        if not kernel_zeroes:
            raise OSError(95, "Operation not supported")
        real(fd, start, length)

    monkeypatch.setattr(target.blockdev, "zero_out", zero_out)
    target.unpack_to_disk(str(artifacts.osmet("grub2", 512)), str(artifacts.commit.repo), dev)
    assert sha256_file(dev, image.size) == image.sha256
    # the kernel zeroed most of the free space; once refused, it is not asked again
    assert sum(calls) > image.size // 2 if kernel_zeroes else len(calls) == 1
