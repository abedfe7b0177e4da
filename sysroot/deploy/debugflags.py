"""OSTREE_SYSROOT_DEBUG, read as libostree 2022.7 reads it (GLib's debug strings).

Its keys: `mutable-deployments` (deployment roots are not made immutable), which
sysroot honours; `no-xattrs`, `test-fifreeze` and `no-dtb`, knobs of ostree's own test
suite, which sysroot accepts and ignores. As GLib parses such a string: keys separated
by commas, colons, semicolons, spaces or tabs, case ignored and `-` the same as `_`;
`all` sets every key but the ones listed with it; unknown words count for nothing.
"""

from __future__ import annotations

import enum
import os
import re

ENV = "OSTREE_SYSROOT_DEBUG"


class SysrootDebug(enum.Flag):
    NONE = 0
    MUTABLE_DEPLOYMENTS = enum.auto()
    TEST_FIFREEZE = enum.auto()
    NO_XATTRS = enum.auto()
    NO_DTB = enum.auto()


_KEYS = {
    "mutable-deployments": SysrootDebug.MUTABLE_DEPLOYMENTS,
    "test-fifreeze": SysrootDebug.TEST_FIFREEZE,
    "no-xattrs": SysrootDebug.NO_XATTRS,
    "no-dtb": SysrootDebug.NO_DTB,
}
_ALL = SysrootDebug.MUTABLE_DEPLOYMENTS | SysrootDebug.TEST_FIFREEZE
_ALL |= SysrootDebug.NO_XATTRS | SysrootDebug.NO_DTB


def parse(text: str) -> SysrootDebug:
    flags = SysrootDebug.NONE
    everything = False
    for word in re.split(r"[,:; \t]+", text):
        key = word.lower().replace("_", "-")
        if key == "all":
            everything = True
        flags |= _KEYS.get(key, SysrootDebug.NONE)
    return _ALL & ~flags if everything else flags


def from_environment() -> SysrootDebug:
    return parse(os.environ.get(ENV, ""))
