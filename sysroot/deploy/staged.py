"""Staged deployments: written now, made the default at shutdown.

`admin deploy --stage` (booted systems only) checks the new deployment out, with its
/etc a plain copy of usr/etc, and records it in /run/ostree/staged-deployment; /boot
is not touched. At shutdown sysroot-finalize-staged.service (units/) runs `admin
finalize-staged`, which does the 3-way /etc merge from the booted deployment's /etc
*as it is then*, so configuration edited after staging is carried over, and writes
the boot configuration with the new deployment first.

The record is libostree's, byte for byte (a GVariant a{sv}: `target` and
`merge-deployment` as {name, osname, bootcsum}, optional `kargs` (as), `locked` (b)),
and so is the legacy lock file beside it: either tool finalizes what the other staged.

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
import re
import shutil
import signal
from dataclasses import dataclass, field, replace

from sysroot.boot import words
from sysroot.boot.kargs import KernelArgs
from sysroot.deploy import deploy as dep
from sysroot.deploy.state import Deployment, SysrootState, read_origin
from sysroot.errors import FormatError, SysrootError, UsageError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.util import fsutil, journal

BOOTED_FLAG = "/run/ostree-booted"
RUN_DIR = "/run/ostree"
STAGED_NAME = "staged-deployment"
LOCKED_NAME = "staged-deployment-locked"  # the legacy lock: its existence locks
FAILURE_STAMP = os.path.join("ostree", "finalize-failure.stamp")  # under /boot
FINALIZE_UNIT = "sysroot-finalize-staged.service"
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
_DEPLOYMENT_NAME = re.compile(r"([0-9a-f]{64})\.([0-9]{1,9})")


def staged_path() -> str:
    return os.path.join(RUN_DIR, STAGED_NAME)


def locked_path() -> str:
    return os.path.join(RUN_DIR, LOCKED_NAME)


# ---------------------------------------------------------------------- the record
@dataclass(frozen=True)
class DeploymentRef:
    """A deployment as the record names it."""

    osname: str
    csum: str
    serial: int
    bootcsum: str

    @classmethod
    def of(cls, d: Deployment) -> DeploymentRef:
        return cls(d.osname, d.csum, d.deployserial, d.bootcsum)

    @property
    def identity(self) -> tuple[str, str, int]:
        return (self.osname, self.csum, self.serial)

    def to_variant(self) -> Variant:
        return Variant("a{sv}", {"name": Variant("s", f"{self.csum}.{self.serial}"),
                                 "osname": Variant("s", self.osname),
                                 "bootcsum": Variant("s", self.bootcsum)})

    @classmethod
    def from_variant(cls, v: object, key: str) -> DeploymentRef:
        """Every field checked: the record is input from a file anyone with root (or a
        bug) may have written, and its names become paths under /boot and /ostree."""
        if not isinstance(v, Variant) or v.signature != "a{sv}":
            raise FormatError(f"{staged_path()}: '{key}' is not a dictionary")
        values = {}
        for name in ("name", "bootcsum", "osname"):
            item = v.value.get(name)
            if not isinstance(item, Variant) or item.signature != "s":
                raise FormatError(f"{staged_path()}: {key}: Missing key: {name}")
            values[name] = item.value
        m = _DEPLOYMENT_NAME.fullmatch(values["name"])
        if not m:
            raise FormatError(f"{staged_path()}: {key}: invalid deployment name "
                              f"{words.shown(values['name'])}")
        if not _CHECKSUM.fullmatch(values["bootcsum"]):
            raise FormatError(f"{staged_path()}: {key}: invalid boot checksum "
                              f"{words.shown(values['bootcsum'])}")
        try:
            words.check_name(values["osname"], "stateroot name")
        except FormatError as e:
            raise FormatError(f"{staged_path()}: {key}: {e}") from None
        return cls(values["osname"], m.group(1), int(m.group(2)), values["bootcsum"])


@dataclass(frozen=True)
class StagedRecord:
    """/run/ostree/staged-deployment, decoded."""

    target: DeploymentRef
    merge: DeploymentRef | None = None
    kargs: tuple[str, ...] | None = None  # None: the merge deployment's at finalize
    locked: bool = False
    other: dict = field(default_factory=dict)  # keys we do not use, kept on rewrite

    def encode(self) -> bytes:
        # libostree's insertion order: target, locked, merge-deployment, kargs
        d: dict = {"target": self.target.to_variant()}
        if self.locked:
            d["locked"] = Variant("b", True)
        if self.merge is not None:
            d["merge-deployment"] = self.merge.to_variant()
        if self.kargs is not None:
            d["kargs"] = Variant("as", list(self.kargs))
        for k, v in self.other.items():
            d.setdefault(k, v)
        return gvariant.encode("a{sv}", d)

    @classmethod
    def decode(cls, data: bytes) -> StagedRecord | None:
        """None when the record names no target (libostree: nothing staged)."""
        try:
            d = gvariant.decode("a{sv}", data)
        except FormatError as e:
            raise FormatError(f"{staged_path()}: {e}") from None
        if "target" not in d:
            return None
        target = DeploymentRef.from_variant(d["target"], "target")
        merge = (DeploymentRef.from_variant(d["merge-deployment"], "merge-deployment")
                 if "merge-deployment" in d else None)
        kargs = d.get("kargs")
        if kargs is not None and kargs.signature != "as":
            raise FormatError(f"{staged_path()}: 'kargs' is not a string array")
        try:
            for word in kargs.value if kargs is not None else ():
                words.check_word(word, "kernel argument")  # the options line at finalize
        except FormatError as e:
            raise FormatError(f"{staged_path()}: kargs: {e}") from None
        locked = d.get("locked")
        other = {k: v for k, v in d.items()
                 if k not in ("target", "merge-deployment", "kargs", "locked")}
        return cls(target, merge, tuple(kargs.value) if kargs is not None else None,
                   bool(locked.value) if locked is not None and locked.signature == "b"
                   else False, other)


def read_record() -> StagedRecord | None:
    """The record; None when there is none; FormatError for one that cannot be used."""
    try:
        with open(staged_path(), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:  # a directory, unreadable...
        raise FormatError(f"{staged_path()}: {e.strerror or e}") from None
    return StagedRecord.decode(data)


def write_record(record: StagedRecord) -> None:
    os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
    fsutil.atomic_write(staged_path(), record.encode(), mode=0o644)


def _set_legacy_lock(locked: bool) -> None:
    if locked:
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        os.close(os.open(locked_path(), os.O_CREAT | os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC,
                         0o640))
    else:
        try:
            os.unlink(locked_path())
        except FileNotFoundError:
            pass


def load_into(state: SysrootState) -> None:
    """Put the staged deployment, if any, first in state.deployments (booted only).
    A record that cannot be used is not fatal here (it would break every command
    until someone deletes it): state.staged_error says why, status warns with it and
    finalize fails with it (stamped), and the deployments load without it."""
    try:
        record = read_record()
        if record is None:
            return
        t = record.target
        origin = read_origin(state.layout.origin_path(t.osname, t.csum, t.serial))
    except FormatError as e:
        state.staged_error = str(e)
        return
    locked = record.locked or os.path.exists(locked_path())
    staged = Deployment(t.osname, t.csum, t.serial, t.bootcsum, 0, 0,
                        " ".join(record.kargs or ()), None, origin, staged=True,
                        finalization_locked=locked)
    state.deployments = [staged] + [replace(d, index=i + 1)
                                    for i, d in enumerate(state.deployments)]
    state.staged = staged
    state.staged_record = record


def remove_deployment_dir(state: SysrootState, d: Deployment) -> None:
    """A staged deployment's directory and origin (it has no boot entry)."""
    path = state.deployment_path(d)
    if os.path.isdir(path):
        fsutil.set_immutable(path, False)
        with fsutil.errors_about(path):
            shutil.rmtree(path)
    origin = state.layout.origin_path(d.osname, d.csum, d.deployserial)
    if os.path.lexists(origin):
        os.unlink(origin)


