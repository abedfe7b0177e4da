"""Writing a deployment list for systemd-boot where /boot is FAT (no symlinks).

The scheme and why it is needed are in sysroot/boot/systemd_boot.py. The write, with
the current default named (Gc, 9999) (Gc = 0 when there is none):

0. debris of interrupted rounds is deleted (it never decides the boot, see select());
1. kernels are installed (below);
2. each non-default entry is written as (Gc, R): all sort below the current default,
   so an interruption here still boots the old default;
3. the new default is written as (Gc+1, 9999): this one file's creation commits;
4. every other `ostree-*.conf` is deleted, lowest first (so with an empty new list the
   old default goes last and boots until then).
The default file is rewritten every round, so a name is never reused for new content.
With boot counting the new default's name carries its counter (`+N`, Backend.arm()),
so it is armed exactly at the commit; and when the current default ran out of tries
(it sorts last, a member boots: systemd_boot.py) the round goes one level down,
non-defaults (Gc-2, R) and the new default (Gc-1, 9999), so that step 2 still writes
only names that sort below what boots.
Every file is `NAME.tmp`, fsync, rename, fsync dir; /boot is synced between phases.

Kernels: FAT has no hard links, and renaming a directory there has a window (after a
power cut) where two names share the same clusters, so libostree's "fill a temporary
directory, rename it into place" is unsafe. `boot/ostree/$os-$bootcsum/` is created
directly and each file written as `NAME.tmp` and renamed; a directory that exists is
not trusted: its files must hash to its boot checksum, else the bad ones are
rewritten (cleanup, too, deletes kernel directories in place).
"""

from __future__ import annotations

import filecmp
import os
import shutil

from sysroot.boot import systemd_boot as sd
from sysroot.boot.backends import CountPlan
from sysroot.boot.kernel import KernelLayout, hash_boot_files
from sysroot.deploy.state import Deployment
from sysroot.deploy.writer import BootWriter, CommitVersions, EntryInputs
from sysroot.errors import SysrootError
from sysroot.util import fsutil


