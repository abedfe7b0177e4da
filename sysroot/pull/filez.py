"""Decoding archive-mode content objects (`.filez`) as their bytes arrive.

A .filez is a length-prefixed `(tuuuusa(ayay))` header (uncompressed size first), then
the payload as a raw deflate stream. Pulls read them from the network in chunks, so
the decoder takes chunks and hands back payload bytes, and it refuses a stream that
ends early, decompresses to more or fewer bytes than the header says, or is not valid
deflate. The checksum itself is checked by whoever hashes the result (the
Transaction, or verified_raw below).

The header's size bounds everything after it, so a hostile server cannot make a pull
read or hold more than that: the payload is inflated in steps of at most _STEP bytes
(a "bomb" that says 10 bytes and inflates forever stops after 10 + _STEP), and the
compressed bytes may not exceed what deflate could need for that size (an endless
stream of empty blocks, or of data after the end of the deflate stream, stops too).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator

from sysroot.errors import CorruptObjectError, FormatError
from sysroot.formats.objects import FileHeader

_MAX_HEADER = 1 << 20
_STEP = 1 << 20  # the most bytes inflated at once


def _max_compressed(size: int) -> int:
    """The most deflate bytes a payload of size bytes may take: zlib's compressBound
    (stored blocks, its worst case) with room to spare for other compressors."""
    return size + (size >> 8) + (64 << 10)


class FilezDecoder:
    def __init__(self, checksum: str):
        self.checksum = checksum
        self.header: FileHeader | None = None
        self.size = 0
        self.total = 0
        self.raw = 0  # bytes of the .filez fed so far
        self._raw_limit = 0  # known once the header is
        self._buf = bytearray()
        self._z = zlib.decompressobj(-15)

    def _corrupt(self, problem: str) -> CorruptObjectError:
        return CorruptObjectError(self.checksum, "file", problem)

    def feed(self, chunk: bytes) -> bytes:
        """Payload bytes decoded from this chunk (b"" while the header is incomplete)."""
        return b"".join(self.pieces(chunk))

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        """Payload bytes decoded from this chunk, in pieces of at most _STEP bytes."""
        self.raw += len(chunk)
        if self.header is None:
            self._buf += chunk
            if len(self._buf) < 8:
                return
            length = int.from_bytes(self._buf[:4], "big")
            if length == 0 or length > _MAX_HEADER:
                raise self._corrupt(f"invalid header length {length}")
            if len(self._buf) < 8 + length:
                return
            try:
                self.header, self.size = FileHeader.parse_zlib(bytes(self._buf[8 : 8 + length]))
                self.header.validate()
            except FormatError as e:
                raise self._corrupt(str(e)) from None
            self._raw_limit = (
                8 + length + _max_compressed(0 if self.header.is_symlink else self.size)
            )
            chunk = bytes(self._buf[8 + length :])
            self._buf = bytearray()
        if self.raw > self._raw_limit:
            raise self._corrupt(
                f"more than {self._raw_limit} bytes, too long for the "
                f"{self.size} bytes its header says"
            )
        if self.header.is_symlink:
            return  # a symlink has no payload: anything after the header is ignored
        while chunk and not self._z.eof:  # after the end: ignored (and bounded above)
            try:
                out = self._z.decompress(chunk, _STEP)
            except zlib.error as e:
                raise self._corrupt(f"bad compressed data: {e}") from None
            chunk = self._z.unconsumed_tail
            self.total += len(out)
            if self.total > self.size:
                raise self._corrupt(f"payload is longer than the {self.size} bytes its header says")
            if out:
                yield out

    def finish(self) -> bytes:
        if self.header is None:
            raise self._corrupt("truncated archive header")
        if self.header.is_symlink:
            return b""
        try:
            out = self._z.flush()
        except zlib.error as e:
            raise self._corrupt(f"bad compressed data: {e}") from None
        self.total += len(out)
        if not self._z.eof or self.total != self.size:
            raise self._corrupt(
                f"compressed payload gives {self.total} bytes, header says {self.size}"
            )
        return out


def decode(chunks: Iterable[bytes], checksum: str) -> tuple[FileHeader, Iterator[bytes]]:
    """(header, payload chunks) of a .filez stream; the payload must be consumed."""
    it = iter(chunks)
    dec = FilezDecoder(checksum)
    first: list[bytes] = []
    while dec.header is None:
        chunk = next(it, None)
        if chunk is None:
            dec.finish()  # raises: the stream ended inside the header
            raise AssertionError("finish() accepted a stream without a whole header")
        first.extend(dec.pieces(chunk))

    def payload() -> Iterator[bytes]:
        yield from first
        for chunk in it:
            yield from dec.pieces(chunk)
        out = dec.finish()
        if out:
            yield out

    return dec.header, payload()


def verified_raw(
    chunks: Iterable[bytes],
    checksum: str,
    on_header: Callable[[FileHeader], None] | None = None,
    counter: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The .filez bytes unchanged, decoded and hashed on the way; raises at the end,
    instead of finishing, unless they are exactly the content object checksum."""
    dec = FilezDecoder(checksum)
    h: hashlib._Hash | None = None

    def start() -> hashlib._Hash:
        header = dec.header
        assert header is not None  # started once the header is decoded
        if on_header is not None:
            on_header(header)
        return hashlib.sha256(header.content_stream_prefix())

    for chunk in chunks:
        for out in dec.pieces(chunk):  # the header is known before any payload
            h = h or start()
            h.update(out)
        if h is None and dec.header is not None:
            h = start()
        yield chunk
    out = dec.finish()
    assert h is not None  # finish() raised unless the header, and so h, was there
    h.update(out)
    actual = h.hexdigest()
    if actual != checksum:
        raise CorruptObjectError(checksum, "file", f"content hashes to {actual}")
    if counter is not None:
        counter(dec.total)
