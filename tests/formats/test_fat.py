"""FAT12/16/32 read in user space (sysroot/formats/fat.py) against mtools: file systems
made by mkfs.fat (dosfstools) and filled by mtools at a non-zero offset of an image
file. For every file, the bytes read through our extents equal what `mcopy ... -`
prints, and the paths equal what `mdir -/ -b -a` lists. Then the ESP sysroot's own
image builder writes, and hostile images, each refused with one FatFormatError.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.formats import fat
from sysroot.formats.fat import FatFile, FatFormatError, walk_files
from sysroot.install.filesystems import build_fat

MIB = 1 << 20
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def tool(*argv: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(list(argv), env=ENV, input=stdin, capture_output=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr.decode(errors='replace')}"
    return done.stdout


@dataclass(frozen=True)
class Image:
    path: Path
    offset: int  # where the file system starts in the image
    length: int  # its size

    @property
    def drive(self) -> str:
        return f"{self.path}@@{self.offset}"

    def mt(self, command: str, *args: str) -> bytes:
        return tool(command, "-i", self.drive, *args)

    def boot(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(512)

    def cluster_size(self) -> int:
        sector, per_cluster = struct.unpack_from("<HB", self.boot(), 11)
        return int(sector * per_cluster)

    def _meta(self) -> tuple[int, int, int, int]:
        """(sector size, sectors per cluster, total sectors, sectors before cluster 2),
        by the FAT specification's arithmetic."""
        sector, per_cluster, reserved, fats, root_entries, total16, _m, fat16 = struct.unpack_from(
            "<HBHBHHBH", self.boot(), 11
        )
        total32, fat32 = struct.unpack_from("<II", self.boot(), 32)
        meta = reserved + fats * (fat16 or fat32) + (root_entries * 32 + sector - 1) // sector
        return sector, per_cluster, total16 or total32, meta

    def clusters(self) -> int:
        """The data clusters (their count sets the type)."""
        _sector, per_cluster, total, meta = self._meta()
        return (total - meta) // per_cluster

    def data_start(self) -> int:
        sector, _per_cluster, _total, meta = self._meta()
        return sector * meta

    def walk(self) -> list[FatFile]:
        with open(self.path, "rb") as f:
            return list(walk_files(f, self.offset, self.length))

    def poke(self, at: int, data: bytes) -> None:
        """Bytes written at FS offset at (to make a hostile image)."""
        with open(self.path, "r+b") as f:
            f.seek(self.offset + at)
            f.write(data)


def make_image(tmp: Path, bits: int, sector: int, size: int, offset: int, *extra: str) -> Image:
    """A FAT of size bytes, made by mkfs.fat, at offset of an image with random bytes
    before and after it (so an offset or a length that is off reads garbage)."""
    fs = tmp / f"fs{bits}-{sector}.raw"
    with open(fs, "wb") as f:
        f.truncate(size)
    tool("mkfs.fat", "-F", str(bits), "-S", str(sector), *extra, str(fs))
    image = tmp / f"image{bits}-{sector}.raw"
    with open(image, "wb") as out, open(fs, "rb") as src:
        out.write(os.urandom(offset))
        while chunk := src.read(4 * MIB):
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)  # keep the big FAT32 ones sparse
            else:
                out.write(chunk)
        out.write(os.urandom(4096))
    fs.unlink()
    return Image(image, offset, size)


def set_next_free_hint(img: Image, cluster: int) -> None:
    """FAT32: FSInfo's next-free hint, where mtools starts allocating (0xFFFFFFFF:
    unknown, from the start again, so the holes get filled)."""
    boot = img.boot()
    sector, fsinfo = struct.unpack_from("<H", boot, 11)[0], struct.unpack_from("<H", boot, 48)[0]
    img.poke(fsinfo * sector + 492, struct.pack("<I", cluster))


