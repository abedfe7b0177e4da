"""Generating ostree static deltas (`ostree static-delta generate`, 2022.7;
shared/docs/static-deltas.md §4). Bytes come from formats/delta_write.py.

What goes where, as ostree decides it:
* every object reachable from TO but not from FROM (the TO commit itself travels in the
  superblock) goes into a part or, for big plain files, the fallback list;
* a new regular file paired with an old one of similar size and name is rebuilt from
  it: by rollsum chunks when at least half its chunks are found in the old file, else
  by a bsdiff patch (unless disabled or too large), else it is sent whole;
* parts are cut at max-chunk-size bytes of uncompressed blob.

Everything is computed before anything is written; then the part files and, last, the
superblock are written under temporary names and renamed into place, so a failed or
interrupted run leaves no superblock naming missing parts.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sysroot.errors import CorruptObjectError, NotFoundError, SysrootError
from sysroot.formats import delta_write as dw
from sysroot.formats import rollsum
from sysroot.formats import static_delta as sd
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import DirTree, FileHeader, ObjectType
from sysroot.store.repo import Repo
from sysroot.util import fsutil

MB = 1_000_000  # ostree's size options are in units of 10^6 bytes
SIMILARITY_PERCENT = 30  # size window for pairing a new file with an old one
_NEVER_SIMILAR = (".xz", ".bz2")  # compressed: a delta of them gains nothing


@dataclass(frozen=True)
class Options:
    """ostree 2022.7's generate parameters, sizes in MB as on its command line."""

    inline: bool = False
    bsdiff: bool = True
    min_fallback_size: int = 4  # 0: no fallbacks
    max_bsdiff_size: int = 128
    max_chunk_size: int = 32
    big_endian: bool = False
    filename: str | None = None  # the superblock's path; parts beside it
    timestamp: int | None = None  # now if None


@dataclass
class Stats:
    new_metadata: int = 0
    new_regular: int = 0
    new_symlinks: int = 0
    rollsum: int = 0
    bsdiff: int = 0
    fallbacks: int = 0
    parts: list[tuple[int, int, int]] = field(default_factory=list)  # (n, compressed, usize)


@dataclass(frozen=True)
class Generated:
    name: sd.DeltaName
    superblock_path: str
    superblock: bytes  # as written (signed if a signer was given)
    stats: Stats


# ---------------------------------------------------------------- walking commits


@dataclass
class _Tree:
    """A commit's metadata objects (traversal order) and regular/symlink content
    objects with every basename they appear under."""

    metadata: dict[tuple[str, ObjectType], None] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)


def _read_metadata(repo: Repo, objtype: ObjectType, checksum: str) -> bytes:
    data = repo.read_metadata(objtype, checksum)
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:  # never ship a damaged object under its name
        raise CorruptObjectError(checksum, objtype.type_name, f"content has checksum {actual}")
    return data


def _walk(repo: Repo, commit_checksum: str) -> _Tree:
    commit = repo.load_commit(commit_checksum)
    out = _Tree()
    stack = [(commit.root_tree, commit.root_meta)]
    seen: set[str] = set()
    while stack:
        tree, meta = stack.pop()
        out.metadata.setdefault((tree, ObjectType.DIR_TREE), None)
        out.metadata.setdefault((meta, ObjectType.DIR_META), None)
        if tree in seen:
            continue
        seen.add(tree)
        dirtree = DirTree.parse(_read_metadata(repo, ObjectType.DIR_TREE, tree))
        for name, checksum in dirtree.files:
            out.files.setdefault(checksum, []).append(name)
        for _, subtree, submeta in reversed(dirtree.dirs):
            stack.append((subtree, submeta))
    return out


# ---------------------------------------------------------------- similar files


@dataclass(frozen=True)
class _SizeNames:
    checksum: str
    size: int
    names: tuple[str, ...]


def _keys(names: tuple[str, ...] | list[str], fuzzy: bool) -> set[str]:
    """What two objects must share to be paired: a basename, or with fuzzy also the
    stem before the first '.' when that is not at position 0 (ostree compares the
    prefixes of two names with a '.' at the same position: the same thing), so
    `libfoo.so.1` meets `libfoo.so.2`. Stems are kept apart from names by a '/',
    which no basename holds."""
    out = {f"/{n}" for n in names}
    if fuzzy:
        for n in names:
            dot = n.find(".")
            if dot > 0:
                out.add(n[:dot])
    return out


