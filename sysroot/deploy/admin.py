"""The `admin` operations as a library: Sysroot, a thin front. Each operation opens a
transaction (the repository, then the sysroot lock; transaction.py) and calls the
operation proper (operations.py, staged.py), which loads the state and changes it
through the transaction's write, which cleans up after itself. The CLI only parses
options.

Bottom-up, deploy/ reads: layout, stagedrecord, state (a read-only snapshot), the
writers, deploy and cleanup (building blocks taking a state), transaction (Change,
Undo, the write), operations and staged (taking a transaction), admin (this front),
upgrade. Imports go only downward.
"""

from __future__ import annotations

import os

from sysroot.boot import systemd_boot
from sysroot.boot.words import check_name
from sysroot.deploy import deploy as dep
from sysroot.deploy import operations as ops
from sysroot.deploy import staged
from sysroot.deploy.cleanup import CleanupResult, cleanup
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.stagedrecord import is_booted
from sysroot.deploy.state import Deployment, SysrootLock, SysrootState
from sysroot.deploy.transaction import Change, open_repo, take_lock, transaction
from sysroot.errors import SysrootError, UsageError
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo, parse_refspec

_ROOT_DIRS = (
    ("dev", 0o755),
    ("home", 0o755),
    ("proc", 0o755),
    ("run", 0o755),
    ("sys", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
)


class Sysroot:
    """A sysroot at a path (default /), with ostree admin's operations."""

    def __init__(self, path: str = "/"):
        self.path = os.path.abspath(path)
        self.layout = SysrootLayout(self.path)

    # ------------------------------------------------------------------ helpers
    def load(self) -> SysrootState:
        return SysrootState.load(self.path)

    def open_repo(self) -> Repo:
        return open_repo(self.layout)

    def lock(self) -> SysrootLock:
        return take_lock(self.layout)

    # ------------------------------------------------------------------ setup
    def init_fs(self, *, modern: bool = False) -> None:
        os.makedirs(self.path, exist_ok=True)
        os.makedirs(self.layout.boot, mode=0o755, exist_ok=True)
        if not modern:
            for name, mode in _ROOT_DIRS:
                p = os.path.join(self.path, name)
                if not os.path.isdir(p):
                    os.mkdir(p)
                    os.chmod(p, mode)
        os.makedirs(self.layout.deploy_base, mode=0o755, exist_ok=True)
        Repo.create(self.layout.repo, RepoMode.BARE).close()
        if systemd_boot.is_fat(self.layout.boot):
            # no boot/loader symlink can exist there: the entries directory scheme
            os.makedirs(self.layout.loader_entries_dir, mode=0o755, exist_ok=True)

    def os_init(self, osname: str) -> None:
        # the name goes into paths, entry names and ostree= (ostree 2022.7 takes any)
        check_name(osname, "stateroot name", UsageError)
        if not os.path.isdir(self.layout.deploy_base):
            raise SysrootError(
                f"{self.path} is not an initialized sysroot; run 'admin init-fs' first"
            )
        with self.lock():
            stateroot = self.layout.stateroot(osname)
            if os.path.lexists(stateroot):
                raise SysrootError(f"Creating ostree/deploy/{osname}: File exists")
            # as ostree 2022.7: the stateroot and its var; deploy/ comes with the first
            # deployment
            os.mkdir(stateroot, 0o755)
            dep.init_var(self.layout, osname)
            os.utime(self.layout.deploy_base)

    # ------------------------------------------------------------------ deploy
    def deploy(self, revision: str, options: dep.DeployOptions | None = None) -> Change:
        options = options or dep.DeployOptions()
        if options.stage or options.lock_finalization:
            staged.check_stage_options(options)
            with transaction(self.layout, operation="stage") as tx:
                return staged.stage(tx, revision, options)
        with transaction(self.layout, operation="deploy") as tx:
            return ops.deploy(tx, revision, options)

    # ------------------------------------------------------------------ list edits
    def undeploy(self, index: str) -> tuple[Deployment, Change]:
        with transaction(self.layout, operation="undeploy") as tx:
            return ops.undeploy(tx, index)

    def set_default(self, index: str) -> Change:
        with transaction(self.layout, operation="set-default") as tx:
            return ops.set_default(tx, index)

    def rollback(self) -> tuple[Deployment, Change]:
        """Make the previous deployment the default for the next boot (rpm-ostree's verb)."""
        with transaction(self.layout, operation="rollback") as tx:
            return ops.rollback(tx)

    def cleanup(self) -> CleanupResult:
        with transaction(self.layout, operation="cleanup") as tx:
            return cleanup(tx.load(), tx.repo)

    # ------------------------------------------------------------------ staged
    def finalize_staged(self) -> Change | None:
        """Make the staged deployment the default (at shutdown); see staged.py."""
        if not is_booted():
            return None  # as ostree: only meaningful in a booted system, silently
        with transaction(self.layout, operation="finalize-staged") as tx:
            return staged.finalize(tx)

    def lock_finalization(self, unlock: bool = False) -> str:
        with transaction(self.layout, repo=False, operation="lock-finalization") as tx:
            return staged.change_lock(tx, unlock)

    def hold_boot(self) -> None:
        staged.hold(self.layout)

    # ------------------------------------------------------------------ origins
    def pin(self, index: str, pinned: bool) -> Deployment:
        with transaction(self.layout, repo=False, operation="pin") as tx:
            return ops.pin(tx, index, pinned)

    def set_origin(
        self, refspec: str, index: str | None = None, extra: dict[str, str] | None = None
    ) -> Deployment:
        parse_refspec(refspec)
        with transaction(self.layout, repo=False, operation="set-origin") as tx:
            return ops.set_origin(tx, refspec, index, extra)

    def set_origin_remote(
        self,
        remote: str,
        url: str,
        branch: str | None = None,
        index: str | None = None,
        options: dict[str, str] | None = None,
    ) -> Deployment:
        """ostree's `set-origin REMOTE URL [BRANCH]` (operations.set_origin_remote)."""
        with transaction(self.layout, operation="set-origin") as tx:
            return ops.set_origin_remote(tx, remote, url, branch, index, options)

    def set_kargs(self, kargs: dep.KargOptions) -> Change:
        """`admin instutil set-kargs`: the first deployment's arguments, a boot swap."""
        with transaction(self.layout, operation="set-kargs") as tx:
            return ops.set_kargs(tx, kargs)

    def kargs_edit_in_place(
        self, append_if_missing: list[str], delete_if_present: list[str]
    ) -> int:
        """Edit every entry of the current boot version in place (no boot swap)."""
        with transaction(self.layout, repo=False, operation="kargs") as tx:
            return ops.kargs_edit_in_place(tx, append_if_missing, delete_if_present)