def fill(img: Image, tmp: Path, bits: int) -> dict[str, bytes]:
    """The shapes worth reading: long names (UTF-8 ones too), 8.3 names in lower case
    (stored upper case with the NT case bits), nested directories, empty files, a
    directory of several clusters and a large file in several runs."""
    cs = img.cluster_size()
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    files: dict[str, bytes] = {}

    def put(directory: str, name: str, data: bytes) -> None:
        (src / name).write_bytes(data)
        img.mt("mcopy", str(src / name), f"::{directory}/")
        (src / name).unlink()
        files[f"{directory}/{name}"] = data

    img.mt("mmd", "::/loader", "::/loader/entries", "::/EFI", "::/EFI/Linux", "::/frag")
    img.mt("mmd", "::/a", "::/a/b", "::/a/b/c", "::/a/b/c/deep directory name")
    put("", "README.TXT", b"upper case 8.3\n")
    put("", "readme2.txt", b"lower case 8.3: NT case bits\n")
    put("", "lower.TXT", b"lower base, upper extension\n")
    put("/loader/entries", "ostree-1.conf", b"title Debian\nlinux /vmlinuz\n")
    put("/loader/entries", "empty.conf", b"")
    put("/EFI/Linux", "debian-6.1.0-a-long-unified-kernel-image-name.efi", os.urandom(3 * cs + 7))
    put("/EFI/Linux", "grüße-☃.conf", b"utf-16 long name\n")
    put("/a/b/c/deep directory name", "Mixed.Case", os.urandom(cs))
    put("/a/b/c/deep directory name", "EMPTY", b"")
    for i in range(40):  # a directory of more than one cluster (long names: 3 entries each)
        put("/loader", f"entry-number-{i:03d}-with-a-long-name.conf", f"{i}\n".encode())
    # a large file while the FS is fragmented: holes of two clusters, then the rest
    for i in range(6):
        put("/frag", f"fill{i}", os.urandom(2 * cs))
    img.mt("mdel", "::/frag/fill1", "::/frag/fill3")
    del files["/frag/fill1"], files["/frag/fill3"]
    if bits == 32:
        set_next_free_hint(img, 0xFFFFFFFF)
    put("/frag", "large-fragmented.bin", os.urandom(9 * cs + 100))
    if bits == 32 and img.clusters() - 8 > 0xFFFF:
        # a file above cluster 65535: its number needs the entry's high 16 bits
        set_next_free_hint(img, img.clusters() - 8)
        put("", "high.bin", os.urandom(2 * cs + 1))
    return files


def check_against_mtools(img: Image, files: dict[str, bytes]) -> list[FatFile]:
    walked = img.walk()
    listed = img.mt("mdir", "-/", "-b", "-a", "::/").decode().split("\n")
    regular = {line.removeprefix("::") for line in listed if line and not line.endswith("/")}
    assert sorted(f.path for f in walked) == sorted(regular) == sorted(files)
    with open(img.path, "rb") as f:
        for entry in walked:
            data = b""
            end = 0
            for extent in entry.extents:
                assert extent.logical == end and extent.length > 0
                assert extent.physical + extent.length <= img.length
                f.seek(img.offset + extent.physical)
                data += f.read(extent.length)
                end += extent.length
            assert end == entry.size
            assert data == img.mt("mcopy", "-n", f"::{entry.path}", "-"), entry.path
            assert data == files[entry.path]
            for one, two in zip(entry.extents, entry.extents[1:], strict=False):
                # adjacent clusters are one extent
                assert one.physical + one.length != two.physical
    return walked


# (bits, sector size, FS size, mkfs.fat options): every type in both sector sizes, and
# FAT16 and FAT32 just above their thresholds (clusters in [4085, 4096) and
# [65525, 65536): a type taken from a power of two instead reads them wrong)
SHAPES = [
    (12, 512, 2 * MIB, ()),
    (16, 512, 16 * MIB, ("-s", "1")),
    (32, 512, 40 * MIB, ("-s", "1")),
    (12, 4096, 8 * MIB, ()),
    (16, 4096, 32 * MIB, ("-s", "1")),
    (32, 4096, 260 * MIB, ("-s", "1")),
    (16, 512, 2080 << 10, ("-s", "1")),
    (32, 512, 33296 << 10, ("-s", "1")),
]
LOWEST = {12: 0, 16: 4085, 32: 65525}


@pytest.mark.parametrize(("bits", "sector", "size", "extra"), SHAPES)
def test_files_read_through_extents_equal_mtools(tmp_path, bits, sector, size, extra):
    img = make_image(tmp_path, bits, sector, size, 3 * MIB + 4096, *extra)
    assert img.boot()[0x36 if bits != 32 else 0x52 :][:5] == f"FAT{bits}".encode()
    assert LOWEST[bits] <= img.clusters() < {12: 4085, 16: 65525, 32: 1 << 28}[bits]
    files = fill(img, tmp_path, bits)
    walked = {f.path: f for f in check_against_mtools(img, files)}
    assert len(walked["/frag/large-fragmented.bin"].extents) >= 3
    assert walked["/readme2.txt"].size > 0 and walked["/loader/entries/empty.conf"].extents == ()
    if "/high.bin" in files:
        first = walked["/high.bin"].extents[0].physical
        assert (first - img.data_start()) // img.cluster_size() + 2 > 0xFFFF


