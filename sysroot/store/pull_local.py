"""Copy commits, and every object they reach, from one local repository to another.

Like `ostree pull-local`, between any two repository modes: each object is read in the
source's encoding and written through the destination's Transaction, which re-encodes
it and checks it against its checksum. A corrupted source object therefore fails the
pull before anything is published, and no ref moves.

Resumable: objects the destination already has are skipped, and a commit the
destination holds completely (no `state/<commit>.commitpartial` marker) is not walked
again. Markers are written just before objects are published and removed once the
transaction is done, so an interrupted publication is walked again next time.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError, SysrootError
from sysroot.formats import gvariant
from sysroot.formats.objects import (
    METADATA_DICT_TYPE,
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    is_checksum,
)
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo, parse_refspec, validate_ref_name
from sysroot.store.transaction import Transaction
from sysroot.util import fsutil

_T = TypeVar("_T")


@dataclass(frozen=True)
class PullResult:
    metadata: int  # metadata objects written (detached metadata not counted, like ostree)
    content: int  # content objects written
    content_bytes: int  # their uncompressed size
    refs: dict[str, str] = field(default_factory=dict)  # destination ref -> commit


def resolve_pull_targets(
    src: Repo,
    refs: Sequence[str],
    remote: str | None,
    overrides: Sequence[str | None] = (),
) -> list[tuple[str | None, str]]:
    """(destination ref or None, commit) for each ref or commit checksum asked for.

    With no refs, every ref in the source's refs/heads. Refs are looked up only in
    refs/heads, as a pull from the source repository would see them. overrides
    (parallel to refs, when given): a commit to set the ref to instead (`ostree pull
    REMOTE REF@CHECKSUM`), or None.
    """
    heads = src.list_refs(include_remotes=False)
    names = list(refs) if refs else list(heads)
    commits = list(overrides) or [None] * len(names)
    out: list[tuple[str | None, str]] = []
    for name, override in zip(names, commits, strict=True):
        if is_checksum(name):
            out.append((None, name))
            continue
        validate_ref_name(name)
        checksum = override or heads.get(name)
        if checksum is None:
            raise NotFoundError(f"Refspec '{name}' not found in {src.path}")
        dest = f"{remote}:{name}" if remote else name
        parse_refspec(dest)  # validates the remote name
        out.append((dest, checksum))
    return out


def parse_object(
    parser: Callable[[bytes], _T], objtype: ObjectType, checksum: str, data: bytes, where: str
) -> _T:
    """Parse (and validate) verified metadata; a FormatError names the object."""
    try:
        obj = parser(data)
        if isinstance(obj, (DirTree, DirMeta, FileHeader)):
            obj.validate()
        return obj
    except FormatError as e:
        raise CorruptObjectError(checksum, objtype.type_name, f"{e} ({where})") from None


def check_bareuseronly(header: FileHeader, checksum: str, where: str) -> None:
    """Refuse what a bare-user-only checkout could not reproduce, as ostree does."""
    if header.is_regular:
        bits = stat.S_IMODE(header.mode) & ~0o775
        if bits:
            raise SysrootError(
                f"Content object {checksum} ({where}): invalid mode "
                f"0{header.mode:o} with bits 0{bits:o} for a "
                "bare-user-only repository"
            )


def store_detached(dst: Repo, checksum: str, data: bytes) -> None:
    """Detached metadata is not content-addressed: replaced as a whole, like ostree does."""
    rel = dst.object_relpath(checksum, ObjectType.COMMIT_META)
    os.makedirs(os.path.join(dst.path, os.path.dirname(rel)), 0o775, exist_ok=True)
    fsutil.atomic_write(rel, data, mode=0o644, dir_fd=dst.dfd, fsync=dst.fsync_enabled)


def mark_partial(dst: Repo, checksums: Collection[str]) -> None:
    """`state/<commit>.commitpartial`: the commit's objects are not all there yet."""
    for checksum in checksums:
        fd = os.open(
            f"state/{checksum}.commitpartial",
            os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
            0o644,
            dir_fd=dst.dfd,
        )
        os.close(fd)
    if checksums and dst.fsync_enabled:
        fsutil.fsync_dir("state", dir_fd=dst.dfd)


def unmark_partial(dst: Repo, checksums: Iterable[str]) -> None:
    for checksum in checksums:
        try:
            os.unlink(f"state/{checksum}.commitpartial", dir_fd=dst.dfd)
        except FileNotFoundError:
            pass


def can_link(src: Repo, dst: Repo) -> bool:
    """Whether content objects may be imported by hard links, as ostree imports them:
    the same repository mode, the same file system and the same owner (a link
    shares the inode: owner, mode and xattrs are the source's)."""
    if src.mode is not dst.mode:
        return False
    a, b = os.fstat(src.dfd), os.fstat(dst.dfd)
    return a.st_dev == b.st_dev and a.st_uid == b.st_uid


