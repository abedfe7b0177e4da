#!/usr/bin/env python3
"""Benchmark: recreating a metal image from its osmet file and a repository, against
what a user without osmet does (`xz -dc image.raw.xz > file`) and the floor (`cp`).

    sudo python3 bench/osmet_bench.py [--content /usr/bin] [--bootloader grub2]

The tree is real OS content (a copy of --content, default the host's /usr/bin) made
bootable (admin_bench.py: a 38 MB kernel and initramfs), committed, built into a metal
image with `sysroot build create`, packed with `sysroot osmet pack` (xz preset 9), the
image compressed with `xz -9 -T2` for the comparison. The repository unpacked from is a
bare one (a live system's). Each path runs as a command in a child, writing a new file
on the same file system, page cache warm for all (each input read once before); the
child's wall time and peak RSS (wait4) are printed, with the ratios and file sizes.
Targets: unpack >= 2x faster than the xz path, <= 1.5x the cp floor, RSS < 200 MB,
the osmet file <= 5% of the image's xz -9. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from admin_bench import make_bootable  # noqa: E402

SYSROOT = [sys.executable, "-m", "sysroot"]
REF = "bench/os"
# the least any verifying unpack pays: reading the image and hashing all of it
HASH_ONLY = (
    "import hashlib, sys\n"
    "h = hashlib.sha256()\n"
    "with open(sys.argv[1], 'rb', buffering=0) as f:\n"
    "    while b := f.read(1 << 20):\n"
    "        h.update(b)\n"
)


def sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def timed(argv: list[str], stdout_path: str | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of argv run as a child."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            assert proc.stderr is not None
            raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()}")
    finally:
        if stdout_path:
            out.close()  # type: ignore[union-attr]
    return wall, usage.ru_maxrss * 1024


def warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content", default="/usr/bin")
    ap.add_argument("--bootloader", default="grub2", choices=["grub2", "systemd-boot"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    # as an installed package is: byte-compiled (this machine sets PYTHONDONTWRITEBYTECODE,
    # which would have every run compile the modules it imports again)
    sh([sys.executable, "-m", "compileall", "-q", os.path.join(os.path.dirname(HERE), "sysroot")])
    work = tempfile.mkdtemp(prefix="sysroot-osmet-bench-", dir=args.workdir)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    os.environ.update(env)
    try:
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "usr"))
        shutil.copytree(args.content, os.path.join(tree, "usr", "content"), symlinks=True)
        make_bootable(tree, 300)
        repo, bare = os.path.join(work, "repo"), os.path.join(work, "bare")
        sh(["ostree", f"--repo={repo}", "init", "--mode=archive"])
        sh(
            [
                "ostree",
                f"--repo={repo}",
                "commit",
                "-b",
                REF,
                f"--tree=dir={tree}",
                "--timestamp=2020-01-01 00:00:00",
            ]
        )
        sh(["ostree", f"--repo={bare}", "init", "--mode=bare"])
        sh(["ostree", f"--repo={bare}", "pull-local", repo, REF])
        builds = os.path.join(work, "b")
        sh(
            [
                *SYSROOT,
                "build",
                "create",
                REF,
                f"--repo={repo}",
                f"--builds={builds}",
                f"--bootloader={args.bootloader}",
                "--version=1",
            ]
        )
        start = time.perf_counter()
        sh([*SYSROOT, "build", "osmet", f"--builds={builds}"])
        pack_secs = (time.perf_counter() - start) / 2
        with open(os.path.join(builds, "builds/1/meta.json")) as f:
            meta = json.load(f)
        d = os.path.join(builds, "builds/1")
        image = os.path.join(d, meta["images"]["metal"]["path"])
        osmet = os.path.join(d, meta["images"]["metal-osmet"]["path"])
        start = time.perf_counter()
        sh(["xz", "-9", "-T2", "-k", image])
        xz_secs = time.perf_counter() - start
        for f in (image, image + ".xz", osmet):
            warm(f)
        sh(["ostree", f"--repo={bare}", "fsck", "--quiet"])  # warms the repo's objects
        outs = {n: os.path.join(work, f"out-{n}.raw") for n in ("osmet", "xz", "cp")}
        commands: dict[str, tuple[list[str], str | None]] = {
            "osmet": (
                [*SYSROOT, "osmet", "unpack", f"--osmet={osmet}", f"--repo={bare}", outs["osmet"]],
                None,
            ),
            "xz": (["xz", "-dc", image + ".xz"], outs["xz"]),
            "cp": (["cp", image, outs["cp"]], None),
            "sha256": ([sys.executable, "-c", HASH_ONLY, image], None),
        }
        walls: dict[str, list[float]] = {n: [] for n in commands}
        rss: dict[str, int] = dict.fromkeys(commands, 0)
        for _ in range(args.rounds):  # alternating, so a slow moment hits all alike
            for name, (argv, stdout) in commands.items():
                if name in outs and os.path.exists(outs[name]):
                    os.unlink(outs[name])
                wall, peak = timed(argv, stdout)
                walls[name].append(wall)
                rss[name] = max(rss[name], peak)
        for n, path in outs.items():
            same = subprocess.run(["cmp", "-s", image, path]).returncode == 0
            if not same:
                raise SystemExit(f"{n}: the output differs from the image")
        t = {n: statistics.median(w) for n, w in walls.items()}
        size = os.path.getsize(image)
        used = os.stat(image).st_blocks * 512
        osz, xsz = os.path.getsize(osmet), os.path.getsize(image + ".xz")
        print(
            f"image ({args.bootloader}): {size / 1e6:.0f} MB, {used / 1e6:.0f} MB allocated;"
            f" content {args.content}"
        )
        print(
            f"osmet file {osz / 1e6:.2f} MB, image.raw.xz (xz -9) {xsz / 1e6:.2f} MB:"
            f" {100 * osz / xsz:.2f}% (target <= 5%)"
        )
        print(
            f"pack (preset 9, per image) {pack_secs:.1f} s; xz -9 -T2 of the image {xz_secs:.1f} s"
        )
        print(f"median of {args.rounds} alternating rounds:")
        labels = {
            "osmet": "unpack (osmet)",
            "xz": "xz -dc > file",
            "cp": "cp (floor)",
            "sha256": "SHA-256 only",
        }
        for n, label in labels.items():
            print(f"{label:16} {t[n]:7.2f} s  peak RSS {rss[n] / 1e6:6.1f} MB")
        print(
            f"ratio xz/osmet {t['xz'] / t['osmet']:.2f} (target >= 2), osmet/cp"
            f" {t['osmet'] / t['cp']:.2f} (target <= 1.5), osmet/SHA-256-only"
            f" {t['osmet'] / t['sha256']:.2f}"
        )
        print(
            "(cp copies the sparse image without reading its holes and checks nothing; an"
            " unpack must hash every byte of the image, holes included, to verify it:"
            " 'SHA-256 only' is that cost alone, in one Python process)"
        )
    finally:
        subprocess.run(["chattr", "-R", "-i", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