def _esp_tree(root: Path) -> dict[str, bytes]:
    sha = "3b2f0c1d" * 8
    files = {
        "loader/loader.conf": b"timeout 3\n",
        "loader/entries/ostree-1.conf": b"title Debian (ostree:0)\nlinux /ostree/x/vmlinuz\n",
        "loader/entries/ostree-2.conf": b"title Debian (ostree:1)\n",
        "EFI/BOOT/BOOTX64.EFI": os.urandom(120_000),
        "EFI/systemd/systemd-bootx64.efi": os.urandom(90_000),
        "EFI/Linux/.keep": b"",
        f"ostree/debian-{sha}/vmlinuz-6.1.0": os.urandom(3 * MIB + 17),
        f"ostree/debian-{sha}/initramfs-6.1.0.img": os.urandom(5 * MIB + 1),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {"/" + rel: data for rel, data in files.items()}


@pytest.mark.parametrize("sector", [512, 4096])
def test_esp_of_sysroot_image_builder(tmp_path, sector):
    """The ESP exactly as sysroot's image builder writes it (install/filesystems.py)."""
    content = tmp_path / "esp"
    files = _esp_tree(content)
    esp = tmp_path / "esp.img"
    build_fat(str(esp), 64 * MIB, "1234ABCD", sector, str(content), epoch=1_700_000_000)
    img = Image(esp, 0, 64 * MIB)
    walked = check_against_mtools(img, files)
    assert [f.path for f in walked if "vmlinuz" in f.path] == [
        "/ostree/debian-" + "3b2f0c1d" * 8 + "/vmlinuz-6.1.0"
    ]


# hostile images: a small FAT16 of 512-byte clusters with known files, then damaged


@dataclass(frozen=True)
class Layout:
    img: Image
    fat_start: int
    data_start: int
    cluster_size: int
    clusters: int

    def cluster_of(self, physical: int) -> int:
        return (physical - self.data_start) // self.cluster_size + 2

    def set_next(self, cluster: int, value: int) -> None:
        self.img.poke(self.fat_start + 2 * cluster, struct.pack("<H", value))

    def chain(self, f: FatFile) -> list[int]:
        out = []
        for extent in f.extents:
            first = self.cluster_of(extent.physical)
            n = (extent.length + self.cluster_size - 1) // self.cluster_size
            out += range(first, first + n)
        return out

    def dirent(self, short: bytes) -> int:
        """FS offset of the 8.3 entry named short (11 bytes)."""
        with open(self.img.path, "rb") as f:
            f.seek(self.img.offset)
            data = f.read(self.img.length)
        at = data.find(short)
        assert at >= 0 and at % 32 == 0
        return at


@pytest.fixture
def small(tmp_path) -> Layout:
    img = make_image(tmp_path, 16, 512, 16 * MIB, 512 * 3, "-s", "1")
    src = tmp_path / "three"
    src.write_bytes(os.urandom(3 * 512 + 1))
    img.mt("mmd", "::/dir", "::/dir/sub")
    img.mt("mcopy", str(src), "::/dir/")
    img.mt("mcopy", str(src), "::/dir/other")
    (tmp_path / "a-long-file-name.conf").write_bytes(b"x")
    img.mt("mcopy", str(tmp_path / "a-long-file-name.conf"), "::/dir/")
    sector, reserved = struct.unpack_from("<HxH", img.boot(), 11)
    fat_start = reserved * sector
    return Layout(img, fat_start, img.data_start(), img.cluster_size(), img.clusters())


def _file(layout: Layout, path: str) -> FatFile:
    return next(f for f in layout.img.walk() if f.path == path)


def refused(layout: Layout, match: str, length: int | None = None) -> None:
    img = layout.img
    with pytest.raises(FatFormatError, match=match) as caught, open(img.path, "rb") as f:
        list(walk_files(f, img.offset, img.length if length is None else length))
    assert "\n" not in str(caught.value)


def test_small_layout_is_read(small):
    three = _file(small, "/dir/three")
    assert len(small.chain(three)) == 4 and three.size == 3 * 512 + 1


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("loop", "first", "reached twice"),
        ("out of range", "clusters+2", "out of range"),
        ("free", 0, "free cluster"),
        ("reserved", 1, "reserved cluster"),
        ("bad", 0xFFF7, "bad cluster"),
        ("short chain", 0xFFFF, "ends before"),
    ],
)
def test_broken_chain_is_refused(small, name, value, match):
    chain = small.chain(_file(small, "/dir/three"))
    target = {"first": chain[0], "clusters+2": small.clusters + 2}.get(value, value)
    small.set_next(chain[1], target)
    refused(small, match)