class SdBootWriter(BootWriter):
    """BootWriter for boot/loader as a real directory (sysroot.bootloader=systemd-boot)."""

    def write(
        self,
        entries: list[EntryInputs],
        old_versions: CommitVersions,
        counting: CountPlan | None = None,
    ) -> str:
        deployments, entries = self._prepare(entries)
        if len(entries) > sd.MAX_ENTRIES:
            raise SysrootError(
                f"Too many deployments ({len(entries)}): the systemd-boot "
                f"scheme names at most {sd.MAX_ENTRIES}"
            )
        layout = self.layout
        edir = layout.loader_entries_dir
        if os.path.lexists(layout.loader_link) and not sd.uses_entries_dir(layout.loader_link):
            raise SysrootError(
                f"{layout.loader_link} is not a directory: the systemd-boot "
                "scheme needs boot/loader to be one"
            )
        for directory in (layout.loader_link, edir):
            if not os.path.isdir(directory):
                os.mkdir(directory, 0o755)
                if self.fsync:
                    fsutil.fsync_dir(os.path.dirname(directory))
        current = sd.select(layout.boot, edir)
        # 0. debris first: it may hold names this round writes
        for name in current.garbage:
            sd.remove_leftover(os.path.join(edir, name))
        sd.remove_tmp_under(edir)
        # the round's head: the current default as written, also when it went bad
        head = current.head
        gc, r_top = (head[0].g, head[0].r) if head else (0, sd.DEFAULT_R)
        # non-defaults must sort below the current default; only a hand-made default has
        # R < 9999, then they count down from below it (with none, MAX_ENTRIES leaves room)
        base = sd.DEFAULT_R if r_top == sd.DEFAULT_R else r_top
        if current.fell_back and gc >= 2:
            # the head (Gc, 9999) went bad and sorts last: the default is a member
            # (Gc-1, R), and (Gc, R) names would sort above it. The round goes one
            # level down: non-defaults (Gc-2, R) below every member, the new default
            # (Gc-1, 9999) above them all (select(): a bad head's round ends there).
            gc, base = gc - 2, sd.DEFAULT_R
        if head is not None and base - len(entries) < 0:
            raise SysrootError(
                f"The current default entry {head[0].filename} "
                "leaves no room for the other entries' names"
            )
        # 1. kernels
        for e in entries:
            self._install_kernel(e)
        self._sync()
        multi = len({d.osname for d in deployments}) > 1
        n = len(entries)
        written: list[str] = []
        # 2. the others, below the current default
        for e in entries[1:]:
            d = e.deployment
            name = sd.EntryName(gc, base - d.index, d.osname).filename
            self._write_entry(edir, name, e, n, multi)
            written.append(name)
        self._sync()
        # 3. the commit: the new default (with counting: its counter in the name)
        counter = self._arm(counting, n, committed=False)
        if entries:
            d = entries[0].deployment
            name = sd.EntryName(gc + 1, sd.DEFAULT_R, d.osname).filename
            name = name.removesuffix(".conf") + counter + ".conf"
            self._write_entry(edir, name, entries[0], n, multi)
            written.append(name)
        self._sync()
        self._arm(counting, n, committed=True)
        # 4. everything else of ours
        stale = []
        for name in os.listdir(edir):
            if sd.our_conf(name) and name not in written:
                en = sd.EntryName.parse(name)
                stale.append(((en.g, en.r) if en else (-1, -1), name))
        for _order, name in sorted(stale):
            sd.remove_leftover(os.path.join(edir, name))
        if self.fsync:
            fsutil.fsync_dir(edir)
        self._bump_mtime()
        new_default = written[-1] if entries else "none"
        return f"Bootloader updated; default entry: {new_default}"

    # ------------------------------------------------------------------ steps
    def _ostree_arg(self, d: Deployment, nbv: int) -> str:
        return self.layout.deploy_karg(d.osname, d.csum, d.deployserial)

    def _write_entry(self, edir: str, name: str, e: EntryInputs, n: int, multi: bool) -> None:
        entry = self._make_entry(e, 0, n, multi)
        self._write_file(edir, name, data=entry.to_text().encode(), mode=0o644)

    def _write_file(
        self,
        parent: str,
        name: str,
        *,
        data: bytes | None = None,
        src: str | None = None,
        mode: int = 0o644,
    ) -> None:
        """parent/name replaced by one rename from a `.tmp` name, flushed first."""
        tmp = self._free_tmp(parent, name)
        tmp_path = os.path.join(parent, tmp)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            with fsutil.errors_about(tmp_path), os.fdopen(fd, "wb", closefd=False) as fo:
                if src is not None:
                    with open(src, "rb") as fi:
                        shutil.copyfileobj(fi, fo, 1 << 20)
                else:
                    fo.write(data or b"")
                fo.flush()
                if self.fsync:
                    os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp_path, os.path.join(parent, name))
        if self.fsync:
            fsutil.fsync_dir(parent)

    @staticmethod
    def _free_tmp(parent: str, name: str) -> str:
        """`NAME.tmp`, or `NAME.N.tmp` when a leftover under that name cannot be removed
        safely (it may share clusters with a live file)."""
        for i in range(100):
            tmp = f"{name}.tmp" if i == 0 else f"{name}.{i}.tmp"
            path = os.path.join(parent, tmp)
            if not os.path.lexists(path) or sd.remove_leftover(path):
                return tmp
        raise SysrootError(f"{parent}: no free temporary name for {name}")

    def _install_kernel(self, e: EntryInputs) -> None:
        """Kernel files into boot/ostree/$os-$bootcsum/, each by its own rename; an
        existing directory is verified against the boot checksum and repaired."""
        d = e.deployment
        k = e.kernel
        kdir = self.layout.kernel_dir(d.osname, d.bootcsum)
        src_root = self.state.deployment_path(d)
        files = [(os.path.join(src_root, src), name) for src, name in k.files()]
        if k.dtb_dir:
            top = os.path.join(src_root, k.dtb_dir)
            for dirpath, _dirs, names in os.walk(top):
                rel = os.path.relpath(dirpath, top)
                for n in sorted(names):
                    files.append(
                        (os.path.join(dirpath, n), os.path.normpath(os.path.join("dtb", rel, n)))
                    )
        if os.path.isdir(kdir):
            sd.remove_tmp_under(kdir)
            if installed_ok(kdir, k, d.bootcsum):
                return
        for path in (os.path.dirname(kdir), kdir):
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
                if self.fsync:
                    fsutil.fsync_dir(os.path.dirname(path))
        for src, name in files:
            dst = os.path.join(kdir, name)
            if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
                continue
            parent = os.path.dirname(dst)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            self._write_file(
                parent, os.path.basename(dst), src=src, mode=os.stat(src).st_mode & 0o777
            )


def installed_ok(kdir: str, k: KernelLayout, bootcsum: str) -> bool:
    """Whether kdir holds every file of kernel layout k and they hash to bootcsum."""

    def at(name: str) -> str:
        return os.path.join(kdir, name)

    def opt(name: str | None) -> str | None:
        return at(name) if name else None

    names = [name for _src, name in k.files()]
    if not all(os.path.isfile(at(n)) for n in names):
        return False
    if k.dtb_dir and not os.path.isdir(at("dtb")):
        return False
    return (
        hash_boot_files(
            at(k.kernel_name),
            opt(k.initramfs_name),
            opt(k.devicetree_name),
            at("dtb") if k.dtb_dir else None,
        )
        == bootcsum
    )
