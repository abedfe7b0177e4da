#!/usr/bin/env python3
"""Benchmark: an update pulled (a) object by object by sysroot, (b) through a static
delta by sysroot, (c) through the same delta by ostree 2022.7, from a local HTTP server.

    python3 bench/delta_pull_bench.py [--files 20000] [--changed 5] [--added 1]
                                      [--rounds 1] [--workdir DIR]

Generates a tree of --files small files (C1) and a second version (C2) with --changed %
of the files changed by a few bytes and --added % new files; ostree commits both into
an archive repository, generates the delta C1 -> C2 and updates the summary. Each pull
starts from a copy of one bare-user repository at C1 (pulled by ostree, no deltas) and
goes to C2; the bytes the server sent and the wall time are measured, the results
compared (same objects; `ostree fsck` on sysroot's). Prints the numbers and ratios.
"""

from __future__ import annotations

import argparse
import http.server
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class _Counting(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        data = source.read()
        outputfile.write(data)
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.sent += len(data)  # type: ignore[attr-defined]
            self.server.requests += 1  # type: ignore[attr-defined]


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    handler = lambda *a, **kw: _Counting(*a, directory=str(root), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()  # type: ignore[attr-defined]
    httpd.sent = 0  # type: ignore[attr-defined]
    httpd.requests = 0  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run(*args: object) -> str:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_trees(base: Path, files: int, changed: float, added: float) -> tuple[Path, Path]:
    rnd = random.Random(42)
    t1, t2 = base / "t1", base / "t2"
    dirs = max(1, files // 100)
    names = []
    for i in range(files):
        rel = f"d{i % dirs}/f{i}"
        p = t1 / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randint(100, 4000)))
        names.append(rel)
    shutil.copytree(t1, t2)
    for rel in rnd.sample(names, int(files * changed / 100)):
        p = t2 / rel
        data = bytearray(p.read_bytes())
        for _ in range(3):
            data[rnd.randrange(len(data))] ^= 0xFF
        p.write_bytes(bytes(data))
    for i in range(int(files * added / 100)):
        p = t2 / f"d{i % dirs}/new{i}"
        p.write_bytes(rnd.randbytes(rnd.randint(100, 4000)))
    return t1, t2


def objects(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / "objects").rglob("*") if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--changed", type=float, default=5.0, help="percent of files changed")
    ap.add_argument("--added", type=float, default=1.0, help="percent of files added")
    ap.add_argument("--rounds", type=int, default=1, help="best of N for each pull")
    ap.add_argument("--workdir", type=Path, default=None)
    opts = ap.parse_args()
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="delta-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        t1, t2 = make_trees(work, opts.files, opts.changed, opts.added)
        srv = work / "served"
        run("ostree", "init", f"--repo={srv}", "--mode=archive")
        c1 = run("ostree", "commit", f"--repo={srv}", "-b", "main", "-s", "1", t1)
        c2 = run("ostree", "commit", f"--repo={srv}", "-b", "main", "-s", "2", t2)
        run("ostree", "static-delta", "generate", f"--repo={srv}", f"--from={c1}", f"--to={c2}")
        run("ostree", "summary", f"--repo={srv}", "-u")
        print(f"setup: {opts.files} files, C1 -> C2 delta in {time.perf_counter() - t0:.1f} s")
        httpd = serve(srv)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        base = work / "base"
        run("ostree", "init", f"--repo={base}", "--mode=bare-user")
        run("ostree", "remote", "add", f"--repo={base}", "--no-gpg-verify", "origin", url)
        run("ostree", "pull", f"--repo={base}", "--disable-static-deltas", "origin", f"main@{c1}")
        sysroot = [sys.executable, "-m", "sysroot"]
        cases = {
            "sysroot objects": [*sysroot, "pull", "--disable-static-deltas"],
            "sysroot delta": [*sysroot, "pull", "--require-static-deltas"],
            "ostree delta": ["ostree", "pull", "--require-static-deltas"],
            "ostree objects": ["ostree", "pull", "--disable-static-deltas"],
        }
        results: dict[str, tuple[float, int, int]] = {}
        repos: dict[str, Path] = {}
        for name, argv in cases.items():
            best: tuple[float, int, int] | None = None
            for r in range(opts.rounds):
                repo = work / f"{name.replace(' ', '-')}-{r}"
                shutil.rmtree(repo, ignore_errors=True)
                subprocess.run(["cp", "-a", str(base), str(repo)], check=True)
                with httpd.lock:  # type: ignore[attr-defined]
                    httpd.sent = httpd.requests = 0  # type: ignore[attr-defined]
                start = time.perf_counter()
                subprocess.run(
                    [*argv, f"--repo={repo}", "origin", "main"],
                    check=True,
                    capture_output=True,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                took = time.perf_counter() - start
                got = (took, httpd.sent, httpd.requests)  # type: ignore[attr-defined]
                if best is None or took < best[0]:
                    best = got
                repos[name] = repo
            assert best is not None
            results[name] = best
        httpd.shutdown()
        want = objects(repos["ostree delta"])
        for name in ("sysroot objects", "sysroot delta"):
            assert objects(repos[name]) == want, f"{name}: objects differ from ostree's"
            run("ostree", "fsck", "-q", f"--repo={repos[name]}")
        print(f"{'pull':<17}{'seconds':>9}{'bytes sent':>14}{'requests':>10}")
        for name, (took, sent, reqs) in results.items():
            print(f"{name:<17}{took:>9.2f}{sent:>14}{reqs:>10}")
        so, sd, od = results["sysroot objects"], results["sysroot delta"], results["ostree delta"]
        print(
            f"sysroot delta / sysroot objects: time {sd[0] / so[0]:.2f}, bytes {sd[1] / so[1]:.3f}"
        )
        print(
            f"sysroot delta / ostree delta:    time {sd[0] / od[0]:.2f}, bytes {sd[1] / od[1]:.3f}"
        )
    finally:
        if opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
