"""`admin upgrade` and `admin switch`: follow a deployment's origin to a newer commit.

An Upgrader works on one stateroot. Its merge deployment (the booted one when it is of
that stateroot, else the first of it) provides the origin: `refspec` ([REMOTE:]REF),
optional `override-commit` (deploy that commit instead of the ref's head) and
`unconfigured-state` (the OS vendor's "this system is not set up for updates" text,
which refuses upgrades). pull() fetches the ref (a local ref needs no pull), follows an
end-of-life redirect (`ostree.endoflife-rebase` in the new commit names the ref to
move to) and refuses a commit older than the merge deployment's unless allowed;
deploy() writes the new deployment with the merge deployment's /etc and kernel
arguments (or stages it).

As libostree 2022.7 does, a downgrade is refused before the commit's content is
fetched and before the ref moves: the commit object alone is fetched first (a
metadata-only pull that moves no ref), its timestamp checked, and only then is the
ref pulled for real. A commit boot counting recorded as failed in the stateroot
(failedcommits.py) is refused the same way, before its content is fetched, unless
allowed (`--allow-failed`); deploy() checks again for what no pull fetched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sysroot.deploy import failedcommits
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.deploy import DeployOptions
from sysroot.deploy.state import Deployment, SysrootLock
from sysroot.deploy.transaction import Change
from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile
from sysroot.formats.objects import is_checksum
from sysroot.store.remotes import load_remote
from sysroot.store.repo import Repo, parse_refspec, validate_ref_name
from sysroot.store.timestamps import check_timestamps

ENDOFLIFE = "ostree.endoflife"
ENDOFLIFE_REBASE = "ostree.endoflife-rebase"
TRANSIENT_GROUP = "libostree-transient"


class OriginFile(KeyFile):
    """An origin as libostree 2022.7 holds it (a GLib 2.74 key file loaded without
    comments), so the origin written for the new deployment is byte for byte ostree's:
    comments and blank lines are dropped, each group that another follows ends with
    one blank line (GLib's separator, which stays when the next group is removed),
    and a new key goes to the very end of its group."""

    @classmethod
    def of(cls, kf: KeyFile | None) -> OriginFile:
        out = cls.parse(kf.to_text()) if kf is not None else cls()
        assert isinstance(out, OriginFile)  # KeyFile.parse() makes a cls()
        out._head = []
        for i, g in enumerate(out._groups):
            g.lines = [ln for ln in g.lines if ln[0] == "key"]
            if i < len(out._groups) - 1:
                g.lines.append(("raw", "", ""))
        return out

    @classmethod
    def for_refspec(cls, refspec: str) -> OriginFile:
        out = cls()
        out.set("origin", "refspec", refspec)
        return out

    def set(self, group: str, key: str, value: str) -> None:
        if key in self.keys(group):
            super().set(group, key, value)  # replaced where it is
            return
        if self._group(group) is None and self._groups:
            self._groups[-1].lines.append(("raw", "", ""))  # a new group follows it
        super().set(group, key, value)
        # super() put it before trailing blank lines; GLib 2.74 appends
        g = self._group(group)
        assert g is not None  # just set
        line = next(ln for ln in g.lines if ln[0] == "key" and ln[1] == key)
        g.lines.remove(line)
        g.lines.append(line)

    def to_text(self) -> str:
        out = ""
        for g in self._groups:
            if len(out) >= 2 and out[-2] != "\n":
                out += "\n"
            out += f"[{g.name}]\n"
            out += "".join(f"{a}={b}\n" if kind == "key" else "\n" for kind, a, b in g.lines)
        return out

    def remove_transient_state(self) -> None:
        """What must not carry over to a new deployment: pins, hotfix unlocks, an
        override of the commit."""
        self.remove_group(TRANSIENT_GROUP)
        self.remove_key("origin", "override-commit")
        self.remove_key("origin", "unlocked")


def _metadata_string(repo: Repo, checksum: str, key: str) -> str | None:
    v = repo.load_commit(checksum).metadata.get(key)
    return v.value if v is not None and v.signature == "s" else None


@dataclass
class Upgrade:
    """What pull() found."""

    changed: bool
    from_revision: str
    new_revision: str
    refspec: str  # after an end-of-life rebase, the new one
    rebased_from: str | None = None
    endoflife: str | None = None  # the message of the commit the ref pointed to


class Upgrader:
    """Upgrades one stateroot of a sysroot from its merge deployment's origin."""

    def __init__(
        self, sysroot: Sysroot, osname: str | None = None, *, ignore_unconfigured: bool = False
    ):
        self.sysroot = sysroot
        self._osname = osname
        self.ignore_unconfigured = ignore_unconfigured
        self._lock: SysrootLock | None = None
        self._repo: Repo | None = None
        self._failed: dict[str, str] | None = None  # failedcommits.load(), once

    def __enter__(self) -> Upgrader:
        if not os.path.isdir(self.sysroot.path):
            raise NotFoundError(f"opendir({self.sysroot.path}): No such file or directory")
        # Held from reading the merge deployment until the new one is written, as ostree
        # holds it for the whole command: no other admin command may change the
        # deployments in between (a second upgrade would deploy the same update twice).
        self._lock = self.sysroot.lock()
        self._lock.__enter__()
        try:
            self._load(self._osname)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _load(self, osname: str | None) -> None:
        state = self.sysroot.load()
        state.require_initialized()
        if osname is None:
            if state.booted is None:
                raise SysrootError("Not currently booted into an OSTree system and no OS specified")
            osname = state.booted.osname
        elif osname == "":
            raise UsageError("Invalid empty osname")
        self.osname = osname
        merge = state.merge_deployment(self.osname)
        if merge is None:
            raise NotFoundError(f"No previous deployment for OS '{self.osname}'")
        if merge.origin is None:
            raise SysrootError(f"No origin known for deployment {merge.name}")
        self.merge: Deployment = merge
        self.new_revision: str | None = None
        self.set_origin(OriginFile.of(merge.origin))

    # ------------------------------------------------------------------ origin
    def set_origin(self, origin: KeyFile) -> None:
        """Use origin from now on (checked as the merge deployment's was)."""
        origin = origin if isinstance(origin, OriginFile) else OriginFile.of(origin)
        if not self.ignore_unconfigured:
            text = origin.get("origin", "unconfigured-state")
            if text is not None:
                raise SysrootError(f"origin unconfigured-state: {text}")
        refspec = origin.get("origin", "refspec")
        if refspec is None:
            raise SysrootError(
                "No origin/refspec in current deployment origin; cannot upgrade via ostree"
            )
        remote, ref = parse_refspec(refspec)
        override = origin.get("origin", "override-commit")
        if override is not None and not is_checksum(override):
            raise UsageError(
                f"Invalid rev {override}: override-commit must be a full "
                "64-character commit checksum"
            )
        self.origin, self.remote, self.ref, self.override = origin, remote, ref, override

    def dup_origin(self) -> OriginFile:
        return OriginFile.of(self.origin)

    @property
    def refspec(self) -> str:
        return f"{self.remote}:{self.ref}" if self.remote else self.ref

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            self._repo = self.sysroot.open_repo()
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    # ------------------------------------------------------------------ pull
    def _fetch(self, target: str, check_from: str | None, peek: bool, refuse: bool = False) -> str:
        """Pull target (a ref of the remote, or a commit checksum) and return its
        commit. check_from: refuse a commit older than this one before any content is
        fetched or the ref moves. peek: fetch the commit object only and leave the ref
        as it was. refuse: refuse a commit recorded as failed, as early. The first pull
        moves no ref, so no crash leaves one on a commit whose content is missing."""
        # lazy: pull/ loads the HTTP fetcher and sign/ (the cryptography package), which
        # --deploy-only and the other admin commands need not pay for
        from sysroot.pull.pull import PullOptions, pull

        repo = self.repo
        assert self.remote is not None  # pull() fetches only from a remote
        remote = load_remote(repo, self.remote, sysroot=self.sysroot.path)
        dest = None if is_checksum(target) else f"{self.remote}:{target}"
        head = target
        if check_from is not None or peek or refuse:
            res = pull(
                repo, remote, [target], PullOptions(commit_metadata_only=True, update_refs=False)
            )
            head = res.refs.get(dest, target) if dest else target
            if refuse and head != self.merge.csum:  # staying put is no deployment
                self.refuse_failed(head)
            if check_from is not None and head != check_from:
                check_timestamps(repo, check_from, head)
            if peek:
                return head
        res = pull(repo, remote, [target], PullOptions())
        return res.refs.get(dest, target) if dest else target

    def pull(
        self,
        *,
        allow_older: bool = False,
        synthetic: bool = False,
        peek: bool = False,
        allow_failed: bool = True,
    ) -> Upgrade:
        """Fetch what the origin points at. synthetic: no network, use what the repo
        has (--deploy-only). peek: fetch commit objects only and move no ref (--check).
        Raises on a commit older than the merge deployment's unless allow_older.
        allow_failed=False (a pull to deploy): a commit recorded as failed is refused
        before its content is fetched and before the ref moves (deploy() checks
        again, for what no pull fetched)."""
        fetch = self.remote is not None and not synthetic
        # the metadata-only pull first only when there is something to refuse
        refuse = not allow_failed and bool(self._load_failed())
        from_rev = self.merge.csum
        check_from = None if allow_older else from_rev
        head = None
        if fetch:
            head = self._fetch(self.override or self.ref, check_from, peek, refuse)
        # the ref's head may declare its stream over, naming the ref to follow instead
        if self.override is None:
            tip = head if fetch else self.repo.resolve_rev(self.refspec)
        else:
            tip = self.repo.resolve_rev(self.refspec, allow_noent=True)
        endoflife = rebased_from = None
        if tip is not None:
            endoflife = _metadata_string(self.repo, tip, ENDOFLIFE)
            rebase = _metadata_string(self.repo, tip, ENDOFLIFE_REBASE)
            if rebase:
                validate_ref_name(rebase)
                rebased_from = self.refspec
                self.ref = rebase
                if fetch:
                    tip = self._fetch(rebase, None, peek, refuse)
                elif self.override is None:
                    tip = self.repo.resolve_rev(self.refspec)
                self.origin.set("origin", "refspec", self.refspec)
        if self.override is not None:
            if not peek:
                # as ostree: the ref follows the override, so the commit stays referenced
                self.repo.write_ref(self.refspec, self.override)
            new = self.override
        else:
            assert tip is not None  # resolved without allow_noent, or fetched
            new = tip
        changed = new != from_rev
        if changed and not allow_older:
            check_timestamps(self.repo, from_rev, new)
        self.new_revision = new
        return Upgrade(changed, from_rev, new, self.refspec, rebased_from, endoflife)

    # ------------------------------------------------------------------ deploy
    def _load_failed(self) -> dict[str, str]:
        if self._failed is None:  # read (and warned about) once per command
            self._failed = failedcommits.load(self.sysroot.layout, self.osname)
        return self._failed

    def failed_at(self, checksum: str) -> str | None:
        """When checksum was recorded as failed to boot in the stateroot, or None."""
        return self._load_failed().get(checksum)

    def refuse_failed(self, checksum: str) -> None:
        """SysrootError when checksum failed to boot here before (failedcommits.py)."""
        when = self.failed_at(checksum)
        if when is not None:
            raise SysrootError(
                f"Commit {checksum} failed to boot in stateroot {self.osname} ({when}); "
                "use --allow-failed to deploy it anyway"
            )

    def deploy(self, *, stage: bool = False, allow_failed: bool = False) -> Change:
        """Deploy the pulled commit with the merge deployment's configuration; refused
        when boot counting recorded it as failed in this stateroot, unless
        allow_failed."""
        if self.new_revision is None:
            raise SysrootError("Nothing pulled yet: call pull() before deploy()")
        if not allow_failed:
            self.refuse_failed(self.new_revision)
        self.close()  # the deploy opens the repository itself, under the sysroot lock
        options = DeployOptions(osname=self.osname, origin=self.origin, stage=stage)
        return self.sysroot.deploy(self.new_revision, options)


@dataclass
class Switch:
    upgrade: Upgrade
    change: Change
    old_refspec: str
    deleted_ref: bool  # the old ref was there and is gone now


def switch_refspec(old: str, given: str) -> str:
    """The refspec `switch GIVEN` moves to from OLD: a missing remote is the old one's;
    "REMOTE:" keeps the ref and changes the remote."""
    old_remote, old_ref = parse_refspec(old)
    if given.endswith(":"):
        remote, ref = parse_refspec(f"{given}{old_ref}")
    else:
        remote, ref = parse_refspec(given)
    remote = remote or old_remote
    return f"{remote}:{ref}" if remote else ref


def switch(sysroot: Sysroot, refspec: str, osname: str | None = None) -> Switch:
    """`admin switch`: deploy the head of another ref (any age: there is no
    chronological relation between two refs) and forget the old ref."""
    with Upgrader(sysroot, osname, ignore_unconfigured=True) as up:
        old = up.refspec
        new = switch_refspec(old, refspec)
        if new == old:
            raise UsageError(f"Old and new refs are equal: {new}")
        up.set_origin(OriginFile.for_refspec(new))
        result = up.pull(allow_older=True)
        # switch names the ref to follow explicitly (and has no --allow-failed)
        change = up.deploy(allow_failed=True)
        # as ostree: the old ref goes (even when an end-of-life rebase led back to it)
        with sysroot.open_repo() as repo:
            try:
                repo.write_ref(old, None)
                deleted = True
            except NotFoundError:
                deleted = False
    return Switch(result, change, old, deleted)
