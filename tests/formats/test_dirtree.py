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
