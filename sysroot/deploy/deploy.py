"""Creating a deployment and making it part of the boot configuration.

A deployment is written under a staging name in the stateroot's deploy directory
(checkout as a hardlink farm, /etc prepared and merged, origin written) and renamed to
`$checksum.$serial` only when complete. The boot configuration then switches to the
new list atomically (writer.py); a crash before that leaves only an unreferenced
directory that the next cleanup removes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sysroot.boot.kargs import KernelArgs
from sysroot.boot.kernel import find_kernel
from sysroot.boot.words import check_line, check_name
from sysroot.deploy import debugflags
from sysroot.deploy.debugflags import SysrootDebug
from sysroot.deploy.etcmerge import copy_tree, merge_etc, merge_summary
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.state import DEPLOY_DIR_RE, Deployment, SysrootState
from sysroot.deploy.writer import (
    CommitVersions,
    EntryInputs,
    KernelsById,
    read_os_release_name,
)
from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile
from sysroot.store.checkout import checkout_tree
from sysroot.store.deployspace import check_deploy_space
from sysroot.store.repo import Repo
from sysroot.util import fsutil

STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class KargOptions:
    """The --karg* options of `admin deploy`, applied in ostree's order."""

    replace: tuple[str, ...] = ()
    append: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    proc_cmdline: bool = False
    none: bool = False

    @property
    def given(self) -> bool:
        return bool(self.replace or self.append or self.delete or self.proc_cmdline or self.none)

    def apply(self, base: str) -> str:
        if self.none:
            kargs = KernelArgs([])
        elif self.proc_cmdline:
            with open("/proc/cmdline") as f:
                kargs = KernelArgs.from_proc_cmdline(f.read())
        else:
            kargs = KernelArgs.parse(base)
        for w in self.replace:
            kargs.replace(w)
        for w in self.append:
            kargs.append(w)
        for w in self.delete:
            kargs.delete(w)
        return str(kargs)


@dataclass(frozen=True)
class DeployOptions:
    osname: str | None = None
    origin: KeyFile | None = None
    kargs: KargOptions = field(default_factory=KargOptions)
    no_merge: bool = False
    retain: bool = False
    retain_pending: bool = False
    retain_rollback: bool = False
    not_as_default: bool = False
    prune: bool = True
    fsync: bool = True
    stage: bool = False  # finalize at shutdown (staged.py)
    lock_finalization: bool = False  # staged, and not finalized until unlocked


def commit_version(repo: Repo, csum: str) -> str | None:
    try:
        return repo.load_commit(csum).version
    except SysrootError:
        return None


def allocate_serial(layout: SysrootLayout, osname: str, csum: str) -> int:
    serial = 0
    try:
        names = os.listdir(layout.deploy_parent(osname))
    except FileNotFoundError:
        return 0
    for name in names:
        m = DEPLOY_DIR_RE.match(name)
        if m and m.group(1) == csum:
            serial = max(serial, int(m.group(2)) + 1)
    return serial


def prepare_etc(root: str) -> None:
    """usr/etc holds the defaults. Like ostree 2022.7, refuse a tree with both (even an
    empty /etc counts). A tree with only /etc gets it moved to usr/etc: ostree means to
    do that too, but then fails checking usr/etc out of the commit."""
    etc = os.path.join(root, "etc")
    usr_etc = os.path.join(root, "usr", "etc")
    etc_exists = os.path.lexists(etc)
    if etc_exists and os.path.lexists(usr_etc):
        raise SysrootError("Preparing /etc: Tree contains both /etc and /usr/etc")
    if etc_exists:
        os.makedirs(os.path.dirname(usr_etc), mode=0o755, exist_ok=True)
        os.rename(etc, usr_etc)


def init_var(layout: SysrootLayout, osname: str) -> None:
    """The stateroot's /var, with the directories 2022.7's os-init creates."""
    var = layout.var(osname)
    os.makedirs(var, mode=0o755, exist_ok=True)
    for name, mode in (("tmp", 0o1777), ("lib", 0o755), ("log", 0o755)):
        p = os.path.join(var, name)
        if not os.path.lexists(p):
            os.mkdir(p)
            os.chmod(p, mode)
    for name, target in (("run", "../run"), ("lock", "../run/lock")):
        p = os.path.join(var, name)
        if not os.path.lexists(p):
            os.symlink(target, p)


