"""Writing a new deployment list to the boot configuration, atomically.

libostree's protocol, step for step: the next boot is decided by one symlink,
`boot/loader -> loader.N`. Everything the new configuration needs (kernels under
`boot/ostree/`, entries under `boot/loader.M/`, deployment links under
`ostree/boot.M.S/`) is written and flushed first; then `boot/loader.tmp -> loader.M`
is renamed over `boot/loader`. An interruption before that rename leaves the old
configuration untouched; after it, the new one is complete.

When only the deployments behind unchanged entries differ (same kernels, kernel
arguments and versions), only the `ostree/boot.N -> boot.N.S` link is swapped, by
renaming `ostree/boot.N.tmp` over it: then that rename is the commit point.

A kernel directory `boot/ostree/$os-$bootcsum` is filled under a temporary name and
renamed into place, so one that exists is complete (cleanup renames it away before
deleting it). Temporary links have fixed names, as in libostree, so cleanup finds
what an interruption left. tests/deploy/test_crash_safety.py checks all of this.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from sysroot.boot.backends import Backend, CountPlan
from sysroot.boot.bls import KEY_ORDER, BootEntry
from sysroot.boot.kargs import KernelArgs
from sysroot.boot.kernel import KernelLayout, find_kernel
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.state import Deployment, SysrootState, options_without_ostree
from sysroot.errors import SysrootError
from sysroot.util import fsutil

# The commit `version` of each deployment, by Deployment.identity: the entries' titles
# show it, so a changed one takes a whole new boot version.
CommitVersions = dict[tuple[str, str, int], str | None]
# Kernel layouts already found, by Deployment.identity
KernelsById = dict[tuple[str, str, int], KernelLayout]


@dataclass(frozen=True)
class EntryInputs:
    """What a deployment's boot entry is made of, besides its position."""

    deployment: Deployment
    kernel: KernelLayout
    version: str | None  # the commit's `version` metadata
    pretty_name: str


def read_os_release_name(deploy_dir: str) -> str:
    for rel in ("usr/lib/os-release", "etc/os-release"):
        path = os.path.join(deploy_dir, rel)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (FileNotFoundError, NotADirectoryError):
            continue
        values = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#"):
                try:
                    parts = shlex.split(value, comments=False)
                except ValueError:
                    parts = [value]
                values[key.strip()] = parts[0] if parts else ""
        for key in ("PRETTY_NAME", "ID"):
            if values.get(key):
                return values[key]
        raise SysrootError(f"{path}: neither PRETTY_NAME nor ID is set")
    raise SysrootError(f"No os-release in {deploy_dir} (usr/lib/os-release or etc/os-release)")


def entry_title(inputs: EntryInputs, index: int, multi_stateroot: bool) -> str:
    title = inputs.pretty_name
    if inputs.version and inputs.version not in title:
        title += f" {inputs.version}"
    where = f"{inputs.deployment.osname}:{index}" if multi_stateroot else f"{index}"
    return f"{title} (ostree:{where})"


def assign_bootserials(deployments: list[Deployment]) -> list[Deployment]:
    """Serial per boot checksum in list order; indexes follow list positions."""
    counts: dict[str, int] = {}
    out = []
    for i, d in enumerate(deployments):
        serial = counts.get(d.bootcsum, 0)
        counts[d.bootcsum] = serial + 1
        out.append(
            Deployment(
                d.osname, d.csum, d.deployserial, d.bootcsum, serial, i, d.kargs, d.entry, d.origin
            )
        )
    return out


def _needs_new_bootversion(
    old: list[Deployment], new: list[EntryInputs], old_versions: CommitVersions
) -> bool:
    if len(old) != len(new):
        return True
    for a, b in zip(old, new, strict=True):
        bd = b.deployment
        if (a.bootcsum, a.osname) != (bd.bootcsum, bd.osname):
            return True
        # ostree= names the boot version itself: compare the arguments without it
        if options_without_ostree(a.kargs) != options_without_ostree(bd.kargs):
            return True
        if old_versions.get(a.identity) != b.version:
            return True
    return False


