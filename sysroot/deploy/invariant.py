"""The boot invariant: what must hold at every instant, even after a crash.

`boot/loader` points at `loader.N`; every entry of `loader.N/entries` parses and is
complete; the kernel, initramfs and device tree it names exist under `boot/`; its
`ostree=` argument resolves, through `ostree/boot.N -> boot.N.S`, to an existing
deployment directory that has its origin. A sysroot where nothing was deployed yet
(no `boot/loader`) satisfies it trivially. Each back end adds its own part
(Backend.check_config): with grub2, `loader.N/grub.cfg` is exactly what
grub2.render_config() makes of that directory's entries.

systemd-boot scheme (boot/loader a real directory): the entry systemd-boot would boot
and every valid non-default entry (systemd_boot.select(), which sorts an entry out of
boot-counting tries last, as systemd-boot does) are complete, name an existing
deployment with its origin, and a kernel directory whose files hash to the entry's
boot checksum.

Used by the crash-safety tests after every interruption, and usable as a self-check.
"""

from __future__ import annotations

import os
import re

from sysroot.boot import backends, systemd_boot
from sysroot.boot.backends import BootScheme, read_bootversion, read_subbootversion
from sysroot.boot.bls import BootEntry
from sysroot.boot.kargs import KernelArgs
from sysroot.boot.kernel import hash_boot_files
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.state import DEPLOY_TARGET_RE, SysrootState, parse_ostree_karg
from sysroot.errors import SysrootError

_REQUIRED_KEYS = ("title", "version", "options", "linux")
_DEPLOY_KARG = re.compile(r"^/ostree/deploy/([^/]+)/deploy/([0-9a-f]{64})\.([0-9]+)$")
_KERNEL_DIR = re.compile(r"^/ostree/[^/]+-([0-9a-f]{64})/[^/]+$")


def check_boot_invariant(sysroot_path: str | os.PathLike[str]) -> list[str]:
    """Problems that would make the next boot fail or the sysroot unreadable; [] if none."""
    layout = SysrootLayout(os.path.abspath(os.fspath(sysroot_path)))
    if not os.path.lexists(layout.loader_link):
        return []
    return _CHECKS[backends.on_disk(layout).scheme](layout)


def _check_loader_symlink(layout: SysrootLayout) -> list[str]:
    try:
        bootversion = read_bootversion(layout)
        subbootversion = read_subbootversion(layout, bootversion)
    except (SysrootError, OSError) as e:
        return [str(e)]
    entries_dir = layout.entries_dir(bootversion)
    if not os.path.isdir(entries_dir):
        return [
            f"{layout.loader_link} -> loader.{bootversion}, but {entries_dir} is not a directory"
        ]
    if not os.path.islink(layout.bootlink_base(bootversion)):
        # Even without entries: the next writer keys subbootversions off this link.
        problems = [f"{layout.bootlink_base(bootversion)} is missing"]
    else:
        problems = []
    names = sorted(
        n for n in os.listdir(entries_dir) if n.startswith("ostree-") and n.endswith(".conf")
    )
    for name in names:
        problems += _check_entry(layout, bootversion, os.path.join(entries_dir, name))
    if not problems:
        # What the tools themselves read must load too (sorting, origins, booted).
        try:
            # the boot configuration: a staged deployment is in none of its entries
            state = SysrootState.load(layout.root).without_staged()
        except (SysrootError, OSError) as e:
            problems.append(f"state does not load: {e}")
        else:
            if (state.bootversion, state.subbootversion) != (bootversion, subbootversion):
                problems.append("state reads a different boot version")
            if len(state.deployments) != len(names):
                problems.append(f"{len(names)} entries but {len(state.deployments)} deployments")
            problems += state.backend.check_config(layout, bootversion, state.boot_entries())
    return problems


def _check_entries_dir(layout: SysrootLayout) -> list[str]:
    edir = layout.loader_entries_dir
    try:
        sel = systemd_boot.select(layout.boot, edir)
    except (SysrootError, OSError) as e:
        return [f"{edir}: {e}"]
    problems = []
    if sel.default is None:
        # no entries (nothing deployed) is fine; entries none of which boots is not
        if any(systemd_boot.EntryName.parse(n) for n in _listdir(edir)):
            problems.append(f"{edir}: no entry has an existing linux file")
        return problems
    for _name, entry in [sel.default] + sel.others:
        problems += _check_direct_entry(layout, entry)
    if not problems:
        try:
            state = SysrootState.load(layout.root).without_staged()  # as above
        except (SysrootError, OSError) as e:
            return [f"state does not load: {e}"]
        if [e.filename for e in state.boot_entries()] != [e.filename for e in sel.entries]:
            problems.append("state reads other entries than the boot loader's choice")
        problems += state.backend.check_config(layout, state.bootversion, state.boot_entries())
    return problems


