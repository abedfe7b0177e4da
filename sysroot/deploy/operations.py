"""The admin operations on the deployment list and the origins, each taking a
transaction.Transaction (the lock held; the repository open, or opened on first use).
admin.Sysroot opens the transaction and calls one of these; staged.py has the staged
ones (stage, finalize, lock-finalization).
"""

from __future__ import annotations

import os
from dataclasses import replace

from sysroot.boot.kargs import KernelArgs
from sysroot.deploy import deploy as dep
from sysroot.deploy.bootlog import record_boot_change
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.deploy.transaction import Change, Transaction
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile
from sysroot.store.remotes import add_remote
from sysroot.store.repo import parse_refspec
from sysroot.util import fsutil


# ------------------------------------------------------------------ deploy
def deploy(tx: Transaction, revision: str, options: dep.DeployOptions) -> Change:
    """`admin deploy` (not staged): create the deployment, write the new list."""
    if options.retain_pending and options.retain_rollback:
        options = replace(options, retain=True)
    repo = tx.repo
    state = tx.load()
    osname, csum, merge, origin = dep.deploy_inputs(state, repo, revision, options)
    base_kargs = merge.kargs if merge is not None else ""
    kargs = options.kargs.apply(base_kargs) if options.kargs.given else base_kargs
    notes: list[str] = []
    tx.begin(state, osname)
    try:
        new = dep.create_deployment(
            state, repo, csum, osname, origin, merge, kargs, fsync=repo.fsync_enabled, notes=notes
        )
    except BaseException:
        tx.rollback()
        raise
    deployments = dep.simple_write_list(
        state,
        new,
        merge,
        retain=options.retain,
        retain_pending=options.retain_pending,
        retain_rollback=options.retain_rollback,
        make_default=not options.not_as_default,
    )
    change = tx.apply(state, deployments, prune=options.prune)
    change.deployment = new
    change.etc_summary = "\n".join(notes) or None
    return change


# ------------------------------------------------------------------ list edits
def resolve_index(state: SysrootState, index: str) -> Deployment:
    if index in ("booted", "pending", "rollback"):
        if state.booted is None:
            raise SysrootError(f"Cannot use '{index}': not booted into this sysroot")
        if index == "booted":
            return state.booted
        pending, rollback = state.pending_and_rollback(state.booted.osname)
        d = pending if index == "pending" else rollback
        if d is None:
            raise SysrootError(f"No {index} deployment")
        return d
    try:
        i = int(index)
    except ValueError:
        raise UsageError(f"Invalid deployment index '{index}'") from None
    if i < 0 or i >= len(state.deployments):
        raise UsageError(f"Out of range deployment index {i}, expected < {len(state.deployments)}")
    return state.deployments[i]


def undeploy(tx: Transaction, index: str) -> tuple[Deployment, Change]:
    state = tx.load()
    target = resolve_index(state, index)
    if state.booted is not None and target.identity == state.booted.identity:
        raise SysrootError(f"Cannot undeploy currently booted deployment {index}")
    new = [d for d in state.deployments if d.identity != target.identity]
    return target, tx.apply(state, new)


def set_default(tx: Transaction, index: str) -> Change:
    state = tx.load()
    target = resolve_index(state, index)
    if target.index == 0:
        return Change("already the default", 0)
    new = [target] + [d for d in state.deployments if d.identity != target.identity]
    return tx.apply(state, new)


def rollback(tx: Transaction) -> tuple[Deployment, Change]:
    """Make the previous deployment the default for the next boot (rpm-ostree's verb)."""
    state = tx.load()
    if len(state.deployments) < 2:
        raise SysrootError("No rollback deployment available")
    first = state.deployments[0]
    if state.booted is not None and first.identity != state.booted.identity:
        # A pending deployment is queued: roll back to the booted one.
        target = state.booted
    else:
        same_os = [d for d in state.deployments[1:] if d.osname == first.osname]
        target = same_os[0] if same_os else state.deployments[1]
    new = [target] + [d for d in state.deployments if d.identity != target.identity]
    return target, tx.apply(state, new)


# ------------------------------------------------------------------ origins
def _rewrite_origin(layout: SysrootLayout, d: Deployment, origin: KeyFile) -> None:
    dep.write_origin(layout.origin_path(d.osname, d.csum, d.deployserial), origin)
    os.utime(layout.deploy_base)


def origin_target(state: SysrootState, index: str | None) -> Deployment:
    if index is not None:
        return resolve_index(state, index)
    d = state.booted or (state.deployments[0] if state.deployments else None)
    if d is None:
        raise SysrootError("No deployments")
    return d


