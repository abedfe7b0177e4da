"""Fixtures for `install` tests: a source repository with a tiny bootable commit,
sparse disk images, and loop devices that are always detached (and mounts always
unmounted) after the test, whatever happened in it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.install.partition import LayoutIds
from sysroot.install.todisk import InstallIds
from tests.helpers.sysroots import OSNAME, TIMESTAMP, clear_immutable_under, make_os_tree

REF = f"{OSNAME}/stable"
# fixed identities, for the tests that call the library
IDS = InstallIds(
    LayoutIds(
        "5a1d0b5e-0000-4000-8000-0000000000d0",
        "5a1d0b5e-0000-4000-8000-0000000000e1",
        "5a1d0b5e-0000-4000-8000-0000000000b2",
        "5a1d0b5e-0000-4000-8000-0000000000f3",
    ),
    "5a1d0b5e-0000-4000-8000-000000000001",
    "5a1d0b5e-0000-4000-8000-000000000002",
    "5A1D0B5E",
)
GIB = 1 << 30
MIB = 1 << 20


def sh(*argv: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        check=check,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Source:
    repo: Path
    ref: str
    commit: str


@pytest.fixture(scope="module")
def source(tmp_path_factory, ostree) -> Source:
    base = tmp_path_factory.mktemp("source")
    tree = make_os_tree(base / "tree", kver="6.1.0")
    # symlinks: in the deployment, hard links of the repository's symlink objects, which
    # mke2fs -d turns into inodes of their own (each must get the image's times)
    os.symlink("sh", tree / "usr/bin/sh-link")
    os.symlink("../lib/os-release", tree / "usr/bin/release-link")
    repo = base / "repo"
    ostree(f"--repo={repo}", "init", "--mode=archive")
    commit = ostree.out(
        f"--repo={repo}",
        "commit",
        f"--branch={REF}",
        "--subject=install test",
        f"--timestamp={TIMESTAMP}",
        f"--tree=dir={tree}",
    )
    return Source(repo, REF, commit)


def make_image(path: Path, size: int = 4 * GIB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def edge_digest(path: str) -> str:
    """sha256 of the first and the last MiB of a disk or image."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(MIB))
        f.seek(-MIB, os.SEEK_END)
        h.update(f.read(MIB))
    return h.hexdigest()


class Loops:
    """Loop devices and mounts of one test, released in reverse order at its end."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()

    def attach(self, image: Path, *, sector_size: int = 512, read_only: bool = False) -> str:
        argv = ["losetup", "--find", "--show", "--partscan", "--sector-size", str(sector_size)]
        if read_only:
            argv.append("--read-only")
        dev = sh(*argv, str(image)).stdout.decode().strip()
        self.stack.callback(sh, "losetup", "--detach", dev, check=False)
        sh("partx", "-u", dev, check=False)  # a loop device's re-read may add nothing
        return dev

    def mount(self, source: str, target: Path, *options: str) -> Path:
        if not target.exists():
            target.mkdir(parents=True)
        sh("mount", *options, source, str(target))
        self.stack.callback(sh, "umount", str(target), check=False)
        return target

    def callback(self, fn, *args, **kw) -> None:
        self.stack.callback(fn, *args, **kw)


@pytest.fixture
def loops(tmp_path) -> Iterator[Loops]:
    loops = Loops()
    with loops.stack:
        yield loops
    clear_immutable_under(tmp_path)


def install_cli(device: str | Path, *args: str) -> subprocess.CompletedProcess:
    """`sysroot install to-disk DEVICE ARGS...`, not checked."""
    return sh(
        sys.executable, "-m", "sysroot", "install", "to-disk", str(device), *args, check=False
    )
