"""Static deltas in a repository: listing, deleting, and applying one offline (the part
interpreter). The byte formats are in formats/static_delta.py.

Every object a part makes goes through the transaction's checked writers with the
checksum the part lists, so a wrong byte anywhere means an error and nothing stored
under a final name; the transaction is dropped on any error, so an apply either stores
all its objects or none.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from sysroot.errors import FormatError, NotFoundError, SysrootError
from sysroot.formats import gvariant
from sysroot.formats import static_delta as sd
from sysroot.formats.bspatch import bspatch
from sysroot.formats.objects import FileHeader, ObjectType, checksum_hex, mbase64_checksum_hex
from sysroot.store.repo import Repo
from sysroot.store.transaction import Transaction
from sysroot.util import fsutil

SUPERBLOCK = "superblock"


def list_deltas(repo: Repo) -> list[sd.DeltaName]:
    """Deltas with a superblock, in directory order as `ostree static-delta list`."""
    out: list[sd.DeltaName] = []
    try:
        outer = list(os.scandir(os.path.join(repo.path, "deltas")))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for d in outer:
        if not d.is_dir(follow_symlinks=False):
            continue
        for sub in os.scandir(d.path):
            name = sd.DeltaName.from_dirnames(d.name, sub.name)
            if name is not None and os.path.isfile(os.path.join(sub.path, SUPERBLOCK)):
                out.append(name)
    return out


def list_indexes(repo: Repo) -> list[str]:
    """TO commits with a delta index file, in directory order (`static-delta indexes`)."""
    out: list[str] = []
    try:
        outer = list(os.scandir(os.path.join(repo.path, "delta-indexes")))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for d in outer:
        if not d.is_dir(follow_symlinks=False):
            continue
        for f in os.scandir(d.path):
            stem, dot, ext = f.name.rpartition(".")
            to = mbase64_checksum_hex(d.name + stem) if dot and ext == "index" else None
            if to is not None:
                out.append(to)
    return out


def _read_capped(path: str, cap: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise SysrootError(f"{what} {path} is a directory") from None
    if len(data) > cap:
        raise FormatError(f"{what} {path} is larger than {cap} bytes")
    return data


@dataclass(frozen=True)
class LoadedDelta:
    superblock: sd.Superblock
    part_dir: str  # where the part files are: the superblock's directory
    relpath: str  # the delta's directory in a repository: inline part keys use it
    raw: bytes = b""  # the superblock file as read (signatures cover its inner part)


def load_path(path: str) -> LoadedDelta:
    """A delta as apply-offline takes it: a directory holding `superblock`, or the
    superblock file itself with the parts beside it (whatever its name)."""
    sb_path = os.path.join(path, SUPERBLOCK) if os.path.isdir(path) else path
    raw = _read_capped(sb_path, sd.MAX_SUPERBLOCK, "Delta superblock")
    sb = sd.parse_superblock(raw)
    return LoadedDelta(sb, os.path.dirname(sb_path) or ".", sb.name.relpath, raw)


def load_named(repo: Repo, name: sd.DeltaName) -> LoadedDelta:
    d = os.path.join(repo.path, name.relpath)
    if not os.path.isfile(os.path.join(d, SUPERBLOCK)):
        raise NotFoundError(f"Static delta {name} not found")
    return load_path(d)


def delete_delta(repo: Repo, name: sd.DeltaName) -> None:
    """Remove the delta's directory (ostree leaves the index for `summary -u`)."""
    with repo.lock(exclusive=True):
        if not os.path.isdir(os.path.join(repo.path, name.relpath)):
            raise NotFoundError(f"Can't find delta {name}")
        fsutil.rmtree_at(repo.dfd, name.relpath)


def part_payload(
    delta: LoadedDelta, index: int, *, inline: bool = True, check: bool = True
) -> sd.PartPayload:
    """Part index read (from the superblock if inline, else its file), checked, parsed.
    2022.7's `show` reads the file even for inline deltas and does not check its
    checksum: inline=False, check=False."""
    header = delta.superblock.parts[index]
    if header.version > sd.PART_VERSION:
        raise FormatError(f"Delta part has too new version {header.version}")
    data = delta.superblock.inline_part(delta.relpath, index) if inline else None
    expected: str | None = None  # ostree does not check inline parts' checksums
    if data is None:
        path = os.path.join(delta.part_dir, str(index))
        data = _read_capped(path, sd.MAX_PART_FILE, "Delta part")
        expected = header.checksum if check else None
    return sd.parse_part_payload(sd.decompress_part(data, expected))