def _candidates(
    repo: Repo, files: dict[str, list[str]], wanted: Callable[[str, list[str]], bool]
) -> list[_SizeNames]:
    out = []
    for checksum, names in files.items():
        if any(n.endswith(_NEVER_SIMILAR) for n in names) or not wanted(checksum, names):
            continue
        info = repo.load_file(checksum)
        if not info.header.is_regular or info.size == 0:
            continue
        out.append(_SizeNames(checksum, info.size, tuple(names)))
    out.sort(key=lambda s: (s.size, s.checksum))
    return out


def similar_pairs(old: list[_SizeNames], new: list[_SizeNames]) -> dict[str, str]:
    """new checksum -> old checksum, ostree's two passes (exact names, then fuzzy).

    ostree scans the old objects in size order from the first one in the new one's
    size window ([70%, 130%]) and takes the first whose names meet; an index by name
    finds that same one without the scan."""
    pairs: dict[str, str] = {}
    for fuzzy in (False, True):
        index: dict[str, list[int]] = {}
        for j, o in enumerate(old):
            for key in _keys(o.names, fuzzy):
                index.setdefault(key, []).append(j)
        for n in new:
            if n.checksum in pairs:
                continue
            lo = int(n.size * (1.0 - SIMILARITY_PERCENT / 100.0))
            hi = int(n.size * (1.0 + SIMILARITY_PERCENT / 100.0))
            best = None
            for key in _keys(n.names, fuzzy):
                for j in index.get(key, ()):
                    if lo <= old[j].size <= hi and (best is None or j < best):
                        best = j
                        break  # the lists are in size order: later ones come after
                    if old[j].size > hi:
                        break
            if best is not None:
                pairs[n.checksum] = old[best].checksum
    return pairs


# ---------------------------------------------------------------- encoding objects


def _bsdiff(old: bytes, new: bytes) -> bytes:
    """The raw bsdiff stream ostree stores: per control triple, 24 bytes of control,
    then its diff bytes, then its extra bytes (no magic, no header, no bzip2)."""
    import bsdiff4.core  # type: ignore[import-untyped]  # only the generator needs it

    control, diff, extra = bsdiff4.core.diff(old, new)
    out = bytearray()
    dpos = epos = 0
    for i in range(0, len(control), 24):
        triple = control[i : i + 24]
        x = _offtin(triple[0:8])
        y = _offtin(triple[8:16])
        out += triple
        out += diff[dpos : dpos + x]
        out += extra[epos : epos + y]
        dpos += x
        epos += y
    return bytes(out)


def _offtin(b: bytes) -> int:
    v = int.from_bytes(b, "little") & ~(1 << 63)
    return -v if b[7] & 0x80 else v


class _Parts:
    def __init__(self, max_chunk: int):
        self.max = max_chunk
        self.done: list[dw.PartBuilder] = []
        self.cur = dw.PartBuilder()

    def _cut(self) -> None:
        self.done.append(self.cur)
        self.cur = dw.PartBuilder()

    def for_object(self, size: int) -> dw.PartBuilder:
        if self.cur.objects and len(self.cur.blob) + size > self.max:
            self._cut()
        return self.cur

    def for_modified(self) -> dw.PartBuilder:
        if self.cur.objects and len(self.cur.blob) > self.max:
            self._cut()
        return self.cur

    def all(self) -> list[dw.PartBuilder]:
        return [*self.done, self.cur] if self.cur.objects or not self.done else self.done


def _content_ids(part: dw.PartBuilder, header: FileHeader) -> tuple[int, int]:
    return part.mode_index(header.uid, header.gid, header.mode), part.xattr_index(header.xattrs)


def _emit_rollsum(
    part: dw.PartBuilder, header: FileHeader, old_csum: str, new: bytes, m: rollsum.Matches
) -> None:
    op = sd.OpCode
    src = part.add_blob(bytes.fromhex(old_csum))
    mi, xi = _content_ids(part, header)
    part.op(op.OPEN, mi, xi, len(new))
    active = False
    pos = 0
    for match in m.matches:
        if match.to_start > pos:
            if active:
                part.op(op.UNSET_READ_SOURCE)
                active = False
            off = part.add_blob(new[pos : match.to_start])
            part.op(op.WRITE, match.to_start - pos, off)
        if not active:
            part.op(op.SET_READ_SOURCE, src)
            active = True
        part.op(op.WRITE, match.length, match.from_start)
        pos = match.to_start + match.length
    if active:
        part.op(op.UNSET_READ_SOURCE)
    if pos < len(new):
        off = part.add_blob(new[pos:])
        part.op(op.WRITE, len(new) - pos, off)
    part.op(op.CLOSE)


