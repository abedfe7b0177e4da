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


def _remove_old_demo(work: str) -> None:
    # Deployment roots are immutable (chattr +i), as libostree makes them.
    from sysroot.util.fsutil import set_immutable

    for dirpath, dirnames, _ in os.walk(work):
        if os.path.basename(dirpath) == "deploy" and "ostree" in dirpath:
            for d in dirnames:
                set_immutable(os.path.join(dirpath, d), False)
    shutil.rmtree(work)


def build_tree(root: str, version: str) -> None:
    _write(
        f"{root}/usr/lib/os-release",
        f'NAME="Demo OS"\nPRETTY_NAME="Demo OS {version}"\nVERSION_ID={version}\n',
    )
    _write(f"{root}/usr/bin/hello", f"#!/bin/sh\necho 'hello from Demo OS {version}'\n", 0o755)
    _write(f"{root}/usr/etc/motd", f"Welcome to Demo OS {version}\n")
    _write(f"{root}/usr/etc/hostname", "demo\n")
    # A (tiny, fake) kernel and initramfs make the tree deployable.
    _write(f"{root}/usr/lib/modules/6.1.0-demo/vmlinuz", f"kernel {version}\n")
    _write(f"{root}/usr/lib/modules/6.1.0-demo/initramfs.img", "initramfs\n")
    os.makedirs(f"{root}/var", exist_ok=True)
    if not os.path.lexists(f"{root}/usr/bin/sh-link"):
        os.symlink("hello", f"{root}/usr/bin/sh-link")


def main(argv: list[str] | None = None) -> int:
    from sysroot.errors import SysrootError

    try:
        return _demo(sys.argv[1:] if argv is None else argv)
    except SysrootError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1


def _demo(argv: list[str]) -> int:
    work = os.path.abspath(argv[0] if argv else "demo")
    if os.path.exists(work):
        _remove_old_demo(work)
    os.makedirs(work)
    print(f"# Demonstration in {work}\n")
    repo = "--repo=repo"

    print("# 1. A repository in OSTree's archive format, and an OS tree to put in it")
    _sysroot("init", repo, "--mode=archive", cwd=work)
    build_tree(f"{work}/tree", "1.0")

    print("# 2. Commit it, twice: the second commit changes one file")
    _sysroot(
        "commit",
        repo,
        "-b",
        "demo/stable",
        "-s",
        "Demo OS 1.0",
        "--add-metadata-string=version=1.0",
        "tree",
        cwd=work,
    )
    build_tree(f"{work}/tree", "2.0")
    _sysroot(
        "commit",
        repo,
        "-b",
        "demo/stable",
        "-s",
        "Demo OS 2.0",
        "--add-metadata-string=version=2.0",
        "tree",
        cwd=work,
    )

    print("# 3. History, content and differences")
    _sysroot("log", repo, "demo/stable", cwd=work)
    _sysroot("ls", repo, "-R", "demo/stable", "/usr", cwd=work)
    _sysroot("diff", repo, "demo/stable^", "demo/stable", cwd=work)

    print("# 4. Check out the tree, and verify every object")
    _sysroot("checkout", repo, "demo/stable", "checkout", cwd=work)
    _show(["cat", "checkout/usr/etc/motd"], cwd=work)
    _sysroot("fsck", repo, cwd=work)

    print("# 5. A throw-away sysroot: deploy 1.0, edit its /etc, deploy 2.0")
    sysroot = "--sysroot=machine"
    _sysroot("admin", "init-fs", "machine", cwd=work)
    _sysroot("admin", "os-init", sysroot, "demo", cwd=work)
    _sysroot(
        "pull-local", "--repo=machine/ostree/repo", "--depth=1", "repo", "demo/stable", cwd=work
    )
    _sysroot(
        "admin",
        "deploy",
        sysroot,
        "--os=demo",
        "--karg=root=LABEL=demo-root",
        "demo/stable^",
        cwd=work,
    )
    status = _sysroot("admin", "status", sysroot, "--json", cwd=work)
    import json

    first = json.loads(status)["deployments"][0]["path"]
    with open(os.path.join(first, "etc", "hostname"), "w") as f:
        f.write("my-machine\n")  # the administrator's local change
    print(f"# (edited {os.path.relpath(first, work)}/etc/hostname)\n")
    _sysroot("admin", "config-diff", sysroot, "--os=demo", cwd=work)
    _sysroot("admin", "deploy", sysroot, "--os=demo", "demo/stable", cwd=work)
    _sysroot("admin", "status", sysroot, cwd=work)
    new = json.loads(_sysroot("admin", "status", sysroot, "--json", cwd=work))
    new_root = new["deployments"][0]["path"]
    _show(
        [
            "cat",
            f"{os.path.relpath(new_root, work)}/etc/hostname",
            f"{os.path.relpath(new_root, work)}/etc/motd",
        ],
        cwd=work,
    )
    _show(["cat", "machine/boot/loader/entries/ostree-2-demo.conf"], cwd=work)

    print("# 6. Roll back: the previous deployment boots next")
    _sysroot("admin", "rollback", sysroot, cwd=work)
    _sysroot("admin", "status", sysroot, cwd=work)

    if shutil.which("ostree"):
        print("# 7. The real ostree reads what sysroot wrote")
        _show(["ostree", "fsck", repo], cwd=work)
        _show(["ostree", "admin", "status", sysroot], cwd=work)

    print("# 8. Disk images of the commit, in a build directory")
    if os.geteuid() != 0:
        # file owners in the image, a loop device for its partition table
        print("# (skipped: building disk images needs root)\n")
    else:
        _build_images(work, repo)
    print("# Done.")
    return 0


def _build_images(work: str, repo: str) -> None:
    build = ["build", "create", repo, "--builds=.", "--bootloader=grub2", "--name=demo"]
    _sysroot(*build, "--karg=console=ttyS0", "demo/stable", cwd=work)
    _show(["cat", "builds/builds.json"], cwd=work)
    _show(["ls", "builds/latest/"], cwd=work)
    metal = "builds/latest/demo-2.0-metal.x86_64.raw"
    _show(["sfdisk", "--list", metal], cwd=work)
    first = _show(["sha256sum", metal], cwd=work)
    print("# the same commit again: nothing to do; with --force the same bytes")
    _sysroot(*build, "--karg=console=ttyS0", "demo/stable", cwd=work)
    _sysroot(*build, "--karg=console=ttyS0", "--force", "demo/stable", cwd=work)
    again = _show(["sha256sum", metal], cwd=work)
    print(f"# reproducible: {'yes' if first == again else 'NO'}\n")


if __name__ == "__main__":
    raise SystemExit(main())