def test_cross_linked_files_are_refused(small):
    three = small.dirent(b"THREE      ")
    with open(small.img.path, "rb") as f:
        f.seek(small.img.offset + three + 26)
        first = f.read(2)
    small.img.poke(small.dirent(b"OTHER      ") + 26, first)
    refused(small, "reached twice")


def test_directory_containing_its_parent_is_refused(small):
    with open(small.img.path, "rb") as f:
        f.seek(small.img.offset + small.dirent(b"DIR        ") + 26)
        parent = f.read(2)
    small.img.poke(small.dirent(b"SUB        ") + 26, parent)
    refused(small, "reached twice")


def test_start_cluster_out_of_range_is_refused(small):
    small.img.poke(small.dirent(b"THREE      ") + 26, struct.pack("<H", 0xFFF0))
    refused(small, "cluster 65520 is out of range")


def test_directory_of_too_many_entries_is_refused(small):
    # /dir/sub's chain made 4097 clusters long (2 MiB + 512 bytes of entries) through
    # free clusters at the end of the FS
    with open(small.img.path, "rb") as f:
        f.seek(small.img.offset + small.dirent(b"SUB        ") + 26)
        (sub,) = struct.unpack("<H", f.read(2))
    start = small.clusters + 2 - 4096
    small.set_next(sub, start)
    for c in range(start, start + 4095):
        small.set_next(c, c + 1)
    small.set_next(start + 4095, 0xFFFF)
    refused(small, "more than 65536 entries")


def test_deep_nesting_is_refused(small):
    path = ""
    for _ in range(fat.MAX_DEPTH + 1):
        path += "/d"
        small.img.mt("mmd", f"::/dir{path}")
    refused(small, "nested deeper than 32")


def test_nesting_of_32_is_read(small):
    path = ""
    for _ in range(fat.MAX_DEPTH - 1):
        path += "/d"
        small.img.mt("mmd", f"::/dir{path}")
    (small.img.path.parent / "leaf").write_bytes(b"leaf")
    small.img.mt("mcopy", str(small.img.path.parent / "leaf"), f"::/dir{path}/")
    assert _file(small, f"/dir{path}/leaf").size == 4


def test_too_many_directories_are_refused(small, monkeypatch):
    monkeypatch.setattr(fat, "MAX_DIRECTORIES", 3)  # /, /dir, /dir/sub
    assert len(small.img.walk()) == 3  # three, other, a-long-file-name.conf
    small.img.mt("mmd", "::/dir/sub/one-more")
    refused(small, "more than 3 directories")


def test_fat32_reads_the_active_fat_when_mirroring_is_off(tmp_path):
    img = make_image(tmp_path, 32, 512, 40 * MIB, 4096, "-s", "1")
    files = fill(img, tmp_path, 32)
    sector, reserved, fats = struct.unpack_from("<HxHB", img.boot(), 11)
    (fat_sectors,) = struct.unpack_from("<I", img.boot(), 36)
    assert fats == 2
    # FAT 1 is the one in use: FAT 0 (mtools wrote both alike) is made garbage
    img.poke(40, struct.pack("<H", 0x81))
    img.poke(reserved * sector + 8, os.urandom(fat_sectors * sector - 8))
    walked = {f.path: f for f in img.walk()}
    with open(img.path, "rb") as f:
        for path, data in files.items():
            got = b""
            for extent in walked[path].extents:
                f.seek(img.offset + extent.physical)
                got += f.read(extent.length)
            assert got == data, path
    img.poke(40, struct.pack("<H", 0x82))  # FAT 2 of 2
    with pytest.raises(FatFormatError, match="active FAT 2 of 2"), open(img.path, "rb") as f:
        walk_files(f, img.offset, img.length)


def test_bad_long_name_checksum_falls_back_to_the_short_name(small):
    short = small.dirent(b"A-LONG~1CON")
    names = {f.path for f in small.img.walk()}
    assert "/dir/a-long-file-name.conf" in names
    # the long-name entries precede the 8.3 one; byte 13 of each is the checksum
    with open(small.img.path, "rb") as f:
        f.seek(small.img.offset + short - 64)
        two = bytearray(f.read(64))
    assert two[11] == two[32 + 11] == 0x0F
    two[13] ^= 0x55
    two[32 + 13] ^= 0x55
    small.img.poke(short - 64, bytes(two))
    names = {f.path for f in small.img.walk()}
    assert "/dir/a-long-file-name.conf" not in names and "/dir/A-LONG~1.CON" in names