class _Puller:
    def __init__(
        self,
        src: Repo,
        tx: Transaction,
        *,
        commit_metadata_only: bool,
        bareuseronly_files: bool,
        trusted: bool = False,
    ):
        self.src = src
        self.tx = tx
        self.dst: Repo = tx.repo
        self.commit_metadata_only = commit_metadata_only
        self.check_bareuseronly = bareuseronly_files or self.dst.mode is RepoMode.BARE_USER_ONLY
        # a trusted source's content is linked, unread (ostree's pull-local default);
        # an untrusted one's is read and hashed into a copy
        self.link = trusted and not self.check_bareuseronly and can_link(src, self.dst)
        self.seen_commits: dict[str, float] = {}  # commit -> parents still to walk
        self.seen_trees: set[str] = set()
        self.seen_metas: set[str] = set()
        self.seen_files: set[str] = set()
        self.partial: list[str] = []  # commits whose objects this pull completes
        self.detached: dict[str, bytes] = {}

    # -------------------------------------------------------------- objects
    def _metadata(self, objtype: ObjectType, checksum: str, where: str) -> bytes | None:
        """The object's bytes, copied (verified) to the destination unless already there.

        None when the source does not have it either.
        """
        if self.tx.has_object(objtype, checksum):
            return self.tx.read_metadata(objtype, checksum)
        try:
            data = self.src.read_metadata(objtype, checksum)
        except NotFoundError:
            return None
        try:
            self.tx.write_metadata(objtype, data, expected=checksum)
        except CorruptObjectError as e:
            raise CorruptObjectError(
                checksum, objtype.type_name, f"{e.problem} ({where} in {self.src.path})"
            ) from None
        return data

    def _require(self, objtype: ObjectType, checksum: str, where: str) -> bytes:
        data = self._metadata(objtype, checksum, where)
        if data is None:
            raise NotFoundError(
                f"{objtype.type_name} object {checksum} ({where}) is missing from {self.src.path}"
            )
        return data

    _parse = staticmethod(parse_object)

    def _content(self, checksum: str, where: str) -> None:
        if checksum in self.seen_files:
            return
        self.seen_files.add(checksum)
        if self.tx.has_object(ObjectType.FILE, checksum):
            return
        if self.link and self._link(checksum, where):
            return
        try:
            info = self.src.load_file(checksum)
            header = info.header
        except NotFoundError:
            raise NotFoundError(
                f"Content object {checksum} ({where}) is missing from {self.src.path}"
            ) from None
        if self.check_bareuseronly:
            check_bareuseronly(header, checksum, where)
        payload = None if header.is_symlink else self.src.iter_payload(checksum)
        try:
            self.tx.write_content(header, payload, expected=checksum, size=info.size)
        except CorruptObjectError as e:
            raise CorruptObjectError(
                checksum, "file", f"{e.problem} ({where} in {self.src.path})"
            ) from None
        except FormatError as e:
            raise CorruptObjectError(
                checksum, "file", f"{e} ({where} in {self.src.path})"
            ) from None

    def _link(self, checksum: str, where: str) -> bool:
        try:
            return self.tx.link_content(self.src, checksum)
        except FileNotFoundError:
            raise NotFoundError(
                f"Content object {checksum} ({where}) is missing from {self.src.path}"
            ) from None

    def _tree(self, tree: str, meta: str, label: str) -> None:
        stack = [(tree, meta, "/")]
        while stack:
            tree, meta, path = stack.pop()
            where = f"{path} of {label}"
            if meta not in self.seen_metas:
                self.seen_metas.add(meta)
                data = self._require(ObjectType.DIR_META, meta, where)
                self._parse(DirMeta.parse, ObjectType.DIR_META, meta, data, where)
            if tree in self.seen_trees:
                continue
            self.seen_trees.add(tree)
            data = self._require(ObjectType.DIR_TREE, tree, where)
            dirtree = self._parse(DirTree.parse, ObjectType.DIR_TREE, tree, data, where)
            prefix = path.rstrip("/") + "/"
            for name, checksum in dirtree.files:
                self._content(checksum, f"{prefix}{name} of {label}")
            for name, subtree, submeta in reversed(dirtree.dirs):
                stack.append((subtree, submeta, prefix + name))

    def _detached_metadata(self, checksum: str) -> None:
        try:
            data = self.src.read_metadata(ObjectType.COMMIT_META, checksum)
        except NotFoundError:
            return
        if not gvariant.is_normal_form(METADATA_DICT_TYPE, data):
            raise CorruptObjectError(
                checksum, "commitmeta", f"not a valid a{{sv}} ({self.src.path})"
            )
        try:
            if self.dst.read_metadata(ObjectType.COMMIT_META, checksum) == data:
                return
        except NotFoundError:
            pass
        self.detached[checksum] = data

    # -------------------------------------------------------------- commits
    def pull_commit(self, checksum: str, depth: int) -> None:
        """The commit, its tree, and depth parents (-1: all the source has)."""
        remaining = math.inf if depth == -1 else depth
        level = 0
        while checksum:
            # a commit reached again with more history left to walk is walked again,
            # but its objects are only copied the first time
            if self.seen_commits.get(checksum, -1) >= remaining:
                return
            first = checksum not in self.seen_commits
            self.seen_commits[checksum] = remaining
            label = f"commit {checksum}"
            had = self.tx.has_object(ObjectType.COMMIT, checksum)
            data = self._metadata(ObjectType.COMMIT, checksum, label)
            if data is None:
                if level == 0:
                    raise NotFoundError(f"Commit {checksum} not found in {self.src.path}")
                return  # history the source does not have either: stop, like ostree
            commit = self._parse(Commit.parse, ObjectType.COMMIT, checksum, data, label)
            if first:
                self._detached_metadata(checksum)
                if not had or self.dst.is_partial(checksum):
                    self.partial.append(checksum)
                    if not self.commit_metadata_only:
                        self._tree(commit.root_tree, commit.root_meta, label)
            if remaining == 0 or commit.parent is None:
                return
            checksum = commit.parent
            remaining -= 1
            level += 1

    # -------------------------------------------------------------- finishing
    def write_detached_and_markers(self) -> None:
        """Called once every object is staged and verified, right before publishing."""
        for checksum, data in self.detached.items():
            store_detached(self.dst, checksum, data)
        mark_partial(self.dst, self.partial)

    def clear_markers(self) -> None:
        if self.commit_metadata_only:
            return  # the tree is still missing: the commit stays partial
        unmark_partial(self.dst, self.partial)


