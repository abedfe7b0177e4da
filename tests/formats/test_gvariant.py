"""The binary GVariant codec, checked against GLib through the real ostree.

Two oracles: `ostree show --print-variant-type=TYPE FILE` makes GLib read bytes we
wrote (it prints them byte-swapped, as our print_value(byteswap=True) does), and objects
that `ostree commit` wrote are GLib's own serialization, which we must reproduce.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from sysroot.errors import FormatError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import MultiDict, Variant
from sysroot.formats.gvariant_text import print_value

# (type, value) covering every shape ostree uses and then some
SHAPES = [
    ("y", 0),
    ("y", 255),
    ("b", True),
    ("b", False),
    ("n", -32768),
    ("q", 65535),
    ("i", -(1 << 31)),
    ("u", (1 << 32) - 1),
    ("x", -(1 << 63)),
    ("t", (1 << 64) - 1),
    ("h", 3),
    ("d", 3.5),
    ("d", -0.0),
    ("d", float("inf")),
    ("s", ""),
    ("s", "héllo wörld"),
    ("o", "/org/example/Path"),
    ("g", "a{sv}"),
    ("v", Variant("i", 5)),
    ("v", Variant("as", ["a", "bc"])),
    ("v", Variant("v", Variant("s", "x"))),
    ("ay", b""),
    ("ay", b"\x00\x01\xff"),
    ("ai", [1, -2, 3]),
    ("as", ["", "a", "bcd"]),
    ("aay", [b"", b"x", b"yz"]),
    ("a(is)", [(1, "one"), (2, "")]),
    ("a(yi)", [(1, 2), (3, 4)]),
    ("a{sv}", {"version": Variant("s", "1.0"), "n": Variant("t", 7)}),
    ("a{ss}", {}),
    ("a{ys}", {1: "a", 2: "b"}),
    ("a{sa{sv}}", {"g": {"k": Variant("b", True)}, "e": {}}),
    ("mi", None),
    ("mi", 5),
    ("ms", None),
    ("ms", "x"),
    ("ms", ""),
    ("mas", ["a"]),
    ("m(ii)", (1, 2)),
    ("may", b"\x01"),
    ("()", ()),
    ("(is)", (1, "x")),
    ("(yi)", (1, 2)),
    ("(iy)", (1, 2)),
    ("(ay)", (b"x",)),
    ("(sss)", ("a", "", "ccc")),
    ("((ii)s)", ((1, 2), "z")),
    ("(uuua(ayay))", (1, 2, 3, [])),
    (
        "(a{sv}aya(say)sstayay)",
        ({"a": Variant("s", "b")}, b"", [], "subj", "body", 1 << 40, bytes(range(32)), bytes(32)),
    ),
    ("a{sv}", MultiDict([("a", Variant("s", "1")), ("a", Variant("i", 2))])),
]


@pytest.fixture(scope="module")
def dummy_repo(ostree, tmp_path_factory):
    """ostree show wants a repository even when it only reads a file."""
    repo = tmp_path_factory.mktemp("gv") / "repo"
    ostree("init", f"--repo={repo}")
    return repo


def _ostree_print(ostree, repo, tmp_path, sig: str, data: bytes) -> str:
    """GLib's reading of data."""
    path = tmp_path / "v.bin"
    path.write_bytes(data)
    return ostree.out("show", f"--repo={repo}", f"--print-variant-type={sig}", path)


@pytest.mark.parametrize(("sig", "value"), SHAPES, ids=[s for s, _ in SHAPES])
def test_round_trip_and_glib_reads_it(ostree, dummy_repo, tmp_path, sig, value):
    data = gvariant.encode(sig, value)
    decoded = gvariant.decode(sig, data)
    assert gvariant.encode(sig, decoded) == data
    assert gvariant.is_normal_form(sig, data)
    if sig == "d" and value == 0:
        assert str(decoded) == str(value)  # keeps the sign of -0.0
    else:
        assert decoded == value
    assert _ostree_print(ostree, dummy_repo, tmp_path, sig, data) == print_value(
        sig, value, byteswap=True
    )


