"""Staged deployments: written now, made the default at shutdown.

`admin deploy --stage` (booted systems only) checks the new deployment out, with its
/etc a plain copy of usr/etc, and records it in /run/ostree/staged-deployment; /boot
is not touched. At shutdown sysroot-finalize-staged.service (units/) runs `admin
finalize-staged`, which does the 3-way /etc merge from the booted deployment's /etc
*as it is then*, so configuration edited after staging is carried over, and writes
the boot configuration with the new deployment first.

The record is libostree's, byte for byte, and so is the legacy lock file beside it:
either tool finalizes what the other staged (stagedrecord.py reads and writes both;
state.py lists the staged deployment from it). The operations here take a
transaction.Transaction (the lock held, the repository open); admin.Sysroot opens it.

Crash safety. Staging: the deployment directory is complete before the record is
written (atomically); before that point a failure removes what was added, after it
the stage is done. Finalizing: like libostree, the record is unlinked *before*
anything else, so an interruption anywhere in finalize loses the staged update (the
old default keeps booting; the next cleanup removes the orphaned directory) but can
never boot a half-merged /etc. The boot configuration write itself is the usual
atomic swap (writer.py): the old default or the complete new one boots.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from typing import TypedDict

from sysroot.boot.kargs import KernelArgs
from sysroot.deploy import deploy as dep
from sysroot.deploy.cleanup import cleanup
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.stagedrecord import (
    DeploymentRef,
    StagedRecord,
    is_booted,
    set_legacy_lock,
    staged_path,
    write_record,
)
from sysroot.deploy.state import SysrootState
from sysroot.deploy.transaction import Change, Transaction
from sysroot.errors import SysrootError, UsageError
from sysroot.util import fsutil, journal
from sysroot.util.run import run

FAILURE_STAMP = os.path.join("ostree", "finalize-failure.stamp")  # under /boot
FINALIZE_UNIT = "sysroot-finalize-staged.service"


# ---------------------------------------------------------------------- stage
def _start_finalize_unit() -> None:
    """As libostree: make sure the unit whose stop finalizes is active, before
    anything is staged. Only where systemd is the running init."""
    if not os.path.isdir("/run/systemd/system"):
        return
    run(["systemctl", "start", "--quiet", FINALIZE_UNIT])


def check_stage_options(options: dep.DeployOptions) -> None:
    """What --stage refuses, before the sysroot is opened."""
    if options.retain_pending or options.retain_rollback:
        raise UsageError("--stage cannot currently be combined with --retain arguments")
    if options.not_as_default:
        raise UsageError("--stage cannot currently be combined with --not-as-default")


def stage(tx: Transaction, revision: str, options: dep.DeployOptions) -> Change:
    """`admin deploy --stage` (options checked by check_stage_options)."""
    repo = tx.repo
    state = tx.load()
    if state.booted is None:
        raise SysrootError("Cannot stage deployment: Not currently booted into an OSTree system")
    osname, csum, merge, origin = dep.deploy_inputs(state, repo, revision, options)
    if merge is not None and merge.staged:
        merge = None  # never merge from a configuration that was itself not merged
    kargs = None
    if options.kargs.given:  # else: the merge deployment's, at finalize
        kargs = options.kargs.apply(merge.kargs if merge is not None else "")
    _start_finalize_unit()
    tx.begin(state, osname)
    try:
        # no /etc merge now (merge=None): that is finalize's, from /etc as it is then
        new = dep.create_deployment(
            state,
            repo,
            csum,
            osname,
            origin,
            None,
            kargs or "",
            fsync=repo.fsync_enabled,
            notes=[],
            finish=False,
        )
        # what finalize will put in its entry, refused now rather than at shutdown
        dep.entry_inputs(state, repo, [new])
        record = StagedRecord(
            DeploymentRef.of(new),
            DeploymentRef.of(merge) if merge else None,
            tuple(KernelArgs.parse(kargs).words) if kargs is not None else None,
            locked=options.lock_finalization,
        )
        write_record(record)  # the commit point
    except BaseException:
        tx.rollback()
        raise
    previous = state.staged
    if previous is not None and previous.identity != new.identity:
        dep.remove_deployment_dir(state, previous)
    set_legacy_lock(options.lock_finalization)
    os.utime(tx.layout.deploy_base)
    journal.send(
        f"Staged deployment {new.name}",
        message_id=journal.STAGE_ID,
        stderr=False,  # ostree prints nothing either
        SYSROOT_DEPLOYMENT=new.name,
        SYSROOT_STATEROOT=new.osname,
    )
    # as libostree: refs for the deployments (the staged one's protects its commit)
    result = cleanup(tx.load(), repo, prune=False)
    return Change("", 0, result, replace(new, staged=True))


# ---------------------------------------------------------------------- finalize
def _write_failure(layout: SysrootLayout, message: str) -> None:
    path = os.path.join(layout.boot, FAILURE_STAMP)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fsutil.atomic_write(path, message.encode(), mode=0o644)
    except OSError as e:
        journal.send(f"Failed to write {path}: {e.strerror or e}", priority=journal.ERR)


def finalize(tx: Transaction) -> Change | None:
    """`admin finalize-staged`, in a booted system (is_booted(): else the caller does
    nothing, silently, as ostree). None when there was nothing to do (nothing staged,
    locked)."""
    state = tx.load()
    try:
        change = _finalize(tx, state)
    except (SysrootError, OSError) as e:
        message = (
            str(e)
            if isinstance(e, SysrootError)
            else f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        )
        _write_failure(state.layout, message)
        target = state.staged
        journal.send(
            f"Failed to finalize staged deployment: {message}",
            priority=journal.ERR,
            message_id=journal.FINALIZE_ID,
            SYSROOT_DEPLOYMENT=target.name if target else None,
            SYSROOT_STATEROOT=target.osname if target else None,
            SYSROOT_RESULT="failure",
        )
        raise
    stamp = os.path.join(state.layout.boot, FAILURE_STAMP)
    if os.path.lexists(stamp):  # an earlier attempt failed; this one did not
        os.unlink(stamp)
    return change


class _JournalFields(TypedDict):
    """The journal fields naming the deployment finalize-staged works on."""

    SYSROOT_DEPLOYMENT: str
    SYSROOT_STATEROOT: str


def _finalize(tx: Transaction, state: SysrootState) -> Change | None:
    if state.staged_error is not None:
        raise SysrootError(state.staged_error)  # stamped as any failure (finalize())
    staged = state.staged
    if staged is None:
        journal.send("No deployment staged for finalization")
        return None
    if staged.finalization_locked:
        journal.send("Not finalizing; deployment is locked for finalization")
        return None
    fields: _JournalFields = {
        "SYSROOT_DEPLOYMENT": staged.name,
        "SYSROOT_STATEROOT": staged.osname,
    }
    journal.send("Finalizing staged deployment", message_id=journal.FINALIZE_ID, **fields)
    record = state.staged_record
    assert record is not None  # read_staged() sets it with the staged deployment
    base = state.without_staged()
    merge = None
    if record.merge is not None:
        merge = next((d for d in base.deployments if d.identity == record.merge.identity), None)
        if merge is None:
            raise SysrootError(
                f"Failed to find merge deployment {record.merge.csum}."
                f"{record.merge.serial} for staged"
            )
    root = state.deployment_path(staged)
    if not os.path.isdir(root):
        raise SysrootError(f"Unable to find expected deployment root: {root}")
    # From here on an interruption loses the staged update instead of booting it half
    # done (see the module docstring).
    os.unlink(staged_path())
    notes: list[str] = []
    if merge is not None:
        dep.merge_config(state, merge, root, notes)
    dep.clear_update_stamps(state.layout, staged.osname, root)
    kargs = (
        " ".join(record.kargs)
        if record.kargs is not None
        else (merge.kargs if merge is not None else "")
    )
    new = replace(staged, staged=False, finalization_locked=False, kargs=kargs, index=0)
    deployments = dep.simple_write_list(
        base,
        new,
        merge,
        retain=False,
        retain_pending=False,
        retain_rollback=False,
        make_default=True,
    )
    change = tx.apply(base, deployments, prune=False)
    change.deployment = new
    change.etc_summary = "\n".join(notes) or None
    journal.send(
        "Finalized staged deployment",
        message_id=journal.FINALIZE_ID,
        SYSROOT_RESULT="success",
        **fields,
    )
    return change


# ---------------------------------------------------------------------- locking
def change_lock(tx: Transaction, unlock: bool) -> str:
    """`admin lock-finalization [--unlock]`; returns the message to print."""
    state = tx.load()
    if state.staged_error is not None:
        raise SysrootError(state.staged_error)
    if state.staged is None:
        raise SysrootError("No staged deployment")
    locked = state.staged.finalization_locked
    if unlock and not locked:
        return "Staged deployment is already prepared for finalization"
    if not unlock and locked:
        return "Staged deployment is already finalization locked"
    assert state.staged_record is not None  # read_staged() sets it with state.staged
    write_record(replace(state.staged_record, locked=not unlock))
    set_legacy_lock(not unlock)
    return (
        "Staged deployment is now queued to apply on shutdown"
        if unlock
        else "Staged deployment is now finalization locked"
    )


def hold(layout: SysrootLayout) -> None:
    """`admin finalize-staged --hold`: keep /boot open (so busy, so still mounted when
    the finalize unit stops) until SIGTERM. No lock: finalize must be able to run."""
    if not is_booted():
        return
    SysrootState.load(layout.root)
    fd = os.open(layout.boot, os.O_RDONLY | os.O_DIRECTORY)
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            signal.pause()
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(fd)
