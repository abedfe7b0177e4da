"""Fixtures for the osmet tests: one commit with realistic content, its metal images
(`sysroot build create`, both back ends, both sector sizes) and their osmet files,
each made once per session on first use and shared (an image is ~1 GiB sparse and a
pack takes tens of seconds), repositories of each mode holding the commit, and loop
devices released after each test."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.formats import osmet
from tests.helpers.sysroots import TIMESTAMP, clear_immutable_under, make_os_tree
from tests.install.conftest import Loops, make_image, sh

REF = "testos/stable"
KiB = 1 << 10
MIB = 1 << 20
# > 1 KiB (what /boot matching skips) and incompressible: /boot files are mapped
KERNEL_SIZE = 48 * KiB
INITRAMFS_SIZE = 40 * KiB
# the objects must dominate the image for the size proof, as in a real OS tree (the
# rest of the packed stream is a fixed ~0.35 MB: ext4 metadata and the ESP's boot
# loader binaries, which are no objects of the repository)
DATA_FILES = 12
DATA_FILE_SIZE = 1 * MIB


@dataclass(frozen=True)
class Commit:
    repo: Path  # archive mode, as a build host's
    ref: str
    checksum: str


@dataclass(frozen=True)
class Image:
    bootloader: str  # "grub2" or "systemd-boot"
    sector_size: int
    raw: Path
    sha256: str  # meta.json's
    size: int


def sha256_file(path: Path | str, limit: int | None = None) -> str:
    """The SHA-256 of a file or device (its first limit bytes when given)."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(4 * MIB if left is None else min(4 * MIB, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def osmet_cli(*args: object) -> object:
    """`sysroot osmet ARGS...`, not checked."""
    return sh(sys.executable, "-m", "sysroot", "osmet", *map(str, args), check=False)


@pytest.fixture(scope="session")
def commit(tmp_path_factory, ostree) -> Commit:
    base = tmp_path_factory.mktemp("osmet-source")
    rnd = random.Random(17)  # the same bytes every run
    tree = make_os_tree(
        base / "tree",
        kver="6.1.0",
        kernel=rnd.randbytes(KERNEL_SIZE),
        initramfs=rnd.randbytes(INITRAMFS_SIZE),
    )
    data = tree / "usr/share/data"
    data.mkdir(parents=True)
    for i in range(DATA_FILES):
        (data / f"blob{i}").write_bytes(rnd.randbytes(DATA_FILE_SIZE))
    repo = base / "repo"
    ostree(f"--repo={repo}", "init", "--mode=archive")
    checksum = ostree.out(
        f"--repo={repo}",
        "commit",
        f"--branch={REF}",
        "--subject=osmet test",
        f"--timestamp={TIMESTAMP}",
        f"--tree=dir={tree}",
    )
    return Commit(repo, REF, checksum)


class Artifacts:
    """The builds and osmet files of the session, each made on first use."""

    def __init__(self, base: Path, commit: Commit):
        self.base = base
        self.commit = commit
        self._builds: dict[str, Path] = {}
        self._osmets: dict[tuple[str, int], Path] = {}

    def build_dir(self, bootloader: str) -> Path:
        if bootloader not in self._builds:
            builds = self.base / f"builds-{bootloader}"
            proc = sh(
                sys.executable,
                "-m",
                "sysroot",
                "build",
                "create",
                self.commit.ref,
                f"--repo={self.commit.repo}",
                f"--builds={builds}",
                f"--bootloader={bootloader}",
                "--version=1",
                check=False,
            )
            assert proc.returncode == 0, proc.stderr.decode()
            self._builds[bootloader] = builds / "builds" / "1"
        return self._builds[bootloader]

    def image(self, bootloader: str, sector_size: int) -> Image:
        build = self.build_dir(bootloader)
        meta = json.loads((build / "meta.json").read_text())
        entry = meta["images"]["metal" if sector_size == 512 else "metal4k"]
        assert entry["sector-size"] == sector_size
        return Image(bootloader, sector_size, build / entry["path"], entry["sha256"], entry["size"])

    def osmet(self, bootloader: str, sector_size: int) -> Path:
        """The image's osmet file; grub2's 512-byte one with xz preset 9 (the size
        proof measures it), the others --fast."""
        key = (bootloader, sector_size)
        if key not in self._osmets:
            image = self.image(bootloader, sector_size)
            out = self.base / "osmet" / f"{bootloader}-{sector_size}.osmet"
            out.parent.mkdir(exist_ok=True)
            fast = () if key == PRESET9 else ("--fast",)
            proc = osmet_cli("pack", f"--output={out}", *fast, image.raw)
            assert proc.returncode == 0, proc.stderr.decode()
            self._osmets[key] = out
        return self._osmets[key]


PRESET9 = ("grub2", 512)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, commit: Commit) -> Iterator[Artifacts]:
    base = tmp_path_factory.mktemp("osmet-artifacts")
    yield Artifacts(base, commit)
    clear_immutable_under(base)
    shutil.rmtree(base)


@pytest.fixture(scope="session")
def repos(tmp_path_factory, ostree, commit: Commit):
    """mode -> a new repository of that mode that holds the commit (pull-local)."""
    made: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("osmet-repos")

    def get(mode: str) -> Path:
        if mode not in made:
            repo = base / mode
            ostree(f"--repo={repo}", "init", f"--mode={mode}")
            ostree(f"--repo={repo}", "pull-local", str(commit.repo), commit.checksum)
            made[mode] = repo
        return made[mode]

    return get


@pytest.fixture
def loops(tmp_path) -> Iterator[Loops]:
    loops = Loops()
    with loops.stack:
        yield loops
    clear_immutable_under(tmp_path)


def blank_disk(tmp_path: Path, loops: Loops, size: int, sector_size: int, name="disk") -> str:
    """A loop device of sector_size sectors over a new all-zero image of size bytes."""
    image = make_image(tmp_path / f"{name}.img", size)
    # after the detach (the stack unwinds in reverse): a disk written through its loop
    # device holds real blocks, ~1 GiB
    loops.callback(image.unlink)
    return loops.attach(image, sector_size=sector_size)


def copy_repo(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def largest_object(repo: Path) -> Path:
    """The biggest content object of a bare-mode repository."""
    files = [p for p in (repo / "objects").glob("*/*.file") if not p.is_symlink()]
    return max(files, key=lambda p: p.stat().st_size)


def flip_byte(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))


def xz_offset(path: Path) -> int:
    """Where the xz stream of an osmet file starts."""
    with open(path, "rb") as f:
        osmet.read(f)
        return f.tell()
