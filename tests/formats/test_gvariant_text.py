"""GVariant text: our parser against GLib's (through `ostree commit --add-metadata`), our
printer against GLib's (through `ostree show --print-metadata-key`, with and without
ostree's byte swap).
"""

from __future__ import annotations

import pytest

from sysroot.cli.main import main
from sysroot.errors import UsageError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.gvariant_text import (
    byteswap,
    format_double,
    parse_text,
    parse_typed,
    print_value,
)

VALID = [
    # the basics
    "true",
    "false",
    "42",
    "-5",
    "+1",
    "-",
    "010",
    "0x10",
    "-0x10",
    "'s'",
    '"s"',
    "uint64 3",
    "@t 5",
    "['a','b']",
    "@as []",
    "(1, 'x')",
    "byte 0x01",
    "3.5",
    "(1,)",
    "()",
    # numbers of every type, limits and formats
    "int16 -32768",
    "uint16 65535",
    "int32 -2147483648",
    "uint32 4294967295",
    "int64 -9223372036854775808",
    "uint64 18446744073709551615",
    "handle 3",
    "@y 255",
    "double 1",
    "0.1",
    "1e100",
    "-0.0",
    "inf",
    "-inf",
    "nan",
    "1.",
    ".5",
    "2.5e+3",
    "1.5e-7",
    "123456789.123",
    "1e16",
    "1e17",
    "-0x1e",
    "1.7976931348623157e308",
    # strings: quotes, escapes, control and non-ASCII characters
    '"it\'s"',
    '"both \' and \\""',
    "'dq\"in'",
    "'new\nline'",
    "'tab\\there'",
    "'back\\\\slash'",
    "'\\r\\f\\v\\b\\a'",
    "'\\z'",
    "'ünïcødé'",
    "'\\u00e9'",
    "'\\U0001f600'",
    "'\\u00a0nbsp'",
    "'\\u2028ls'",
    "'\\u200bzw'",
    "'\\u0085'",
    "'\\u00ad'",
    "'\\ue000pua'",
    "'\\U0010ffff'",
    "'\\x01'",
    "'line\\\ncont'",
    "  'spaced'  ",
    "'a\ttab'",
    # bytestrings and byte arrays
    "b'abc'",
    'b"it\'s"',
    "b'say \"hi\"'",
    "b'\\303\\251'",
    "b''",
    "b'\\v\\a\\t\\001\\037 '",
    "b'a\\000b'",
    "b'\\1012'",
    "@ay []",
    "[byte 0x00]",
    "[byte 0x61, 0x00, 0x62]",
    "[byte 0x01, 0x00]",
    "[byte 0x61]",
    "@ay b'x'",
    # containers and inference
    "<42>",
    "<<'x'>>",
    "<@as []>",
    "{'a': 1, 'b': 2}",
    "@a{sv} {}",
    "{'a': <1>, 'b': <'x'>}",
    "{'a': 1, 'a': 2}",
    "[[1,2],[3]]",
    "@aas [[], ['x']]",
    "[[], [1]]",
    "[1, 2.5]",
    "[int64 1, 2]",
    "[1, byte 2]",
    "[(1, 'a'), (2.5, 'b')]",
    "{1: 'x'}",
    "{true: 1}",
    "{'a', 1}",
    "[{'a': 1}, {}]",
    "[<1>, <'a'>]",
    "[b'a', [byte 0x01]]",
    "(byte 0x01, int16 2, uint16 3, 4, uint32 5, int64 6, uint64 7, 8.5)",
    "[@(s) ('x',), ('y',)]",
    "@a{ss} {'z': 'a', 'a': 'z'}",
    # maybes, object paths, signatures
    "just 5",
    "@mi nothing",
    "[just 1, 2]",
    "[nothing, 1]",
    "just <1>",
    "@mv nothing",
    "just just 5",
    "objectpath '/a/b'",
    "objectpath '/'",
    "[objectpath '/a', '/b']",
    "['/b', objectpath '/a']",
    "signature 'a{sv}'",
    "signature 'sia{sv}(ii)'",  # several complete types
    "signature ''",
    "@g 'as'",
    "signature '{sv}'",
]

INVALID = [
    "",
    "2147483648",
    "99999999999999999999",
    "byte 256",
    "int16 32768",
    "uint64 -1",
    "'it''s'",
    "true false",
    "'unterminated",
    "b'x",
    "[1, 'a']",
    "[]",
    "nothing",
    "{}",
    "(1)",
    "(1, 2",
    "(1, 2,)",
    "[1 2]",
    "[1,]",
    "<1",
    "{'a': 1",
    "{'a', 1, 2}",
    "{'a': 1, 'b': 2.5}",
    "{<1>: 2}",
    "@zz 1",
    "@i 'x'",
    "@s 1",
    "@ay 'x'",
    "infinity",
    "0x",
    "1e",
    "1E5",
    "08",
    "+",
    ".",
    "- 1",
    "1_000",
    "1e309",
    "5e-324",
    "TRUE",
    "Abc",
    "aBC",
    "x",
    "'\\u12'",
    "'\\u0000'",
    "objectpath 'bad path'",
    "signature 'zz'",
    "signature 'i('",  # a valid type, then an incomplete one
    "signature 'sa'",
    "['a', objectpath '/x']",
    "(just 'x', nothing)",
    "just nothing",
    "[1, 2]]",
    "É",
]