# check(repo, commit checksum, commit bytes, detached metadata bytes or None): raises
# when the commit may not be taken (sign.verify builds it from a remote's policy)
CommitCheck = Callable[[Repo, str, bytes, "bytes | None"], object]


def verify_history(dst: Repo, src: Repo, checksum: str, depth: int, check: CommitCheck) -> None:
    """Run check on a commit of src and depth parents (-1: all src has), before
    anything is copied. The detached metadata is src's, else the one dst already holds
    (ostree's fallback when a remote has none)."""
    remaining = math.inf if depth == -1 else depth
    while checksum:
        try:
            data = src.read_metadata(ObjectType.COMMIT, checksum)
        except NotFoundError:
            return  # the pull itself reports a missing first commit
        meta = _optional_commitmeta(src, checksum)
        if meta is None and dst.has_object(ObjectType.COMMIT, checksum):
            meta = _optional_commitmeta(dst, checksum)
        check(dst, checksum, data, meta)
        if remaining == 0:
            return
        parent = src.load_commit(checksum).parent
        if parent is None:
            return
        remaining -= 1
        checksum = parent


def _optional_commitmeta(repo: Repo, checksum: str) -> bytes | None:
    try:
        return repo.read_metadata(ObjectType.COMMIT_META, checksum)
    except NotFoundError:
        return None


def pull_local(
    src: Repo,
    dst: Repo,
    refs: Sequence[str] = (),
    *,
    overrides: Sequence[str | None] = (),
    remote: str | None = None,
    depth: int = 0,
    commit_metadata_only: bool = False,
    bareuseronly_files: bool = False,
    update_refs: bool = True,
    verify: CommitCheck | None = None,
    collection: str | None = None,
    trusted: bool = False,
) -> PullResult:
    """Copy refs (default: all of src's refs/heads) and their objects from src to dst;
    with update_refs=False the objects only (the result still names the commits).
    overrides: see resolve_pull_targets. collection: the refs are that collection's
    (see Transaction.set_collection_ref), for a mirror of a collection. trusted: src
    is the caller's own (ostree's pull-local without --untrusted): its content
    objects are hard-linked where the modes, file system and owner allow, without
    reading them; metadata is always read, checked and copied.

    verify: a check each commit (and depth parents) must pass before anything is
    copied (see verify_history); sign.verify.local_pull_check gives the one of a
    remote's signature policy."""
    if depth < -1:
        raise SysrootError(f"Invalid depth {depth}: use -1 for the whole history")
    # the source is only read, and may be read-only: like ostree, it is not locked
    targets = resolve_pull_targets(src, refs, remote, overrides)
    if verify is not None:
        for _, checksum in targets:
            verify_history(dst, src, checksum, depth, verify)
    with dst.transaction() as tx:
        puller = _Puller(
            src,
            tx,
            commit_metadata_only=commit_metadata_only,
            bareuseronly_files=bareuseronly_files,
            trusted=trusted,
        )
        for dest_ref, checksum in targets:
            puller.pull_commit(checksum, depth)
            if dest_ref is not None and update_refs and collection is not None:
                tx.set_collection_ref(collection, dest_ref, checksum)
            elif dest_ref is not None and update_refs:
                tx.set_ref(dest_ref, checksum)
        puller.write_detached_and_markers()
        stats = dict(tx.stats)
    puller.clear_markers()
    return PullResult(
        stats["metadata"],
        stats["content"],
        stats["content_bytes"],
        {r: c for r, c in targets if r is not None},
    )
