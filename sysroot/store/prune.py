"""Deleting unreachable objects, the way `ostree prune` does.

The roots are every commit object (default: only objects no commit reaches are
deleted), or with refs_only the commits refs point at (refs/heads, refs/remotes and
refs/mirrors), followed `depth` parents deep (-1: all history). keep_younger_than,
retain_branch_depth and only_branches choose a depth per ref and imply refs_only, as in
ostree. The repository lock is held exclusively from computing the reachable set to the
last deletion, so no transaction can publish a commit that uses an object we are about
to delete.

Deletion order keeps the repository consistent if we are interrupted: unreachable
commits go first (with their .commitmeta and commitpartial marker), the file system is
flushed, and only then the trees and files they referenced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import ObjectType, is_checksum, mbase64_checksum_hex
from sysroot.store.reachable import ObjectName, Walker, iter_ref_files
from sysroot.store.repo import Repo
from sysroot.util import fsutil
from sysroot.util.units import format_size

# The loose objects prune counts and may delete. Detached metadata and tombstones go
# with their commit; payload links are left alone (they are only a dedup index).
PRUNABLE = (ObjectType.COMMIT, ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.FILE)


@dataclass(frozen=True)
class PruneOptions:
    refs_only: bool = False
    depth: int = -1
    keep_younger_than: int | None = None  # seconds since the epoch
    retain_branch_depth: dict[str, int] = field(default_factory=dict)
    only_branches: tuple[str, ...] = ()
    commit_only: bool = False
    no_prune: bool = False
    # commits kept (with their trees, no parents) besides what the refs keep: the
    # commits of a build directory's builds (sysroot build prune)
    extra_roots: tuple[str, ...] = ()

    @property
    def per_ref(self) -> bool:
        """ostree's "newer" options: depth chosen per ref, always from refs only."""
        return bool(
            self.keep_younger_than is not None or self.retain_branch_depth or self.only_branches
        )


@dataclass
class PruneResult:
    total: int  # loose objects considered
    pruned: int  # unreachable ones, deleted unless no_prune
    freed: int  # their size on disk in bytes
    unreachable: list[ObjectName]
    commit_only: bool = False
    no_prune: bool = False

    def summary(self) -> list[str]:
        """ostree prune's output lines."""
        total = "Total (commit only) objects" if self.commit_only else "Total objects"
        lines = [f"{total}: {self.total}"]
        if self.pruned == 0:
            lines.append("No unreachable objects")
        elif self.no_prune:
            lines.append(f"Would delete: {self.pruned} objects, freeing {format_size(self.freed)}")
        else:
            lines.append(f"Deleted {self.pruned} objects, {format_size(self.freed)} freed")
        return lines


def prune(repo: Repo, options: PruneOptions) -> PruneResult:
    if options.no_prune:
        with repo.lock(exclusive=False):
            return _prune_locked(repo, options)
    with repo.lock(exclusive=True):
        return _prune_locked(repo, options)


def _prune_locked(repo: Repo, options: PruneOptions) -> PruneResult:
    walker = Walker(repo, commit_only=options.commit_only)  # strict: never prune on guesses
    kinds = (ObjectType.COMMIT,) if options.commit_only else PRUNABLE
    objects = [(c, t) for c, t in repo.list_objects() if t in kinds]
    if options.refs_only or options.per_ref:
        _walk_refs(repo, walker, options)
        for checksum in options.extra_roots:
            walker.add_commit(checksum, 0)
    else:
        for checksum, objtype in objects:
            if objtype is ObjectType.COMMIT:
                walker.add_commit(checksum, options.depth)
    unreachable = [name for name in objects if name not in walker.reachable]
    freed = sum(_storage_size(repo, name) for name in unreachable)
    if not options.no_prune and unreachable:
        commits = [n for n in unreachable if n[1] is ObjectType.COMMIT]
        for name in commits:
            delete_object(repo, name)
        if commits and repo.fsync_enabled:
            fsutil.syncfs(repo.dfd)  # the commits are gone for good before their trees go
        for name in unreachable:
            if name[1] is not ObjectType.COMMIT:
                delete_object(repo, name)
    if not options.no_prune:
        prune_static_deltas(repo)
    return PruneResult(
        len(objects), len(unreachable), freed, unreachable, options.commit_only, options.no_prune
    )


def _walk_refs(repo: Repo, walker: Walker, options: PruneOptions) -> None:
    refs = list(iter_ref_files(repo))
    bad = [r for r in refs if r.checksum is None]
    if bad:
        # what such a ref protects is unknown: deleting anything could lose its history
        what = bad[0].error or f"holds '{(bad[0].value or '')[:64]}'"
        raise SysrootError(
            f"Ref {bad[0].name} is not a valid checksum ({what}); not pruning",
            hint="fix or delete the ref, see `sysroot fsck`",
        )
    depths = dict(options.retain_branch_depth)
    if options.only_branches:
        names = {r.name for r in refs}
        for branch in options.only_branches:
            if branch not in names:
                raise SysrootError(f"Refspec '{branch}' not found")
        for r in refs:
            if r.name not in options.only_branches:
                depths.setdefault(r.name, -1)
    valid = [(r.name, r.checksum) for r in refs if r.checksum is not None]  # all, see above
    for name, checksum in valid:
        if name in depths:
            walker.add_commit(checksum, depths[name])
        elif options.keep_younger_than is not None:
            _walk_younger_than(walker, checksum, options.keep_younger_than)
        else:
            walker.add_commit(checksum, options.depth)


