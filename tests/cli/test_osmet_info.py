"""`sysroot osmet info FILE [--json]` (sysroot/cli/commands/osmet.py): what an osmet
file holds, as text and as one JSON object; a bad file is one error line."""

from __future__ import annotations

import hashlib
import json
import lzma

import pytest

from sysroot.formats import osmet
from sysroot.formats.osmet import Body, Extent, Header, Mapping, Partition

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts

MiB = 1 << 20
IMAGE = b"\x00" * (4 * MiB)  # what the checksum is of; its content does not matter here
HEADER = Header(4096, "Fedora CoreOS 39.20240101.3.0", "x86_64", "0.18.0")
BODY = Body(
    partitions=(
        Partition(MiB, 2 * MiB, (Mapping(Extent(0, 4096, 8192), b"\x01" * 32),)),
        Partition(
            2 * MiB,
            4 * MiB,
            (
                Mapping(Extent(0, 0, 4096), b"\x02" * 32),
                Mapping(Extent(4096, 8192, 100), b"\x03" * 32),
            ),
        ),
    ),
    checksum=hashlib.sha256(IMAGE).digest(),
    size=len(IMAGE),
)
XZ = lzma.compress(b"packed" * 1000, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


@pytest.fixture
def osmet_file(tmp_path):
    path = tmp_path / "fcos-metal4k.x86_64.osmet"
    path.write_bytes(osmet.encode(HEADER, BODY) + XZ)
    return path


def test_info_text(sysroot, osmet_file):
    sha = hashlib.sha256(IMAGE).hexdigest()
    assert sysroot.out("osmet", "info", osmet_file).splitlines() == [
        f"File:            {osmet_file}",
        "Version:         1",
        "App version:     0.18.0",
        "Sector size:     4096",
        "OS description:  Fedora CoreOS 39.20240101.3.0",
        "OS architecture: x86_64",
        "Image size:      4194304",
        f"Image SHA-256:   {sha}",
        "Partitions:      2",
        "  0: bytes [1048576, 2097152) (1048576 bytes), 1 mappings, 8192 bytes mapped",
        "  1: bytes [2097152, 4194304) (2097152 bytes), 2 mappings, 4196 bytes mapped",
        f"xz stream:       {len(XZ)} bytes",
    ]


def test_info_json(sysroot, osmet_file):
    assert json.loads(sysroot.out("osmet", "info", "--json", osmet_file)) == {
        "file": str(osmet_file),
        "version": 1,
        "app_version": "0.18.0",
        "sector_size": 4096,
        "os_description": "Fedora CoreOS 39.20240101.3.0",
        "os_architecture": "x86_64",
        "size": len(IMAGE),
        "sha256": hashlib.sha256(IMAGE).hexdigest(),
        "partitions": [
            {"start_offset": MiB, "end_offset": 2 * MiB, "mappings": 1, "mapped_bytes": 8192},
            {"start_offset": 2 * MiB, "end_offset": 4 * MiB, "mappings": 2, "mapped_bytes": 4196},
        ],
        "xz_length": len(XZ),
    }


def _meta() -> bytes:
    return osmet.encode(HEADER, BODY)


@pytest.mark.parametrize(
    "content,message",
    [
        (lambda: b"\x7fELF" + b"\x00" * 100, "not an osmet file"),
        (lambda: _meta()[:-3], "truncated at byte"),
        (lambda: _meta(), "no xz stream"),  # header and body, nothing after them
        (lambda: _meta() + b"garbage", "no xz stream"),
        (lambda: b"", "truncated at byte 0"),
    ],
    ids=["elf", "truncated", "no-xz", "garbage-after", "empty"],
)
def test_bad_file_is_one_error_line(sysroot, tmp_path, content, message):
    path = tmp_path / "bad.osmet"
    path.write_bytes(content())
    for args in (["osmet", "info", path], ["osmet", "info", "--json", path]):
        proc = sysroot(*args, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert proc.stdout == b""
        assert err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
        assert message in err


def test_missing_file_is_one_error_line(sysroot, tmp_path):
    proc = sysroot("osmet", "info", tmp_path / "nope.osmet", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.count("\n") == 1 and "nope.osmet" in err and "Traceback" not in err