# ---------------------------------------------------------------- the interpreter


def _slice(blob: bytes, offset: int, size: int) -> bytes:
    if offset + size > len(blob):
        raise FormatError(f"Invalid offset/length {offset}/{size} in delta part")
    return blob[offset : offset + size]


class _Part:
    """One part's operations against a transaction (2022.7's state machine, §3.5)."""

    def __init__(self, tx: Transaction, header: sd.PartHeader, payload: sd.PartPayload):
        self.tx = tx
        self.objects = header.objects
        self.p = payload
        self.idx = 0
        self.source: bytes | None = None
        self.out: bytearray | None = None
        self.out_size = 0
        self.out_header: FileHeader | None = None
        # rollsum objects set the same source again after each literal run: keep the
        # last one read instead of reading the whole file each time
        self._last_source: tuple[str, bytes] | None = None

    def _file_header(self, mode_idx: int, xattr_idx: int, target: str = "") -> FileHeader:
        if mode_idx >= len(self.p.modes) or xattr_idx >= len(self.p.xattrs):
            raise FormatError(f"Invalid mode/xattr index {mode_idx}/{xattr_idx} in delta part")
        uid, gid, mode = self.p.modes[mode_idx]
        return FileHeader(uid, gid, mode, target, self.p.xattrs[xattr_idx])

    def _current(self) -> tuple[ObjectType, str]:
        if self.idx >= len(self.objects):
            raise FormatError("Delta part has more operations than objects")
        return self.objects[self.idx]

    def _next(self) -> None:
        self.idx += 1
        self.source = None

    def splice(self, args: tuple[int, ...]) -> None:
        objtype, csum = self._current()
        if objtype.is_metadata:
            size, offset = args
            data = _slice(self.p.blob, offset, size)
            if objtype.gvariant_type is not None:
                gvariant.decode(objtype.gvariant_type, data)  # a parse error says more
            self.tx.write_metadata(objtype, data, expected=csum)
        elif objtype is ObjectType.FILE:
            mode_idx, xattr_idx, size, offset = args
            data = _slice(self.p.blob, offset, size)
            mode = self._file_header(mode_idx, xattr_idx).mode
            if stat.S_ISLNK(mode):
                try:
                    target = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise FormatError("Invalid symlink target in delta part") from None
                self.tx.write_content(self._file_header(mode_idx, xattr_idx, target), None, csum)
            else:
                header = self._file_header(mode_idx, xattr_idx)
                self.tx.write_content(header, [data], csum, size=len(data))
        else:
            raise FormatError(f"Invalid object type {objtype} in delta part")
        self._next()

    def open(self, args: tuple[int, ...]) -> None:
        objtype, _ = self._current()
        mode_idx, xattr_idx, size = args
        header = self._file_header(mode_idx, xattr_idx)
        if objtype is not ObjectType.FILE or not stat.S_ISREG(header.mode):
            raise FormatError("Delta part opens an object that is not a regular file")
        if self.out is not None:
            raise FormatError("Delta part opens an object while one is open")
        if size > sd.MAX_PART_PAYLOAD:
            raise FormatError(f"Delta part object of {size} bytes is too large")
        self.out, self.out_size, self.out_header = bytearray(), size, header

    def _need_out(self) -> bytearray:
        if self.out is None:
            raise FormatError("Delta part writes without an open object")
        return self.out

    def write(self, args: tuple[int, ...]) -> None:
        size, offset = args
        out = self._need_out()
        if self.source is not None:
            if offset + size > len(self.source):
                raise FormatError("Unexpected EOF reading object")
            data = self.source[offset : offset + size]
        else:
            data = _slice(self.p.blob, offset, size)
        if len(out) + len(data) > self.out_size:
            raise FormatError("Delta part writes past the end of its object")
        out += data

    def set_source(self, args: tuple[int, ...]) -> None:
        raw = _slice(self.p.blob, args[0], 32)
        csum = checksum_hex(raw)
        if self._last_source is None or self._last_source[0] != csum:
            repo = self.tx.repo
            if not repo.has_object(ObjectType.FILE, csum):
                raise NotFoundError(f"Delta source object {csum} is not in the repository")
            self._last_source = (csum, repo.read_payload(csum))
        self.source = self._last_source[1]

    def bspatch(self, args: tuple[int, ...]) -> None:
        offset, length = args
        out = self._need_out()
        if self.source is None:
            raise FormatError("Delta part bspatch without a read source")
        patch = _slice(self.p.blob, offset, length)
        out[:] = bspatch(self.source, self.out_size, patch)

    def close(self) -> None:
        _, csum = self._current()
        out, header = self._need_out(), self.out_header
        if len(out) != self.out_size or header is None:
            raise FormatError(f"Delta part object {csum} has {len(out)} of {self.out_size} bytes")
        self.tx.write_content(header, [bytes(out)], csum, size=len(out))
        self.out = self.out_header = None
        self._next()

    def run(self) -> None:
        for op in sd.iter_ops(self.p.ops, self.objects):
            code = op.code
            if code is sd.OpCode.OPEN_SPLICE_AND_CLOSE:
                self.splice(op.args)
            elif code is sd.OpCode.OPEN:
                self.open(op.args)
            elif code is sd.OpCode.WRITE:
                self.write(op.args)
            elif code is sd.OpCode.SET_READ_SOURCE:
                self.set_source(op.args)
            elif code is sd.OpCode.UNSET_READ_SOURCE:
                self.source = None
            elif code is sd.OpCode.BSPATCH:
                self.bspatch(op.args)
            else:
                self.close()
        if self.out is not None:
            raise FormatError("Delta part ends with an object still open")


