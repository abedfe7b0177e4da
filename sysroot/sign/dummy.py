"""The `dummy` signature type ostree keeps for its own tests: the "signature" is the key
itself, stored under `ostree.sign.dummy` in the detached metadata like any engine's
(`aay`, appended on each signing), and a commit verifies when one of its signatures
equals one of the keys given. It proves nothing about the commit's content.

As ostree 2022.7, it refuses to sign unless OSTREE_DUMMY_SIGN_ENABLED=1, and without it
nothing verifies; keys are taken as the bytes of their UTF-8 spelling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sysroot.errors import SysrootError

NAME = "dummy"
METADATA_KEY = "ostree.sign.dummy"
ENV = "OSTREE_DUMMY_SIGN_ENABLED"


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def require_enabled() -> None:
    """Signing with it: refused outside ostree's test setting, in ostree's words."""
    if not enabled():
        raise SysrootError("dummy signature type is only for ostree testing")


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")  # a command-line word, as given


def find_valid(sigs: Sequence[bytes], keys: Sequence[bytes]) -> bytes | None:
    """The first key one of sigs equals; None when none does or it is not enabled."""
    if not enabled():
        return None
    for key in keys:
        if key in sigs:
            return key
    return None