def drop(state: SysrootState) -> None:
    """Forget the staged deployment: record first (then nothing refers to the
    directory), the directory, the legacy lock."""
    try:
        os.unlink(staged_path())
    except FileNotFoundError:
        pass
    if state.staged is not None:
        remove_deployment_dir(state, state.staged)
    _set_legacy_lock(False)


def settle(state: SysrootState, new: list[Deployment]) -> tuple[list[Deployment], bool]:
    """libostree's rule for a new deployment list: the staged deployment stays only
    as its first element; it is never written to the boot configuration. Returns the
    list to write and whether the staged deployment is to be dropped."""
    keep = bool(new) and new[0].staged
    return [d for d in new if not d.staged], state.staged is not None and not keep


# ---------------------------------------------------------------------- stage
def _start_finalize_unit() -> None:
    """As libostree: make sure the unit whose stop finalizes is active, before
    anything is staged. Only where systemd is the running init."""
    if not os.path.isdir("/run/systemd/system"):
        return
    from sysroot.util.run import run

    run(["systemctl", "start", "--quiet", FINALIZE_UNIT])


def stage(sr, revision: str, options: dep.DeployOptions):
    """`admin deploy --stage`: sr is an admin.Sysroot. Returns an admin.Change."""
    from sysroot.deploy.admin import Change, _Undo
    from sysroot.deploy.cleanup import cleanup

    if options.retain_pending or options.retain_rollback:
        raise UsageError("--stage cannot currently be combined with --retain arguments")
    if options.not_as_default:
        raise UsageError("--stage cannot currently be combined with --not-as-default")
    repo = sr.open_repo()
    with sr.lock():
        state = sr.load()
        if state.booted is None:
            raise SysrootError("Cannot stage deployment: Not currently booted into an "
                               "OSTree system")
        osname, csum, merge, origin = sr.deploy_inputs(state, repo, revision, options)
        if merge is not None and merge.staged:
            merge = None  # never merge from a configuration that was itself not merged
        kargs = None
        if options.kargs.given:  # else: the merge deployment's, at finalize
            kargs = options.kargs.apply(merge.kargs if merge is not None else "")
        _start_finalize_unit()
        undo = _Undo(state, osname)
        try:
            # no /etc merge now (merge=None): that is finalize's, from /etc as it is then
            new = dep.create_deployment(state, repo, csum, osname, origin, None,
                                        kargs or "", fsync=repo.fsync_enabled, notes=[])
            # what finalize will put in its entry, refused now rather than at shutdown
            dep.entry_inputs(state, repo, [new])
            record = StagedRecord(
                DeploymentRef.of(new), DeploymentRef.of(merge) if merge else None,
                tuple(KernelArgs.parse(kargs).words) if kargs is not None else None,
                locked=options.lock_finalization)
            write_record(record)  # the commit point
        except BaseException:
            undo.rollback()
            raise
        previous = state.staged
        if previous is not None and previous.identity != new.identity:
            remove_deployment_dir(state, previous)
        _set_legacy_lock(options.lock_finalization)
        os.utime(sr.layout.deploy_base)
        journal.send(f"Staged deployment {new.name}", message_id=journal.STAGE_ID,
                     stderr=False,  # ostree prints nothing either
                     SYSROOT_DEPLOYMENT=new.name, SYSROOT_STATEROOT=new.osname)
        # as libostree: refs for the deployments (the staged one's protects its commit)
        result = cleanup(sr.load(), repo, prune=False)
        return Change("", 0, result, replace(new, staged=True))


