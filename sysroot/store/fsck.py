"""Checking a repository the way `ostree fsck` does.

What is checked, in order:
1. every ref (refs/heads, refs/remotes, refs/mirrors) holds a checksum naming a commit
   that exists and is intact;
2. every commit that is not partial is walked (its tree, not its parents: those are
   commits of their own), and every object it reaches is re-hashed and compared with
   its name. Metadata is also parsed, validated and must be in GVariant normal form;
   content is read the way the repo mode stores it (archive: decompressed, bare-user:
   from user.ostreemeta) and its header validated.

Like ostree 2022.7, objects found missing mark the commits that reach them partial
(state/<csum>.commitpartial holding "f"), so that a later pull fetches them again; with
delete=True corrupt objects are deleted and handled the same way. A commit marked
partial by fsck is not verified again, and counts as an error until a pull completes it.
Unlike ostree, checking never stops at the first error: every problem is reported, a
missing dirtree included (ostree aborts there without marking anything), and metadata
must be in normal form (ostree loads it as trusted and never checks).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError
from sysroot.formats.objects import (
    Commit,
    DirMeta,
    DirTree,
    ObjectType,
    content_checksum,
)
from sysroot.store.modes import RepoMode
from sysroot.store.prune import delete_object, enable_tombstones, write_tombstone
from sysroot.store.reachable import ObjectName, RefFile, Walker, iter_ref_files, object_label
from sysroot.store.repo import Repo
from sysroot.util import fsutil

FSCK_PARTIAL = b"f"  # what libostree writes into a commitpartial file it created in fsck

_PARSERS: dict[ObjectType, Callable[[bytes], Commit | DirTree | DirMeta]] = {
    ObjectType.COMMIT: Commit.parse,
    ObjectType.DIR_TREE: DirTree.parse,
    ObjectType.DIR_META: DirMeta.parse,
}


@dataclass(frozen=True)
class FsckProblem:
    """One thing wrong. Objects are named by checksum and type, refs by name."""

    kind: str  # "missing", "corrupt", "invalid" (bad structure), "unreadable", "ref"
    message: str
    name: ObjectName | None = None
    ref: str | None = None
    commits: tuple[str, ...] = ()  # the commits whose tree reaches the object

    def __str__(self) -> str:
        subject = object_label(self.name) if self.name else f"ref {self.ref}"
        line = f"{subject}: {self.message}"
        if self.commits:
            line += f" (in commit{'s' if len(self.commits) > 1 else ''} "
            line += ", ".join(self.commits) + ")"
        return line


@dataclass
class FsckReport:
    n_refs: int = 0
    n_commits: int = 0  # commits whose trees were verified
    n_objects: int = 0  # objects verified
    partial: list[str] = field(default_factory=list)  # partial commits, not verified
    fsck_partial: list[str] = field(default_factory=list)  # ... of which fsck marked
    problems: list[FsckProblem] = field(default_factory=list)
    deleted: list[ObjectName] = field(default_factory=list)
    marked_partial: list[str] = field(default_factory=list)
    # complete commits checked -> their parents (as the walk read them)
    walked_parents: dict[str, str | None] = field(default_factory=dict)
    tombstoned: list[str] = field(default_factory=list)  # missing parents given a tombstone

    @property
    def ok(self) -> bool:
        return not self.problems and not self.fsck_partial


def fsck(
    repo: Repo,
    *,
    delete: bool = False,
    verify_bindings: bool = False,
    verify_back_refs: bool = False,
    add_tombstones: bool = False,
) -> FsckReport:
    """Check repo; fix nothing but what ostree fixes (see the module docstring).
    add_tombstones: a commit whose parent is missing gets a tombstone for that parent
    (and core.tombstone-commits is turned on), so pulls stop asking for it."""
    with _shared_lock(repo):
        report = _Fsck(repo, delete, verify_bindings or verify_back_refs, verify_back_refs).run()
    if add_tombstones:
        _add_tombstones(repo, report)
    return report


def _add_tombstones(repo: Repo, report: FsckReport) -> None:
    """ostree 2022.7 writes the tombstone under the child's checksum instead, which
    then hides the child itself: a known bug, not copied."""
    missing = set()
    for parent in report.walked_parents.values():
        if (
            parent is not None
            and not repo.has_object(ObjectType.COMMIT, parent)
            and not repo.has_object(ObjectType.TOMBSTONE_COMMIT, parent)
        ):
            missing.add(parent)
    if not missing:
        return
    with repo.lock(exclusive=True):
        enable_tombstones(repo)
        for parent in sorted(missing):
            write_tombstone(repo, parent)
            report.tombstoned.append(parent)


def mark_commit_partial(repo: Repo, checksum: str, content: bytes = FSCK_PARTIAL) -> None:
    """Create state/<checksum>.commitpartial, so a pull fetches what the commit lacks."""
    os.makedirs(os.path.join(repo.path, "state"), mode=0o775, exist_ok=True)
    fsutil.atomic_write(
        os.path.join(repo.path, "state", f"{checksum}.commitpartial"),
        content,
        mode=0o644,
        fsync=repo.fsync_enabled,
    )


def read_commit_partial(repo: Repo, checksum: str) -> bytes | None:
    """The content of a commit's commitpartial marker, None when it is complete."""
    try:
        fd = os.open(
            f"state/{checksum}.commitpartial",
            os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
            dir_fd=repo.dfd,
        )
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(16)