@pytest.mark.parametrize(
    ("entry", "at", "data", "match"),
    [
        (b"OTHER      ", 0, b"THREE      ", "holds 'three' twice"),
        (b"SUB        ", 26, b"\0\0", "sub has no cluster"),
        (b"OTHER      ", 0, b"A/B        ", "invalid name"),
        (b"OTHER      ", 0, b"           ", "invalid name"),
    ],
)
def test_bad_directory_entry_is_refused(small, entry, at, data, match):
    small.img.poke(small.dirent(entry) + at, data)
    refused(small, match)


@pytest.mark.parametrize("unit", ["/".encode("utf-16-le"), b"\x00\xd8"])  # a lone surrogate
def test_short_name_escapes_and_bad_long_names(small, unit):
    # 0x05 stands for a first byte 0xE5 (which would mark the entry deleted), cp437;
    # "other" is stored as OTHER with the NT bit for a lower-case base
    small.img.poke(small.dirent(b"OTHER      "), b"\x05")
    # a long name that is no file name: the set is dropped, the 8.3 name is used
    short = small.dirent(b"A-LONG~1CON")
    small.img.poke(short - 64 + 1, unit)
    names = {f.path for f in small.img.walk()}
    assert {"/dir/\u03c3ther", "/dir/A-LONG~1.CON", "/dir/three"} == names


def test_deleted_entries_and_end_marker(small):
    small.img.mt("mdel", "::/dir/other")
    assert "/dir/other" not in {f.path for f in small.img.walk()}
    # an end marker (0x00) before "three": the rest of the directory is not read
    small.img.poke(small.dirent(b"THREE      "), b"\0")
    assert "/dir/three" not in {f.path for f in small.img.walk()}


BOOT_FIELDS = {  # name -> (offset, struct format)
    "bytes per sector": (11, "<H"),
    "sectors per cluster": (13, "<B"),
    "reserved sectors": (14, "<H"),
    "FATs": (16, "<B"),
    "root entries": (17, "<H"),
    "total sectors": (19, "<H"),
    "FAT sectors": (22, "<H"),
}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("bytes per sector", 0, "bytes per sector"),
        ("bytes per sector", 300, "bytes per sector"),
        ("sectors per cluster", 0, "sectors per cluster"),
        ("sectors per cluster", 3, "sectors per cluster"),
        ("reserved sectors", 0, "reserved sectors"),
        ("FATs", 0, "0 FATs"),
        ("root entries", 0, "no root directory"),
        ("total sectors", 0, "zero size"),
        ("FAT sectors", 0, "zero"),
        ("FAT sectors", 1, "too short"),
        ("FAT sectors", 0xFFFF, "no data region"),
        ("reserved sectors", 0xFFFF, "no data region"),
    ],
)
def test_absurd_boot_sector_is_refused(small, field, value, match):
    at, form = BOOT_FIELDS[field]
    if value == 0 and field in ("total sectors", "FAT sectors"):
        # a zero 16-bit count sends the reader to the 32-bit one: zero that too
        small.img.poke(32 if field == "total sectors" else 36, b"\0\0\0\0")
    small.img.poke(at, struct.pack(form, value))
    refused(small, match)


@pytest.mark.parametrize(
    ("pokes", "length", "match"),
    [
        ({44: ("<I", 0)}, None, "root directory cluster 0 is out of range"),
        ({44: ("<I", 0x0FFFFFF0)}, None, "out of range"),
        ({17: ("<H", 512)}, None, "FAT16 root directory"),
        # more clusters than FAT32 numbers (a sparse 2 TiB claim)
        ({32: ("<I", 0xFFFFFFFF), 36: ("<I", 0x02000000)}, 512 << 32, "clusters"),
        # a FAT of about 1 GiB: more than is read into memory
        ({32: ("<I", 0x0F000000), 36: ("<I", 0x00800000)}, 1 << 40, "more than sysroot reads"),
    ],
)
def test_absurd_fat32_boot_sector_is_refused(tmp_path, pokes, length, match):
    img = make_image(tmp_path, 32, 512, 40 * MIB, 512, "-s", "1")
    for at, (form, value) in pokes.items():
        img.poke(at, struct.pack(form, value))
    with pytest.raises(FatFormatError, match=match), open(img.path, "rb") as f:
        walk_files(f, img.offset, length or img.length)


def test_file_system_larger_than_the_range_is_refused(small):
    refused(small, "exceed the", length=small.img.length - 512)


def test_truncated_image_is_refused(small):
    os.truncate(small.img.path, small.img.offset + 2048)  # the boot sector, not the FAT
    refused(small, "cut short")


def test_not_a_file_system_is_refused(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * MIB)
    with pytest.raises(FatFormatError, match="bytes per sector"), open(junk, "rb") as f:
        walk_files(f, 0, MIB)