@pytest.fixture(scope="module")
def oracle_commit(ostree, tmp_path_factory):
    """One ostree commit holding every VALID text as metadata key kN."""
    tmp = tmp_path_factory.mktemp("gvtext")
    repo, tree = tmp / "repo", tmp / "tree"
    tree.mkdir()
    ostree("init", f"--repo={repo}", "--mode=archive")
    args = [f"--add-metadata=k{i}={text}" for i, text in enumerate(VALID)]
    checksum = ostree.out(
        "commit",
        f"--repo={repo}",
        "--orphan",
        "--no-bindings",
        "--timestamp=2021-01-01",
        *args,
        tree,
    )
    return repo, checksum, gvariant.decode("(a{sv}aya(say)sstayay)", _object(repo, checksum))[0]


@pytest.mark.parametrize("index", range(len(VALID)), ids=VALID)
def test_parse_matches_glib(oracle_commit, index):
    _, _, meta = oracle_commit
    ours = parse_text(VALID[index])
    theirs = meta[f"k{index}"]
    assert ours.signature == theirs.signature
    assert gvariant.encode("v", ours) == gvariant.encode("v", theirs)


def test_print_matches_glib(ostree, oracle_commit):
    """ostree's raw dump of the commit (byte-swapped, and with -B not) equals ours."""
    repo, checksum, meta = oracle_commit
    for flags, swap in (([], True), (["-B"], False)):
        raw = ostree.out("show", f"--repo={repo}", "--raw", checksum, *flags).split("\n")[1]
        for i, text in enumerate(VALID):
            value = meta[f"k{i}"]
            printed = print_value(value.signature, value.value, byteswap=swap)
            assert f"'k{i}': <{printed}>" in raw, (text, swap)
        commit = gvariant.decode("(a{sv}aya(say)sstayay)", _object(repo, checksum))
        assert print_value("(a{sv}aya(say)sstayay)", commit, byteswap=swap) == raw


def _object(repo, checksum: str) -> bytes:
    return (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes()


@pytest.mark.parametrize("index", range(0, len(VALID), 9))
def test_print_metadata_key_cli(ostree, oracle_commit, capfdbinary, index):
    repo, checksum, _ = oracle_commit
    for flags in ([], ["-B"]):
        argv = ["show", f"--repo={repo}", checksum, f"--print-metadata-key=k{index}", *flags]
        expected = ostree(*argv).stdout
        assert main(argv) == 0
        assert capfdbinary.readouterr().out == expected


@pytest.mark.parametrize("text", INVALID)
def test_parse_errors_match_glib(ostree, oracle_commit, text):
    repo = oracle_commit[0]
    proc = ostree(
        "commit",
        f"--repo={repo}",
        "--orphan",
        f"--add-metadata=k={text}",
        repo.parent / "tree",
        check=False,
    )
    assert proc.returncode != 0
    glib_message = proc.stderr.decode().strip().removeprefix(f"error: Parsing k={text}: ")
    with pytest.raises(UsageError) as err:
        parse_text(text)
    if "assertion" not in glib_message:  # GLib crashes on some input; we just refuse it
        assert str(err.value) == glib_message


def test_surrogate_escape_is_refused():
    # GLib accepts these and then aborts on an assertion; we refuse them cleanly
    for text in ("'\\ud800'", "'\\U00110000'"):
        with pytest.raises(UsageError, match="unicode escape"):
            parse_text(text)


def test_parse_typed():
    assert parse_typed("5", "t") == 5
    assert parse_typed("5", "mi") == 5
    assert parse_typed("[1, 2]", "ay") == b"\x01\x02"
    assert parse_typed("{'a': <1>}", "a{sv}") == {"a": Variant("i", 1)}
    with pytest.raises(UsageError, match="can not parse as value of type 's'"):
        parse_typed("5", "s")
    with pytest.raises(UsageError, match="can not parse as value of type 'i'"):
        parse_typed("@s 'x'", "i")


def test_text_round_trip():
    """Printed text parses back to the same value (what GLib promises too)."""
    for text in VALID:
        v = parse_text(text)
        if v.signature.startswith("mm"):
            continue  # nested maybes: "just nothing" is not representable in Python
        again = parse_text(print_value(v.signature, v.value))
        assert gvariant.encode("v", again) == gvariant.encode("v", v), text


def test_byteswap():
    assert byteswap("i", 42) == 704643072
    assert byteswap("t", 1) == 1 << 56
    assert byteswap("(ysq)", (1, "x", 1)) == (1, "x", 256)
    value = {"a": Variant("u", 1), "b": Variant("as", ["x"])}
    assert byteswap("a{sv}", byteswap("a{sv}", value)) == value
    assert byteswap("ay", b"\x01\x02") == b"\x01\x02"
    assert print_value("v", Variant("i", 42), byteswap=True) == "<704643072>"


def test_format_double():
    assert format_double(1.0) == "1.0"
    assert format_double(0.1) == "0.10000000000000001"
    assert format_double(1e100) == "1e+100"
    assert format_double(float("-inf")) == "-inf"
    assert format_double(-float("nan")) == "-nan"