def _walk_younger_than(walker: Walker, checksum: str, cutoff: int) -> None:
    # The commit a ref points at is always kept; then, starting with it, each commit
    # not older than the cutoff is kept and its parent considered, as ostree does.
    walker.add_commit(checksum, 0)
    current: str | None = checksum
    while current is not None:
        commit = walker.commits.get(current)
        if commit is None:
            try:
                commit = walker.repo.load_commit(current)
            except NotFoundError:
                return  # history ends here
        if commit.timestamp < cutoff:
            return
        walker.add_commit(current, 0)
        current = commit.parent


def _storage_size(repo: Repo, name: ObjectName) -> int:
    try:
        return os.lstat(repo.object_relpath(*name), dir_fd=repo.dfd).st_size
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------- deleting


def delete_object(repo: Repo, name: ObjectName) -> None:
    """Delete one loose object; a commit takes its detached metadata and partial marker
    with it, and leaves a tombstone when core.tombstone-commits is set."""
    checksum, objtype = name
    os.unlink(repo.object_relpath(checksum, objtype), dir_fd=repo.dfd)
    if objtype is not ObjectType.COMMIT:
        return
    for rel in (
        repo.object_relpath(checksum, ObjectType.COMMIT_META),
        f"state/{checksum}.commitpartial",
    ):
        try:
            os.unlink(rel, dir_fd=repo.dfd)
        except FileNotFoundError:
            pass
    if repo.config.get_bool("core", "tombstone-commits", False):
        write_tombstone(repo, checksum)


def write_tombstone(repo: Repo, checksum: str) -> None:
    """The tombstone-commit object saying that commit checksum was deleted on purpose
    (a pull then does not treat its absence as an error)."""
    data = gvariant.encode("a{sv}", {"commit": Variant("ay", checksum.encode() + b"\0")})
    fsutil.atomic_write(
        repo.object_path(checksum, ObjectType.TOMBSTONE_COMMIT),
        data,
        mode=0o644,
        fsync=repo.fsync_enabled,
    )


def enable_tombstones(repo: Repo) -> None:
    if not repo.config.get_bool("core", "tombstone-commits", False):
        repo.config.set("core", "tombstone-commits", "true")
        repo.write_config()


def delete_commit(repo: Repo, checksum: str) -> None:
    """`ostree prune --delete-commit`: delete a commit no ref points at, leaving a tombstone
    (this turns core.tombstone-commits on, as ostree does). Its objects go at the next
    prune."""
    if not is_checksum(checksum):
        raise UsageError(f"Invalid checksum '{checksum}' for --delete-commit")
    with repo.lock(exclusive=True):
        for ref in iter_ref_files(repo):
            if ref.checksum == checksum:
                raise SysrootError(f"Commit '{checksum}' is referenced by '{ref.name}'")
        if not repo.has_object(ObjectType.COMMIT, checksum):
            raise SysrootError(f"No such metadata object {checksum}.commit")
        enable_tombstones(repo)
        delete_object(repo, (checksum, ObjectType.COMMIT))


# ---------------------------------------------------------------------- static deltas


def list_static_deltas(repo: Repo) -> list[tuple[str | None, str, str]]:
    """(from, to, relative directory) of each static delta with a superblock."""
    out: list[tuple[str | None, str, str]] = []
    base = os.path.join(repo.path, "deltas")
    try:
        prefixes = sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for prefix in prefixes:
        try:
            rests = sorted(os.listdir(os.path.join(base, prefix)))
        except NotADirectoryError:
            continue
        for rest in rests:
            rel = f"deltas/{prefix}/{rest}"
            if not os.path.isfile(os.path.join(repo.path, rel, "superblock")):
                continue
            whole = prefix + rest
            src, dash, dst = whole.partition("-")
            if not dash:
                src, dst = "", whole
            to_hex = mbase64_checksum_hex(dst)
            from_hex = mbase64_checksum_hex(src) if dash else None
            if to_hex is None or (dash and from_hex is None):
                continue  # not a delta name we understand: leave it alone
            out.append((from_hex, to_hex, rel))
    return out


def prune_static_deltas(repo: Repo, commit: str | None = None) -> list[str]:
    """Delete the deltas leading to commit, or (None) to commits that no longer exist."""
    removed = []
    for _, to, rel in list_static_deltas(repo):
        if commit is not None and to != commit:
            continue
        if commit is None and repo.has_object(ObjectType.COMMIT, to):
            continue
        fsutil.rmtree_at(repo.dfd, rel)
        removed.append(rel)
    return removed


# ---------------------------------------------------------------------- output