def _emit_bsdiff(
    part: dw.PartBuilder, header: FileHeader, old_csum: str, size: int, patch: bytes
) -> None:
    op = sd.OpCode
    src = part.add_blob(bytes.fromhex(old_csum))
    part.op(op.SET_READ_SOURCE, src)
    mi, xi = _content_ids(part, header)
    part.op(op.OPEN, mi, xi, size)
    part.op(op.BSPATCH, part.add_blob(patch), len(patch))
    part.op(op.CLOSE)
    part.op(op.UNSET_READ_SOURCE)  # redundant after 'c', but ostree writes it


# ---------------------------------------------------------------- the generator


def resolve_endpoints(
    repo: Repo, from_rev: str | None, to_rev: str, empty: bool
) -> tuple[str | None, str]:
    """(FROM or None for scratch, TO) as ostree picks them: FROM defaults to TO's parent."""
    to = repo.resolve_rev(to_rev)
    if empty:
        return None, to
    if from_rev is not None:
        return repo.resolve_rev(from_rev), to
    parent = repo.load_commit(to).parent
    if parent is None:
        raise NotFoundError(f"Commit {to} has no parent")
    return parent, to


def superblock_path(repo: Repo, name: sd.DeltaName, opts: Options) -> str:
    if opts.filename is not None:
        return opts.filename
    return os.path.join(repo.path, name.relpath, "superblock")


def exists(repo: Repo, name: sd.DeltaName) -> bool:
    return os.path.isfile(os.path.join(repo.path, name.relpath, "superblock"))