_CHECKS = {
    BootScheme.LOADER_SYMLINK: _check_loader_symlink,
    BootScheme.ENTRIES_DIR: _check_entries_dir,
}


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _check_direct_entry(layout: SysrootLayout, entry: BootEntry) -> list[str]:
    path = entry.filename
    problems = [f"{path}: no '{key}' line" for key in _REQUIRED_KEYS if entry.get(key) is None]
    if problems:
        return problems
    files = {}
    for key in ("linux", "initrd", "devicetree", "fdtdir"):
        value = entry.get(key)
        if value is None:
            continue
        files[key] = target = os.path.join(layout.boot, value.lstrip("/"))
        exists = os.path.isdir(target) if key == "fdtdir" else os.path.isfile(target)
        if not exists:
            problems.append(f"{path}: {key} {value}: {target} does not exist")
    # the _REQUIRED_KEYS are there: require() returns what get() does
    words = KernelArgs.parse(entry.require("options")).get("ostree")
    if len(words) != 1 or words[0] is None:
        return problems + [f"{path}: expected exactly one ostree= argument"]
    m = _DEPLOY_KARG.match(words[0])
    if not m:
        return problems + [f"{path}: ostree={words[0]} does not name a deployment"]
    deploy_dir = layout.deploy_dir(m.group(1), m.group(2), int(m.group(3)))
    if not os.path.isdir(deploy_dir):
        problems.append(f"{path}: deployment {deploy_dir} does not exist")
    elif not os.path.isfile(deploy_dir + ".origin"):
        problems.append(f"{path}: deployment {deploy_dir} has no origin file")
    k = _KERNEL_DIR.match(entry.require("linux").removeprefix("/boot"))
    if not k:
        return problems + [f"{path}: linux is not in /ostree/$os-$bootcsum/"]
    if not problems:
        got = hash_boot_files(
            files["linux"], files.get("initrd"), files.get("devicetree"), files.get("fdtdir")
        )
        if got != k.group(1):
            problems.append(
                f"{path}: the kernel files hash to {got}, not to the boot checksum {k.group(1)}"
            )
    return problems


def _check_entry(layout: SysrootLayout, bootversion: int, path: str) -> list[str]:
    if os.path.islink(path) or not os.path.isfile(path):
        return [f"{path}: not a regular file"]
    try:
        with open(path, encoding="utf-8") as f:
            entry = BootEntry.parse(f.read(), filename=path)
    except UnicodeDecodeError:
        return [f"{path}: not valid UTF-8"]
    except (SysrootError, OSError) as e:
        return [f"{path}: {e}"]
    problems = [f"{path}: no '{key}' line" for key in _REQUIRED_KEYS if entry.get(key) is None]
    if problems:
        return problems
    for key in ("linux", "initrd", "devicetree"):
        for value in entry.get_all(key):
            # Paths are relative to the boot partition; with bootprefix they start with
            # /boot/, which boot/boot -> . resolves.
            target = os.path.join(layout.boot, value.lstrip("/"))
            if not os.path.isfile(target):
                problems.append(f"{path}: {key} {value}: {target} does not exist")
    try:
        words = KernelArgs.parse(entry.require("options")).get("ostree")
    except SysrootError as e:
        return problems + [f"{path}: {e}"]
    if len(words) != 1 or words[0] is None:
        return problems + [f"{path}: expected exactly one ostree= argument"]
    try:
        bv, osname, bootcsum, _serial = parse_ostree_karg(words[0])
    except SysrootError as e:
        return problems + [f"{path}: {e}"]
    if bv != bootversion:
        problems.append(f"{path}: ostree= names boot.{bv}, but loader.{bootversion} is active")
    kernel_dir = f"/ostree/{layout.kernel_dir_name(osname, bootcsum)}/"
    if not entry.require("linux").removeprefix("/boot").startswith(kernel_dir):
        problems.append(f"{path}: linux is not in {kernel_dir}")
    link = layout.path(words[0].lstrip("/"))
    try:
        target = os.readlink(link)
    except OSError as e:
        return problems + [f"{path}: ostree= link {link}: {e.strerror}"]
    m = DEPLOY_TARGET_RE.match(target)
    if not m:
        return problems + [f"{link}: unexpected target {target!r}"]
    deploy_dir = layout.deploy_dir(m.group(1), m.group(2), int(m.group(3)))
    if not os.path.isdir(os.path.join(os.path.dirname(link), target)):
        problems.append(f"{path}: {link} -> {target}, which does not exist")
    if not os.path.isdir(deploy_dir):
        problems.append(f"{path}: deployment {deploy_dir} does not exist")
    elif not os.path.isfile(deploy_dir + ".origin"):
        problems.append(f"{path}: deployment {deploy_dir} has no origin file")
    return problems