# ---------------------------------------------------------------------- finalize
def _write_failure(layout, message: str) -> None:
    path = os.path.join(layout.boot, FAILURE_STAMP)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fsutil.atomic_write(path, message.encode(), mode=0o644)
    except OSError as e:
        journal.send(f"Failed to write {path}: {e.strerror or e}", priority=journal.ERR)


def finalize(sr):
    """`admin finalize-staged`. Returns an admin.Change, or None when there was
    nothing to do (not booted, nothing staged, locked)."""
    if not os.path.exists(BOOTED_FLAG):
        return None  # as ostree: only meaningful in a booted system, silently
    repo = sr.open_repo()
    with sr.lock():
        state = sr.load()
        try:
            change = _finalize(sr, state, repo)
        except (SysrootError, OSError) as e:
            message = str(e) if isinstance(e, SysrootError) else \
                f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
            _write_failure(state.layout, message)
            target = state.staged
            journal.send(f"Failed to finalize staged deployment: {message}",
                         priority=journal.ERR, message_id=journal.FINALIZE_ID,
                         SYSROOT_DEPLOYMENT=target.name if target else None,
                         SYSROOT_STATEROOT=target.osname if target else None,
                         SYSROOT_RESULT="failure")
            raise
        stamp = os.path.join(state.layout.boot, FAILURE_STAMP)
        if os.path.lexists(stamp):  # an earlier attempt failed; this one did not
            os.unlink(stamp)
        return change


