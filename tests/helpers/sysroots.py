"""Sysroots for tests: bootable test OS trees, throw-away sysroots made by either tool,
and what is compared between them (the boot state, whole-tree snapshots).

Deployment roots carry the immutable flag (both tools set it): clear_immutable_under()
clears it below a directory, or it could not be removed (tests/deploy/conftest.py does
it after every test there).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from sysroot.cli.main import main
from sysroot.util.fsutil import set_immutable
from tests.helpers.tools import Tool

OSNAME = "testos"
# A fixed commit time makes the same tree commit to the same checksum in both repos.
TIMESTAMP = "2023-01-02 03:04:05"
OS_RELEASE = 'NAME="Test OS"\nID=testos\nPRETTY_NAME="Test OS"\n'


def make_os_tree(
    root: Path,
    *,
    kernel: bytes = b"kernel-1\n",
    initramfs: bytes | None = b"initramfs-1\n",
    kver: str = "6.1.0",
    legacy: bool = False,
    devicetree: bytes | None = None,
    etc: str = "usr/etc",
    extra: dict[str, str] | None = None,
    no_kernel: bool = False,
) -> Path:
    """A small OS tree ostree can deploy.

    etc: where the default configuration lives: "usr/etc" (modern), "etc" (old trees,
    converted at deploy time) or "both" (refused by ostree).
    legacy: kernel as usr/lib/ostree-boot/vmlinuz-KVER-BOOTCSUM instead of usr/lib/modules.
    """
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/sh").write_bytes(b"#!/bin/true\n")
    os.chmod(root / "usr/bin/sh", 0o755)
    (root / "usr/lib/os-release").write_text(OS_RELEASE)
    for d in ("usr/etc", "etc") if etc == "both" else (etc,):
        (root / d / "conf.d").mkdir(parents=True, exist_ok=True)
        (root / d / "hostname").write_text("testhost\n")
        (root / d / "conf.d/a.conf").write_text("a=1\n")
        (root / d / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if no_kernel:
        return root
    if legacy:
        h = hashlib.sha256(kernel + (initramfs or b"") + (devicetree or b""))
        bootcsum = h.hexdigest()
        boot = root / "usr/lib/ostree-boot"
        boot.mkdir(parents=True, exist_ok=True)
        (boot / f"vmlinuz-{kver}-{bootcsum}").write_bytes(kernel)
        if initramfs is not None:
            (boot / f"initramfs-{kver}.img-{bootcsum}").write_bytes(initramfs)
        if devicetree is not None:
            (boot / f"devicetree-{kver}-{bootcsum}").write_bytes(devicetree)
        # the modules directory exists in such trees, just without a vmlinuz
        (root / f"usr/lib/modules/{kver}").mkdir(parents=True, exist_ok=True)
        return root
    mod = root / f"usr/lib/modules/{kver}"
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "vmlinuz").write_bytes(kernel)
    if initramfs is not None:
        (mod / "initramfs.img").write_bytes(initramfs)
    if devicetree is not None:
        (mod / "devicetree").write_bytes(devicetree)
    return root


def clear_immutable_under(base: Path) -> None:
    """Clear the immutable flag of every deployment root found under base."""
    for dirpath, dirnames, _files in os.walk(base):
        p = Path(dirpath)
        if p.name == "deploy" and p.parent.parent.name == "deploy":
            for name in dirnames:
                try:
                    set_immutable(p / name, False)
                except OSError:
                    pass
            dirnames[:] = []  # nothing below a deployment root holds another one
        elif p.name == "objects" and p.parent.name == "repo":
            dirnames[:] = []


# ---------------------------------------------------------------------- sysroots
@dataclass
class Sysroot:
    """A sysroot directory, with commands of one tool and the oracle for commits."""

    path: Path
    tool: Tool
    ostree: Tool
    name: str = ""

    @property
    def repo(self) -> Path:
        return self.path / "ostree/repo"

    def admin(self, *args, check: bool = True):
        cmd, *rest = args
        return self.tool("admin", cmd, f"--sysroot={self.path}", *rest, check=check)

    def oadmin(self, *args, check: bool = True):
        """The same command run by the real ostree."""
        cmd, *rest = args
        return self.ostree("admin", cmd, f"--sysroot={self.path}", *rest, check=check)

    def commit(
        self,
        tree: Path,
        branch: str = f"{OSNAME}/x",
        *,
        version: str | None = None,
        subject: str = "test",
        extra: tuple[str, ...] = (),
    ) -> str:
        args = [
            f"--repo={self.repo}",
            "commit",
            f"--branch={branch}",
            f"--subject={subject}",
            f"--timestamp={TIMESTAMP}",
            f"--tree=dir={tree}",
            *extra,
        ]
        if version is not None:
            args.append(f"--add-metadata-string=version={version}")
        return self.ostree.out(*args)

    def status(self, tool: Tool | None = None) -> str:
        return (tool or self.tool)("admin", "status", f"--sysroot={self.path}").stdout.decode()


def our_status(path: Path) -> str:
    """`sysroot admin status` run in this process: the same entry point as the command,
    without an interpreter start-up for each of the many status checks."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["admin", "status", f"--sysroot={path}"])
    assert rc == 0, err.getvalue()
    return out.getvalue()


