"""GRUB's environment block (sysroot/formats/grubenv.py) against the real grub-editenv
(package grub-common): a block we write is listed by `grub-editenv FILE list` exactly
as we read it, and a block grub-editenv writes (or a damaged one) reads in ours as
grub-editenv lists it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sysroot.errors import FormatError
from sysroot.formats import grubenv

GRUB_EDITENV = shutil.which("grub-editenv")

VALUES = {
    "boot_counter": "3",
    "boot_success": "0",
    "empty": "",
    "back": "a\\b\\",  # backslashes, one at the end
    "lines": "one\ntwo\n",  # newlines, one at the end
    "eq": "x=y=z",
    "hash": "#not a comment",
    "utf8": "grüße ☃",
    "spaces": "  lead and trail  ",
}


def editenv(*args: str) -> subprocess.CompletedProcess:
    assert GRUB_EDITENV, "grub-editenv (package grub-common) is required"
    return subprocess.run([GRUB_EDITENV, *args], capture_output=True, check=True)


def listed(path: Path) -> bytes:
    return editenv(str(path), "list").stdout


def as_listing(pairs) -> bytes:
    """What grub-editenv's list prints for (name, value) pairs: name=value lines."""
    return b"".join(f"{n}={v}\n".encode("utf-8", "surrogateescape") for n, v in pairs)


def test_what_we_write_grub_editenv_lists_identically(tmp_path):
    path = tmp_path / "grubenv"
    path.write_bytes(grubenv.render(VALUES))
    assert len(path.read_bytes()) == 1024
    assert listed(path) == as_listing(VALUES.items())
    assert grubenv.values(path.read_bytes()) == VALUES
    # and grub-editenv edits our block in place (it finds the padding it expects)
    editenv(str(path), "set", "added=1")
    editenv(str(path), "unset", "eq")
    expected = {k: v for k, v in VALUES.items() if k != "eq"} | {"added": "1"}
    assert grubenv.values(path.read_bytes()) == expected
    assert listed(path) == as_listing(expected.items())


def test_what_grub_editenv_writes_parses_in_ours(tmp_path):
    path = tmp_path / "grubenv"
    editenv(str(path), "create")
    assert grubenv.parse(path.read_bytes()) == []
    editenv(str(path), "set", *(f"{k}={v}" for k, v in VALUES.items()))
    editenv(str(path), "set", "boot_counter=2")  # replaced in place
    editenv(str(path), "unset", "hash")
    data = path.read_bytes()
    expected = [(k, "2" if k == "boot_counter" else v) for k, v in VALUES.items() if k != "hash"]
    assert grubenv.parse(data) == expected
    assert as_listing(grubenv.parse(data)) == listed(path)


@pytest.mark.parametrize(
    "body",
    [
        b"a=1\nb=2\n",
        b"a=1\nbroken line without an equals sign\nb=2\n",  # the name runs to the next =
        b"a=1\nb=unterminated",  # the block ends inside a line: listing stops
        b"a=x\\\ny\nc=3\n",  # an escaped newline inside a value
        b"=no name\nd=4\n",
        b"a=1\na=2\n",  # twice: both listed, the last one wins in GRUB
        b"x=\\",  # a lone backslash at the very end
        b"#comment \\\nhidden=1\nb=2\n",  # an escaped newline continues a comment
        b"\xff\xfe=\xc3(\n",  # bytes that are not UTF-8
    ],
)
def test_odd_blocks_read_as_grub_editenv_lists_them(tmp_path, body):
    path = tmp_path / "grubenv"
    data = grubenv.SIGNATURE + body
    if not body.endswith(b"\\") and not body.endswith(b"unterminated"):
        data += b"#" * (1024 - len(data))
    path.write_bytes(data)
    assert as_listing(grubenv.parse(data)) == listed(path)


def test_no_signature_is_refused(tmp_path):
    with pytest.raises(FormatError, match="not a GRUB environment block"):
        grubenv.parse(b"a=1\n" + b"#" * 1020)


def test_update_keeps_the_rest_and_replaces_the_file_whole(tmp_path):
    path = tmp_path / "grub" / "grubenv"
    path.parent.mkdir()
    editenv(str(path), "create")
    editenv(str(path), "set", "saved_entry=sysroot-1", "boot_counter=5")
    inode = path.stat().st_ino
    grubenv.update(str(path), {"boot_counter": "3", "boot_success": "0"})
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert listed(path) == b"saved_entry=sysroot-1\nboot_counter=3\nboot_success=0\n"
    grubenv.update(str(path), {"boot_counter": None, "boot_success": "1"})
    assert listed(path) == b"saved_entry=sysroot-1\nboot_success=1\n"
    assert len(path.read_bytes()) == 1024
    assert [n for n in os.listdir(path.parent) if n != "grubenv"] == []  # no temporaries
    # a missing file is created, one block
    other = tmp_path / "new" / "grubenv"
    grubenv.update(str(other), {"boot_counter": "1"})
    assert listed(other) == b"boot_counter=1\n" and len(other.read_bytes()) == 1024
    # a larger file keeps its size (GRUB's save_env writes only the blocks it has)
    big = tmp_path / "big"
    big.write_bytes(grubenv.render({"a": "1"}, 2048))
    grubenv.update(str(big), {"b": "2"})
    assert len(big.read_bytes()) == 2048 and listed(big) == b"a=1\nb=2\n"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bad-name": "1"}, "invalid variable name"),
        ({"a=b": "1"}, "invalid variable name"),
        ({"nul": "a\0b"}, "NUL byte"),
        ({"big": "x" * 1000}, "do not fit"),
    ],
)
def test_bad_variables_are_refused_and_change_nothing(tmp_path, changes, message):
    path = tmp_path / "grubenv"
    editenv(str(path), "create")
    editenv(str(path), "set", "keep=1")
    before = path.read_bytes()
    with pytest.raises(FormatError, match=message):
        grubenv.update(str(path), changes)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["grubenv"]