def pin(tx: Transaction, index: str, pinned: bool) -> Deployment:
    state = tx.load()
    d = resolve_index(state, index)
    if d.staged:
        raise SysrootError("Cannot pin staged deployment")
    origin = d.origin or KeyFile()
    if pinned:
        origin.set("libostree-transient", "pinned", "true")
    else:
        # ostree leaves the (then empty) group in place; so do we
        origin.remove_key("libostree-transient", "pinned")
    _rewrite_origin(tx.layout, d, origin)
    return d


def set_origin(
    tx: Transaction, refspec: str, index: str | None = None, extra: dict[str, str] | None = None
) -> Deployment:
    """`admin set-origin REFSPEC` (refspec checked by the caller, before the lock)."""
    state = tx.load()
    d = origin_target(state, index)
    origin = d.origin or KeyFile()
    origin.set("origin", "refspec", refspec)
    for k, v in (extra or {}).items():
        group, _, key = k.rpartition(".")
        origin.set(group or "origin", key, v)
    _rewrite_origin(tx.layout, d, origin)
    return d


def set_origin_remote(
    tx: Transaction,
    remote: str,
    url: str,
    branch: str | None = None,
    index: str | None = None,
    options: dict[str, str] | None = None,
) -> Deployment:
    """ostree's `set-origin REMOTE URL [BRANCH]`: add the remote unless it exists
    (options are its settings), then track REMOTE:BRANCH (default: the branch the
    deployment tracks now) with a fresh origin, as ostree writes one."""
    state = tx.load()
    if index is None and state.booted is None:  # ostree: the booted one, or --index
        raise SysrootError("Not currently booted into an OSTree system")
    d = origin_target(state, index)
    add_remote(tx.repo, remote, url, options=options or {}, if_not_exists=True)
    old = d.origin.get("origin", "refspec") if d.origin is not None else None
    if not old:
        raise SysrootError(
            "No origin/refspec in current deployment origin; cannot change via ostree"
        )
    old_remote, old_ref = parse_refspec(old)
    if old_remote != remote or (branch is not None and branch != old_ref):
        _rewrite_origin(tx.layout, d, dep.default_origin(f"{remote}:{branch or old_ref}"))
    return d


# ------------------------------------------------------------------ kernel arguments
def kargs_edit_in_place(
    tx: Transaction, append_if_missing: list[str], delete_if_present: list[str]
) -> int:
    """Edit every entry of the current boot version in place (no boot swap)."""

    def edited(options: str) -> str:
        kargs = KernelArgs.parse(options)
        for w in append_if_missing:
            kargs.append_if_missing(w)
        for w in delete_if_present:
            kargs.delete_if_present(w)
        return str(kargs)

    state = tx.load()
    if not state.backend.edits_entries_in_place():
        # systemd-boot: entries are never edited in place, a whole round (the
        # repository opened now, under the lock)
        new = [replace(d, kargs=edited(d.kargs)) for d in state.deployments]
        tx.apply(state, new, prune=False)
        return len(new)
    entries = state.boot_entries()  # the staged deployment has none
    written = [d for d in state.deployments if not d.staged]
    for entry in entries:
        entry.set("options", edited(entry.require("options")))
    # everything rendered (and so checked, words.py) before the first write
    texts = [(entry.filename, entry.to_text()) for entry in entries]
    if entries:
        # the loader's own configuration (grub2's grub.cfg) follows its entries
        texts += state.backend.config_files(tx.layout, state.bootversion, entries)
    bootloader = state.backend.kind.value
    try:
        for path, text in texts:
            fsutil.atomic_write(path, text.encode(), mode=0o644)
    except Exception as e:
        record_boot_change(tx.operation, written, written, bootloader=bootloader, error=e)
        raise
    record_boot_change(tx.operation, written, written, bootloader=bootloader)
    return len(state.deployments)


def set_kargs(tx: Transaction, kargs: dep.KargOptions) -> Change:
    """ostree's `admin instutil set-kargs`: the first deployment (the default, booted or
    not) gets new arguments through a whole boot round, as libostree's
    deployment_set_kargs; kargs.none unless --merge, whose base is its current ones."""
    state = tx.load()
    if not state.deployments:
        raise SysrootError("Unable to find a deployment in sysroot")
    first = state.deployments[0]
    if first.staged:
        # libostree asserts on this (it would have to redeploy); a clear refusal instead
        raise SysrootError("The first deployment is staged: deploy it with --karg options instead")
    new = [replace(first, kargs=kargs.apply(first.kargs)), *state.deployments[1:]]
    return tx.apply(state, new)
