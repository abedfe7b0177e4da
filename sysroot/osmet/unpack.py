"""The image again, from an osmet file's packed stream and a repository's objects.

The packed stream is the image with every mapped extent cut out; walking the
partitions' mappings in disk order, packed bytes fill up to each extent and the
object's bytes fill the extent (zeros past the object's end: an extent may cover a
whole last block). What comes out is hashed as it goes; after the last byte the
SHA-256 and the size must be the file's, or the stream ends in an error, so a
consumer that reaches the end without one has the verified image.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import queue
import threading
from collections.abc import Iterator
from typing import BinaryIO

from sysroot.errors import FormatError, SysrootError
from sysroot.formats import xz
from sysroot.formats.objects import ObjectType
from sysroot.formats.osmet import Body, Header
from sysroot.formats.osmet import read as read_osmet
from sysroot.formats.xz import ZeroRun
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo

CHUNK = 1 << 20
_ZEROS = memoryview(bytes(CHUNK))

Piece = bytes | memoryview | ZeroRun


class OsmetMismatchError(SysrootError):
    """The rebuilt image is not the one the osmet file describes."""


def open_osmet(path: str) -> tuple[BinaryIO, Header, Body]:
    """path opened and its header and body read; the file is left at the xz stream."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise SysrootError(f"{path}: {e.strerror}") from None
    try:
        header, body = read_osmet(f)
    except SysrootError as e:
        f.close()
        raise SysrootError(f"{path}: {e}") from None
    except BaseException:
        f.close()
        raise
    return f, header, body


class ObjectSource:
    """Reads ranges of content objects of a repository in any mode (an archive
    repository's objects are decompressed from their start)."""

    def __init__(self, repo: Repo):
        self.repo = repo

    def missing(self, body: Body) -> list[str]:
        wanted = {m.object for p in body.partitions for m in p.mappings}
        return sorted(c.hex() for c in wanted if not self.repo.has_object(ObjectType.FILE, c.hex()))

    def read(self, checksum: bytes, logical: int, length: int) -> Iterator[Piece]:
        """length bytes of the object from offset logical, zeros past its end."""
        hexsum = checksum.hex()
        if self.repo.mode is RepoMode.ARCHIVE:
            data = self._archive_range(hexsum, logical, length)
        else:
            data = self._bare_range(hexsum, logical, length)
        given = 0
        for chunk in data:
            given += len(chunk)
            yield chunk
        if given < length:  # a block-rounded extent past the object's end
            yield ZeroRun(length - given)

    def _bare_range(self, hexsum: str, logical: int, length: int) -> Iterator[bytes]:
        path = self.repo.object_path(hexsum, ObjectType.FILE)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise SysrootError(f"content object {hexsum}: {e.strerror}") from None
        try:
            at, end = logical, logical + length
            while at < end and (chunk := os.pread(fd, min(end - at, CHUNK), at)):
                at += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def _archive_range(self, hexsum: str, logical: int, length: int) -> Iterator[bytes]:
        skip, left = logical, length
        for chunk in self.repo.iter_payload(hexsum):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            piece = chunk[skip : skip + left]
            skip = 0
            left -= len(piece)
            yield piece
            if not left:
                return


class _Packed:
    """Exact reads from the xz-compressed packed stream, which fills the file from where
    f stands to its end. A stream laid out as XzWriter writes it is read block by block
    (its reused zero blocks become ZeroRuns without being decoded); any other, such as
    coreos-installer's single block, through one plain decoder."""

    def __init__(self, f: BinaryIO, path: str):
        self._path = path
        start = f.tell()
        layout = xz.stream_layout(f, start, os.fstat(f.fileno()).st_size)
        if layout is None:
            f.seek(start)
            self._pieces: Iterator[Piece] = self._streamed(f)
        else:
            self._pieces = xz.BlockReader(f, layout).pieces()
        self._left: Piece | None = None

    @staticmethod
    def _streamed(f: BinaryIO) -> Iterator[bytes]:
        # closed with f, by the caller: LZMAFile does not close a file object it is given
        with lzma.LZMAFile(f, format=lzma.FORMAT_XZ) as stream:
            while chunk := stream.read(CHUNK):
                yield chunk

    def _next(self) -> Piece | None:
        if self._left is not None:
            piece, self._left = self._left, None
            return piece
        try:
            return next(self._pieces, None)
        except (FormatError, lzma.LZMAError, EOFError) as e:
            raise OsmetMismatchError(f"{self._path}: the packed stream is corrupt ({e})") from None

    def copy(self, n: int) -> Iterator[Piece]:
        while n:
            piece = self._next()
            if piece is None:
                raise OsmetMismatchError(f"{self._path}: the packed stream ends early")
            if piece_size(piece) > n:
                piece, self._left = _split(piece, n)
            n -= piece_size(piece)
            yield piece

    def rest(self, limit: int) -> Iterator[Piece]:
        """What is left, but never more than limit bytes (a hostile stream can expand
        without end)."""
        while (piece := self._next()) is not None:
            if piece_size(piece) > limit:
                raise OsmetMismatchError(f"{self._path}: the packed stream is too long")
            limit -= piece_size(piece)
            yield piece


