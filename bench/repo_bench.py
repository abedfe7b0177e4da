#!/usr/bin/env python3
"""Benchmark: sysroot vs ostree, commit and checkout of one generated tree, same run.

    python3 bench/repo_bench.py [--files 20000] [--dirs 2000] [--rounds 2] [--workdir DIR]

Generates a tree (fixed seed: mostly small files, some up to 200 kB, a few executables
and symlinks; about 350 MB at the default size), then times `commit` and `checkout`
(bare mode) of each tool, alternating tools each round and keeping each tool's best
time. Prints wall-clock seconds, the ratio sysroot/ostree, and each command's peak RSS
(from wait4, so it is the command's own, not the harness's). Targets: ratio <= 1.5,
peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time


def generate_tree(root: str, n_files: int, n_dirs: int, seed: int = 42) -> int:
    rng = random.Random(seed)
    dirs = [root]
    os.makedirs(root)
    for i in range(n_dirs - 1):
        parent = rng.choice(dirs[-50:] if rng.random() < 0.7 else dirs)
        d = os.path.join(parent, f"dir{i:04d}")
        os.mkdir(d)
        dirs.append(d)
    blob = rng.randbytes(256 * 1024)
    total = 0
    for i in range(n_files):
        d = rng.choice(dirs)
        r = rng.random()
        path = os.path.join(d, f"file{i:05d}")
        if r < 0.01:
            os.symlink(f"../target{i}", path)
            continue
        # Sizes: mostly a few kB, a tail up to 200 kB; mean about 17 kB.
        size = int(rng.paretovariate(1.2) * 3600) if r < 0.97 else rng.randint(100_000, 200_000)
        size = min(size, 200_000)
        off = rng.randrange(0, len(blob) - size) if size < len(blob) else 0
        # Make every file unique so no tool wins by deduplication.
        data = f"{i}\n".encode() + blob[off : off + size]
        with open(path, "wb") as f:
            f.write(data)
        total += len(data)
        if r > 0.995:
            os.chmod(path, 0o755)
    return total


def timed(argv: list[str]) -> tuple[float, int]:
    """Run argv; return (seconds, peak RSS in MiB) of that process tree's main process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace")
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    proc.stderr.close()
    return elapsed, rusage.ru_maxrss // 1024


def tool_argv(tool: str) -> list[str]:
    if tool == "ostree":
        return ["ostree"]
    return [sys.executable, "-m", "sysroot"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="sysroot-bench-", dir=args.workdir)
    try:
        tree = os.path.join(work, "tree")
        t0 = time.perf_counter()
        size = generate_tree(tree, args.files, args.dirs)
        print(
            f"tree: {args.files} files in {args.dirs} dirs, {size / 1e6:.0f} MB "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        results: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for rnd in range(args.rounds):
            order = ["ostree", "sysroot"] if rnd % 2 == 0 else ["sysroot", "ostree"]
            for tool in order:
                repo = os.path.join(work, f"repo-{tool}")
                co = os.path.join(work, f"co-{tool}")
                shutil.rmtree(repo, ignore_errors=True)
                shutil.rmtree(co, ignore_errors=True)
                subprocess.run(
                    [*tool_argv(tool), "init", f"--repo={repo}", "--mode=bare"], check=True
                )
                os.sync()
                results.setdefault((tool, "commit"), []).append(
                    timed(
                        [
                            *tool_argv(tool),
                            "commit",
                            f"--repo={repo}",
                            "-b",
                            "bench",
                            "--timestamp=2020-01-01 00:00:00",
                            "-s",
                            "bench",
                            tree,
                        ]
                    )
                )
                os.sync()
                results.setdefault((tool, "checkout"), []).append(
                    timed([*tool_argv(tool), "checkout", f"--repo={repo}", "bench", co])
                )
        same = (
            subprocess.run(
                ["ostree", "rev-parse", f"--repo={work}/repo-ostree", "bench"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            == subprocess.run(
                ["ostree", "rev-parse", f"--repo={work}/repo-sysroot", "bench"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        print(f"same commit checksum from both tools: {same}")
        print(
            f"{'operation':<10} {'ostree s':>9} {'sysroot s':>10} {'ratio':>6} "
            f"{'ostree MiB':>11} {'sysroot MiB':>12}"
        )
        worst = 0.0
        for op in ("commit", "checkout"):
            o_t = min(t for t, _ in results[("ostree", op)])
            s_t = min(t for t, _ in results[("sysroot", op)])
            o_m = max(m for _, m in results[("ostree", op)])
            s_m = max(m for _, m in results[("sysroot", op)])
            ratio = s_t / o_t
            worst = max(worst, ratio)
            print(f"{op:<10} {o_t:9.2f} {s_t:10.2f} {ratio:6.2f} {o_m:11d} {s_m:12d}")
        print(f"worst ratio {worst:.2f} (target <= 1.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
