"""The `admin` operations as a library: each takes the sysroot lock, loads the state,
changes it through the boot writer, and cleans up. The CLI only parses options.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace

from sysroot.boot.backends import BootScheme, backend_for
from sysroot.boot.words import check_name
from sysroot.deploy import deploy as dep
from sysroot.deploy.cleanup import CleanupResult, cleanup
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.sdwriter import SdBootWriter
from sysroot.deploy.state import (
    Deployment,
    SysrootLock,
    SysrootState,
    commit_marker,
)
from sysroot.deploy.writer import BootWriter
from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo, parse_refspec
from sysroot.util import fsutil
from sysroot.util.mounts import make_writable_privately

# The writer each on-disk scheme needs (boot/ names the scheme; writers live here).
_WRITERS: dict[BootScheme, type[BootWriter]] = {
    BootScheme.LOADER_SYMLINK: BootWriter,
    BootScheme.ENTRIES_DIR: SdBootWriter,
}


class _Undo:
    """What a write may add before its commit point (the boot/loader or ostree/boot.N
    swap, or creating the new default entry): new names in the directories it writes
    to. After a failure (disk full, a read-only /boot, a bad tree) rollback() removes
    them: the old configuration was never left, and the sysroot is again as it was."""

    def __init__(self, state: SysrootState, osname: str | None = None):
        layout = state.layout
        self.state = state
        dirs = [layout.boot, os.path.join(layout.boot, "ostree"), layout.ostree]
        if osname is not None:
            dirs += [layout.stateroot(osname), layout.deploy_parent(osname),
                     layout.var(osname)]
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


_ROOT_DIRS = (("dev", 0o755), ("home", 0o755), ("proc", 0o755), ("run", 0o755),
              ("sys", 0o755), ("root", 0o700), ("tmp", 0o1777))


@dataclass
class Change:
    """What a write did, for the messages the CLI prints."""

    summary: str
    count_change: int
    cleanup: CleanupResult | None = None
    deployment: Deployment | None = None
    etc_summary: str | None = None


class Sysroot:
    """A sysroot at a path (default /), with ostree admin's operations."""

    def __init__(self, path: str = "/"):
        self.path = os.path.abspath(path)
        self.layout = SysrootLayout(self.path)

    # ------------------------------------------------------------------ helpers
    def load(self) -> SysrootState:
        return SysrootState.load(self.path)

    def open_repo(self) -> Repo:
        if not os.path.isdir(os.path.join(self.layout.repo, "objects")):
            raise SysrootError(f"{self.path} is not an initialized sysroot (no ostree/repo); "
                               "run 'admin init-fs' first")
        # before any file descriptor is opened: one from the old mount namespace would
        # still see the read-only mount
        make_writable_privately(self.layout.ostree)
        return Repo.open(self.layout.repo)

    def lock(self) -> SysrootLock:
        if not os.path.isdir(self.layout.ostree):
            raise SysrootError(f"{self.path} is not an initialized sysroot (no ostree/); "
                               "run 'admin init-fs' first")
        make_writable_privately(self.layout.ostree)  # [sysroot] readonly=true
        return SysrootLock(self.layout)

    def _writer(self, state: SysrootState, repo: Repo) -> BootWriter:
        backend = backend_for(self.layout, repo)
        return _WRITERS[backend.scheme](state, bootloader=backend, fsync=repo.fsync_enabled,
                   bootprefix=repo.config.get_bool("sysroot", "bootprefix", False))

    def _apply(self, state: SysrootState, repo: Repo, new: list[Deployment], *,
               prune: bool = True, kernels: dict | None = None,
               undo: _Undo | None = None) -> Change:
        """Write new (in boot order), reload, clean up. A write that fails before its
        commit point takes back what it added (undo), so the sysroot is as before.
        A staged deployment stays only as new[0] and is never written (staged.py)."""
        from sysroot.deploy import staged

        new, drop_staged = staged.settle(state, new)
        if drop_staged:
            staged.drop(state)
        # libostree's count: a staged deployment that stays is still counted as current
        count_change = len(new) - len(state.deployments) + (1 if drop_staged else 0)
        written = state.without_staged()
        if drop_staged and [(d.identity, d.kargs) for d in new] == \
                [(d.identity, d.kargs) for d in written.deployments]:
            os.utime(self.layout.deploy_base)  # only the staged one went: no boot change
            return Change("", count_change, cleanup(self.load(), repo, prune=prune))
        undo = undo or _Undo(written)
        try:
            inputs = dep.entry_inputs(written, repo, new, kernels)
            summary = self._writer(written, repo).write(inputs,
                                                        dep.old_versions(written, repo))
        except BaseException:
            undo.rollback()
            raise
        fresh = self.load()
        result = cleanup(fresh, repo, prune=prune)
        return Change(summary, count_change, result)

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
        from sysroot.boot import systemd_boot

        if systemd_boot.is_fat(self.layout.boot):
            # no boot/loader symlink can exist there: the entries directory scheme
            os.makedirs(self.layout.loader_entries_dir, mode=0o755, exist_ok=True)

    def os_init(self, osname: str) -> None:
        # the name goes into paths, entry names and ostree= (ostree 2022.7 takes any)
        check_name(osname, "stateroot name", UsageError)
        if not os.path.isdir(self.layout.deploy_base):
            raise SysrootError(f"{self.path} is not an initialized sysroot; "
                               "run 'admin init-fs' first")
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
            from sysroot.deploy import staged

            return staged.stage(self, revision, options)
        if options.retain_pending and options.retain_rollback:
            options = replace(options, retain=True)
        repo = self.open_repo()
        with self.lock():
            state = self.load()
            osname, csum, merge, origin = self.deploy_inputs(state, repo, revision, options)
            base_kargs = merge.kargs if merge is not None else ""
            kargs = options.kargs.apply(base_kargs) if options.kargs.given else base_kargs
            notes: list[str] = []
            undo = _Undo(state, osname)
            try:
                new = dep.create_deployment(state, repo, csum, osname, origin, merge, kargs,
                                            fsync=repo.fsync_enabled, notes=notes)
            except BaseException:
                undo.rollback()
                raise
            deployments = dep.simple_write_list(
                state, new, merge, retain=options.retain,
                retain_pending=options.retain_pending, retain_rollback=options.retain_rollback,
                make_default=not options.not_as_default)
            change = self._apply(state, repo, deployments, prune=options.prune, undo=undo)
            change.deployment = new
            change.etc_summary = "\n".join(notes) or None
            return change

    def deploy_inputs(self, state: SysrootState, repo, revision: str,
                      options: dep.DeployOptions) -> tuple:
        """(stateroot, commit, merge deployment or None, origin) of a deploy, checked
        before anything is written."""
        osname = check_name(options.osname or state.default_osname(), "stateroot name",
                            UsageError)
        if not os.path.isdir(self.layout.stateroot(osname)):
            raise NotFoundError(f"No stateroot '{osname}' in {self.path}: "
                                f"run 'admin os-init {osname}' first")
        csum = repo.resolve_rev(revision)
        repo.load_commit(csum)  # a missing or corrupt commit fails here, before writing
        merge = None if options.no_merge else state.merge_deployment(osname)
        origin = options.origin or dep.default_origin(revision)
        from sysroot.sign.verify import verify_deployable  # signatures: only when asked

        verify_deployable(repo, origin.get("origin", "refspec"), csum, sysroot=self.path)
        return osname, csum, merge, origin

    # ------------------------------------------------------------------ list edits
    def _resolve_index(self, state: SysrootState, index: str) -> Deployment:
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
            raise UsageError(f"Out of range deployment index {i}, expected < "
                             f"{len(state.deployments)}")
        return state.deployments[i]

    def undeploy(self, index: str) -> tuple[Deployment, Change]:
        repo = self.open_repo()
        with self.lock():
            state = self.load()
            target = self._resolve_index(state, index)
            if state.booted is not None and target.identity == state.booted.identity:
                raise SysrootError(f"Cannot undeploy currently booted deployment {index}")
            new = [d for d in state.deployments if d.identity != target.identity]
            return target, self._apply(state, repo, new)

    def set_default(self, index: str) -> Change:
        repo = self.open_repo()
        with self.lock():
            state = self.load()
            target = self._resolve_index(state, index)
            if target.index == 0:
                return Change("already the default", 0)
            new = [target] + [d for d in state.deployments if d.identity != target.identity]
            return self._apply(state, repo, new)

    def rollback(self) -> tuple[Deployment, Change]:
        """Make the previous deployment the default for the next boot (rpm-ostree's verb)."""
        repo = self.open_repo()
        with self.lock():
            state = self.load()
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
            return target, self._apply(state, repo, new)

    def cleanup(self) -> CleanupResult:
        repo = self.open_repo()
        with self.lock():
            return cleanup(self.load(), repo)

    # ------------------------------------------------------------------ staged
    def finalize_staged(self) -> Change | None:
        """Make the staged deployment the default (at shutdown); see staged.py."""
        from sysroot.deploy import staged

        return staged.finalize(self)

    def lock_finalization(self, unlock: bool = False) -> str:
        from sysroot.deploy import staged

        return staged.change_lock(self, unlock)

    def hold_boot(self) -> None:
        from sysroot.deploy import staged

        staged.hold(self)

    # ------------------------------------------------------------------ origins
    def _rewrite_origin(self, state: SysrootState, d: Deployment, origin: KeyFile) -> None:
        dep.write_origin(self.layout.origin_path(d.osname, d.csum, d.deployserial), origin)
        os.utime(self.layout.deploy_base)

    def pin(self, index: str, pinned: bool) -> Deployment:
        with self.lock():
            state = self.load()
            d = self._resolve_index(state, index)
            if d.staged:
                raise SysrootError("Cannot pin staged deployment")
            origin = d.origin or KeyFile()
            if pinned:
                origin.set("libostree-transient", "pinned", "true")
            else:
                # ostree leaves the (then empty) group in place; so do we
                origin.remove_key("libostree-transient", "pinned")
            self._rewrite_origin(state, d, origin)
            return d

    def set_origin(self, refspec: str, index: str | None = None,
                   extra: dict[str, str] | None = None) -> Deployment:
        parse_refspec(refspec)
        with self.lock():
            state = self.load()
            d = self._origin_target(state, index)
            origin = d.origin or KeyFile()
            origin.set("origin", "refspec", refspec)
            for k, v in (extra or {}).items():
                group, _, key = k.rpartition(".")
                origin.set(group or "origin", key, v)
            self._rewrite_origin(state, d, origin)
            return d

    def set_origin_remote(self, remote: str, url: str, branch: str | None = None,
                          index: str | None = None,
                          options: dict[str, str] | None = None) -> Deployment:
        """ostree's `set-origin REMOTE URL [BRANCH]`: add the remote unless it exists
        (options are its settings), then track REMOTE:BRANCH (default: the branch the
        deployment tracks now) with a fresh origin, as ostree writes one."""
        from sysroot.store.remotes import add_remote

        repo = self.open_repo()
        with self.lock():
            state = self.load()
            if index is None and state.booted is None:  # ostree: the booted one, or --index
                raise SysrootError("Not currently booted into an OSTree system")
            d = self._origin_target(state, index)
            add_remote(repo, remote, url, options=options or {}, if_not_exists=True)
            old = d.origin.get("origin", "refspec") if d.origin is not None else None
            if not old:
                raise SysrootError("No origin/refspec in current deployment origin; cannot "
                                   "change via ostree")
            old_remote, old_ref = parse_refspec(old)
            if old_remote != remote or (branch is not None and branch != old_ref):
                self._rewrite_origin(state, d, dep.default_origin(
                    f"{remote}:{branch or old_ref}"))
            return d

    def _origin_target(self, state: SysrootState, index: str | None) -> Deployment:
        if index is not None:
            return self._resolve_index(state, index)
        d = state.booted or (state.deployments[0] if state.deployments else None)
        if d is None:
            raise SysrootError("No deployments")
        return d

    def kargs_edit_in_place(self, append_if_missing: list[str],
                            delete_if_present: list[str]) -> int:
        """Edit every entry of the current boot version in place (no boot swap)."""
        from sysroot.boot.kargs import KernelArgs
        from sysroot.util import fsutil

        def edited(options: str) -> str:
            kargs = KernelArgs.parse(options)
            for w in append_if_missing:
                kargs.append_if_missing(w)
            for w in delete_if_present:
                kargs.delete_if_present(w)
            return str(kargs)

        with self.lock():
            state = self.load()
            if not state.backend.edits_entries_in_place():
                # systemd-boot: entries are never edited in place, a whole round
                new = [replace(d, kargs=edited(d.kargs)) for d in state.deployments]
                self._apply(state, self.open_repo(), new, prune=False)
                return len(new)
            entries = [d.entry for d in state.without_staged().deployments]  # staged: none
            for entry in entries:
                entry.set("options", edited(entry.require("options")))
            # everything rendered (and so checked, words.py) before the first write
            texts = [(entry.filename, entry.to_text()) for entry in entries]
            if entries:
                # the loader's own configuration (grub2's grub.cfg) follows its entries
                texts += state.backend.config_files(self.layout, state.bootversion, entries)
            for path, text in texts:
                fsutil.atomic_write(path, text.encode(), mode=0o644)
            return len(state.deployments)
