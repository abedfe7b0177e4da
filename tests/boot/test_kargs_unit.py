"""Kernel command lines (sysroot/boot/kargs.py) without a sysroot: how a line is split
and joined, and the editing rules of `ostree admin deploy --karg*` / `kargs edit-in-place`
(libostree 2022.7's ostree-kernel-args.c: order kept, an edited key keeps its first
position, deletion by exact word or by a key with a single value).

The hostile-word checks against ostree and /proc/cmdline's skipped words live in
tests/deploy/test_hostile_words.py; these pin the plain semantics, in milliseconds.
"""

from __future__ import annotations

import pytest

from sysroot.boot.kargs import KernelArgs, split_words
from sysroot.errors import UsageError

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts


def k(text: str) -> KernelArgs:
    return KernelArgs.parse(text)


# ------------------------------------------------------------------ splitting and joining
@pytest.mark.parametrize(
    "text, words",
    [
        ("", []),
        ("quiet", ["quiet"]),
        ("root=/dev/vda1 rw quiet", ["root=/dev/vda1", "rw", "quiet"]),
        # g_strsplit on " ": every space separates, so two spaces make an empty word
        ("a  b", ["a", "", "b"]),
        (" a", ["", "a"]),
        ("a ", ["a", ""]),
        # quotes protect nothing
        ('root="LABEL=my disk" ro', ['root="LABEL=my', 'disk"', "ro"]),
        # only the first '=' separates key from value
        ("ostree=/ostree/boot.1/a=b/0", ["ostree=/ostree/boot.1/a=b/0"]),
    ],
)
def test_split_like_g_strsplit_and_join_back_unchanged(text, words):
    assert split_words(text) == words
    assert k(text).words == words
    assert str(k(text)) == text


def test_get_returns_every_value_in_order_none_for_a_bare_word():
    args = k("console=tty0 quiet console=ttyS0,115200 console= rd.x=a=b")
    assert args.get("console") == ["tty0", "ttyS0,115200", ""]
    assert args.get("quiet") == [None]
    assert args.get("rd.x") == ["a=b"]
    assert args.get("missing") == []
    # a key is the part before '=', never a prefix of it
    assert k("consoleblank=0").get("console") == []


def test_has_matches_whole_words():
    args = k("root=/dev/vda1 quiet")
    assert args.has("quiet") and args.has("root=/dev/vda1")
    assert not args.has("root") and not args.has("quie")


def test_copy_is_independent():
    a = k("a b")
    b = a.copy()
    b.append("c")
    assert a.words == ["a", "b"] and b.words == ["a", "b", "c"]


# ------------------------------------------------------------------ replace (--karg)
@pytest.mark.parametrize(
    "before, word, after",
    [
        # every value of the key goes; the new word takes the first one's place
        ("a console=tty0 b console=ttyS0 c", "console=hvc0", "a console=hvc0 b c"),
        # a bare key is replaced by key=value and the other way round
        ("a quiet b", "quiet=1", "a quiet=1 b"),
        ("a quiet=1 b", "quiet", "a quiet b"),
        # a missing key is appended
        ("a b", "c=1", "a b c=1"),
        ("", "c=1", "c=1"),
        # the same word again: nothing moves
        ("x=1 y", "x=1", "x=1 y"),
        # keys are compared whole: `consoleblank` is not `console`
        ("consoleblank=0 console=tty0", "console=hvc0", "consoleblank=0 console=hvc0"),
    ],
)
def test_replace_keeps_the_first_position(before, word, after):
    args = k(before)
    args.replace(word)
    assert str(args) == after


def test_set_in_place_is_replace():
    args = k("root=/dev/vda ostree=/ostree/boot.0/os/a/0 quiet")
    args.set_in_place("ostree=/ostree/boot.1/os/b/0")
    assert str(args) == "root=/dev/vda ostree=/ostree/boot.1/os/b/0 quiet"


# ------------------------------------------------------------------ append
def test_append_keeps_duplicates_and_appends_at_the_end():
    args = k("console=tty0 quiet")
    args.append("console=ttyS0")
    args.append("quiet")
    assert str(args) == "console=tty0 quiet console=ttyS0 quiet"


def test_append_if_missing_compares_whole_words():
    args = k("console=tty0 quiet")
    args.append_if_missing("quiet")
    args.append_if_missing("console=tty0")
    assert str(args) == "console=tty0 quiet"
    args.append_if_missing("console=ttyS0")  # another value of a present key: added
    assert str(args) == "console=tty0 quiet console=ttyS0"


# ------------------------------------------------------------------ delete (--karg-delete)
@pytest.mark.parametrize(
    "before, word, after",
    [
        # a key with a single value goes by its key, or by its exact word
        ("a console=tty0 b", "console", "a b"),
        ("a console=tty0 b", "console=tty0", "a b"),
        ("a quiet b", "quiet", "a b"),
        # one of several values goes by its exact word; the others stay in place
        ("console=a x console=b console=c", "console=b", "console=a x console=c"),
        # an exact duplicate: only the first goes
        ("q=1 x q=1", "q=1", "x q=1"),
        # `key=` deletes the empty value
        ("c= c=1", "c=", "c=1"),
    ],
)
def test_delete(before, word, after):
    args = k(before)
    args.delete(word)
    assert str(args) == after


@pytest.mark.parametrize(
    "before, word, message",
    [
        ("a b", "c", "No key 'c' found"),
        ("a b", "c=1", "No key 'c' found"),
        # the single value is another one
        ("c=1", "c=2", "No karg 'c=2' found"),
        # a bare key with several values: ambiguous
        (
            "c=1 c=2",
            "c",
            "Multiple values for key 'c' found. Use e.g. 'key=' to delete a specific value",
        ),
        ("c=1 c=2", "c=3", "No karg 'c=3' found"),
    ],
)
def test_delete_refusals_keep_libostrees_words_and_change_nothing(before, word, message):
    args = k(before)
    with pytest.raises(UsageError) as e:
        args.delete(word)
    assert str(e.value) == message
    assert str(args) == before


@pytest.mark.parametrize(
    "before, word, after",
    [
        ("a c=1 b c=2", "c", "a b"),  # a key: every value
        ("a c=1 b c=2", "c=2", "a c=1 b"),  # a word: that word
        ("a b", "c", "a b"),  # absent: nothing, no error
        ("a b", "c=1", "a b"),
    ],
)
def test_delete_if_present(before, word, after):
    args = k(before)
    args.delete_if_present(word)
    assert str(args) == after


# ------------------------------------------------------------------ words given to an edit
@pytest.mark.parametrize("word", ["a b", "a\tb", "a\nb", "x=\x1b[2J", "nel\x85", "a "])
@pytest.mark.parametrize(
    "edit", ["append", "append_if_missing", "replace", "delete", "delete_if_present"]
)
def test_every_edit_refuses_a_word_that_is_not_one(edit, word):
    args = k("a c=1")
    with pytest.raises(UsageError, match=r"^Invalid kernel argument '.*': contains "):
        getattr(args, edit)(word)
    assert args.words == ["a", "c=1"]