def piece_size(piece: Piece) -> int:
    return piece.length if isinstance(piece, ZeroRun) else len(piece)


def _split(piece: Piece, n: int) -> tuple[Piece, Piece]:
    if isinstance(piece, ZeroRun):
        return ZeroRun(n), ZeroRun(piece.length - n)
    view = memoryview(piece)  # no copies of the halves
    return view[:n], view[n:]


def zero_views(length: int) -> Iterator[memoryview]:
    """length zero bytes as views of one shared buffer."""
    while length:
        n = min(length, CHUNK)
        length -= n
        yield _ZEROS[:n]


class _Sha256Thread:
    """SHA-256 of the pieces, computed on a thread of its own: hashlib lets go of the
    GIL while it hashes, so the hash (the largest single cost of an unpack: about
    0.7 s a GB here) runs beside the decoding, reading and writing instead of after
    each piece. At most DEPTH pieces (of at most a MiB) wait for it.

    Runs of zeros are gathered and hashed ZERO_SPAN at a time: between two updates the
    thread needs the GIL back, and while the other thread runs Python it waits up to
    the interpreter's switch interval (5 ms) for it — with 1 MiB updates (0.7 ms each)
    the two threads barely overlapped."""

    DEPTH = 32
    ZERO_SPAN = 16 << 20

    def __init__(self) -> None:
        self._queue: queue.Queue[Piece | None] = queue.Queue(maxsize=self.DEPTH)
        self._sha = hashlib.sha256()
        self._zeros = 0  # zero bytes given but not yet hashed
        self._thread = threading.Thread(target=self._run, name="osmet-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # untouched pages of a fresh allocation: reading them costs no memory
        span = memoryview(bytes(self.ZERO_SPAN))
        while (piece := self._queue.get()) is not None:
            if isinstance(piece, ZeroRun):
                self._zeros += piece.length
                self._hash_zeros(span, whole_spans_only=True)
            else:
                self._hash_zeros(span, whole_spans_only=False)
                self._sha.update(piece)
        self._hash_zeros(span, whole_spans_only=False)

    def _hash_zeros(self, span: memoryview, *, whole_spans_only: bool) -> None:
        while self._zeros >= len(span) or (self._zeros and not whole_spans_only):
            n = min(self._zeros, len(span))
            self._sha.update(span[:n])
            self._zeros -= n

    def update(self, piece: Piece) -> None:
        self._queue.put(piece)

    def finish(self) -> bytes:
        """The digest of everything given; the thread is gone after this."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self._sha.digest()


def image_chunks(
    f: BinaryIO, body: Body, objects: ObjectSource, path: str = "osmet file"
) -> Iterator[Piece]:
    """The image, in order, as pieces (bytes, or ZeroRuns where the packed stream says
    zeros cheaply); the last step checks its size and SHA-256 (the error is raised
    instead of ending the iteration)."""
    packed = _Packed(f, path)
    digest = _Sha256Thread()
    pos = 0

    def out(pieces: Iterator[Piece]) -> Iterator[Piece]:
        nonlocal pos
        for piece in pieces:
            pos += piece_size(piece)
            if pos > body.size:
                raise OsmetMismatchError(f"{path}: the image would be longer than {body.size}")
            digest.update(piece)
            yield piece

    try:
        for part in body.partitions:
            for m in part.mappings:
                start = part.start_offset + m.extent.physical
                yield from out(packed.copy(start - pos))
                yield from out(objects.read(m.object, m.extent.logical, m.extent.length))
        yield from out(packed.rest(body.size - pos))
    finally:
        checksum = digest.finish()  # also when the consumer stops early: no stray thread
    if pos != body.size:
        raise OsmetMismatchError(f"{path}: the image is {pos} bytes, the file says {body.size}")
    if checksum != body.checksum:
        raise OsmetMismatchError(
            f"{path}: expected SHA-256 {body.checksum.hex()} but the image has"
            f" {checksum.hex()} (a damaged object or packed stream)"
        )
