"""A short, real demonstration of sysroot's main job, on a throw-away folder.

    python -m sysroot.demo [FOLDER]     (default: ./demo, recreated each run)

Every step runs the real `sysroot` CLI and shows the command and its output, so the
transcript doubles as a tutorial. When the `ostree` program is installed, the demo
also lets it check what sysroot wrote.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from sysroot.util.run import run


def _show(argv: list[str], *, cwd: str) -> str:
    shown = ["sysroot", *argv[3:]] if argv[:3] == [sys.executable, "-m", "sysroot"] else argv
    print(f"$ {shlex.join(shown)}")
    proc = run(argv, cwd=cwd)
    out = proc.stdout.decode()
    if out:
        print(out.rstrip("\n"))
    print()
    return out.strip()


def _sysroot(*args: str, cwd: str) -> str:
    return _show([sys.executable, "-m", "sysroot", *args], cwd=cwd)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def build_tree(root: str, version: str) -> None:
    _write(f"{root}/usr/lib/os-release",
           f'NAME="Demo OS"\nPRETTY_NAME="Demo OS {version}"\nVERSION_ID={version}\n')
    _write(f"{root}/usr/bin/hello", f"#!/bin/sh\necho 'hello from Demo OS {version}'\n", 0o755)
    _write(f"{root}/usr/etc/motd", f"Welcome to Demo OS {version}\n")
    _write(f"{root}/usr/etc/hostname", "demo\n")
    os.makedirs(f"{root}/var", exist_ok=True)
    if not os.path.lexists(f"{root}/usr/bin/sh-link"):
        os.symlink("hello", f"{root}/usr/bin/sh-link")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    work = os.path.abspath(argv[0] if argv else "demo")
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    print(f"# Demonstration in {work}\n")
    repo = "--repo=repo"

    print("# 1. A repository in OSTree's archive format, and an OS tree to put in it")
    _sysroot("init", repo, "--mode=archive", cwd=work)
    build_tree(f"{work}/tree", "1.0")

    print("# 2. Commit it, twice: the second commit changes one file")
    _sysroot("commit", repo, "-b", "demo/stable", "-s", "Demo OS 1.0",
             "--add-metadata-string=version=1.0", "tree", cwd=work)
    build_tree(f"{work}/tree", "2.0")
    _sysroot("commit", repo, "-b", "demo/stable", "-s", "Demo OS 2.0",
             "--add-metadata-string=version=2.0", "tree", cwd=work)

    print("# 3. History, content and differences")
    _sysroot("log", repo, "demo/stable", cwd=work)
    _sysroot("ls", repo, "-R", "demo/stable", "/usr", cwd=work)
    _sysroot("diff", repo, "demo/stable^", "demo/stable", cwd=work)

    print("# 4. Check out the tree, and verify every object")
    _sysroot("checkout", repo, "demo/stable", "checkout", cwd=work)
    _show(["cat", "checkout/usr/etc/motd"], cwd=work)
    _sysroot("fsck", repo, cwd=work)

    if shutil.which("ostree"):
        print("# 5. The real ostree reads the same repository")
        _show(["ostree", "fsck", repo], cwd=work)
        _show(["ostree", "rev-parse", repo, "demo/stable"], cwd=work)
    print("# Done.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
