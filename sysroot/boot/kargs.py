"""Kernel command lines, with the editing rules of `ostree admin deploy --karg*`.

A command line is a sequence of `key` or `key=value` words separated by spaces;
double quotes protect spaces and stay part of the word. Order is kept: editing a key
keeps its first position, as libostree does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyparsing as pp

from sysroot.errors import UsageError

# A word is a run of quoted or unquoted non-space chunks: root="LABEL=my disk" is one word.
_CHUNK = pp.QuotedString('"', unquote_results=False, multiline=False) | pp.Regex(r'[^\s"]+')
_WORD = pp.Combine(pp.OneOrMore(_CHUNK), adjacent=True)
_CMDLINE = pp.ZeroOrMore(_WORD) + pp.StringEnd()

# Added by boot loaders to /proc/cmdline; never carried into a deployment.
_PROC_CMDLINE_SKIP = ("BOOT_IMAGE", "initrd")


def split_words(text: str) -> list[str]:
    try:
        return list(_CMDLINE.parse_string(text.replace("\n", " "), parse_all=True))
    except pp.ParseException as e:
        raise UsageError(f"Invalid kernel command line {text!r}: unbalanced quote "
                         f"at column {e.col}") from None


def _key(word: str) -> str:
    return word.split("=", 1)[0]


@dataclass
class KernelArgs:
    words: list[str]

    @classmethod
    def parse(cls, text: str) -> KernelArgs:
        return cls(split_words(text))

    @classmethod
    def from_proc_cmdline(cls, text: str) -> KernelArgs:
        return cls([w for w in split_words(text) if _key(w) not in _PROC_CMDLINE_SKIP])

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
        key = _key(word)
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
        self.words.append(word)

    def append_if_missing(self, word: str) -> None:
        if word not in self.words:
            self.words.append(word)

    def delete(self, word: str) -> None:
        """Delete `key=value` exactly, or `key` when it has a single value."""
        if "=" in word or word in self.words:
            if word not in self.words:
                raise UsageError(f"Kernel argument '{word}' not found")
            self.words.remove(word)
            return
        matches = [w for w in self.words if _key(w) == word]
        if not matches:
            raise UsageError(f"Kernel argument '{word}' not found")
        if len(matches) > 1:
            raise UsageError(f"Kernel argument '{word}' has multiple values; "
                             "name the value to delete")
        self.words.remove(matches[0])

    def delete_if_present(self, word: str) -> None:
        if "=" in word:
            if word in self.words:
                self.words.remove(word)
        else:
            self.words = [w for w in self.words if _key(w) != word]

    def set_in_place(self, word: str) -> None:
        """Replace key's value where it stands, or append: how ostree= and init= are set."""
        self.replace(word)
