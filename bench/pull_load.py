#!/usr/bin/env python3
"""Load test: many concurrent `sysroot pull` clients of one commit from one local nginx.

    python3 bench/pull_load.py [--clients 50] [--files 2000] [--dirs 200] [--mode archive]
                               [--connections 8] [--cache DIR]

Reuses bench/pull.py's cached served repository (default here 2,000 files, about 35 MB,
so that 50 copies fit comfortably on disk; --files 20000 for the full tree). Starts every
client at once, waits for all, then checks each finished with exit code 0, the same ref
and object set as the first, and a clean `ostree fsck`. Prints the wall time and the
aggregate objects/second and MB/s over all clients.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _bench_pull():
    spec = importlib.util.spec_from_file_location("bench_pull", HERE / "pull.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--dirs", type=int, default=200)
    ap.add_argument(
        "--mode", default="archive", choices=["archive", "bare", "bare-user", "bare-user-only"]
    )
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sysroot-bench-pull"))
    args = ap.parse_args()
    bp = _bench_pull()
    from tests.pull.serve_helpers import Nginx

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    served = bp.served_repo(cache, args.files, args.dirs)
    n_objects = sum(1 for p in (served / "objects").rglob("*") if p.is_file())
    work = Path(tempfile.mkdtemp(prefix="sysroot-bench-load-"))
    try:
        repos = [work / f"client-{i:02d}" for i in range(args.clients)]
        for repo in repos:
            subprocess.run(["ostree", "init", f"--repo={repo}", f"--mode={args.mode}"], check=True)
        with Nginx(served, work / "nginx", worker_connections=4096) as nginx:
            for repo in repos:
                subprocess.run(
                    [
                        "ostree",
                        "remote",
                        "add",
                        f"--repo={repo}",
                        "--no-gpg-verify",
                        "origin",
                        nginx.url,
                    ],
                    check=True,
                )
            os.sync()
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sysroot",
                        "pull",
                        f"--repo={repo}",
                        f"--connections={args.connections}",
                        "origin",
                        "bench",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for repo in repos
            ]
            results = [p.communicate() + (p.returncode,) for p in procs]
            wall = time.perf_counter() - start
            requests = nginx.object_requests()
        failed = [(r, err) for r, (_, err, rc) in zip(repos, results, strict=True) if rc]
        for repo, err in failed:
            print(f"FAILED {repo.name}: {err.strip()}")
        expected = bp.object_set(repos[0])
        ref = (repos[0] / "refs/remotes/origin/bench").read_text()
        same = all(
            bp.object_set(r) == expected and (r / "refs/remotes/origin/bench").read_text() == ref
            for r in repos
        )
        fsck_ok = all(
            subprocess.run(
                ["ostree", "fsck", "--quiet", f"--repo={r}"], capture_output=True
            ).returncode
            == 0
            for r in repos
        )
        size = sum(p.stat().st_size for p in (served / "objects").rglob("*") if p.is_file())
        print(
            f"{args.clients} clients x {n_objects} objects ({size / 1e6:.0f} MB) into "
            f"{args.mode} repos: {wall:.1f} s wall, {requests} object requests served"
        )
        print(
            f"aggregate: {args.clients * n_objects / wall:.0f} objects/s, "
            f"{args.clients * size / 1e6 / wall:.0f} MB/s"
        )
        print(
            f"all succeeded: {not failed}; identical refs and objects: {same}; "
            f"all fsck clean: {fsck_ok}"
        )
        return 0 if not failed and same and fsck_ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
