"""Our osmet files as another tool sees them: the header and body parsed by an
independent reader written here from coreos-installer's layout (bincode 1.x varint,
little endian: /work/shared/docs/osmet-and-health.md A.2), every mapping checked
against the image and the object, and the xz stream decompressed by `xz` itself
(CRC64, as coreos-installer writes) giving the packed image: the image without the
mapped extents. And the size: the osmet file (xz preset 9) against `xz -9` of the
raw image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.osmet.conftest import MIB, Artifacts, osmet_cli

VARINT_WIDTHS = {251: 2, 252: 4, 253: 8, 254: 16}


class BincodeReader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def raw(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "truncated"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        first = self.raw(1)[0]
        if first < 251:
            return first
        return int.from_bytes(self.raw(VARINT_WIDTHS[first]), "little")

    def string(self) -> str:
        return self.raw(self.varint()).decode("utf-8")


@dataclass(frozen=True)
class Parsed:
    version: int
    app_version: str
    sector_size: int
    description: str
    architecture: str
    # (start, end, [(logical, physical, length, object hex)])
    partitions: list[tuple[int, int, list[tuple[int, int, int, str]]]]
    checksum: str
    size: int
    xz_start: int


def parse(data: bytes) -> Parsed:
    r = BincodeReader(data)
    assert r.raw(8) == b"OSMET\0\0\0"
    version, app_version, sector_size = r.varint(), r.string(), r.varint()
    description, architecture = r.string(), r.string()
    partitions = []
    for _ in range(r.varint()):
        start, end = r.varint(), r.varint()
        mappings = []
        for _ in range(r.varint()):
            logical, physical, length = r.varint(), r.varint(), r.varint()
            mappings.append((logical, physical, length, r.raw(32).hex()))
        partitions.append((start, end, mappings))
    checksum = r.raw(32).hex()
    size = r.varint()
    return Parsed(
        version,
        app_version,
        sector_size,
        description,
        architecture,
        partitions,
        checksum,
        size,
        r.pos,
    )


def varint(value: int) -> bytes:
    """bincode 1.x varint (the smallest width, as bincode writes it)."""
    if value < 251:
        return bytes((value,))
    for marker, width in VARINT_WIDTHS.items():
        if value < 1 << (8 * width):
            return bytes((marker,)) + value.to_bytes(width, "little")
    raise ValueError(value)


def string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return varint(len(raw)) + raw


def assemble(p: Parsed) -> bytes:
    """Header and body as coreos-installer's bincode writes them, from the fields."""
    out = b"OSMET\0\0\0" + varint(p.version) + string(p.app_version) + varint(p.sector_size)
    out += string(p.description) + string(p.architecture) + varint(len(p.partitions))
    for start, end, maps in p.partitions:
        out += varint(start) + varint(end) + varint(len(maps))
        for logical, physical, length, checksum in maps:
            out += varint(logical) + varint(physical) + varint(length) + bytes.fromhex(checksum)
    return out + bytes.fromhex(p.checksum) + varint(p.size)


def object_bytes(repo: Path, checksum: str, logical: int, length: int) -> bytes:
    """length bytes of a bare repository's content object from logical, zeros past its end."""
    with open(repo / "objects" / checksum[:2] / f"{checksum[2:]}.file", "rb") as f:
        f.seek(logical)
        data = f.read(length)
    return data + bytes(length - len(data))


def test_an_independent_reader_and_xz_read_our_file(artifacts: Artifacts, repos, tmp_path) -> None:
    image = artifacts.image("grub2", 512)
    path = artifacts.osmet("grub2", 512)
    data = path.read_bytes()
    parsed = parse(data)
    # byte for byte what bincode would write for these fields
    assert data[: parsed.xz_start] == assemble(parsed)
    assert data[8] == 1  # version 1
    assert (parsed.version, parsed.sector_size) == (1, 512)
    assert parsed.architecture == os.uname().machine
    assert parsed.description == "Test OS"  # the image's PRETTY_NAME
    assert (parsed.checksum, parsed.size) == (image.sha256, image.size)
    # what our own `info` says of it
    info = json.loads(osmet_cli("info", "--json", path).stdout)
    assert info["sha256"] == parsed.checksum and info["size"] == parsed.size
    assert [(p["start_offset"], p["end_offset"], p["mappings"]) for p in info["partitions"]] == [
        (start, end, len(maps)) for start, end, maps in parsed.partitions
    ]
    assert info["xz_length"] == len(data) - parsed.xz_start

    # every mapping: inside its partition, in order, and the image's bytes there are
    # the object's
    bare = repos("bare")
    skipped = []
    with open(image.raw, "rb") as raw:
        for start, end, maps in parsed.partitions:
            for logical, physical, length, checksum in maps:
                assert length > 0 and physical + length <= end - start
                at = start + physical
                assert not skipped or skipped[-1][1] <= at
                skipped.append((at, at + length))
                raw.seek(at)
                assert raw.read(length) == object_bytes(bare, checksum, logical, length)
    mapped = sum(b - a for a, b in skipped)

    # xz itself reads the stream: one stream, CRC64
    stream = tmp_path / "stream.xz"
    stream.write_bytes(data[parsed.xz_start :])
    listing = subprocess.run(
        ["xz", "--robot", "--list", str(stream)], capture_output=True, check=True, text=True
    ).stdout
    totals = next(ln.split("\t") for ln in listing.splitlines() if ln.startswith("totals"))
    assert totals[1] == "1" and totals[6] == "CRC64", listing  # streams, checks
    # ... and gives the packed image: the raw image without the mapped extents
    expected = hashlib.sha256()
    with open(image.raw, "rb") as raw:
        pos = 0
        for a, b in [*skipped, (image.size, image.size)]:
            while pos < a:
                chunk = raw.read(min(4 * MIB, a - pos))
                expected.update(chunk)
                pos += len(chunk)
            raw.seek(b)
            pos = b
    got = hashlib.sha256()
    length = 0
    with subprocess.Popen(["xz", "-dc", str(stream)], stdout=subprocess.PIPE) as xz:
        assert xz.stdout is not None
        while chunk := xz.stdout.read(4 * MIB):
            got.update(chunk)
            length += len(chunk)
    assert xz.returncode == 0
    assert length == image.size - mapped
    assert got.hexdigest() == expected.hexdigest()


def test_the_osmet_file_is_at_most_5_percent_of_xz_9_of_the_image(
    artifacts: Artifacts,
) -> None:
    image = artifacts.image("grub2", 512)
    # xz -9 of the raw image (what a user would download without osmet), in parallel
    # with the pack when that is not done yet
    with subprocess.Popen(["xz", "-9", "-c", str(image.raw)], stdout=subprocess.PIPE) as xz:
        packed = artifacts.osmet("grub2", 512)  # xz preset 9
        assert xz.stdout is not None
        xz_size = 0
        while chunk := xz.stdout.read(4 * MIB):
            xz_size += len(chunk)
    assert xz.returncode == 0
    osmet_size = packed.stat().st_size
    print(
        f"\nosmet (preset 9): {osmet_size} bytes; xz -9 of the raw image: {xz_size} bytes;"
        f" {100 * osmet_size / xz_size:.2f}%"
    )
    assert osmet_size <= 0.05 * xz_size
