"""The fast dirtree decoder (formats/dirtree.py) against the generic one.

Samples are dirtrees the real ostree wrote, plus large and long-named ones; mutated
copies must decode exactly as DirTree.parse decodes them, or not at all (None).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sysroot.errors import FormatError
from sysroot.formats.dirtree import parse_fast
from sysroot.formats.objects import DirTree
from tests.conftest import COMMIT_ARGS, make_rich_tree


@pytest.fixture(scope="module")
def ostree_dirtrees(tmp_path_factory, ostree) -> list[bytes]:
    base = tmp_path_factory.mktemp("dirtrees")
    tree = make_rich_tree(base / "tree")
    repo = base / "repo"
    ostree("init", f"--repo={repo}", "--mode=bare")
    ostree("commit", f"--repo={repo}", "-b", "t", *COMMIT_ARGS, tree)
    samples = []
    for dirpath, _, names in os.walk(repo / "objects"):
        samples += [Path(dirpath, n).read_bytes() for n in names if n.endswith(".dirtree")]
    assert len(samples) > 3
    return samples


def test_fast_dirtree_parser_agrees_with_generic(ostree_dirtrees):
    """The checkout's own dirtree decoder must decode exactly what DirTree.parse does,
    and give up (returning None) on anything it is not sure about."""
    samples = list(ostree_dirtrees)
    rnd = random.Random(7)

    def csum() -> str:
        return rnd.randbytes(32).hex()

    # > 64 KiB (4-byte offsets) and long names (2-byte element offsets)
    samples.append(
        DirTree(
            tuple((f"f{i:05d}" + "x" * 60, csum()) for i in range(1500)),
            tuple((f"d{i:04d}", csum(), csum()) for i in range(300)),
        ).serialize()
    )
    samples.append(
        DirTree(
            tuple(("n" * 250 + str(i), csum()) for i in range(3)),
            tuple(("d" * 240 + str(i), csum(), csum()) for i in range(3)),
        ).serialize()
    )
    for data in samples:
        assert parse_fast(data) == DirTree.parse(data)
    decoded = 0
    for _ in range(4000):
        data = bytearray(rnd.choice(samples[:-2]))
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(data) + 1)
            op = rnd.random()
            if op < 0.6 and i < len(data):
                data[i] = rnd.randrange(256)
            elif op < 0.8 and i < len(data):
                del data[i]
            else:
                data.insert(i, rnd.randrange(256))
        fast = parse_fast(bytes(data))
        if fast is not None:
            decoded += 1
            try:
                generic = DirTree.parse(bytes(data))
            except FormatError:
                pytest.fail(f"fast parser accepted what DirTree.parse rejects: {bytes(data)!r}")
            assert fast == generic
    assert decoded > 100  # mutations of names and checksums still decode


def test_fast_dirtree_parser_gives_up_on_empty_input():
    assert parse_fast(b"") is None
    assert parse_fast(DirTree().serialize()) == DirTree()


def _generic_serialize(tree: DirTree) -> bytes:
    from sysroot.formats import gvariant
    from sysroot.formats.objects import DIRTREE_TYPE

    files = sorted(tree.files, key=lambda e: e[0].encode())
    dirs = sorted(tree.dirs, key=lambda e: e[0].encode())
    return gvariant.encode(
        DIRTREE_TYPE,
        (
            [(n, bytes.fromhex(c)) for n, c in files],
            [(n, bytes.fromhex(t), bytes.fromhex(m)) for n, t, m in dirs],
        ),
    )


def test_hand_framed_dirtree_encoder_agrees_with_generic(ostree_dirtrees):
    """DirTree.serialize frames its entries by hand: its bytes must be the generic
    GVariant encoder's, across every framing-offset width (entry, array and struct
    sizes around 255 and 65535 bytes) and for ostree's own dirtrees."""
    for data in ostree_dirtrees:
        assert DirTree.parse(data).serialize() == data
    rnd = random.Random(21)

    def csum() -> str:
        return rnd.randbytes(32).hex()

    shapes = [(0, 0), (1, 0), (0, 1), (3, 2)]
    shapes += [(rnd.randrange(0, 40), rnd.randrange(0, 10)) for _ in range(60)]
    shapes += [(3000, 0), (0, 1000), (1500, 700)]  # arrays past 65535 bytes
    for n_files, n_dirs in shapes:

        def name(i: int) -> str:
            # mostly short; some entries right around the one-byte framing limit,
            # a few non-ASCII (sorted by their UTF-8 bytes)
            length = rnd.choice([1, 5, 20, 180, 185, 186, 187, 220, 221, 222, 223, 300])
            return f"{i}é{'x' * length}"[:length] if length > 4 else f"{i}ü"

        files = tuple((f"f{name(i)}", csum()) for i in range(n_files))
        dirs = tuple((f"d{name(i)}", csum(), csum()) for i in range(n_dirs))
        tree = DirTree(files, dirs)
        encoded = tree.serialize()
        assert encoded == _generic_serialize(tree), (n_files, n_dirs)
        parsed = DirTree.parse(encoded)
        assert sorted(parsed.files) == sorted(files)
        assert sorted(parsed.dirs) == sorted(dirs)


def test_dirtree_encoder_refuses_a_nul_in_a_name():
    with pytest.raises(FormatError):
        DirTree((("a\0b", "00" * 32),)).serialize()