def mark_var_labeled(layout: SysrootLayout, osname: str) -> bool:
    """libostree relabels a stateroot's /var once, then leaves this stamp; without it,
    ostree would relabel on its next deploy. True when the stamp was created."""
    stamp = os.path.join(layout.var(osname), ".ostree-selabeled")
    if os.path.lexists(stamp):
        return False
    fsutil.atomic_write(stamp, b"", mode=0o644)
    return True


def clear_update_stamps(layout: SysrootLayout, osname: str, root: str) -> None:
    """Remove /etc/.updated (the new deployment's) and /var/.updated (the stateroot's),
    as ostree does when it finishes a deployment: systemd's ConditionNeedsUpdate= units
    (ldconfig, hwdb, the journal catalog) then run on its first boot. Without this the
    stamp carried over by the /etc merge would say that an older /usr was done."""
    for stamp in (
        os.path.join(root, "etc", ".updated"),
        os.path.join(layout.var(osname), ".updated"),
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stamp)


def write_origin(path: str, origin: KeyFile, fsync: bool = True) -> None:
    fsutil.atomic_write(path, origin.to_text().encode(), mode=0o644, fsync=fsync)


def default_origin(refspec: str) -> KeyFile:
    kf = KeyFile()
    kf.set("origin", "refspec", refspec)
    return kf


def create_deployment(
    state: SysrootState,
    repo: Repo,
    csum: str,
    osname: str,
    origin: KeyFile,
    merge: Deployment | None,
    kargs: str,
    fsync: bool = True,
    notes: list[str] | None = None,
    finish: bool = True,
) -> Deployment:
    """Check out, prepare /etc, merge, write the origin; publish under its final name.
    notes collects the messages ostree prints on the way (etc merge, /var relabel).
    finish=False for a staged deployment: the update stamps go when it is finalized."""
    notes = [] if notes is None else notes
    layout = state.layout
    parent = layout.deploy_parent(osname)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    serial = allocate_serial(layout, osname, csum)
    staging = os.path.join(parent, f"{STAGING_PREFIX}{csum}.{serial}-{secrets.token_hex(4)}")
    published = False
    try:
        check_deploy_space(repo, csum, parent)  # the repo's min-free-space-* reserve
        checkout_tree(repo, csum, staging)
        prepare_etc(staging)
        kernel = find_kernel(staging)
        usr_etc = os.path.join(staging, "usr", "etc")
        if os.path.isdir(usr_etc):
            _with_dirs(lambda u, d: copy_tree(u, d, "etc"), usr_etc, staging)
            if merge is not None:
                merge_config(state, merge, staging, notes)
        if finish:
            clear_update_stamps(layout, osname, staging)
        if mark_var_labeled(layout, osname):
            notes.append("Relabeling /var (no stamp file 'var/.ostree-selabeled' found)")
        write_origin(layout.origin_path(osname, csum, serial), origin, fsync)
        if fsync:
            fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fsutil.syncfs(fd)
            finally:
                os.close(fd)
        final = layout.deploy_dir(osname, csum, serial)
        os.rename(staging, final)
        published = True
        if fsync:
            fsutil.fsync_dir(parent)
        if SysrootDebug.MUTABLE_DEPLOYMENTS not in debugflags.from_environment():
            fsutil.set_immutable(final, True)
    finally:
        if not published:
            shutil.rmtree(staging, ignore_errors=True)
    return Deployment(osname, csum, serial, kernel.bootcsum, 0, 0, kargs, None, origin)


