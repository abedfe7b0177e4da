"""`sysroot install to-disk` as one call: a commit from a local repository (or pulled
from a remote, which the installed system then upgrades from) onto a disk.

guard -> partition -> mkfs -> mount root (and the ext4 /boot of grub2) -> init-fs,
os-init, the repo's [sysroot] bootloader and readonly, pull-local of the ref, deploy ->
the boot loader's files -> fstab in the deployment's /etc -> unmount, the ESP written
with mtools (for systemd-boot it is /boot: the sysroot's /boot is a directory bind-mounted
there during the deploy) -> sync.

Every mount and temporary directory is released on every exit path (one ExitStack, in
reverse order); a failure after partitioning began wipes the partition table.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sysroot.boot.backends import BootloaderKind
from sysroot.boot.words import check_name
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.deploy import DeployOptions, KargOptions
from sysroot.deploy.state import Deployment
from sysroot.errors import SysrootError, UsageError
from sysroot.install import bootfiles, filesystems
from sysroot.install.attach import mounted
from sysroot.install.disks import Disk, ExistingTableError, guard, has_partition_table
from sysroot.install.partition import LayoutIds, Role, layout_for, partitioned
from sysroot.pull.pull import PullOptions, pull
from sysroot.sign.gpg import import_keys
from sysroot.store.modes import RepoMode
from sysroot.store.pull_local import pull_local
from sysroot.store.remotes import add_remote
from sysroot.store.repo import Repo
from sysroot.util.fsutil import atomic_write

DEFAULT_STATEROOT = "default"

# one debug record as each phase of an install begins ("phase: mkfs"): what the bench
# (bench/install_bench.py) times the phases by, and what --verbose shows
log = logging.getLogger(__name__)


Progress = Callable[[str], None]

_PHASE_WORDS = {
    "partition": "Partitioning",
    "mkfs": "Creating file systems",
    "deploy": "Deploying",
    "sync": "Syncing",
    "esp": "Writing the EFI system partition",
    "done": "Done",
}


def _phase(name: str, progress: Progress | None = None) -> None:
    log.debug("phase: %s", name)
    if progress is not None:
        progress(_PHASE_WORDS[name])


@dataclass(frozen=True)
class InstallIds:
    """Every identity written to the disk; fixed ones make an install reproducible."""

    table: LayoutIds
    root_fs_uuid: str
    boot_fs_uuid: str  # ext4 /boot (grub2)
    esp_volume_id: str  # 8 hex digits; its UUID is shown as XXXX-XXXX

    @classmethod
    def random(cls) -> InstallIds:
        def new() -> str:
            return str(uuid.uuid4())

        return cls(
            LayoutIds(new(), new(), new(), new()), new(), new(), uuid.uuid4().hex[:8].upper()
        )

    @property
    def esp_fs_uuid(self) -> str:
        return f"{self.esp_volume_id[:4]}-{self.esp_volume_id[4:]}"


@dataclass(frozen=True)
class InstallOptions:
    device: str  # a whole disk (an image file is attached by the caller)
    source_repo: str
    ref: str
    bootloader: BootloaderKind = BootloaderKind.SYSTEMD_BOOT
    kargs: tuple[str, ...] = ()
    stateroot: str = DEFAULT_STATEROOT
    wipe: bool = False
    root_size: int | None = None  # bytes; None: the rest of the disk
    ids: InstallIds | None = None  # None: random
    remote: RemoteSource | None = None  # pull from it instead of source_repo
    progress: Progress | None = None  # told as each phase begins (a terminal's lines)


@dataclass(frozen=True)
class RemoteSource:
    """A remote to install from: added to the installed repository as `name`, the
    commit pulled from it (its signatures checked as its options ask), and the
    deployment's origin `name:ref`, so that the installed system upgrades from it."""

    name: str
    url: str
    options: tuple[tuple[str, str], ...] = ()  # as `remote add --set KEY=VALUE`
    gpg_keyrings: tuple[str, ...] = ()  # key files imported for it (`--gpg-import`)