def generate(
    repo: Repo,
    from_: str | None,
    to: str,
    opts: Options,
    signer: Callable[[bytes], bytes] | None = None,
) -> Generated:
    name = sd.DeltaName(from_, to)
    if from_ is not None and not repo.has_object(ObjectType.COMMIT, from_):
        raise NotFoundError(f"No such metadata object {from_}.commit")
    commit_bytes = _read_metadata(repo, ObjectType.COMMIT, to)
    stats = Stats()
    parts = _Parts(opts.max_chunk_size * MB)
    fallbacks: list[dw.FallbackInfo] = []

    to_tree = _walk(repo, to)
    from_tree = _walk(repo, from_) if from_ is not None else _Tree()
    new_meta = [m for m in to_tree.metadata if m not in from_tree.metadata]
    new_files = {c: n for c, n in to_tree.files.items() if c not in from_tree.files}
    infos = {c: repo.load_file(c) for c in new_files}
    regular = [c for c in new_files if infos[c].header.is_regular]
    symlinks = [c for c in new_files if infos[c].header.is_symlink]
    stats.new_metadata, stats.new_regular, stats.new_symlinks = (
        len(new_meta),
        len(regular),
        len(symlinks),
    )

    # 1. metadata
    for csum, objtype in new_meta:
        data = _read_metadata(repo, objtype, csum)
        part = parts.for_object(len(data))
        part.op(sd.OpCode.OPEN_SPLICE_AND_CLOSE, len(data), part.add_blob(data))
        part.objects.append((objtype, csum))
        part.usize += len(data)

    # 2./3. new files similar to old ones: rollsum, else bsdiff
    rolled: list[tuple[str, str, bytes, rollsum.Matches]] = []
    diffed: list[tuple[str, str, bytes]] = []
    if from_ is not None and regular:
        new = _candidates(repo, new_files, lambda c, _: infos[c].header.is_regular)
        # only old files that share a name or stem with a new one can pair: the others
        # are not even read
        keys = set().union(*(_keys(n.names, True) for n in new))
        old = _candidates(repo, from_tree.files, lambda _, names: bool(_keys(names, True) & keys))
        for new_csum, old_csum in similar_pairs(old, new).items():
            if not repo.load_file(old_csum).header.mode & stat.S_IROTH:
                continue  # a bare-user client might not be able to read it
            old_data = repo.read_payload(old_csum)
            new_data = repo.read_payload(new_csum)
            m = rollsum.match(old_data, new_data)
            if m.usable:
                rolled.append((new_csum, old_csum, new_data, m))
            elif opts.bsdiff and len(old_data) + len(new_data) <= opts.max_bsdiff_size * MB:
                diffed.append((new_csum, old_csum, _bsdiff(old_data, new_data)))
    for new_csum, old_csum, new_data, m in rolled:
        part = parts.for_modified()
        _emit_rollsum(part, infos[new_csum].header, old_csum, new_data, m)
        part.objects.append((ObjectType.FILE, new_csum))
        part.usize += len(new_data)
    for new_csum, old_csum, patch in diffed:
        part = parts.for_modified()
        size = infos[new_csum].size
        _emit_bsdiff(part, infos[new_csum].header, old_csum, size, patch)
        part.objects.append((ObjectType.FILE, new_csum))
        part.usize += size
    stats.rollsum, stats.bsdiff = len(rolled), len(diffed)

    # 4. plain regular files (big ones as fallbacks), 5. symlinks
    modified = {c for c, *_ in rolled} | {c for c, *_ in diffed}
    for csum in regular:
        if csum in modified:
            continue
        header, size = infos[csum].header, infos[csum].size
        stream_size = len(header.content_stream_prefix()) + size
        if opts.min_fallback_size and stream_size > opts.min_fallback_size * MB:
            st = os.stat(repo.object_relpath(csum, ObjectType.FILE), dir_fd=repo.dfd)
            fallbacks.append(dw.FallbackInfo(csum, st.st_size, size))
            continue
        data = repo.read_payload(csum)
        if len(data) != size:
            raise CorruptObjectError(csum, "file", f"has {len(data)} bytes, expected {size}")
        part = parts.for_object(size)
        mi, xi = _content_ids(part, header)
        part.op(sd.OpCode.OPEN_SPLICE_AND_CLOSE, mi, xi, size, part.add_blob(data))
        part.objects.append((ObjectType.FILE, csum))
        part.usize += size
    for csum in symlinks:
        header = infos[csum].header
        target = header.symlink_target.encode("utf-8", "surrogateescape")
        part = parts.for_object(len(target))
        mi, xi = _content_ids(part, header)
        part.op(sd.OpCode.OPEN_SPLICE_AND_CLOSE, mi, xi, len(target), part.add_blob(target))
        part.objects.append((ObjectType.FILE, csum))
    stats.fallbacks = len(fallbacks)

    files = [dw.part_file(p.payload()) for p in parts.all()]
    infos_out = [
        dw.PartInfo.of(f, p.usize, p.objects) for f, p in zip(files, parts.all(), strict=True)
    ]
    stats.parts = [(len(i.objects), i.size, i.usize) for i in infos_out]

    metadata: list[tuple[str, Variant]] = [dw.endianness_entry(opts.big_endian)]
    if opts.inline:
        for i, f in enumerate(files):
            metadata.append((f"{name.relpath}/{i}", Variant("(yay)", (f[0], f[1:]))))
    commitmeta = repo.load_commitmeta(to)
    if commitmeta is not None:
        metadata.append((f"{name.relpath}/commitmeta", Variant("a{sv}", commitmeta)))
    superblock = dw.encode_superblock(
        metadata=metadata,
        timestamp=int(time.time()) if opts.timestamp is None else opts.timestamp,
        from_=from_,
        to=to,
        commit_bytes=commit_bytes,
        parts=infos_out,
        fallbacks=fallbacks,
        big_endian=opts.big_endian,
    )
    if signer is not None:
        superblock = signer(superblock)

    path = superblock_path(repo, name, opts)
    _write(
        path, [] if opts.inline else files, superblock, repo.fsync_enabled, opts.filename is None
    )
    return Generated(name, path, superblock, stats)


def _write(path: str, parts: list[bytes], superblock: bytes, fsync: bool, in_repo: bool) -> None:
    directory = os.path.dirname(path) or "."
    if in_repo:
        os.makedirs(directory, mode=0o775, exist_ok=True)
    elif not os.path.isdir(directory):
        raise SysrootError(f"Directory {directory} for the delta does not exist")
    for i, data in enumerate(parts):
        fsutil.atomic_write(os.path.join(directory, str(i)), data, fsync=fsync)
    fsutil.atomic_write(path, superblock, fsync=fsync)


def iter_part_lines(stats: Stats) -> Iterator[str]:
    """ostree's verbose report lines for the parts (1-based part numbers)."""
    for i, (n, size, usize) in enumerate(stats.parts, 1):
        yield f"part {i} n:{n} compressed:{size} uncompressed:{usize}"
