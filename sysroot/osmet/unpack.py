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
from collections.abc import Iterator
from typing import BinaryIO

from sysroot.errors import SysrootError
from sysroot.formats.objects import ObjectType
from sysroot.formats.osmet import Body, Header
from sysroot.formats.osmet import read as read_osmet
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo

CHUNK = 1 << 20


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

    def read(self, checksum: bytes, logical: int, length: int) -> Iterator[bytes]:
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
        while given < length:  # a block-rounded extent past the object's end
            pad = min(CHUNK, length - given)
            given += pad
            yield bytes(pad)

    def _bare_range(self, hexsum: str, logical: int, length: int) -> Iterator[bytes]:
        path = self.repo.object_path(hexsum, ObjectType.FILE)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise SysrootError(f"content object {hexsum}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            f.seek(logical)
            left = length
            while left and (chunk := f.read(min(left, CHUNK))):
                left -= len(chunk)
                yield chunk

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
    """Exact reads from the xz-compressed packed stream."""

    def __init__(self, f: BinaryIO, path: str):
        # closed with f, by the caller: LZMAFile does not close a file object it is given
        self._xz = lzma.LZMAFile(f, format=lzma.FORMAT_XZ)  # noqa: SIM115
        self._path = path

    def copy(self, n: int) -> Iterator[bytes]:
        while n:
            chunk = self._read(min(n, CHUNK))
            if not chunk:
                raise OsmetMismatchError(f"{self._path}: the packed stream ends early")
            n -= len(chunk)
            yield chunk

    def rest(self, limit: int) -> Iterator[bytes]:
        """What is left, but never more than limit bytes (a hostile stream can expand
        without end)."""
        while chunk := self._read(CHUNK):
            if len(chunk) > limit:
                raise OsmetMismatchError(f"{self._path}: the packed stream is too long")
            limit -= len(chunk)
            yield chunk

    def _read(self, n: int) -> bytes:
        try:
            return self._xz.read(n)
        except (lzma.LZMAError, EOFError) as e:
            raise OsmetMismatchError(f"{self._path}: the packed stream is corrupt ({e})") from None


def image_chunks(
    f: BinaryIO, body: Body, objects: ObjectSource, path: str = "osmet file"
) -> Iterator[bytes]:
    """The image, in order; the last step checks its size and SHA-256 (the error is
    raised instead of ending the iteration)."""
    packed = _Packed(f, path)
    digest = hashlib.sha256()
    pos = 0

    def out(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal pos
        for chunk in chunks:
            pos += len(chunk)
            if pos > body.size:
                raise OsmetMismatchError(f"{path}: the image would be longer than {body.size}")
            digest.update(chunk)
            yield chunk

    for part in body.partitions:
        for m in part.mappings:
            start = part.start_offset + m.extent.physical
            yield from out(packed.copy(start - pos))
            yield from out(objects.read(m.object, m.extent.logical, m.extent.length))
    yield from out(packed.rest(body.size - pos))
    if pos != body.size:
        raise OsmetMismatchError(f"{path}: the image is {pos} bytes, the file says {body.size}")
    if digest.digest() != body.checksum:
        raise OsmetMismatchError(
            f"{path}: expected SHA-256 {body.checksum.hex()} but the image has"
            f" {digest.hexdigest()} (a damaged object or packed stream)"
        )