def deploy_inputs(
    state: SysrootState, repo: Repo, revision: str, options: DeployOptions
) -> tuple[str, str, Deployment | None, KeyFile]:
    """(stateroot, commit, merge deployment or None, origin) of a deploy, checked
    before anything is written."""
    layout = state.layout
    osname = check_name(options.osname or state.default_osname(), "stateroot name", UsageError)
    if not os.path.isdir(layout.stateroot(osname)):
        raise NotFoundError(
            f"No stateroot '{osname}' in {layout.root}: run 'admin os-init {osname}' first"
        )
    csum = repo.resolve_rev(revision)
    assert csum is not None  # without allow_noent, an unknown revision raises
    repo.load_commit(csum)  # a missing or corrupt commit fails here, before writing
    merge = None if options.no_merge else state.merge_deployment(osname)
    origin = options.origin or default_origin(revision)
    # signatures: checked only when the remote asks for them. A lazy import: sign/ loads
    # the cryptography package, which the other admin commands (status...) need not load
    from sysroot.sign.verify import verify_deployable

    verify_deployable(repo, origin.get("origin", "refspec"), csum, sysroot=layout.root)
    return osname, csum, merge, origin


def remove_deployment_dir(state: SysrootState, d: Deployment) -> None:
    """A deployment's directory and origin, for one no boot entry names (staged)."""
    path = state.deployment_path(d)
    if os.path.isdir(path):
        fsutil.set_immutable(path, False)
        with fsutil.errors_about(path):
            shutil.rmtree(path)
    origin = state.layout.origin_path(d.osname, d.csum, d.deployserial)
    if os.path.lexists(origin):
        os.unlink(origin)


def merge_config(state: SysrootState, merge: Deployment, root: str, notes: list[str]) -> None:
    """The 3-way /etc merge: merge's changes (usr/etc -> etc, as its /etc is now)
    applied to root/etc."""
    old = state.deployment_path(merge)
    if (
        os.path.isdir(os.path.join(old, "usr", "etc"))
        and os.path.isdir(os.path.join(old, "etc"))
        and os.path.isdir(os.path.join(root, "etc"))
    ):
        diff = _with_dirs(
            merge_etc,
            os.path.join(old, "usr", "etc"),
            os.path.join(old, "etc"),
            os.path.join(root, "etc"),
        )
        notes.append(merge_summary(diff))


_R = TypeVar("_R")


def _with_dirs(fn: Callable[..., _R], *paths: str) -> _R:
    """fn called with a directory fd of each path (opened without following a symlink)."""
    fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW) for p in paths]
    try:
        return fn(*fds)
    finally:
        for fd in fds:
            os.close(fd)


def simple_write_list(
    state: SysrootState,
    new: Deployment,
    merge: Deployment | None,
    *,
    retain: bool,
    retain_pending: bool,
    retain_rollback: bool,
    make_default: bool,
) -> list[Deployment]:
    """libostree's retention rules for one new deployment."""
    booted = state.booted
    if booted is None and merge is None and (retain_pending or retain_rollback):
        retain = True
    out: list[Deployment] = []
    added = False
    if make_default:
        out.append(new)
        added = True
    before_booted = before_merge = True
    for d in state.deployments:
        is_booted = booted is not None and d.identity == booted.identity
        is_merge = merge is not None and d.identity == merge.identity
        if is_booted:
            before_booted = False
        if is_merge:
            before_merge = False
        passed_crossover = (not before_booted) if booted is not None else (not before_merge)
        keep = (
            retain
            or d.pinned
            or d.osname != new.osname
            or is_booted
            or is_merge
            or (retain_rollback and passed_crossover)
            or (retain_pending and not passed_crossover)
        )
        if keep and d.identity != new.identity:
            out.append(d)
        if not added and passed_crossover:
            out.append(new)
            added = True
    if not added:
        out.append(new)
    return out


def entry_inputs(
    state: SysrootState,
    repo: Repo,
    deployments: list[Deployment],
    kernels: KernelsById | None = None,
) -> list[EntryInputs]:
    """What each deployment's entry is made of, checked before anything is written:
    the commit's `version` and the os-release name go into the title line."""
    out = []
    for d in deployments:
        path = state.deployment_path(d)
        kernel = (kernels or {}).get(d.identity) or find_kernel(path)
        version = commit_version(repo, d.csum)
        name = read_os_release_name(path)
        if version is not None:
            check_line(version, f"version of commit {d.csum}")
        check_line(name, f"os-release name (PRETTY_NAME or ID) of commit {d.csum}")
        out.append(EntryInputs(d, kernel, version, name))
    return out


def old_versions(state: SysrootState, repo: Repo) -> CommitVersions:
    return {d.identity: commit_version(repo, d.csum) for d in state.deployments}
