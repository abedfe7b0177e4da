"""The objects reachable from commits: the one traversal that fsck, prune and pulls share.

A commit reaches its root dirtree and dirmeta; a dirtree reaches its files and, for each
subdirectory, a dirtree and a dirmeta. Parents are followed up to a depth as in
libostree: 0 = the commit alone, -1 = all history, and a missing parent ends the walk
quietly (repositories often hold only recent history). Each dirtree is read once, however
many commits share it, so walking many commits costs little more than walking one.

A partial commit (state/<csum>.commitpartial, left by an interrupted pull or by fsck)
may lack any object, so its missing dirtrees are skipped, as libostree skips them.

Refs are read here too, without trusting their contents: fsck must see a ref that holds
garbage, and prune must refuse to delete anything while one does.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError
from sysroot.formats.objects import Commit, DirTree, ObjectType, is_checksum
from sysroot.store.repo import Repo

ObjectName = tuple[str, ObjectType]
# Called with every commit and dirtree the walk reads: (name, raw bytes, the parsed
# object or None if it did not parse); returns a problem to report instead of following
# the object, or None. fsck uses it to verify checksums without reading dirtrees twice.
_T = TypeVar("_T")
MetadataCheck = Callable[[ObjectName, bytes, object], "str | None"]


def object_label(name: ObjectName) -> str:
    """`<checksum>.<type>`, the way ostree names an object in messages."""
    return f"{name[0]}.{name[1].type_name}"


@dataclass(frozen=True)
class WalkProblem:
    """A commit or dirtree that the walk could not follow (non-strict walks only)."""

    name: ObjectName
    missing: bool  # absent; otherwise unreadable, corrupt or malformed
    message: str


class Walker:
    """Collects the set of objects reachable from the commits given to add_commit().

    strict: raise NotFoundError / CorruptObjectError on a missing or unreadable dirtree
    (what prune and pulls need: never act on a partial view). Otherwise record the
    problem in .problems and keep walking (what fsck needs).
    track_parents: remember which objects name each object, for commits_containing().
    commit_only: follow only commits and their parents, not their trees.
    """

    def __init__(
        self,
        repo: Repo,
        *,
        strict: bool = True,
        track_parents: bool = False,
        commit_only: bool = False,
        check: MetadataCheck | None = None,
    ):
        self.repo = repo
        self.strict = strict
        self.commit_only = commit_only
        self.check = check
        self.reachable: set[ObjectName] = set()
        self.commits: dict[str, Commit] = {}
        self.problems: dict[ObjectName, WalkProblem] = {}
        self._parents: dict[ObjectName, set[ObjectName]] | None = {} if track_parents else None
        self._expanded: set[ObjectName] = set()  # dirtrees read (or given up on) already
        self._depth: dict[str, float] = {}  # history depth each commit was walked with

    # ------------------------------------------------------------------ walking
    def add_commit(self, checksum: str, depth: int = 0) -> None:
        """Add a commit, its tree and `depth` generations of parents (-1: all)."""
        # libostree treats any depth below -1 like 0 (it only recurses for -1 or > 0)
        remaining = math.inf if depth == -1 else max(depth, 0)
        while True:
            if remaining <= self._depth.get(checksum, -1):
                return  # already walked at least this deep from here
            commit = self.commits.get(checksum)
            if commit is None:
                name = (checksum, ObjectType.COMMIT)
                if name in self.problems:
                    return
                commit = self._read(name, Commit.parse, ignore_missing=True)
                if commit is None:
                    return  # a missing parent ends the history we have
                self.commits[checksum] = commit
                self.reachable.add(name)
                if not self.commit_only:
                    self._walk_tree(
                        commit.root_tree,
                        commit.root_meta,
                        name,
                        partial=self.repo.is_partial(checksum),
                    )
            self._depth[checksum] = remaining
            if commit.parent is None or remaining == 0:
                return
            checksum, remaining = commit.parent, remaining - 1

    def _walk_tree(self, tree: str, meta: str, parent: ObjectName, *, partial: bool) -> None:
        stack = [(tree, meta, parent)]
        while stack:
            tree, meta, parent = stack.pop()
            meta_name = (meta, ObjectType.DIR_META)
            tree_name = (tree, ObjectType.DIR_TREE)
            self._add(meta_name, parent)
            self._add(tree_name, parent)
            if tree_name in self._expanded:
                continue
            dirtree = self._read(tree_name, DirTree.parse, ignore_missing=partial)
            if dirtree is None:
                if tree_name in self.problems:
                    self._expanded.add(tree_name)
                continue  # else: missing from a partial commit; another commit may have it
            self._expanded.add(tree_name)
            for _, checksum in dirtree.files:
                self._add((checksum, ObjectType.FILE), tree_name)
            for _, subtree, submeta in reversed(dirtree.dirs):
                stack.append((subtree, submeta, tree_name))

    def _add(self, name: ObjectName, parent: ObjectName) -> None:
        self.reachable.add(name)
        if self._parents is not None:
            self._parents.setdefault(name, set()).add(parent)

    def _read(
        self, name: ObjectName, parser: Callable[[bytes], _T], *, ignore_missing: bool
    ) -> _T | None:
        checksum, objtype = name
        try:
            data = self.repo.read_metadata(objtype, checksum)
        except NotFoundError:
            if ignore_missing:
                return None
            self._fail(name, True, "missing")
            return None
        except CorruptObjectError as e:  # could not be opened (permissions, a directory…)
            self._fail(name, False, f"unreadable: {e.problem}")
            return None
        except OSError as e:
            self._fail(name, False, f"unreadable: {e.strerror or e}")
            return None
        if self.check is None:  # (fsck's check reports this itself)
            # never follow a damaged dirtree: its checksums would be wrong names
            actual = hashlib.sha256(data).hexdigest()
            if actual != checksum:
                self._fail(name, False, f"corrupted: actual checksum is {actual}")
                return None
        obj: _T | None = None
        error = None
        try:
            obj = parser(data)
            if isinstance(obj, DirTree):
                obj.validate()
        except FormatError as e:
            obj, error = None, f"invalid {objtype.type_name}: {e}"
        if self.check is not None:
            problem = self.check(name, data, obj)
            if problem is not None:
                self._fail(name, False, problem)
                return None
        if error is not None:
            self._fail(name, False, error)
            return None
        return obj

    def _fail(self, name: ObjectName, missing: bool, message: str) -> None:
        if self.strict:
            if missing:
                raise NotFoundError(f"No such metadata object {object_label(name)}")
            raise CorruptObjectError(name[0], name[1].type_name, message)
        self.problems.setdefault(name, WalkProblem(name, missing, message))
        self.reachable.add(name)  # named by what we walked, even if we cannot follow it
        return None

    # ------------------------------------------------------------------ queries
    def commits_containing(self, name: ObjectName) -> list[str]:
        """The walked commits whose tree reaches name (needs track_parents)."""
        if self._parents is None:
            raise ValueError("Walker was created without track_parents")
        found: set[str] = set()
        seen = {name}
        todo = [name]
        while todo:
            current = todo.pop()
            if current[1] is ObjectType.COMMIT:
                found.add(current[0])
                continue
            for parent in self._parents.get(current, ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return sorted(found)


def reachable_from_commit(repo: Repo, checksum: str, depth: int = 0) -> set[ObjectName]:
    """Every object of a commit (and of `depth` parents); raises if one cannot be read."""
    walker = Walker(repo)
    walker.add_commit(checksum, depth)
    return walker.reachable


# ---------------------------------------------------------------------- refs


@dataclass(frozen=True)
class RefFile:
    """One ref file, read without trusting it."""

    name: str  # as `ostree refs` shows it: "ref", "remote:ref" or "(collection, ref)"
    ref: str
    remote: str | None
    collection: str | None
    value: str | None  # the stripped content; None when it cannot be read
    error: str | None = None  # why value is None

    @property
    def checksum(self) -> str | None:
        return self.value if self.value is not None and is_checksum(self.value) else None


def iter_ref_files(repo: Repo) -> Iterator[RefFile]:
    """Every ref under refs/heads, refs/remotes/<remote> and refs/mirrors/<collection>."""
    yield from _ref_tree(repo, "refs/heads", None, None)
    for kind in ("remotes", "mirrors"):
        base = os.path.join(repo.path, "refs", kind)
        try:
            groups = sorted(e.name for e in os.scandir(base) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            continue
        for group in groups:
            if kind == "remotes":
                yield from _ref_tree(repo, f"refs/remotes/{group}", group, None)
            else:
                yield from _ref_tree(repo, f"refs/mirrors/{group}", None, group)


def _ref_tree(
    repo: Repo, relbase: str, remote: str | None, collection: str | None
) -> Iterator[RefFile]:
    base = os.path.join(repo.path, relbase)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        rel = os.path.relpath(dirpath, base)
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue  # like ostree: e.g. the temp file of an interrupted ref write
            ref = fn if rel == "." else f"{rel}/{fn}"
            if remote is not None:
                name = f"{remote}:{ref}"
            elif collection is not None:
                name = f"({collection}, {ref})"
            else:
                name = ref
            value = error = None
            try:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    # like g_strchomp: trailing blanks go, leading ones are an error
                    value = f.read(4096).decode("ascii", "replace").rstrip()
            except OSError as e:  # e.g. an alias symlink whose target is gone
                error = e.strerror or str(e)
            yield RefFile(name, ref, remote, collection, value, error)
