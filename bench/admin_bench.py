#!/usr/bin/env python3
"""Benchmark: `sysroot admin deploy` vs `ostree admin deploy`, plus `cp -al` as the floor.

    python3 bench/admin_bench.py [--files 20000] [--dirs 2000] [--etc-files 300] [--rounds 2]

The tree of repo_bench.py is made bootable (a kernel and initramfs in
usr/lib/modules/$kver/, os-release, a usr/etc of a few hundred files) and committed
once per fresh sysroot; then each tool deploys it into its own fresh sysroot. Prints
wall-clock seconds, ratio sysroot/ostree (target <= 1.5) and peak RSS (target < 200 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repo_bench import generate_tree, timed, tool_argv  # noqa: E402


def make_bootable(tree: str, etc_files: int) -> None:
    kdir = os.path.join(tree, "usr/lib/modules/6.1.0-bench")
    os.makedirs(kdir, exist_ok=True)
    with open(os.path.join(kdir, "vmlinuz"), "wb") as f:
        f.write(os.urandom(8 << 20))
    with open(os.path.join(kdir, "initramfs.img"), "wb") as f:
        f.write(os.urandom(30 << 20))
    with open(os.path.join(tree, "usr/lib/os-release"), "w") as f:
        f.write('NAME="Bench OS"\nPRETTY_NAME="Bench OS"\nID=bench\n')
    etc = os.path.join(tree, "usr/etc")
    for i in range(etc_files):
        d = os.path.join(etc, f"conf{i % 20}.d")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i}.conf"), "w") as f:
            f.write(f"setting{i}=value\n" * 20)


def fresh_sysroot(path: str, tree: str) -> None:
    os.makedirs(path)
    subprocess.run(["ostree", "admin", "init-fs", path], check=True, capture_output=True)
    subprocess.run(
        ["ostree", "admin", "os-init", f"--sysroot={path}", "bench"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "ostree",
            f"--repo={path}/ostree/repo",
            "commit",
            "-b",
            "bench/os",
            "--timestamp=2020-01-01 00:00:00",
            "-s",
            "bench",
            tree,
        ],
        check=True,
        capture_output=True,
    )


def remove_sysroot(path: str) -> None:
    # Deployment roots are immutable (chattr +i) like ostree makes them.
    subprocess.run(["chattr", "-R", "-i", path], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument("--etc-files", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sysroot-admin-bench-", dir=args.workdir)
    try:
        tree = os.path.join(work, "tree")
        size = generate_tree(tree, args.files, args.dirs)
        make_bootable(tree, args.etc_files)
        print(
            f"tree: {args.files} files, {size / 1e6:.0f} MB + 38 MB kernel/initramfs, "
            f"{args.etc_files} files in usr/etc"
        )
        results: dict[str, list[tuple[float, int]]] = {}
        for rnd in range(args.rounds):
            order = ["ostree", "sysroot"] if rnd % 2 == 0 else ["sysroot", "ostree"]
            for tool in order:
                sr = os.path.join(work, f"sr-{tool}")
                remove_sysroot(sr)
                fresh_sysroot(sr, tree)
                os.sync()
                results.setdefault(tool, []).append(
                    timed(
                        [
                            *tool_argv(tool),
                            "admin",
                            "deploy",
                            f"--sysroot={sr}",
                            "--os=bench",
                            "bench/os",
                        ]
                    )
                )
            floor = os.path.join(work, "cp-al")
            shutil.rmtree(floor, ignore_errors=True)
            os.sync()
            start = time.perf_counter()
            subprocess.run(["cp", "-al", tree, floor], check=True)
            results.setdefault("cp -al", []).append((time.perf_counter() - start, 0))
        o_t = min(t for t, _ in results["ostree"])
        s_t = min(t for t, _ in results["sysroot"])
        f_t = min(t for t, _ in results["cp -al"])
        print(f"{'tool':<8} {'seconds':>8} {'peak MiB':>9}")
        for tool in ("ostree", "sysroot"):
            print(
                f"{tool:<8} {min(t for t, _ in results[tool]):8.2f} "
                f"{max(m for _, m in results[tool]):9d}"
            )
        print(f"{'cp -al':<8} {f_t:8.2f}")
        print(
            f"ratio sysroot/ostree {s_t / o_t:.2f} (target <= 1.5); sysroot/cp-al {s_t / f_t:.2f}"
        )
    finally:
        for name in ("sr-ostree", "sr-sysroot"):
            remove_sysroot(os.path.join(work, name))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