def init_sysroot(path: Path, tool: Tool, ostree: Tool, osnames=(OSNAME,)) -> Sysroot:
    path.mkdir(parents=True, exist_ok=True)
    tool("admin", "init-fs", str(path))
    for osname in osnames:
        tool("admin", "os-init", f"--sysroot={path}", osname)
    return Sysroot(path, tool, ostree)


# ---------------------------------------------------------------------- comparison
def boot_state(root: Path) -> dict[str, str]:
    """Everything that defines the boot configuration and the deployment set, relative
    to the sysroot: boot/ (entries, links, kernels), ostree/boot.* link farms,
    deployment directory names, .origin files and the deployment refs of the repo."""
    out: dict[str, str] = {}

    def add(p: Path) -> None:
        rel = str(p.relative_to(root))
        st = p.lstat()
        if stat.S_ISDIR(st.st_mode) and p.parent.name == "deploy" and not p.name.startswith("."):
            # a deployment root: its tree, as path, type, mode and owner (contents are
            # the repo's objects, which `ostree fsck` checks elsewhere)
            out[rel] = f"dir {st.st_mode & 0o7777:o}"
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    c = Path(dirpath, name)
                    cst = c.lstat()
                    out[str(c.relative_to(root))] = (
                        f"{stat.S_IFMT(cst.st_mode):o} {cst.st_mode & 0o7777:o} "
                        f"{cst.st_uid}:{cst.st_gid} {cst.st_nlink > 1}"
                    )
            return
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "-> " + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = f"dir {st.st_mode & 0o7777:o}"
        else:
            out[rel] = f"file {st.st_mode & 0o7777:o} " + p.read_bytes().decode(
                errors="backslashreplace"
            )

    def walk(p: Path) -> None:
        if not p.exists() and not p.is_symlink():
            return
        add(p)
        if p.is_dir() and not p.is_symlink():
            for child in sorted(p.iterdir()):
                walk(child)

    walk(root / "boot")
    for p in sorted((root / "ostree").glob("boot.*")):
        walk(p)
    for osdir in sorted((root / "ostree/deploy").iterdir()):
        deploy = osdir / "deploy"
        if not deploy.is_dir():
            continue
        for child in sorted(deploy.iterdir()):
            add(child)  # names and origins only; trees are compared elsewhere
    # the deployment refs; ostree leaves emptied ref directories behind, which are no refs
    refs = root / "ostree/repo/refs/heads"
    for p in sorted(refs.glob("ostree/**/*")):
        if p.is_file():
            out[str(p.relative_to(root))] = "ref " + p.read_text().strip()
    return out


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its type, mode, symlink target or content digest,
    except the repo's tmp/ and the lock files (taken and dropped by every command)."""
    out: dict[str, str] = {}
    skip = {root / "ostree/repo/tmp", root / "ostree/lock", root / "ostree/repo/.lock"}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if d / n not in skip)
        for name in dirnames + sorted(filenames):
            p = d / name
            if p in skip:
                continue
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"dir {st.st_mode & 0o7777:o}"
                if os.path.islink(p):
                    continue
            elif stat.S_ISREG(st.st_mode):
                out[rel] = (
                    f"file {st.st_mode & 0o7777:o} " + hashlib.sha256(p.read_bytes()).hexdigest()
                )
            else:
                out[rel] = f"other {st.st_mode:o}"
    return out


def assert_dicts_equal(a: dict, b: dict, context: str = "") -> None:
    if a == b:
        return
    lines = [context]
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k}:\n  ostree:  {a.get(k)!r}\n  sysroot: {b.get(k)!r}")
    raise AssertionError("\n".join(lines))
