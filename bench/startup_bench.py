#!/usr/bin/env python3
"""Benchmark: start-up time of `sysroot` against `ostree` (issue 21), one run.

    .venv/bin/python bench/startup_bench.py [--runs 10] [--workdir DIR]

Times the commands users run most often and that do little work, so start-up dominates:
`ostree --version`, `sysroot --version`, `sysroot --help`, and `admin status` of both
tools on the same throw-away sysroot with three deployments (made with the real ostree,
as bench/admin_bench.py makes its sysroots). sysroot is run as users run it: the
console script next to this Python (`.venv/bin/sysroot`), not `python -m sysroot`.
Prints the median wall time of --runs runs of each, and each against its target:
--version and --help <= 60 ms, admin status <= 1.5x ostree's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admin_bench import fresh_sysroot, make_bootable, remove_sysroot  # noqa: E402
from repo_bench import generate_tree  # noqa: E402

TARGET_MS = 60.0
TARGET_RATIO = 1.5


def sysroot_command() -> str:
    """The console script installed with this Python (what users run)."""
    script = os.path.join(os.path.dirname(sys.executable), "sysroot")
    if not os.access(script, os.X_OK):
        raise SystemExit(f"{script} not found: install sysroot into this Python's environment")
    return script


def bytecode_note() -> str:
    """Whether sysroot's modules are byte-compiled: an installed wheel is, an editable
    install under PYTHONDONTWRITEBYTECODE=1 never is, and compiling each module on
    each run costs tens of ms. `python -m compileall sysroot` compiles them."""
    spec = importlib.util.find_spec("sysroot.cli.main")
    if spec is None or spec.origin is None:
        return "sysroot not importable here: byte-compilation unknown"
    cached = os.path.exists(importlib.util.cache_from_source(spec.origin))
    return f"sysroot byte-compiled: {'yes' if cached else 'no'}"


def median_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return statistics.median(times) * 1000


def three_deployments(work: str) -> str:
    """A sysroot with three deployments of one small bootable commit, by ostree."""
    tree = os.path.join(work, "tree")
    generate_tree(tree, 200, 20)
    make_bootable(tree, 20)
    sr = os.path.join(work, "sysroot")
    fresh_sysroot(sr, tree)
    for _ in range(3):
        subprocess.run(
            ["ostree", "admin", "deploy", f"--sysroot={sr}", "--os=bench", "--retain", "bench/os"],
            check=True,
            capture_output=True,
        )
    return sr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    ours = sysroot_command()
    work = tempfile.mkdtemp(prefix="sysroot-startup-bench-", dir=args.workdir)
    try:
        sr = three_deployments(os.path.join(work, "w"))
        rows = [
            ("ostree --version", ["ostree", "--version"]),
            ("sysroot --version", [ours, "--version"]),
            ("sysroot --help", [ours, "--help"]),
            ("ostree admin status", ["ostree", "admin", "status", f"--sysroot={sr}"]),
            ("sysroot admin status", [ours, "admin", "status", f"--sysroot={sr}"]),
        ]
        ms = {name: median_ms(argv, args.runs) for name, argv in rows}
        print(f"median wall of {args.runs} runs; sysroot is {ours}; {bytecode_note()}")
        for name, _ in rows:
            print(f"{name:<22} {ms[name]:7.1f} ms")
        for name in ("sysroot --version", "sysroot --help"):
            print(f"{name}: {ms[name] / TARGET_MS:.2f} of the {TARGET_MS:.0f} ms target")
        ratio = ms["sysroot admin status"] / ms["ostree admin status"]
        print(f"admin status sysroot/ostree {ratio:.2f} (target <= {TARGET_RATIO})")
    finally:
        remove_sysroot(os.path.join(work, "w", "sysroot"))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
