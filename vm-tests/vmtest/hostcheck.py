"""Checks of a guest's disk on the host, after qemu stopped: natively, not under TCG.

A whole-repository `sysroot fsck` takes minutes in the TCG guest and seconds here.
The disk's partitions are attached as loop devices by offset (imagefile.py: no
partition device nodes or udev needed) and mounted read-only; this checkout's
sysroot runs on them. The ESP of the systemd-boot layout is vfat, which the host's
kernel may lack: it is copied out with mtools and bind-mounted at the sysroot's
/boot, where the guest mounts it.

A disk cut off by a power cut is not checked in place: its ext4 journal must be
replayed first, a write. That happens on a sparse snapshot, so that the next boot
finds the disk exactly as the cut left it and recovers it itself (journal, fsck.vfat).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sysroot.util.run import run
from vmtest.cache import SOURCE
from vmtest.disk import OS
from vmtest.imagefile import Partition, loop_device, parse_partitions


@dataclass
class HostReport:
    """What the host found on a disk; problems is empty when all is well."""

    problems: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)  # checksum.serial, in boot order
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    def timing(self) -> str:
        return ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())


def stray_deploy_entries(names: list[str], deployments: list[str]) -> list[str]:
    """Entries of ostree/deploy/$os/deploy that are neither a listed deployment
    (checksum.serial) nor its origin file: what a cleanup should have removed."""
    keep = set(deployments) | {d + ".origin" for d in deployments}
    return sorted(n for n in names if n not in keep)


@contextlib.contextmanager
def mounted_ro(source: str, target: str, bind: bool = False) -> Iterator[str]:
    if not os.path.exists(target):
        os.makedirs(target)
    if bind:  # a read-only bind takes two steps
        run(["mount", "--bind", source, target])
        try:
            run(["mount", "-o", "remount,bind,ro", target])
        except BaseException:
            run(["umount", target], check=False)
            raise
    else:
        run(["mount", "-o", "ro", source, target])
    try:
        yield target
    finally:
        run(["umount", target], check=False)


def copy_fat(image: str, part: Partition, dest: str) -> None:
    """Copy the vfat file system at part of image into dest, with mtools."""
    os.makedirs(dest, exist_ok=True)
    fat = f"{image}@@{part.start}"
    names = (
        run(["mdir", "-b", "-i", fat, "::/"], env={"MTOOLS_SKIP_CHECK": "1"})
        .stdout.decode()
        .split()
    )
    if names:
        run(["mcopy", "-s", "-p", "-n", "-i", fat, *names, dest], env={"MTOOLS_SKIP_CHECK": "1"})


@contextlib.contextmanager
def mounted_sysroot(image: str, backend: str, work: str, writable_device: bool) -> Iterator[str]:
    """The sysroot of image mounted read-only at work/root, its /boot at root/boot.
    writable_device: the loop device allows writes (ext4 replays its journal on a
    read-only mount then), for an image that is a snapshot of a cut-off disk."""
    parts = parse_partitions(run(["sfdisk", "--json", image]).stdout.decode())
    root = os.path.join(work, "root")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        dev = stack.enter_context(loop_device(image, parts[-1], not writable_device))
        stack.enter_context(mounted_ro(dev, root))
        boot = os.path.join(root, "boot")
        if backend == "systemd-boot":
            esp = os.path.join(work, "esp")
            copy_fat(image, parts[0], esp)
            stack.enter_context(mounted_ro(esp, boot, bind=True))
        else:
            dev = stack.enter_context(loop_device(image, parts[1], not writable_device))
            stack.enter_context(mounted_ro(dev, boot))
        yield root


@contextlib.contextmanager
def snapshot(image: str, path: str) -> Iterator[str]:
    """A sparse copy of image at path, removed afterwards."""
    try:
        run(["cp", "--sparse=always", image, path])
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# the values of sysroot.bootloader ostree 2022.7 opens a repository with
OSTREE_BOOTLOADERS = ("none", "auto", "grub2", "syslinux", "uboot", "zipl")


def config_for_ostree(text: str) -> str:
    """The repository config with a sysroot.bootloader ostree 2022.7 does not know
    (systemd-boot: it refuses to open the repository) set to none; fsck does not read it."""
    out, section = [], ""
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
        key, eq, value = stripped.partition("=")
        if (
            section == "sysroot"
            and eq
            and key.strip() == "bootloader"
            and value.strip() not in OSTREE_BOOTLOADERS
        ):
            line = "bootloader=none\n"
        out.append(line)
    return "".join(out)


@contextlib.contextmanager
def config_shown_to_ostree(repo: str, work: str) -> Iterator[None]:
    """Over repo/config (read-only), a copy ostree can open, bind-mounted while needed."""
    config = os.path.join(repo, "config")
    with open(config, encoding="utf-8") as f:
        text = f.read()
    fixed = config_for_ostree(text)
    if fixed == text:
        yield
        return
    shim = os.path.join(work, "ostree-config")
    with open(shim, "w", encoding="utf-8") as f:
        f.write(fixed)
    with mounted_ro(shim, config, bind=True):
        yield


def check_sysroot(root: str, report: HostReport, cleaned: bool, work: str) -> None:
    """fsck of the repository (sysroot's and ostree's), the boot invariant, the
    deployments as the boot entries list them, and (cleaned: after `admin cleanup`) no
    leftover deployment directory."""
    from sysroot.deploy.invariant import check_boot_invariant
    from sysroot.deploy.state import SysrootState

    repo = f"{root}/ostree/repo"
    # ours, as the guest would run it, and ostree's own as the oracle
    for name, argv, env in (
        (
            "fsck",
            ["python3", "-m", "sysroot", "fsck", f"--repo={repo}"],
            {"PYTHONPATH": SOURCE, "PYTHONDONTWRITEBYTECODE": "1"},
        ),
        ("ostree fsck", ["ostree", "fsck", f"--repo={repo}"], None),
    ):
        t0 = time.monotonic()
        with (
            config_shown_to_ostree(repo, work)
            if name == "ostree fsck"
            else contextlib.nullcontext()
        ):
            fsck = run(argv, env=env, check=False)
        report.seconds[name] = time.monotonic() - t0
        if fsck.returncode != 0:
            out = (fsck.stdout + fsck.stderr).decode(errors="replace").strip()
            report.problems.append(
                f"{'sysroot' if name == 'fsck' else 'ostree'} fsck "
                f"exited with {fsck.returncode}: " + " | ".join(out.splitlines()[-5:])
            )
    t0 = time.monotonic()
    report.problems += [f"boot invariant: {p}" for p in check_boot_invariant(root)]
    state = SysrootState.load(root)
    report.deployments = [d.name for d in state.deployments]
    if cleaned:
        deploy = os.path.join(root, "ostree/deploy", OS, "deploy")
        stray = stray_deploy_entries(os.listdir(deploy), report.deployments)
        if stray:
            report.problems.append(f"after cleanup, {deploy} still holds {', '.join(stray)}")
    report.seconds["invariant+layout"] = time.monotonic() - t0


def check_disk(
    image: str, backend: str, work: str, *, after_cut: bool, cleaned: bool
) -> HostReport:
    """Check the stopped guest's disk image (after_cut: qemu was killed; checked on a
    snapshot, the image itself untouched). Mounts and loop devices are gone on return,
    also on failure."""
    report = HostReport()
    os.makedirs(work)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        source = image
        if after_cut:
            source = stack.enter_context(snapshot(image, f"{work}.snapshot.img"))
            report.seconds["snapshot"] = time.monotonic() - t0
        t1 = time.monotonic()
        root = stack.enter_context(mounted_sysroot(source, backend, work, after_cut))
        report.seconds["attach"] = time.monotonic() - t1
        check_sysroot(root, report, cleaned, work)
    report.seconds["total"] = time.monotonic() - t0
    return report
