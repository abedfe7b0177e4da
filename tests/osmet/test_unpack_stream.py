"""osmet/unpack.py on small files made here from a real repository's object: the
packed stream as our writer lays it out (read block by block, its repeated zero
blocks as ZeroRuns), as coreos-installer's liblzma writes it (one block), and laid
out otherwise (two streams: read by a plain decoder) — each unpacks to the same
image with its SHA-256 checked; the SHA-256 thread never outlives an unpack."""

from __future__ import annotations

import hashlib
import io
import lzma
import random
import subprocess
import threading
from pathlib import Path

import pytest

from sysroot.formats import osmet, xz
from sysroot.formats.xz import ZERO_BLOCK, XzWriter, ZeroRun
from sysroot.osmet.unpack import ObjectSource, OsmetMismatchError, image_chunks, open_osmet
from sysroot.store.repo import Repo

MIB = 1 << 20
PART_START, PART_END = MIB, 23 * MIB
OBJECT_AT = 2 * MIB  # in the partition
OBJECT_SIZE = 100_000


def _repo_with_object(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """An archive repository holding one file; (repo, its content, its checksum)."""
    content = random.Random(5).randbytes(OBJECT_SIZE)
    tree = tmp_path / "tree"
    (tree / "usr").mkdir(parents=True)
    (tree / "usr" / "blob").write_bytes(content)
    repo = tmp_path / "repo"
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=archive"], check=True)
    subprocess.run(
        ["ostree", f"--repo={repo}", "commit", "-b", "t", f"--tree=dir={tree}"],
        check=True,
        capture_output=True,
    )
    ls = subprocess.run(
        ["ostree", f"--repo={repo}", "ls", "-C", "t", "/usr/blob"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return repo, content, bytes.fromhex(ls[-2])


def _image(content: bytes) -> tuple[bytes, bytes, osmet.Body]:
    """The image, its packed stream (the image without the object's extent) and the
    body describing it."""
    rng = random.Random(6)
    extent = (len(content) + 4095) // 4096 * 4096
    image = bytearray(24 * MIB)
    image[:4096] = rng.randbytes(4096)  # a "partition table"
    image[PART_START : PART_START + 8192] = rng.randbytes(8192)  # "metadata"
    at = PART_START + OBJECT_AT
    image[at : at + len(content)] = content
    image[PART_END - 4096 : PART_END] = rng.randbytes(4096)
    packed = bytes(image[:at]) + bytes(image[at + extent :])
    mapping = osmet.Mapping(osmet.Extent(0, OBJECT_AT, extent), b"")
    body = osmet.Body(
        (osmet.Partition(PART_START, PART_END, (mapping,)),),
        hashlib.sha256(image).digest(),
        len(image),
    )
    return bytes(image), packed, body


def _ours(packed: bytes) -> bytes:
    out = io.BytesIO()
    w = XzWriter(out, preset=0)
    w.write(packed)
    w.close()
    return out.getvalue()


def _liblzma(packed: bytes) -> bytes:
    return lzma.compress(packed, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


STREAMS = {
    "ours": _ours,
    "one-block": _liblzma,
    # two streams one after the other (as `cat a.xz b.xz` makes): no index covers both
    "two-streams": lambda packed: _liblzma(packed[: 5 * MIB]) + _liblzma(packed[5 * MIB :]),
}


def _osmet_file(tmp_path: Path, kind: str) -> tuple[Path, Path, bytes]:
    repo, content, checksum = _repo_with_object(tmp_path)
    image, packed, body = _image(content)
    (part,) = body.partitions
    (m,) = part.mappings
    body = osmet.Body(
        (osmet.Partition(PART_START, PART_END, (osmet.Mapping(m.extent, checksum),)),),
        body.checksum,
        body.size,
    )
    header = osmet.Header(512, "test", "x86_64", "test 1")
    path = tmp_path / f"{kind}.osmet"
    path.write_bytes(osmet.encode(header, body) + STREAMS[kind](packed))
    return path, repo, image


def _unpack(path: Path, repo: Path) -> list:
    f, _header, body = open_osmet(str(path))
    with f, Repo.open(str(repo)) as r:
        return list(image_chunks(f, body, ObjectSource(r)))


def _joined(pieces: list) -> bytes:
    return b"".join(bytes(p.length) if isinstance(p, ZeroRun) else bytes(p) for p in pieces)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_every_stream_layout_unpacks_to_the_image(tmp_path: Path, kind: str) -> None:
    path, repo, image = _osmet_file(tmp_path, kind)
    with open(path, "rb") as f:
        osmet.read(f)
        start = f.tell()
        layout = xz.stream_layout(f, start, path.stat().st_size)
    # ours and liblzma's are read block by block, two streams by a plain decoder
    assert (layout is None) == (kind == "two-streams")
    pieces = _unpack(path, repo)
    assert _joined(pieces) == image
    runs = sum(p.length for p in pieces if isinstance(p, ZeroRun))
    # our writer's repeated zero blocks come as runs: of the ~20 MiB of free space in
    # the partition, whole blocks after the first
    assert (runs >= 3 * ZERO_BLOCK) == (kind == "ours")


@pytest.mark.parametrize("kind", ["ours", "one-block", "two-streams"])
def test_a_flipped_byte_in_the_object_is_a_checksum_mismatch(tmp_path: Path, kind: str) -> None:
    path, repo, _image_bytes = _osmet_file(tmp_path, kind)
    objects = list((repo / "objects").rglob("*.filez"))
    assert len(objects) == 1
    # near the end of the deflate stream a flipped bit gives other bytes, not an error
    data = bytearray(objects[0].read_bytes())
    data[-20] ^= 0x01
    objects[0].chmod(0o644)
    objects[0].write_bytes(bytes(data))
    with pytest.raises(OsmetMismatchError, match="expected SHA-256"):
        _unpack(path, repo)


def test_a_flipped_byte_in_a_repeated_zero_block_is_one_error(tmp_path: Path) -> None:
    path, repo, _image_bytes = _osmet_file(tmp_path, "ours")
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        osmet.read(f)
        layout = xz.stream_layout(f, f.tell(), len(data))
    assert layout is not None
    zero_blocks = [b for b in layout.blocks if b.uncompressed == ZERO_BLOCK]
    assert len(zero_blocks) >= 3
    last = zero_blocks[-1]
    data[last.offset + last.unpadded // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(OsmetMismatchError, match="the packed stream is corrupt"):
        _unpack(path, repo)


def test_the_sha256_thread_ends_with_an_abandoned_unpack(tmp_path: Path) -> None:
    path, repo, _image_bytes = _osmet_file(tmp_path, "ours")
    f, _header, body = open_osmet(str(path))
    with f, Repo.open(str(repo)) as r:
        chunks = image_chunks(f, body, ObjectSource(r))
        next(chunks)
        assert any(t.name == "osmet-sha256" for t in threading.enumerate())
        chunks.close()
    assert not any(t.name == "osmet-sha256" for t in threading.enumerate())
