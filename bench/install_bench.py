#!/usr/bin/env python3
"""Benchmark: `install to-disk` of the 20,000-file bootable tree to an image file, against
the floor of `cp` of the image it made (the same size and bytes), plus the reproducible
image path of `sysroot build` (staged tree, file systems built in user space).

    sudo python3 bench/install_bench.py [--files 20000] [--dirs 2000] [--size 8G]

The tree is admin_bench.py's (repo_bench.py's files made bootable), committed to an
archive repository. The install runs in this process (through a loop device, in a
private mount namespace) and its phases are timed from the library's "phase: NAME"
debug records (sysroot/install/todisk.py). Needs root. Prints wall-clock seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from admin_bench import make_bootable  # noqa: E402
from repo_bench import generate_tree  # noqa: E402

from sysroot.boot.backends import BootloaderKind  # noqa: E402
from sysroot.install.attach import attached_image  # noqa: E402
from sysroot.install.image import assemble, ids_for_commit, stage  # noqa: E402
from sysroot.install.todisk import InstallOptions, Payload, install_to_disk  # noqa: E402
from sysroot.util.fsutil import set_immutable  # noqa: E402
from sysroot.util.mounts import enter_private_mount_namespace  # noqa: E402

REF = "bench/os"


class PhaseClock(logging.Handler):
    """The time each "phase: NAME" record arrives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.marks: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("phase: "):
            self.marks.append((msg[len("phase: ") :], time.perf_counter()))

    def split(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, t0), (_next, t1) in zip(self.marks, self.marks[1:], strict=False):
            out[name] = out.get(name, 0.0) + t1 - t0
        return out


def commit(work: str, tree: str) -> tuple[str, str]:
    repo = os.path.join(work, "repo")
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=archive"], check=True)
    out = subprocess.run(
        [
            "ostree",
            f"--repo={repo}",
            "commit",
            "-b",
            REF,
            "-s",
            "bench",
            "--timestamp=2020-01-01 00:00:00",
            f"--tree=dir={tree}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return repo, out.stdout.strip()


def parse_size(text: str) -> int:
    units = {"M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def remove(path: str) -> None:
    for parent, dirs, _files in os.walk(path):
        for d in dirs:
            try:
                set_immutable(os.path.join(parent, d), False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument("--etc-files", type=int, default=300)
    ap.add_argument("--size", default="8G")
    ap.add_argument("--bootloader", default="grub2", choices=["grub2", "systemd-boot"])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    enter_private_mount_namespace()
    work = tempfile.mkdtemp(prefix="sysroot-install-bench-", dir=args.workdir)
    clock = PhaseClock()
    lg = logging.getLogger("sysroot.install.todisk")
    lg.setLevel(logging.DEBUG)
    lg.addHandler(clock)
    try:
        tree = os.path.join(work, "tree")
        size = generate_tree(tree, args.files, args.dirs)
        make_bootable(tree, args.etc_files)
        repo, checksum = commit(work, tree)
        print(f"tree: {args.files} files, {size / 1e6:.0f} MB + 38 MB kernel/initramfs")
        kind = BootloaderKind(args.bootloader)
        image = os.path.join(work, "disk.img")
        with open(image, "wb") as f:
            f.truncate(parse_size(args.size))
        os.sync()
        start = time.perf_counter()
        with attached_image(image) as dev:
            install_to_disk(InstallOptions(dev, repo, REF, bootloader=kind))
        total = time.perf_counter() - start

        copy = os.path.join(work, "copy.img")
        os.sync()
        start = time.perf_counter()
        subprocess.run(["cp", "--sparse=always", image, copy], check=True)
        os.sync()
        floor = time.perf_counter() - start
        os.unlink(copy)
        allocated = os.stat(image).st_blocks * 512

        ids = ids_for_commit(checksum)
        os.sync()
        start = time.perf_counter()
        staged = stage(Payload(repo, REF, kind), ids, 1577836800, os.path.join(work, "stage"))
        staged_at = time.perf_counter()
        assemble(staged, ids, os.path.join(work, "metal.raw"), 512)
        os.sync()
        built = time.perf_counter()

        print(f"image: {parse_size(args.size) >> 30} GiB sparse, {allocated / 1e6:.0f} MB written")
        print(f"install to-disk ({args.bootloader}) {total:8.2f} s")
        for name, secs in clock.split().items():
            print(f"  {name:<10} {secs:8.2f} s")
        print(f"cp --sparse (floor) {floor:8.2f} s")
        print(f"ratio install/cp {total / floor:.2f}")
        print(
            f"reproducible image (sysroot build's path, one sector size) "
            f"{built - staged_at + staged_at - start:8.2f} s: stage {staged_at - start:.2f} s, "
            f"file systems {built - staged_at:.2f} s"
        )
    finally:
        remove(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