@dataclass(frozen=True)
class Payload:
    """What goes onto the disk, wherever the disk is (a device, or a staged tree)."""

    source_repo: str
    ref: str
    bootloader: BootloaderKind = BootloaderKind.SYSTEMD_BOOT
    kargs: tuple[str, ...] = ()
    stateroot: str = DEFAULT_STATEROOT
    remote: RemoteSource | None = None  # then source_repo is unused


def payload_of(options: InstallOptions) -> Payload:
    return Payload(
        options.source_repo,
        options.ref,
        options.bootloader,
        options.kargs,
        options.stateroot,
        options.remote,
    )


@dataclass(frozen=True)
class InstallResult:
    disk: Disk
    deployment: Deployment
    ids: InstallIds


def check_target(options: InstallOptions) -> Disk:
    """The target disk if it may be written: unused, and without a partition table
    unless wipe was asked for. Nothing is written."""
    disk = guard(options.device)
    if not options.wipe and has_partition_table(options.device, disk.logical_sector_size):
        raise ExistingTableError(
            f"{options.device} has a partition table already",
            hint="pass --wipe to overwrite it",
        )
    return disk


def check_payload(payload: Payload) -> str:
    """The commit payload.ref names; refuses what the install could not finish, before
    anything is written."""
    if payload.bootloader not in (BootloaderKind.SYSTEMD_BOOT, BootloaderKind.GRUB2):
        raise UsageError(f"install: unsupported boot loader {payload.bootloader.value}")
    check_name(payload.stateroot, "stateroot name", UsageError)
    if payload.remote is not None:
        return peek_remote(payload.remote, payload.ref)
    with Repo.open(payload.source_repo) as source:
        return source.resolve_rev(payload.ref)


def _add_remote(repo: Repo, remote: RemoteSource) -> None:
    add_remote(repo, remote.name, remote.url, options=dict(remote.options))
    for keyring in remote.gpg_keyrings:
        with open(keyring, "rb") as f:
            import_keys(repo, remote.name, [f.read()])


def peek_remote(remote: RemoteSource, ref: str) -> str:
    """The commit ref names on the remote, its signatures checked: the commit alone is
    fetched into a throw-away repository, so that a wrong ref, URL or key fails before
    the disk is touched."""
    with tempfile.TemporaryDirectory(prefix="sysroot-install-peek-") as tmp:
        repo = Repo.create(tmp, RepoMode.ARCHIVE)
        with repo:
            _add_remote(repo, remote)
            pull(repo, remote.name, [ref], PullOptions(commit_metadata_only=True))
            return repo.resolve_rev(f"{remote.name}:{ref}")


def install_to_disk(options: InstallOptions) -> InstallResult:
    payload = payload_of(options)
    ids = options.ids or InstallIds.random()
    check_payload(payload)  # before the disk is touched
    disk = check_target(options)
    layout = layout_for(options.bootloader, ids.table, options.root_size)
    progress = options.progress
    _phase("partition", progress)
    with (
        tempfile.TemporaryDirectory(prefix="sysroot-install-") as work,
        partitioned(options.device, layout) as parts,
    ):
        _phase("mkfs", progress)
        filesystems.mkfs_ext4(parts[layout.index(Role.ROOT)], ids.root_fs_uuid, "root")
        boot_dev = parts[layout.index(Role.BOOT)] if layout.has(Role.BOOT) else None
        if boot_dev:
            filesystems.mkfs_ext4(boot_dev, ids.boot_fs_uuid, "boot")
        esp = os.path.join(work, "esp")  # the ESP's content, written in one go at the end
        os.makedirs(esp)
        with contextlib.ExitStack() as mounts:
            root = mounts.enter_context(
                mounted(parts[layout.index(Role.ROOT)], os.path.join(work, "root"))
            )
            boot = os.path.join(root, "boot")
            os.makedirs(boot, exist_ok=True)
            if boot_dev:
                mounts.enter_context(mounted(boot_dev, boot))
            else:
                mounts.enter_context(mounted(esp, boot, bind=True))  # /boot is the ESP
            _phase("deploy", progress)
            deployment = fill_sysroot(root, esp, payload, ids, work)
            _phase("sync", progress)
            os.sync()
        _phase("esp", progress)
        filesystems.make_esp(
            parts[layout.index(Role.ESP)], ids.esp_volume_id, disk.logical_sector_size, esp
        )
        _phase("sync", progress)
        os.sync()
    _phase("done", progress)
    return InstallResult(disk, deployment, ids)


