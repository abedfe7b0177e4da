#!/usr/bin/env python3
"""Benchmark: sysroot vs ostree, commit and checkout of one generated tree, same run.

    python3 bench/repo_bench.py [--files 20000] [--dirs 2000] [--pairs 3] [--workdir DIR]
                                [--tmpfs] [--mode bare|bare-user] [--no-xattrs]

Generates a tree (fixed seed: mostly small files, some up to 200 kB, a few executables
and symlinks; about 350 MB at the default size), then times `commit` and `checkout`
of each tool in the given repo mode (checkout with -U in bare-user mode), alternating
which tool goes first in each pair. Prints each tool's median wall-clock seconds over
the pairs, the median of the per-pair ratios sysroot/ostree, and each command's peak
RSS (from wait4, so it is the command's own, not the harness's).

--tmpfs mounts a tmpfs (root only) and puts the tree, the repos and the checkouts on
it, so storage drops out and the CPU cost of each tool shows; it is unmounted at the
end. Targets (issue 21): commit <= 1.0x, checkout <= 1.2x, peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
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


BASELINE: str | None = None


def tool_argv(tool: str) -> list[str]:
    if tool == "ostree":
        return ["ostree"]
    if tool == "baseline":  # another checkout of sysroot (--baseline), e.g. main's
        return ["env", f"PYTHONPATH={BASELINE}", sys.executable, "-m", "sysroot"]
    return [sys.executable, "-m", "sysroot"]


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument("--pairs", "--rounds", type=int, default=3, dest="pairs")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--tmpfs", action="store_true", help="tree, repos, checkouts on a tmpfs")
    ap.add_argument("--mode", default="bare", choices=["bare", "bare-user"])
    ap.add_argument("--no-xattrs", action="store_true", help="commit with --no-xattrs")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="also time the sysroot package found in DIR (e.g. an export of main), same pairs",
    )
    args = ap.parse_args()
    global BASELINE
    BASELINE = os.path.abspath(args.baseline) if args.baseline else None
    tools = ["ostree", "sysroot", *(["baseline"] if BASELINE else [])]

    work = tempfile.mkdtemp(prefix="sysroot-bench-", dir=args.workdir)
    mounted = False
    try:
        if args.tmpfs:
            if os.geteuid() != 0:
                raise SystemExit("--tmpfs needs root (it mounts a tmpfs)")
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", work], check=True)
            mounted = True
        tree = os.path.join(work, "tree")
        t0 = time.perf_counter()
        size = generate_tree(tree, args.files, args.dirs)
        print(
            f"tree: {args.files} files in {args.dirs} dirs, {size / 1e6:.0f} MB "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        print(f"regime: {'tmpfs' if args.tmpfs else 'disk'}, mode {args.mode}, {args.pairs} pairs")
        results: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for rnd in range(args.pairs):
            order = tools if rnd % 2 == 0 else tools[::-1]
            for tool in order:
                repo = os.path.join(work, f"repo-{tool}")
                co = os.path.join(work, f"co-{tool}")
                shutil.rmtree(repo, ignore_errors=True)
                shutil.rmtree(co, ignore_errors=True)
                subprocess.run(
                    [*tool_argv(tool), "init", f"--repo={repo}", f"--mode={args.mode}"], check=True
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
                            *(["--no-xattrs"] if args.no_xattrs else []),
                            tree,
                        ]
                    )
                )
                os.sync()
                results.setdefault((tool, "checkout"), []).append(
                    timed(
                        [
                            *tool_argv(tool),
                            "checkout",
                            *(["-U"] if args.mode == "bare-user" else []),
                            f"--repo={repo}",
                            "bench",
                            co,
                        ]
                    )
                )
        same = all(
            subprocess.run(
                ["ostree", "rev-parse", f"--repo={work}/repo-{tool}", "bench"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            == subprocess.run(
                ["ostree", "rev-parse", f"--repo={work}/repo-ostree", "bench"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            for tool in tools
        )
        print(f"same commit checksum from all tools: {same}")
        print(
            f"{'operation':<10} {'ostree s':>9} {'sysroot s':>10} {'ratio':>6} "
            f"{'ostree MiB':>11} {'sysroot MiB':>12}"
        )
        for op, target in (("commit", 1.0), ("checkout", 1.2)):
            o_times = [t for t, _ in results[("ostree", op)]]
            s_times = [t for t, _ in results[("sysroot", op)]]
            o_m = max(m for _, m in results[("ostree", op)])
            s_m = max(m for _, m in results[("sysroot", op)])
            # The median of the per-pair ratios: each pair ran back to back, so it
            # shares the machine's load of the moment.
            ratio = median([s / o for s, o in zip(s_times, o_times, strict=True)])
            print(
                f"{op:<10} {median(o_times):9.2f} {median(s_times):10.2f} {ratio:6.2f} "
                f"{o_m:11d} {s_m:12d}   (target <= {target})"
            )
            pairs = "  ".join(f"{o:.2f}/{s:.2f}" for o, s in zip(o_times, s_times, strict=True))
            print(f"{'':<10} pairs ostree/sysroot s: {pairs}")
            if BASELINE:
                b_times = [t for t, _ in results[("baseline", op)]]
                b_m = max(m for _, m in results[("baseline", op)])
                b_ratio = median([b / o for b, o in zip(b_times, o_times, strict=True)])
                print(
                    f"{'  baseline':<10} {'':9} {median(b_times):10.2f} {b_ratio:6.2f} "
                    f"{'':11} {b_m:12d}   ({BASELINE})"
                )
    finally:
        if mounted:
            subprocess.run(["umount", work], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
