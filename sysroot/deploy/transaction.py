"""One admin write as one object: the sysroot lock held, the repository open, what the
write may have to take back (Undo) and what it did (Change).

The operations (admin.py's list edits, staged.py's stage and finalize) take a
Transaction; admin.Sysroot opens one for each command. Transaction.apply is the step
every boot configuration change goes through: write the new deployment list with the
writer of the sysroot's boot scheme, reload, clean up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sysroot.boot.backends import BootScheme, CountPlan, backend_for
from sysroot.deploy import deploy as dep
from sysroot.deploy.bootlog import record_boot_change
from sysroot.deploy.cleanup import CleanupResult, cleanup
from sysroot.deploy.counttries import tries_for
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.sdwriter import SdBootWriter
from sysroot.deploy.stagedrecord import set_legacy_lock, staged_path
from sysroot.deploy.state import Deployment, SysrootLock, SysrootState, commit_marker
from sysroot.deploy.writer import BootWriter, KernelsById
from sysroot.errors import SysrootError
from sysroot.store.repo import Repo
from sysroot.util import fsutil
from sysroot.util.mounts import make_writable_privately

# The writer each on-disk scheme needs (boot/ names the scheme; writers live here).
WRITERS: dict[BootScheme, type[BootWriter]] = {
    BootScheme.LOADER_SYMLINK: BootWriter,
    BootScheme.ENTRIES_DIR: SdBootWriter,
}


@dataclass
class Change:
    """What a write did, for the messages the CLI prints."""

    summary: str
    count_change: int
    cleanup: CleanupResult | None = None
    deployment: Deployment | None = None
    etc_summary: str | None = None


class Undo:
    """What a write may add before its commit point (the boot/loader or ostree/boot.N
    swap, or creating the new default entry): new names in the directories it writes
    to. After a failure (disk full, a read-only /boot, a bad tree) rollback() removes
    them: the old configuration was never left, and the sysroot is again as it was."""

    def __init__(self, state: SysrootState, osname: str | None = None):
        layout = state.layout
        self.state = state
        dirs = [layout.boot, os.path.join(layout.boot, "ostree"), layout.ostree]
        if osname is not None:
            dirs += [layout.stateroot(osname), layout.deploy_parent(osname), layout.var(osname)]
        self.before = {d: _names(d) for d in dirs}

    def rollback(self) -> None:
        layout = self.state.layout
        try:
            live = commit_marker(layout)
        except (OSError, SysrootError):
            return
        if live != self.state.marker:
            return  # past the commit point: the new configuration is the live one
        for d, names in self.before.items():
            for name in sorted(_names(d) - names):
                path = os.path.join(d, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        fsutil.set_immutable(path, False)
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass  # best effort: the original error is the one to report


def _names(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


# ---------------------------------------------------------------------- opening
def open_repo(layout: SysrootLayout) -> Repo:
    if not os.path.isdir(os.path.join(layout.repo, "objects")):
        raise SysrootError(
            f"{layout.root} is not an initialized sysroot (no ostree/repo); "
            "run 'admin init-fs' first"
        )
    # before any file descriptor is opened: one from the old mount namespace would
    # still see the read-only mount
    make_writable_privately(layout.ostree)
    return Repo.open(layout.repo)


def take_lock(layout: SysrootLayout) -> SysrootLock:
    if not os.path.isdir(layout.ostree):
        raise SysrootError(
            f"{layout.root} is not an initialized sysroot (no ostree/); run 'admin init-fs' first"
        )
    make_writable_privately(layout.ostree)  # [sysroot] readonly=true
    return SysrootLock(layout)


# ---------------------------------------------------------------------- staged
def settle(state: SysrootState, new: list[Deployment]) -> tuple[list[Deployment], bool]:
    """libostree's rule for a new deployment list: the staged deployment stays only
    as its first element; it is never written to the boot configuration. Returns the
    list to write and whether the staged deployment is to be dropped."""
    keep = bool(new) and new[0].staged
    return [d for d in new if not d.staged], state.staged is not None and not keep


def drop_staged(state: SysrootState) -> None:
    """Forget the staged deployment: record first (then nothing refers to the
    directory), the directory, the legacy lock."""
    try:
        os.unlink(staged_path())
    except FileNotFoundError:
        pass
    if state.staged is not None:
        dep.remove_deployment_dir(state, state.staged)
    set_legacy_lock(False)


def counting_plan(state: SysrootState, new: list[Deployment]) -> CountPlan:
    """Boot counting for a write of new over state (without its staged deployment):
    armed whenever a deployment other than the booted one becomes the default (deploy,
    finalize, rollback, set-default); kept while the default stays; cleared when the
    booted one, known to boot, becomes the default again."""
    current = state.deployments[0] if state.deployments else None
    if new and current is not None and new[0].identity == current.identity:
        return CountPlan.KEEP
    if new and state.booted is not None and new[0].identity == state.booted.identity:
        return CountPlan.CLEAR
    return CountPlan.ARM


# ---------------------------------------------------------------------- the write
class Transaction:
    """Made by transaction() once the lock is held: the layout, the repository (opened
    before the lock, or on first use under it) and the undo record of the write."""

    def __init__(
        self, layout: SysrootLayout, repo: Repo | None = None, *, operation: str = "write"
    ):
        self.layout = layout
        self._repo = repo
        self.undo: Undo | None = None
        self.operation = operation  # the command's name, for the journal (bootlog.py)

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            self._repo = open_repo(self.layout)
        return self._repo

    def load(self) -> SysrootState:
        """A fresh snapshot (every write reloads after itself)."""
        return SysrootState.load(self.layout.root)

    def begin(self, state: SysrootState, osname: str | None = None) -> None:
        """Note what is there before anything is added for osname (see Undo)."""
        self.undo = Undo(state, osname)

    def rollback(self) -> None:
        if self.undo is not None:
            self.undo.rollback()

    def writer(self, state: SysrootState) -> BootWriter:
        repo = self.repo
        backend = backend_for(self.layout, repo)
        return WRITERS[backend.scheme](
            state,
            bootloader=backend,
            fsync=repo.fsync_enabled,
            bootprefix=repo.config.get_bool("sysroot", "bootprefix", False),
        )

    def apply(
        self,
        state: SysrootState,
        new: list[Deployment],
        *,
        prune: bool = True,
        kernels: KernelsById | None = None,
        counting: CountPlan | None = None,
    ) -> Change:
        """Write new (in boot order), reload, clean up. A write that fails before its
        commit point takes back what it added (the undo record begun, else one taken
        now), so the sysroot is as before. A staged deployment stays only as new[0]
        and is never written (staged.py). counting: the boot-counting plan, when the
        caller knows better than counting_plan() (with counting on)."""
        repo = self.repo
        new, drop = settle(state, new)
        if drop:
            drop_staged(state)
        # libostree's count: a staged deployment that stays is still counted as current
        count_change = len(new) - len(state.deployments) + (1 if drop else 0)
        written = state.without_staged()
        if drop and [(d.identity, d.kargs) for d in new] == [
            (d.identity, d.kargs) for d in written.deployments
        ]:
            os.utime(self.layout.deploy_base)  # only the staged one went: no boot change
            return Change("", count_change, cleanup(self.load(), repo, prune=prune))
        undo = self.undo or Undo(written)
        bootloader: str | None = None
        try:
            inputs = dep.entry_inputs(written, repo, new, kernels)
            writer = self.writer(written)
            bootloader = writer.bootloader.kind.value if writer.bootloader else None
            if writer.bootloader is not None:
                # greenboot.conf may say how many (counttries.py); the repo key says whether
                writer.bootloader.tries = tries_for(written, new, writer.bootloader.tries)
            counting_on = writer.bootloader is not None and writer.bootloader.tries > 0
            plan = (counting or counting_plan(written, new)) if counting_on else None
            summary = writer.write(inputs, dep.old_versions(written, repo), plan)
        except BaseException as e:
            undo.rollback()
            if isinstance(e, Exception):
                record_boot_change(
                    self.operation, written.deployments, new, bootloader=bootloader, error=e
                )
            raise
        record_boot_change(self.operation, written.deployments, new, bootloader=bootloader)
        fresh = self.load()
        result = cleanup(fresh, repo, prune=prune)
        return Change(summary, count_change, result)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None


@contextmanager
def transaction(
    layout: SysrootLayout, *, repo: bool = True, operation: str = "write"
) -> Iterator[Transaction]:
    """Open the repository (repo=False: only if an operation asks for it), take the
    lock, and yield the Transaction; the lock goes when the block ends, however.
    operation: the command, as the journal records of its writes name it."""
    tx = Transaction(layout, open_repo(layout) if repo else None, operation=operation)
    try:
        with take_lock(layout):
            yield tx
    finally:
        tx.close()