def _offsets_tail(data: bytes, count: int, width: int) -> list[int]:
    tail = data[len(data) - count * width :]
    return [int.from_bytes(tail[i : i + width], "little") for i in range(0, len(tail), width)]


@pytest.mark.parametrize(("item_len", "width"), [(10, 1), (100, 2), (30000, 4)])
def test_framing_offset_widths(ostree, dummy_repo, tmp_path, item_len, width):
    items = [c * item_len for c in "abc"]
    data = gvariant.encode("as", items)
    ends = [item_len + 1, 2 * (item_len + 1), 3 * (item_len + 1)]
    assert len(data) == ends[-1] + 3 * width
    assert _offsets_tail(data, 3, width) == ends
    assert gvariant.decode("as", data) == items
    # a struct frames its non-last variable members the same way, in reverse order
    sdata = gvariant.encode("(sss)", tuple(items))
    assert _offsets_tail(sdata, 2, width) == [ends[1], ends[0]]
    assert gvariant.decode("(sss)", sdata) == tuple(items)
    # GLib reads our framing back to the same strings
    printed = _ostree_print(ostree, dummy_repo, tmp_path, "as", data)
    assert printed == print_value("as", items)


def test_glib_serialization_reproduced_at_every_width(ostree, tmp_path):
    """Metadata ostree itself serialized (1-, 2- and 4-byte offsets) re-encodes exactly."""
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "tree"
    tree.mkdir()
    big = "[" + ", ".join(f"'{chr(97 + i % 26) * 1000}'" for i in range(70)) + "]"
    medium = "[" + ", ".join(f"'{i}' " for i in range(60)) + "]"
    checksum = ostree.out(
        "commit",
        f"--repo={repo}",
        "-b",
        "main",
        "--timestamp=2021-01-01",
        "--add-metadata=small=['a', 'b']",
        f"--add-metadata=medium={medium}",
        f"--add-metadata=big={big}",
        "--add-metadata=t=(1, 'x', [byte 0x01], <@as []>)",
        "--add-metadata-string=version=1",
        tree,
    )
    data = (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes()
    assert len(data) > 70000
    value = gvariant.decode("(a{sv}aya(say)sstayay)", data)
    assert gvariant.encode("(a{sv}aya(say)sstayay)", value) == data
    meta = value[0]
    assert [len(s) for s in meta["big"].value] == [1000] * 70
    for path in (repo / "objects").rglob("*.dir*"):
        sig = "(a(say)a(sayay))" if path.suffix == ".dirtree" else "(uuua(ayay))"
        raw = path.read_bytes()
        assert gvariant.is_normal_form(sig, raw), path


# ------------------------------------------------------------------ malformed input

MALFORMED = [
    ("s", b"abc", "string without NUL"),
    ("s", b"a\x00b\x00", "string with an inner NUL"),
    ("s", b"\xff\xfe\x00", "string not UTF-8"),
    ("i", b"\x01\x02\x03", "int32 of three bytes"),
    ("t", b"\x01" * 9, "uint64 of nine bytes"),
    ("(ii)", b"\x00" * 7, "fixed struct of the wrong size"),
    ("b", b"\x02", "boolean neither 0 nor 1"),
    ("a(ii)", b"\x00" * 12, "fixed-size elements, size not a multiple"),
    ("as", b"ab\x00\x09", "element offset past the end"),
    ("as", b"ab\x00\x02\x01", "offsets going backwards"),
    ("as", b"\x05", "offset table pointing past the data"),
    ("(ss)", b"a\x00b\x00\x09", "struct member offset past the end"),
    ("v", b"\x01\x02", "variant without type separator"),
    ("v", b"\x01\x00zz", "variant with an invalid type"),
    ("ms", b"x", "maybe string without trailing zero"),
    ("mi", b"\x01\x00", "maybe int32 of two bytes"),
    ("(a{sv}aya(say)sstayay)", b"\x00" * 5, "truncated commit"),
]


@pytest.mark.parametrize(("sig", "data", "why"), MALFORMED, ids=[w for *_, w in MALFORMED])
def test_malformed_input_is_rejected(sig, data, why):
    with pytest.raises(FormatError):
        gvariant.decode(sig, data)
    assert not gvariant.is_normal_form(sig, data)


def test_non_normal_forms_are_detected():
    assert not gvariant.is_normal_form("(yi)", b"\x01\xff\xff\xff\x02\x00\x00\x00")
    assert gvariant.is_normal_form("(yi)", b"\x01\x00\x00\x00\x02\x00\x00\x00")
    # two-byte offsets where one byte suffices: GLib would never write this
    assert not gvariant.is_normal_form("as", b"a\x00\x02\x00")
    # a commit with a parent checksum of the wrong length decodes but is not an object
    good = gvariant.encode("ay", bytes(32))
    assert gvariant.is_normal_form("ay", good)


def test_flipped_bytes_in_real_objects(ostree, tmp_path):
    """Every single-bit change to GLib-written metadata is rejected or changes meaning;
    decoding never fails with anything but FormatError."""
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    for d in ("a/b", "c", "d/e/f"):
        (tree / d).mkdir(parents=True)
        for name in ("x", "yy", "zzz"):
            (tree / d / name).write_text(name)
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree(
        "commit",
        f"--repo={repo}",
        "-b",
        "main",
        "--timestamp=2021-01-01",
        "--add-metadata=k=[(1, 'x'), (2, 'yy')]",
        tree,
    )
    rng = random.Random(4)
    for path in sorted((repo / "objects").rglob("*.dirtree"))[:5] + sorted(
        (repo / "objects").rglob("*.commit")
    ):
        sig = "(a(say)a(sayay))" if path.suffix == ".dirtree" else "(a{sv}aya(say)sstayay)"
        data = path.read_bytes()
        original = gvariant.decode(sig, data)
        for pos in rng.sample(range(len(data)), min(len(data), 60)):
            bad = bytearray(data)
            bad[pos] ^= 1 << rng.randrange(8)
            try:
                value = gvariant.decode(sig, bytes(bad))
            except FormatError:
                continue
            # still decodable: then it must be a different value or not normal
            assert value != original or not gvariant.is_normal_form(sig, bytes(bad))


@pytest.mark.parametrize(
    "sig", ["(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "a{sv}", "(uuuusa(ayay))", "aas", "m(sv)"]
)
def test_random_bytes_never_crash(sig):
    rng = random.Random(sig)
    for _ in range(400):
        data = (
            os.urandom(0)
            if rng.random() < 0.02
            else bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        )
        try:
            gvariant.decode(sig, data)
        except FormatError:
            pass


def test_multidict_keeps_duplicates_in_order():
    pairs = [("a", Variant("s", "1")), ("b", Variant("s", "x")), ("a", Variant("i", 3))]
    data = gvariant.encode("a{sv}", pairs)
    value = gvariant.decode("a{sv}", data)
    assert isinstance(value, MultiDict)
    assert value["a"] == Variant("s", "1")  # first entry wins, like g_variant_lookup
    assert value.items() == pairs
    assert gvariant.encode("a{sv}", value) == data
    with pytest.raises(TypeError):  # read-only: a change would desync lookups and bytes
        value["c"] = Variant("s", "y")


def test_double_is_ieee_little_endian():
    assert gvariant.encode("d", 1.5) == struct.pack("<d", 1.5)
    assert gvariant.encode("(yd)", (1, 2.0)) == b"\x01" + b"\x00" * 7 + struct.pack("<d", 2.0)