class BootWriter:
    """Applies one deployment list to the sysroot's boot configuration."""

    def __init__(
        self,
        state: SysrootState,
        *,
        bootloader: Backend | None = None,
        fsync: bool = True,
        bootprefix: bool = False,
    ) -> None:
        self.state = state
        self.layout: SysrootLayout = state.layout
        self.bootloader = bootloader
        self.fsync = fsync
        self.bootprefix = bootprefix

    # ------------------------------------------------------------------ public
    def write(
        self,
        entries: list[EntryInputs],
        old_versions: CommitVersions,
        counting: CountPlan | None = None,
    ) -> str:
        """Make entries (in boot order) the next boot's configuration. Returns a summary.
        counting: what boot counting does with the new default (None: counting off);
        arming or clearing it takes a whole swap, so the grub.cfg it goes with is new."""
        state = self.state
        deployments, entries = self._prepare(entries)
        bv = state.bootversion
        if counting in (None, CountPlan.KEEP) and not _needs_new_bootversion(
            state.deployments, entries, old_versions
        ):
            new_sub = 1 - state.subbootversion
            self._write_bootlinks(bv, new_sub, deployments)
            self._sync()
            fsutil.atomic_symlink(
                f"boot.{bv}.{new_sub}",
                self.layout.bootlink_base(bv),
                fsync=self.fsync,
                tmp_name=f"boot.{bv}.tmp",
            )
            self._bump_mtime()
            # ostree calls a links-only swap atomic: "Transaction complete"
            return f"Transaction complete; bootconfig swap: no; bootversion: boot.{bv}.{new_sub}"
        nbv = 1 - bv
        cur_sub_of_nbv = self._current_sub(nbv)
        new_sub = 1 - cur_sub_of_nbv
        for e in entries:
            self._install_kernel(e)
        loader_dir = self.layout.loader_dir(nbv)
        shutil.rmtree(loader_dir, ignore_errors=True)
        os.makedirs(self.layout.entries_dir(nbv), mode=0o755)
        multi = len({d.osname for d in deployments}) > 1
        n = len(entries)
        written = []
        for e in entries:
            d = e.deployment
            entry = self._make_entry(e, nbv, n, multi)
            name = f"ostree-{n - d.index}-{d.osname}.conf"
            path = os.path.join(self.layout.entries_dir(nbv), name)
            fsutil.atomic_write(path, entry.to_text().encode(), mode=0o644, fsync=False)
            entry.filename = path
            written.append((d, entry))
        if self.bootloader is not None:
            self.bootloader.write_config(self.layout, nbv, written)
        self._write_bootlinks(nbv, new_sub, deployments)
        self._arm(counting, n, committed=False)  # last before the swap: little can fail
        self._sync()
        fsutil.atomic_symlink(
            f"boot.{nbv}.{new_sub}",
            self.layout.bootlink_base(nbv),
            fsync=self.fsync,
            tmp_name=f"boot.{nbv}.tmp",
        )
        if not os.path.lexists(os.path.join(self.layout.boot, "boot")):
            os.symlink(".", os.path.join(self.layout.boot, "boot"))  # creating a name is atomic
        self._sync()
        # The commit point: one rename decides which configuration boots next.
        fsutil.atomic_symlink(
            f"loader.{nbv}", self.layout.loader_link, fsync=self.fsync, tmp_name="loader.tmp"
        )
        self._sync()
        if self.bootloader is not None:
            self.bootloader.post_swap(self.layout, nbv, written)
        self._arm(counting, n, committed=True)
        self._bump_mtime()
        return f"Bootloader updated; bootconfig swap: yes; bootversion: boot.{nbv}.{new_sub}"

    # ------------------------------------------------------------------ steps
    def _prepare(self, entries: list[EntryInputs]) -> tuple[list[Deployment], list[EntryInputs]]:
        """Boot serials assigned; refuses a list without the booted deployment."""
        state = self.state
        deployments = assign_bootserials([e.deployment for e in entries])
        entries = [
            EntryInputs(d, e.kernel, e.version, e.pretty_name)
            for d, e in zip(deployments, entries, strict=True)
        ]
        if state.booted is not None and not any(
            d.identity == state.booted.identity for d in deployments
        ):
            raise SysrootError(
                "Refusing to remove the booted deployment "
                f"{state.booted.name} from the boot configuration"
            )
        return deployments, entries

    def _ostree_arg(self, d: Deployment, nbv: int) -> str:
        return self.layout.ostree_karg(nbv, d.osname, d.bootcsum, d.bootserial)

    def _current_sub(self, bootversion: int) -> int:
        try:
            target = os.readlink(self.layout.bootlink_base(bootversion))
        except FileNotFoundError:
            return 0
        return 1 if target.endswith(".1") else 0

    def _make_entry(self, e: EntryInputs, nbv: int, n: int, multi: bool) -> BootEntry:
        d = e.deployment
        k = e.kernel
        prefix = "/boot/" if self.bootprefix else "/"
        kdir = f"{prefix}ostree/{self.layout.kernel_dir_name(d.osname, d.bootcsum)}"
        # libostree updates the deployment's parsed entry: keys it does not set (added by
        # hand or by other tools) stay. Overlay initrds (extra `initrd` lines) do not.
        values: dict[str, str] = {}
        for key, value in d.entry.items if d.entry is not None else ():
            values.setdefault(key, value)
        values["title"] = entry_title(e, d.index, multi)
        values["version"] = str(n - d.index)
        kargs = KernelArgs.parse(d.kargs)
        ostree_arg = self._ostree_arg(d, nbv)
        if k.initramfs is None:
            kargs.set_in_place(f"init={ostree_arg}/usr/lib/ostree/ostree-prepare-root")
        kargs.set_in_place(f"ostree={ostree_arg}")
        values["options"] = str(kargs)
        if k.devicetree_name:
            values["devicetree"] = f"{kdir}/{k.devicetree_name}"
        elif k.dtb_dir:
            values["fdtdir"] = f"{kdir}/dtb"
        values["linux"] = f"{kdir}/{k.kernel_name}"
        if k.initramfs_name:
            values["initrd"] = f"{kdir}/{k.initramfs_name}"
        # the fixed keys in libostree's order, then the others (fdtdir included)
        entry = BootEntry()
        for key in KEY_ORDER:
            if key in values:
                entry.add(key, values.pop(key))
        for key, value in values.items():
            entry.add(key, value)
        return entry

    def _install_kernel(self, e: EntryInputs) -> None:
        """Copy kernel files to boot/ostree/$os-$bootcsum/, whole directory at once."""
        d = e.deployment
        final = self.layout.kernel_dir(d.osname, d.bootcsum)
        if os.path.isdir(final):
            return
        parent = os.path.dirname(final)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(final)}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp, 0o755)
        src_root = self.state.deployment_path(d)
        for src, name in e.kernel.files():
            _copy_file(os.path.join(src_root, src), os.path.join(tmp, name), self.fsync)
        if e.kernel.dtb_dir:
            shutil.copytree(
                os.path.join(src_root, e.kernel.dtb_dir), os.path.join(tmp, "dtb"), symlinks=True
            )
        if self.fsync:
            fsutil.fsync_dir(tmp)
        os.rename(tmp, final)
        if self.fsync:
            fsutil.fsync_dir(parent)

    def _write_bootlinks(self, bootversion: int, sub: int, deployments: list[Deployment]) -> None:
        base = self.layout.bootlink_dir(bootversion, sub)
        shutil.rmtree(base, ignore_errors=True)
        os.mkdir(base, 0o755)  # even with no deployments: ostree/boot.N must not dangle
        for d in deployments:
            parent = os.path.join(base, d.osname, d.bootcsum)
            os.makedirs(parent, mode=0o755, exist_ok=True)
            link = os.path.join(parent, str(d.bootserial))
            with fsutil.errors_about(link):  # not the (relative) target
                os.symlink(self.layout.bootlink_target(d.osname, d.csum, d.deployserial), link)

    def _sync(self) -> None:
        if not self.fsync:
            return
        for path in (self.layout.boot, self.layout.ostree):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fsutil.syncfs(fd)
            finally:
                os.close(fd)

    def _bump_mtime(self) -> None:
        os.utime(self.layout.deploy_base)

    def _arm(self, counting: CountPlan | None, n_entries: int, *, committed: bool) -> str:
        """The back end's boot counting at one side of the commit point (Backend.arm());
        '' and nothing done with counting off (None)."""
        if counting is None:
            return ""
        if self.bootloader is None:  # the transaction plans counting from its back end
            raise ValueError("boot counting planned for a writer without a back end")
        return self.bootloader.arm(self.layout, counting, n_entries, committed=committed)


def _copy_file(src: str, dst: str, fsync: bool) -> None:
    try:
        os.link(src, dst)  # same file system: share the inode, as libostree does
        return
    except OSError:
        pass
    st = os.stat(src)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fchmod(fo.fileno(), st.st_mode & 0o7777)
        if fsync:
            os.fsync(fo.fileno())


def kernel_for(state: SysrootState, d: Deployment) -> KernelLayout:
    return find_kernel(state.deployment_path(d))
