#!/usr/bin/env python3
"""Benchmark: `sysroot static-delta generate` vs `ostree static-delta generate`.

    python3 bench/delta_generate_bench.py [--files 5000] [--changed 5] [--new 1] [--rounds 1]

Commits a tree of N small text files (plus one 1 MiB binary with a local edit, for
rollsum), then a second commit with --changed percent of the files edited by a few bytes
(bsdiff) and --new percent new files; each tool generates the FROM->TO delta and the
delta from scratch into a directory of its own (--filename). Prints seconds, the ratio
sysroot/ostree (target <= 1.5) and both deltas' total part sizes.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repo_bench import timed, tool_argv  # noqa: E402


def make_tree(root: str, n: int, rng: random.Random) -> None:
    words = [rng.randbytes(3).hex() for _ in range(2000)]
    for i in range(n):
        d = os.path.join(root, f"d{i % 100:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "w") as f:
            for _ in range(rng.randint(5, 60)):
                f.write(" ".join(rng.choices(words, k=10)) + "\n")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(rng.randbytes(1 << 20))


def change_tree(root: str, n: int, changed: float, new: float, rng: random.Random) -> None:
    for i in rng.sample(range(n), int(n * changed / 100)):
        p = os.path.join(root, f"d{i % 100:02d}", f"f{i}.txt")
        with open(p, "r+b") as f:
            data = bytearray(f.read())
            for _ in range(3):
                data[rng.randrange(len(data))] = ord("X")
            f.seek(0)
            f.write(data)
    for i in range(int(n * new / 100)):
        with open(os.path.join(root, f"d{i % 100:02d}", f"new{i}.txt"), "w") as f:
            f.write(rng.randbytes(2000).hex())
    p = os.path.join(root, "big.bin")
    with open(p, "r+b") as f:
        f.seek(600_000)
        f.write(rng.randbytes(300))


def part_bytes(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory) if n.isdigit()
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--changed", type=float, default=5.0, help="percent of files edited")
    ap.add_argument("--new", type=float, default=1.0, help="percent of files added")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(5)
    base = tempfile.mkdtemp(prefix="dgen-bench-")
    try:
        tree, repo = os.path.join(base, "tree"), os.path.join(base, "repo")
        make_tree(tree, args.files, rng)

        def run(*a: str) -> None:
            subprocess.run(["ostree", f"--repo={repo}", *a], check=True, capture_output=True)

        subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
        run("commit", "-b", "main", "-s", "v1", tree)
        change_tree(tree, args.files, args.changed, args.new, rng)
        run("commit", "-b", "main", "-s", "v2", tree)
        for label, extra in (("from->to", []), ("scratch", ["--empty"])):
            results = {}
            for tool in ("ostree", "sysroot"):
                best = None
                for r in range(args.rounds):
                    out = os.path.join(base, f"{tool}-{label[:4]}-{r}")
                    os.mkdir(out)
                    argv = [
                        *tool_argv(tool),
                        f"--repo={repo}",
                        "static-delta",
                        "generate",
                        "--to=main",
                        f"--filename={out}/superblock",
                        *extra,
                    ]
                    secs, _rss = timed(argv)
                    best = secs if best is None else min(best, secs)
                results[tool] = (best or 0.0, part_bytes(out))
            (ot, osz), (st, ssz) = results["ostree"], results["sysroot"]
            print(
                f"{label:9} files={args.files} ostree {ot:.2f}s {osz} B | sysroot {st:.2f}s "
                f"{ssz} B | time ratio {st / ot:.2f} size ratio {ssz / osz:.3f}"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
