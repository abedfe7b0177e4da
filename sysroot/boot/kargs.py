"""Kernel command lines, with the editing rules of `ostree admin deploy --karg*`.

A command line is a sequence of `key` or `key=value` words. Order is kept: editing a
key keeps its first position, as libostree does.

Words are split the way libostree 2022.7 splits them (g_strsplit on " "), because the
entries it writes must come out byte for byte the same: every single space separates
(two spaces make an empty word, kept so an edited line stays as it was) and quotes
protect nothing (`root="LABEL=my disk"` is two words). A word given to an edit
(`--karg*`, `kargs edit-in-place`, /proc/cmdline) must be one word: whitespace or a
control character in it is refused (words.py), before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from sysroot.boot import words as _words
from sysroot.errors import FormatError, UsageError

# Added by boot loaders to /proc/cmdline; never carried into a deployment.
_PROC_CMDLINE_SKIP = ("BOOT_IMAGE=", "initrd=")


def split_words(text: str) -> list[str]:
    return text.split(" ") if text else []


def _key(word: str) -> str:
    return word.split("=", 1)[0]


def check_word(word: str) -> str:
    """word, when it is one kernel argument; else UsageError (it comes from the user)."""
    return _words.check_word(word, "kernel argument", UsageError)


@dataclass
class KernelArgs:
    words: list[str]

    @classmethod
    def parse(cls, text: str) -> KernelArgs:
        return cls(split_words(text))

    @classmethod
    def from_proc_cmdline(cls, text: str) -> KernelArgs:
        kept = [w for w in split_words(text.rstrip()) if not w.startswith(_PROC_CMDLINE_SKIP)]
        for w in kept:
            _words.check_word(w, "kernel argument in /proc/cmdline", FormatError)
        return cls(kept)

    def __str__(self) -> str:
        return " ".join(self.words)

    def copy(self) -> KernelArgs:
        return KernelArgs(list(self.words))

    def get(self, key: str) -> list[str | None]:
        """Values of key (None for a bare `key` word)."""
        return [w.partition("=")[2] if "=" in w else None for w in self.words if _key(w) == key]

    def has(self, word: str) -> bool:
        return word in self.words

    def replace(self, word: str) -> None:
        """key=value replaces every value of key, at the first one's position."""
        key = _key(check_word(word))
        out, placed = [], False
        for w in self.words:
            if _key(w) == key:
                if not placed:
                    out.append(word)
                    placed = True
                continue
            out.append(w)
        if not placed:
            out.append(word)
        self.words = out

    def append(self, word: str) -> None:
        self.words.append(check_word(word))

    def append_if_missing(self, word: str) -> None:
        if check_word(word) not in self.words:
            self.words.append(word)

    def delete(self, word: str) -> None:
        """Delete `key=value` exactly, or `key` when it has a single value (libostree's
        rules and messages)."""
        key, sep, value = check_word(word).partition("=")
        matches = [w for w in self.words if _key(w) == key]
        if not matches:
            raise UsageError(f"No key '{key}' found")
        if len(matches) == 1:
            if sep and matches[0] != word:
                raise UsageError(f"No karg '{key}={value}' found")
            self.words.remove(matches[0])
            return
        if word not in self.words:
            if not sep:
                raise UsageError(
                    f"Multiple values for key '{key}' found. "
                    "Use e.g. 'key=' to delete a specific value"
                )
            raise UsageError(f"No karg '{word}' found")
        self.words.remove(word)

    def delete_if_present(self, word: str) -> None:
        if "=" in check_word(word):
            if word in self.words:
                self.words.remove(word)
        else:
            self.words = [w for w in self.words if _key(w) != word]

    def set_in_place(self, word: str) -> None:
        """Replace key's value where it stands, or append: how ostree= and init= are set."""
        self.replace(word)
