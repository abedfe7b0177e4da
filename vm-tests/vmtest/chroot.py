"""Running commands inside a guest file system tree, with /proc, /sys and /dev mounted."""

from __future__ import annotations

import contextlib
import os

from sysroot.util.run import run


@contextlib.contextmanager
def mounted_api_fs(root: str):
    """Mount what package scripts and dracut need; always unmount, innermost first."""
    done = []
    try:
        for fstype, target, opts in (
            ("proc", "proc", []),
            ("sysfs", "sys", []),
            (None, "dev", ["--rbind"]),
        ):
            path = os.path.join(root, target)
            os.makedirs(path, exist_ok=True)
            if fstype:
                run(["mount", "-t", fstype, fstype, path])
            else:
                run(["mount", *opts, "/dev", path])
                run(["mount", "--make-rslave", path])
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            run(["umount", "-R", "-l", path], check=False)


def chroot(root: str, *argv: str, env: dict | None = None):
    base = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return run(["chroot", root, *argv], env={**base, **(env or {})})
