#!/usr/bin/env python3
"""Benchmark: `ostree pull` vs `sysroot pull` of one big commit over local HTTP, same run.

    python3 bench/pull.py [--files 20000] [--dirs 2000] [--mode archive] [--rounds 2]
                          [--cache DIR] [--connections 8]

Builds (once, cached under --cache, default $TMPDIR/sysroot-bench-pull) an archive repo
holding one commit of the generated tree from bench/repo_bench.py (20,000 files, about
350 MB), serves it with a private nginx (http.server if nginx is missing), then times
each tool pulling it into a fresh repository of --mode (default archive: what a mirror
or build cache does; bare-user is the other useful choice), alternating tools each round
and keeping each tool's best time. Checks both end with the same ref and object set and
that `ostree fsck` accepts sysroot's repo. Prints the times and sysroot/ostree.
Target: ratio <= 1.2.
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


def _repo_bench():
    spec = importlib.util.spec_from_file_location("repo_bench", HERE / "repo_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def served_repo(cache: Path, files: int, dirs: int) -> Path:
    """The cached archive repo with ref `bench`; rebuilt when the parameters change."""
    key = f"files={files} dirs={dirs}\n"
    repo = cache / f"served-{files}-{dirs}"
    stamp = repo / ".bench-stamp"
    if stamp.exists() and stamp.read_text() == key:
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    tree = cache / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    t0 = time.perf_counter()
    size = _repo_bench().generate_tree(str(tree), files, dirs)
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={repo}",
            "-b",
            "bench",
            "-s",
            "bench",
            "--timestamp=2020-01-01 00:00:00",
            str(tree),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["ostree", "summary", f"--repo={repo}", "-u"], check=True)
    shutil.rmtree(tree)
    stamp.write_text(key)
    print(
        f"built served repo: {files} files, {size / 1e6:.0f} MB in "
        f"{time.perf_counter() - t0:.0f} s ({repo})"
    )
    return repo


class Server:
    """nginx when installed (a real static server), else Python's http.server."""

    def __init__(self, root: Path, work: Path):
        from tests.pull.serve_helpers import NGINX, Nginx, RepoServer

        if os.path.exists(NGINX):
            self.kind = "nginx"
            self._srv = Nginx(root, work / "nginx")
        else:
            self.kind = "http.server"
            self._srv = RepoServer(root)

    def __enter__(self):
        self._srv.__enter__()
        self.url = self._srv.url
        return self

    def __exit__(self, *exc):
        self._srv.__exit__(*exc)


def tool_argv(tool: str) -> list[str]:
    return ["ostree"] if tool == "ostree" else [sys.executable, "-m", "sysroot"]


def timed_pull(tool: str, repo: Path, url: str, mode: str, extra: list[str]) -> float:
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run(["ostree", "init", f"--repo={repo}", f"--mode={mode}"], check=True)
    subprocess.run(
        ["ostree", "remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", url], check=True
    )
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(
        [*tool_argv(tool), "pull", f"--repo={repo}", *extra, "origin", "bench"],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{tool} pull failed: {proc.stderr.strip()}")
    print(f"  {tool:<8} {elapsed:6.2f} s  {proc.stdout.strip()}")
    return elapsed


def object_set(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / "objects").rglob("*") if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument(
        "--mode", default="archive", choices=["archive", "bare", "bare-user", "bare-user-only"]
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sysroot-bench-pull"))
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    served = served_repo(cache, args.files, args.dirs)
    work = Path(tempfile.mkdtemp(prefix="sysroot-bench-pull-"))
    try:
        with Server(served, work) as server:
            print(
                f"serving {served} with {server.kind} at {server.url}; "
                f"pulling into {args.mode} repos"
            )
            best: dict[str, float] = {}
            for rnd in range(args.rounds):
                order = ["ostree", "sysroot"] if rnd % 2 == 0 else ["sysroot", "ostree"]
                for tool in order:
                    extra = [f"--connections={args.connections}"] if tool == "sysroot" else []
                    t = timed_pull(tool, work / f"repo-{tool}", server.url, args.mode, extra)
                    best[tool] = min(best.get(tool, t), t)
        theirs, ours = work / "repo-ostree", work / "repo-sysroot"
        same = (
            object_set(theirs) == object_set(ours)
            and (theirs / "refs/remotes/origin/bench").read_text()
            == (ours / "refs/remotes/origin/bench").read_text()
        )
        fsck = subprocess.run(["ostree", "fsck", f"--repo={ours}"], capture_output=True)
        print(
            f"same ref and objects: {same}; ostree fsck of sysroot's repo: "
            f"{'clean' if fsck.returncode == 0 else 'FAILED'}"
        )
        ratio = best["sysroot"] / best["ostree"]
        print(
            f"best of {args.rounds}: ostree {best['ostree']:.2f} s, sysroot "
            f"{best['sysroot']:.2f} s, ratio {ratio:.2f} (target <= 1.2)"
        )
        return 0 if same and fsck.returncode == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