def _finalize(sr, state: SysrootState, repo):
    if state.staged_error is not None:
        raise SysrootError(state.staged_error)  # stamped as any failure (finalize())
    staged = state.staged
    if staged is None:
        journal.send("No deployment staged for finalization")
        return None
    if staged.finalization_locked:
        journal.send("Not finalizing; deployment is locked for finalization")
        return None
    fields = {"SYSROOT_DEPLOYMENT": staged.name, "SYSROOT_STATEROOT": staged.osname}
    journal.send("Finalizing staged deployment", message_id=journal.FINALIZE_ID, **fields)
    record = state.staged_record
    base = state.without_staged()
    merge = None
    if record.merge is not None:
        merge = next((d for d in base.deployments if d.identity == record.merge.identity),
                     None)
        if merge is None:
            raise SysrootError(f"Failed to find merge deployment {record.merge.csum}."
                               f"{record.merge.serial} for staged")
    root = state.deployment_path(staged)
    if not os.path.isdir(root):
        raise SysrootError(f"Unable to find expected deployment root: {root}")
    # From here on an interruption loses the staged update instead of booting it half
    # done (see the module docstring).
    os.unlink(staged_path())
    notes: list[str] = []
    if merge is not None:
        dep.merge_config(state, merge, root, notes)
    kargs = " ".join(record.kargs) if record.kargs is not None else \
        (merge.kargs if merge is not None else "")
    new = replace(staged, staged=False, finalization_locked=False, kargs=kargs, index=0)
    deployments = dep.simple_write_list(base, new, merge, retain=False, retain_pending=False,
                                        retain_rollback=False, make_default=True)
    change = sr._apply(base, repo, deployments, prune=False)
    change.deployment = new
    change.etc_summary = "\n".join(notes) or None
    journal.send("Finalized staged deployment", message_id=journal.FINALIZE_ID,
                 SYSROOT_RESULT="success", **fields)
    return change


# ---------------------------------------------------------------------- locking
def change_lock(sr, unlock: bool) -> str:
    """`admin lock-finalization [--unlock]`; returns the message to print."""
    with sr.lock():
        state = sr.load()
        if state.staged_error is not None:
            raise SysrootError(state.staged_error)
        if state.staged is None:
            raise SysrootError("No staged deployment")
        locked = state.staged.finalization_locked
        if unlock and not locked:
            return "Staged deployment is already prepared for finalization"
        if not unlock and locked:
            return "Staged deployment is already finalization locked"
        write_record(replace(state.staged_record, locked=not unlock))
        _set_legacy_lock(not unlock)
        return ("Staged deployment is now queued to apply on shutdown" if unlock
                else "Staged deployment is now finalization locked")


def hold(sr) -> None:
    """`admin finalize-staged --hold`: keep /boot open (so busy, so still mounted when
    the finalize unit stops) until SIGTERM. No lock: finalize must be able to run."""
    if not os.path.exists(BOOTED_FLAG):
        return
    sr.load()
    fd = os.open(sr.layout.boot, os.O_RDONLY | os.O_DIRECTORY)
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            signal.pause()
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(fd)
