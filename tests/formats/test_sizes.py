"""ostree.sizes: decoding what the real `ostree commit --generate-sizes` writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysroot.errors import FormatError, NotFoundError
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import Commit, ObjectType
from sysroot.formats.sizes import (
    ObjectSize,
    commit_object_sizes,
    decode_object_size,
    decode_object_sizes,
)
from sysroot.util.units import format_size

CSUM = bytes(range(32))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "b").write_bytes(os.urandom(5000))  # incompressible: archived > 5000
    (root / "sub" / "c").write_bytes(b"x" * 300_000)  # compresses well
    (root / "link").symlink_to("sub/b")
    return root


def _commit(ostree, repo: Path, tree: Path, *extra: str) -> tuple[str, Commit]:
    if not repo.exists():
        ostree("init", f"--repo={repo}", "--mode=archive")
    checksum = ostree.out("commit", f"--repo={repo}", "-b", "main", *extra, f"--tree=dir={tree}")
    data = (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes()
    return checksum, Commit.parse(data)


def _object_path(repo: Path, size: ObjectSize) -> Path:
    ext = {
        ObjectType.FILE: "filez",
        ObjectType.DIR_TREE: "dirtree",
        ObjectType.DIR_META: "dirmeta",
    }[size.objtype]
    return repo / "objects" / size.checksum[:2] / f"{size.checksum[2:]}.{ext}"


def test_decodes_what_real_ostree_generates(ostree, tmp_path):
    tree = _tree(tmp_path / "tree")
    repo = tmp_path / "repo"
    _, commit = _commit(ostree, repo, tree, "--generate-sizes")
    sizes = {s.checksum: s for s in commit_object_sizes(commit)}

    # what ostree says the commit holds: `ls -C` gives each file's content checksum and
    # each directory's dirtree and dirmeta checksums
    listed: dict[str, tuple[ObjectType, str]] = {}
    for line in ostree.out("ls", f"--repo={repo}", "-R", "-C", "main").splitlines():
        fields = line.split()
        path = line.split(" /", 1)[1].split(" -> ")[0]
        if fields[0].startswith("d"):
            listed[fields[4]] = (ObjectType.DIR_TREE, path)
            listed[fields[5]] = (ObjectType.DIR_META, path)
        else:
            listed[fields[4]] = (ObjectType.FILE, path)
    # 5 files, 2 dirtrees, 1 dirmeta (both directories share it): one entry each
    assert len(listed) == 8
    assert len(sizes) == len(commit.metadata["ostree.sizes"].value) == 8
    assert set(sizes) == set(listed)

    for checksum, (objtype, path) in listed.items():
        size = sizes[checksum]
        assert size.objtype is objtype, path
        # archived: the object's bytes in this archive repository
        assert size.archived == _object_path(repo, size).stat().st_size, path
        if objtype is ObjectType.FILE:
            real = tree / path
            expected = len(os.readlink(real)) if real.is_symlink() else real.stat().st_size
            assert size.unpacked == expected, path
        else:
            assert size.unpacked == size.archived, path
    by_path = {path: sizes[c] for c, (t, path) in listed.items() if t is ObjectType.FILE}
    assert by_path["sub/b"].unpacked == 5000 and by_path["sub/b"].archived > 5000
    assert by_path["sub/c"].unpacked == 300_000 and by_path["sub/c"].archived < 10_000


def test_totals_match_ostree_show_print_sizes(ostree, tmp_path):
    repo = tmp_path / "repo"
    _, commit = _commit(ostree, repo, _tree(tmp_path / "tree"), "--generate-sizes")
    sizes = commit_object_sizes(commit)
    archived = format_size(sum(s.archived for s in sizes))
    unpacked = format_size(sum(s.unpacked for s in sizes))
    assert ostree.out("show", f"--repo={repo}", "main", "--print-sizes") == (
        f"Compressed size (needed/total): 0 bytes/{archived}\n"
        f"Unpacked size (needed/total): 0 bytes/{unpacked}\n"
        f"Number of objects (needed/total): 0/{len(sizes)}"
    )


def test_print_sizes_rounds_huge_sizes_as_glib(ostree, sysroot, tmp_path):
    # Above 2**53 GLib converts the size to a double before dividing: 9250000000000001
    # bytes is "9.2 PB" for ostree (exact arithmetic would round to 9.3).
    entry = CSUM + _varint(9_250_000_000_000_001) + _varint(9_350_000_000_000_001) + b"\x01"
    text = ", ".join(f"{'byte ' if i == 0 else ''}0x{b:02x}" for i, b in enumerate(entry))
    tree = tmp_path / "tree"
    tree.mkdir()
    repo = tmp_path / "repo"
    _, commit = _commit(ostree, repo, tree, f"--add-metadata=ostree.sizes=[@ay [{text}]]")
    assert commit_object_sizes(commit) == [
        ObjectSize(CSUM.hex(), ObjectType.FILE, 9_250_000_000_000_001, 9_350_000_000_000_001)
    ]
    args = ("show", f"--repo={repo}", "main", "--print-sizes")
    expected = ostree(*args).stdout
    assert "9.2\u00a0PB/9.2\u00a0PB".encode() in expected
    assert sysroot(*args).stdout == expected


def test_entry_without_type_byte_is_a_content_object():
    # commits from before ostree 2020.1 have no type byte
    assert decode_object_size(CSUM + _varint(300) + _varint(7)) == ObjectSize(
        CSUM.hex(), ObjectType.FILE, 300, 7
    )
    assert decode_object_size(CSUM + b"\x00\x00\x02").objtype is ObjectType.DIR_TREE


@pytest.mark.parametrize(
    "raw, message",
    [
        (CSUM[:31], "Invalid object size metadata"),
        (CSUM, "Invalid object size metadata"),
        (CSUM + b"\x05", "Invalid object size metadata"),
        (CSUM + b"\x05\x85", "Invalid object size metadata"),  # continuation bit, then EOF
        (CSUM + b"\x05\x05\x63", "Invalid object type 99 in size metadata"),
    ],
)
def test_malformed_entries_are_refused(raw, message):
    with pytest.raises(FormatError, match=f"^{message}$"):
        decode_object_sizes([CSUM + b"\x01\x01", raw])


def test_commit_without_sizes():
    commit = Commit(
        metadata={},
        parent=None,
        subject="",
        body="",
        timestamp=0,
        root_tree="00" * 32,
        root_meta="00" * 32,
    )
    with pytest.raises(NotFoundError, match="No metadata key ostree.sizes in commit"):
        commit_object_sizes(commit)
    wrong_type = Commit(**{**commit.__dict__, "metadata": {"ostree.sizes": Variant("s", "")}})
    with pytest.raises(NotFoundError):
        commit_object_sizes(wrong_type)
