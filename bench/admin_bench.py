#!/usr/bin/env python3
"""Benchmark: `sysroot admin deploy` vs `ostree admin deploy`, plus `cp -al` as the floor;
`pull-local` of the deployed commit; `admin status` of a three-deployment sysroot.

    python3 bench/admin_bench.py [--files 20000] [--dirs 2000] [--etc-files 300]
                                 [--rounds 3] [--tmpfs]

The tree of repo_bench.py is made bootable (a kernel and initramfs in
usr/lib/modules/$kver/, os-release, a usr/etc of a few hundred files) and committed
once per fresh sysroot; then each tool deploys it into its own fresh sysroot, in
alternating order. --tmpfs puts everything on a tmpfs (root only): what our own code
costs, without the disk. Prints the median wall-clock seconds of the rounds, the ratios
sysroot/ostree (targets: deploy <= 1.0 and <= 1.5 x cp -al, pull-local <= 1.0,
status <= 1.5) and peak RSS (target < 200 MB).
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
from repo_bench import generate_tree, median, timed, tool_argv  # noqa: E402


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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--tmpfs", action="store_true", help="everything on a tmpfs (root only)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sysroot-admin-bench-", dir=args.workdir)
    mounted = False
    try:
        if args.tmpfs:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g", "tmpfs", work], check=True)
            mounted = True
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
                results.setdefault(f"deploy {tool}", []).append(
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
            for tool in order:  # pull-local of the commit out of the deployed sysroot
                dest = os.path.join(work, f"pl-{tool}")
                shutil.rmtree(dest, ignore_errors=True)
                subprocess.run(["ostree", "init", f"--repo={dest}", "--mode=bare"], check=True)
                src = os.path.join(work, "sr-ostree", "ostree/repo")
                results.setdefault(f"pull-local {tool}", []).append(
                    timed([*tool_argv(tool), "pull-local", f"--repo={dest}", src, "bench/os"])
                )
        # admin status of a sysroot with three deployments (ostree's: both read it)
        status_sr = os.path.join(work, "sr-ostree")
        for _ in range(2):
            subprocess.run(
                ["ostree", "admin", "deploy", f"--sysroot={status_sr}", "--os=bench", "bench/os"],
                check=True,
                capture_output=True,
            )
        for rnd in range(max(args.rounds, 5)):
            for tool in ("ostree", "sysroot") if rnd % 2 == 0 else ("sysroot", "ostree"):
                results.setdefault(f"status {tool}", []).append(
                    timed([*tool_argv(tool), "admin", "status", f"--sysroot={status_sr}"])
                )
        regime = "tmpfs" if args.tmpfs else "disk"
        print(f"regime: {regime}; median of {args.rounds} alternating rounds")
        print(f"{'what':<22} {'seconds':>8} {'peak MiB':>9}")
        for name, runs in results.items():
            print(f"{name:<22} {median([t for t, _ in runs]):8.3f} {max(m for _, m in runs):9d}")

        def ratio(a: str, b: str) -> float:
            return median([t for t, _ in results[a]]) / median([t for t, _ in results[b]])

        print(
            "deploy: sysroot/ostree "
            f"{ratio('deploy sysroot', 'deploy ostree'):.2f} (target <= 1.0); "
            f"sysroot/cp-al {ratio('deploy sysroot', 'cp -al'):.2f} (target <= 1.5)"
        )
        print(
            "pull-local: sysroot/ostree "
            f"{ratio('pull-local sysroot', 'pull-local ostree'):.2f} (target <= 1.0)"
        )
        print(
            f"admin status: sysroot/ostree {ratio('status sysroot', 'status ostree'):.2f} "
            "(target <= 1.5)"
        )
    finally:
        for name in ("sr-ostree", "sr-sysroot"):
            remove_sysroot(os.path.join(work, name))
        if mounted:
            subprocess.run(["umount", work], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