@contextmanager
def _shared_lock(repo: Repo) -> Iterator[None]:
    # Keeps a concurrent prune from deleting objects under us. A repository we may not
    # write to cannot be pruned by us either, and ostree checks those without a lock.
    lock = repo.lock(exclusive=False)
    try:
        lock.__enter__()
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        yield
        return
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


class _Fsck:
    def __init__(self, repo: Repo, delete: bool, verify_bindings: bool, verify_back_refs: bool):
        self.repo = repo
        self.delete = delete
        self.verify_bindings = verify_bindings
        self.verify_back_refs = verify_back_refs
        self.report = FsckReport()
        self.walker = Walker(repo, strict=False, track_parents=True, check=self._check_metadata)
        self.checked: dict[ObjectName, FsckProblem | None] = {}

    def run(self) -> FsckReport:
        refs = list(iter_ref_files(self.repo))
        self.report.n_refs = len(refs)
        targets = [(ref, self._ref_target(ref)) for ref in refs]
        commits = self._commits()
        self.report.n_commits = len(commits)
        for commit_checksum in commits:
            self.walker.add_commit(commit_checksum, 0)
        self.report.walked_parents = {
            c: self.walker.commits[c].parent for c in commits if c in self.walker.commits
        }
        for ref, checksum in targets:
            # a ref's commit is checked even when it is partial, as ostree does; after
            # the walk, so that it is read only once
            if checksum is None:
                continue
            name = (checksum, ObjectType.COMMIT)
            if self._check_object(name) is None and self.verify_bindings:
                commit = self.walker.commits.get(checksum) or self.repo.load_commit(checksum)
                self._check_bindings(ref, commit)
        for name in sorted(self.walker.reachable):
            self._check_object(name)
        self.report.n_objects = len(self.walker.reachable)
        self._collect_problems()
        return self.report

    # ------------------------------------------------------------------ refs
    def _ref_target(self, ref: RefFile) -> str | None:
        """The commit a ref names, if it exists; reports the ref otherwise."""
        if ref.value is None:
            self._problem(FsckProblem("ref", f"cannot be read: {ref.error}", ref=ref.name))
            return None
        checksum = ref.checksum
        if checksum is None:
            shown = ref.value[:64] + ("…" if len(ref.value) > 64 else "")
            self._problem(
                FsckProblem("ref", f"holds '{shown}', not a commit checksum", ref=ref.name)
            )
            return None
        if not self.repo.has_object(ObjectType.COMMIT, checksum):
            self._problem(FsckProblem("ref", f"points to missing commit {checksum}", ref=ref.name))
            return None
        return checksum

    def _check_bindings(self, ref: RefFile, commit: Commit) -> None:
        bound = commit.metadata_value("ostree.ref-binding")
        if bound is None:
            if ref.collection is not None:
                self._problem(
                    FsckProblem(
                        "ref",
                        "commit has no ref binding metadata, expected one for a collection ref",
                        ref=ref.name,
                    )
                )
            return
        if ref.ref not in bound:
            listed = ", ".join(f"'{b}'" for b in bound) or "no refs"
            self._problem(
                FsckProblem(
                    "ref",
                    f"commit has no ref binding for '{ref.ref}' (binds {listed})",
                    ref=ref.name,
                )
            )
        coll = commit.metadata_value("ostree.collection-binding")
        if ref.collection is not None and coll != ref.collection:
            self._problem(
                FsckProblem(
                    "ref",
                    f"commit is bound to collection {coll!r}, not {ref.collection!r}",
                    ref=ref.name,
                )
            )

    # ------------------------------------------------------------------ commits
    def _commits(self) -> list[str]:
        """The commits to walk: every commit object that is not partial."""
        out = []
        resolved = None
        for checksum, objtype in self.repo.list_objects():
            if objtype is not ObjectType.COMMIT:
                continue
            marker = read_commit_partial(self.repo, checksum)
            if self.verify_back_refs:
                if resolved is None:
                    resolved = {r.name: r.checksum for r in iter_ref_files(self.repo)}
                self._check_back_refs(checksum, resolved)
            if marker is None:
                out.append(checksum)
                continue
            self.report.partial.append(checksum)
            if marker == FSCK_PARTIAL:
                self.report.fsck_partial.append(checksum)
        return out

    def _check_back_refs(self, checksum: str, resolved: dict[str, str | None]) -> None:
        """Every ref a commit says it is bound to must point at it (--verify-back-refs)."""
        try:
            commit = self.repo.load_commit(checksum)
        except (CorruptObjectError, NotFoundError):
            return  # reported when the commit itself is checked
        coll = commit.metadata_value("ostree.collection-binding")
        for ref in commit.metadata_value("ostree.ref-binding") or ():
            target = resolved.get(f"({coll}, {ref})", resolved.get(ref))
            if target is None:
                msg = f"ref '{ref}' in its bindings does not exist"
            elif target != checksum:
                msg = f"ref '{ref}' in its bindings does not resolve to it"
            else:
                continue
            self._problem(FsckProblem("invalid", msg, name=(checksum, ObjectType.COMMIT)))

    # ------------------------------------------------------------------ objects
    def _check_metadata(self, name: ObjectName, data: bytes, parsed: object = None) -> str | None:
        """Checksum, structure and normal form of a commit, dirtree or dirmeta; parsed is
        the object already parsed from data, if the caller has it."""
        if name not in self.checked:
            checksum, objtype = name
            actual = hashlib.sha256(data).hexdigest()
            if actual != checksum:
                self._found(name, "corrupt", f"corrupted: actual checksum is {actual}")
            else:
                structure = _metadata_structure_problem(objtype, data, parsed)
                if structure is None:
                    self._found(name)
                else:
                    self._found(name, "invalid", structure)
        problem = self.checked[name]
        return None if problem is None else problem.message

    def _check_object(self, name: ObjectName) -> FsckProblem | None:
        if name not in self.checked:
            if name in self.walker.problems:  # a dirtree or commit the walk could not read
                wp = self.walker.problems[name]
                self._found(name, "missing" if wp.missing else "unreadable", wp.message)
            else:
                self._verify(name)
        return self.checked[name]

    def _verify(self, name: ObjectName) -> None:
        checksum, objtype = name
        try:
            if objtype is ObjectType.FILE:
                self._verify_content(checksum)
            else:
                self._check_metadata(name, self.repo.read_metadata(objtype, checksum))
        except NotFoundError:
            self._found(name, "missing", "missing")
        except CorruptObjectError as e:
            self._found(name, "corrupt", e.problem)
        except OSError as e:
            self._found(name, "unreadable", f"unreadable: {e.strerror or e}")

    def _verify_content(self, checksum: str) -> None:
        name = (checksum, ObjectType.FILE)
        header = self.repo.load_file(checksum).header
        try:
            header.validate()
        except FormatError as e:
            return self._found(name, "invalid", f"invalid file header: {e}")
        if (
            self.repo.mode is RepoMode.BARE_USER_ONLY
            and header.is_regular
            and header.mode & ~(stat.S_IFREG | 0o775)
        ):
            return self._found(
                name, "invalid", f"invalid mode {header.mode:o} for a bare-user-only repository"
            )
        payload = () if header.is_symlink else self.repo.iter_payload(checksum)
        actual = content_checksum(header, payload)
        if actual != checksum:
            return self._found(name, "corrupt", f"corrupted: actual checksum is {actual}")
        self._found(name)

    def _found(self, name: ObjectName, kind: str | None = None, message: str = "") -> None:
        """Record the verdict on an object (kind None: intact). Commits containing it are
        filled in at the end, once the walk has seen every parent."""
        self.checked[name] = None if kind is None else FsckProblem(kind, message, name=name)

    def _problem(self, problem: FsckProblem) -> None:
        self.report.problems.append(problem)

    # ------------------------------------------------------------------ results
    def _collect_problems(self) -> None:
        to_mark: set[str] = set()
        # (problem, object): every problem recorded in checked names its object
        object_problems = sorted(
            ((p, p.name) for p in self.checked.values() if p is not None and p.name is not None),
            key=lambda pn: (pn[1][1] is not ObjectType.COMMIT, pn[1]),
        )
        for p, name in object_problems:
            commits = tuple(c for c in self.walker.commits_containing(name) if c != name[0])
            self._problem(FsckProblem(p.kind, p.message, name=name, commits=commits))
            gone = p.kind == "missing"
            if self.delete and not gone:
                gone = self._delete(name)
            if gone:
                to_mark.update(commits)
        for checksum in sorted(to_mark):
            if not self.repo.has_object(ObjectType.COMMIT, checksum):
                continue  # deleted as corrupt itself
            mark_commit_partial(self.repo, checksum)
            self.report.marked_partial.append(checksum)
            self.report.fsck_partial.append(checksum)

    def _delete(self, name: ObjectName) -> bool:
        try:
            delete_object(self.repo, name)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        self.report.deleted.append(name)
        return True


def _metadata_structure_problem(objtype: ObjectType, data: bytes, obj: object = None) -> str | None:
    parser = _PARSERS.get(objtype)
    if parser is None:
        return None
    try:
        parsed = obj if isinstance(obj, (Commit, DirTree, DirMeta)) else parser(data)
        if isinstance(parsed, (DirTree, DirMeta)):
            parsed.validate()
    except FormatError as e:
        return f"invalid {objtype.type_name}: {e}"
    # Our serializers write normal form (and sorted dirtrees), so anything else differs
    if parsed.serialize() != data:
        return f"invalid {objtype.type_name}: not in GVariant normal form"
    return None
