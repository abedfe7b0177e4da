"""Garbage collection after the boot configuration changed (libostree's order).

1. the inactive `boot/loader.N` and `ostree/boot.N*` halves;
2. deployment directories no entry references (never the booted one), their origins,
   and staging directories left by interrupted deploys;
3. `boot/ostree/$os-$bootcsum` kernels no deployment uses;
4. the repo refs `ostree/$bootversion/$subbootversion/$index` that keep deployed
   commits alive, regenerated; then (optionally) a prune of unreachable objects.
Each step is safe on its own, so an interrupted cleanup is finished by the next one.

Steps 1 and 3 differ per boot-loader back end and are theirs (boot/backends.py): in the
systemd-boot scheme (boot/loader a real directory on FAT, see boot/systemd_boot.py)
step 1 instead deletes the debris entries of interrupted rounds and leftover `*.tmp`
files (only those sharing no data with a live file), before any deployment or kernel
they name goes; kernels are deleted in place, not renamed away (a renamed directory on
FAT may share its clusters with its old name after a power cut; the writer verifies
existing kernel directories instead).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from sysroot.boot.backends import remove_path
from sysroot.deploy.deploy import STAGING_PREFIX
from sysroot.deploy.state import DEPLOY_DIR_RE, SysrootState
from sysroot.store.prune import PruneOptions
from sysroot.store.prune import prune as prune_repo
from sysroot.store.repo import Repo
from sysroot.util import fsutil


@dataclass
class CleanupResult:
    deleted_deployments: list[str]
    deleted_kernels: list[str]
    pruned_objects: int = 0
    freed_bytes: int = 0


def _remove_deployment_dir(path: str) -> None:
    fsutil.set_immutable(path, False)
    with fsutil.errors_about(path):
        shutil.rmtree(path)


def cleanup(state: SysrootState, repo: Repo, *, prune: bool = True) -> CleanupResult:
    layout = state.layout
    # 1. inactive boot halves (systemd-boot scheme: debris entries)
    state.backend.remove_inactive(
        layout, state.listing, [layout.kernel_dir(d.osname, d.bootcsum) for d in state.deployments]
    )
    # 2. unreferenced deployments
    active = {(d.osname, d.name) for d in state.deployments}
    if state.booted is not None:
        active.add((state.booted.osname, state.booted.name))
    deleted = []
    for osname in state.stateroots():
        parent = layout.deploy_parent(osname)
        try:
            names = sorted(os.listdir(parent))
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            if name.startswith(STAGING_PREFIX):
                _remove_deployment_dir(path) if os.path.isdir(path) else remove_path(path)
                continue
            if fsutil.is_temp_name(name):  # an origin whose atomic write was interrupted
                remove_path(path)
                continue
            base = name[: -len(".origin")] if name.endswith(".origin") else name
            if not DEPLOY_DIR_RE.match(base) or (osname, base) in active:
                continue
            if name.endswith(".origin"):
                if not os.path.isdir(os.path.join(parent, base)) and os.path.lexists(path):
                    os.unlink(path)
                continue
            # Directory first: an origin without its directory is harmless, the reverse
            # would be a deployment that lost its origin.
            _remove_deployment_dir(path)
            if os.path.lexists(path + ".origin"):
                os.unlink(path + ".origin")
            deleted.append(name)
    # 3. kernels no deployment uses
    used = {layout.kernel_dir_name(d.osname, d.bootcsum) for d in state.deployments}
    kernels_dir = os.path.join(layout.boot, "ostree")
    deleted_kernels = []
    try:
        names = sorted(os.listdir(kernels_dir))
    except FileNotFoundError:
        names = []
    for name in names:
        if (
            name in used
            or name == "initramfs-overlays"
            or not os.path.isdir(os.path.join(kernels_dir, name))
        ):
            continue
        state.backend.remove_kernel_dir(kernels_dir, name, repo.fsync_enabled)
        deleted_kernels.append(name)
    # 4. deployment refs, then prune
    regenerate_deployment_refs(state, repo)
    result = CleanupResult(deleted, deleted_kernels)
    if prune:
        pr = prune_repo(repo, PruneOptions(refs_only=True, depth=0))
        result.pruned_objects = pr.pruned
        result.freed_bytes = pr.freed
    return result


def regenerate_deployment_refs(state: SysrootState, repo: Repo) -> None:
    wanted = {
        f"ostree/{state.bootversion}/{state.subbootversion}/{d.index}": d.csum
        for d in state.deployments
    }
    existing = {
        name: csum for name, csum in repo.list_refs("ostree").items() if name.startswith("ostree/")
    }
    # New refs first: interrupted in between, every deployed commit is still protected
    # from a prune.
    for name, csum in wanted.items():
        if existing.get(name) != csum:
            repo.write_ref(name, csum)
    for name in existing:
        if name not in wanted:
            repo.write_ref(name, None)