def execute_part(tx: Transaction, delta: LoadedDelta, index: int) -> None:
    header = delta.superblock.parts[index]
    if all(tx.has_object(t, c) for t, c in header.objects):
        return  # ostree skips a part whose objects are all present, unread
    _Part(tx, header, part_payload(delta, index)).run()


def execute_part_bytes(
    tx: Transaction, header: sd.PartHeader, data: bytes, *, check: bool = True
) -> None:
    """Run one part given as the bytes of its file (a pull's download, or an inline
    part with check=False), after checking its version and (check) its sha256."""
    if header.version > sd.PART_VERSION:
        raise FormatError(f"Delta part has too new version {header.version}")
    payload = sd.parse_part_payload(sd.decompress_part(data, header.checksum if check else None))
    _Part(tx, header, payload).run()


def _missing_objects(tx: Transaction, delta: LoadedDelta) -> Iterator[tuple[ObjectType, str]]:
    for header in delta.superblock.parts:
        for t, c in header.objects:
            if not tx.has_object(t, c):
                yield t, c


def apply_offline(repo: Repo, delta: LoadedDelta) -> None:
    """ostree's `static-delta apply-offline`: write the TO commit and every object of
    the parts into repo, in one transaction; no ref is created or moved."""
    sb = delta.superblock
    if sb.from_ is not None and not repo.has_object(ObjectType.COMMIT, sb.from_):
        raise NotFoundError(f"Commit {sb.from_}, which is the delta source, is not in repository")
    if sb.fallbacks:
        raise SysrootError("Cannot execute delta offline: contains nonempty http fallback entries")
    with repo.transaction() as tx:
        new_commit = not tx.has_object(ObjectType.COMMIT, sb.to)
        if new_commit:
            sb.commit  # noqa: B018 -- parse it: a broken commit fails here with its reason
            tx.write_metadata(ObjectType.COMMIT, sb.commit_bytes, expected=sb.to)
        for i in range(len(sb.parts)):
            execute_part(tx, delta, i)
        missing = next(_missing_objects(tx, delta), None)
        if missing is not None:
            raise FormatError(
                f"Delta part left object {missing[1]}.{missing[0].type_name} unwritten"
            )
        # As ostree, the detached metadata the delta carries (signatures) comes with a
        # commit it writes. Written last: it is not staged, so nothing may fail after.
        meta = sb.commitmeta(delta.relpath)
        if new_commit and meta is not None:
            tx.write_commitmeta(sb.to, meta)