def fill_sysroot(root: str, esp: str, payload: Payload, ids: InstallIds, work: str) -> Deployment:
    """Everything of an install above the file systems, shared by the install to a disk
    and the staged tree of an image: root is the root file system's tree, with /boot
    (root/boot) already the ESP (systemd-boot) or the ext4 /boot (grub2); esp is the
    ESP's content. The sysroot, the deployment, the boot loader's files, fstab."""
    ext4_boot = payload.bootloader is BootloaderKind.GRUB2
    if ext4_boot:
        os.makedirs(os.path.join(root, "boot", "grub"), exist_ok=True)
    else:
        bootfiles.install_systemd_boot(esp)
    deployment = deploy_commit(root, payload, kernel_args(ids, payload.kargs))
    if ext4_boot:
        bootfiles.install_grub(esp, ids.boot_fs_uuid, work)
    write_fstab(root, deployment, ids, ext4_boot=ext4_boot)
    return deployment


def kernel_args(ids: InstallIds, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The root file system by UUID, mounted writable (the sysroot's read-only view
    is made by prepare-root), then the user's."""
    return ("root=UUID=" + ids.root_fs_uuid, "rw", *extra)


def deploy_commit(root: str, options: Payload, kargs: tuple[str, ...]) -> Deployment:
    """A sysroot on the mounted root holding options.ref pulled from the source
    repository, deployed as the default with options.kargs."""
    sysroot = Sysroot(root)
    sysroot.init_fs()
    sysroot.os_init(options.stateroot)
    with Repo.open(sysroot.layout.repo) as repo:
        repo.config.set("sysroot", "bootloader", options.bootloader.value)
        # the booted system sees /sysroot read-only; only sysroot writes there
        repo.config.set("sysroot", "readonly", "true")
        repo.write_config()
        if options.remote is None:
            with Repo.open(options.source_repo) as source:
                pull_local(source, repo, [options.ref])
            refspec = options.ref
        else:
            _add_remote(repo, options.remote)
            pull(repo, options.remote.name, [options.ref])
            refspec = f"{options.remote.name}:{options.ref}"
    deploy_options = DeployOptions(osname=options.stateroot, kargs=KargOptions(replace=kargs))
    change = sysroot.deploy(refspec, deploy_options)
    if change.deployment is None:
        raise SysrootError(f"deploying {options.ref} gave no deployment")
    return change.deployment


def fstab_text(ids: InstallIds, *, ext4_boot: bool) -> str:
    if ext4_boot:
        boot = f"UUID={ids.boot_fs_uuid} /boot ext4 defaults 0 2\n"
    else:
        boot = f"UUID={ids.esp_fs_uuid} /boot vfat umask=0077 0 2\n"
    return "# machine-local: written by sysroot install to-disk\n" + boot


def write_fstab(root: str, deployment: Deployment, ids: InstallIds, *, ext4_boot: bool) -> None:
    """Machine-local configuration: in the deployment's /etc, so that every later
    deployment inherits it through the /etc merge."""
    layout = Sysroot(root).layout
    etc = os.path.join(
        layout.deploy_dir(deployment.osname, deployment.csum, deployment.deployserial), "etc"
    )
    atomic_write(os.path.join(etc, "fstab"), fstab_text(ids, ext4_boot=ext4_boot).encode())
