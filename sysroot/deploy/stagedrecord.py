"""/run/ostree/staged-deployment and its legacy lock file: where they are, the record
decoded and encoded, read and written. No deployment is created or removed here, and
no state changed: state.py reads the record through this module, staged.py writes it.

The record is libostree's, byte for byte (a GVariant a{sv}: `target` and
`merge-deployment` as {name, osname, bootcsum}, optional `kargs` (as), `locked` (b)),
and so is the legacy lock file beside it: either tool finalizes what the other staged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Protocol

from sysroot.boot import words
from sysroot.errors import FormatError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.util import fsutil

BOOTED_FLAG = "/run/ostree-booted"
RUN_DIR = "/run/ostree"
STAGED_NAME = "staged-deployment"
LOCKED_NAME = "staged-deployment-locked"  # the legacy lock: its existence locks
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
_DEPLOYMENT_NAME = re.compile(r"([0-9a-f]{64})\.([0-9]{1,9})")


def staged_path() -> str:
    return os.path.join(RUN_DIR, STAGED_NAME)


def locked_path() -> str:
    return os.path.join(RUN_DIR, LOCKED_NAME)


def is_booted() -> bool:
    """Only a booted system has staged deployments (libostree)."""
    return os.path.exists(BOOTED_FLAG)


class _Named(Protocol):
    """What the record needs of a deployment (state.Deployment has it). Read-only
    members, so a frozen dataclass fits."""

    @property
    def osname(self) -> str: ...
    @property
    def csum(self) -> str: ...
    @property
    def deployserial(self) -> int: ...
    @property
    def bootcsum(self) -> str: ...


@dataclass(frozen=True)
class DeploymentRef:
    """A deployment as the record names it."""

    osname: str
    csum: str
    serial: int
    bootcsum: str

    @classmethod
    def of(cls, d: _Named) -> DeploymentRef:
        return cls(d.osname, d.csum, d.deployserial, d.bootcsum)

    @property
    def identity(self) -> tuple[str, str, int]:
        return (self.osname, self.csum, self.serial)

    def to_variant(self) -> Variant:
        return Variant(
            "a{sv}",
            {
                "name": Variant("s", f"{self.csum}.{self.serial}"),
                "osname": Variant("s", self.osname),
                "bootcsum": Variant("s", self.bootcsum),
            },
        )

    @classmethod
    def from_variant(cls, v: object, key: str) -> DeploymentRef:
        """Every field checked: the record is input from a file anyone with root (or a
        bug) may have written, and its names become paths under /boot and /ostree."""
        if not isinstance(v, Variant) or v.signature != "a{sv}":
            raise FormatError(f"{staged_path()}: '{key}' is not a dictionary")
        values = {}
        for name in ("name", "bootcsum", "osname"):
            item = v.value.get(name)
            if not isinstance(item, Variant) or item.signature != "s":
                raise FormatError(f"{staged_path()}: {key}: Missing key: {name}")
            values[name] = item.value
        m = _DEPLOYMENT_NAME.fullmatch(values["name"])
        if not m:
            raise FormatError(
                f"{staged_path()}: {key}: invalid deployment name {words.shown(values['name'])}"
            )
        if not _CHECKSUM.fullmatch(values["bootcsum"]):
            raise FormatError(
                f"{staged_path()}: {key}: invalid boot checksum {words.shown(values['bootcsum'])}"
            )
        try:
            words.check_name(values["osname"], "stateroot name")
        except FormatError as e:
            raise FormatError(f"{staged_path()}: {key}: {e}") from None
        return cls(values["osname"], m.group(1), int(m.group(2)), values["bootcsum"])


@dataclass(frozen=True)
class StagedRecord:
    """/run/ostree/staged-deployment, decoded."""

    target: DeploymentRef
    merge: DeploymentRef | None = None
    kargs: tuple[str, ...] | None = None  # None: the merge deployment's at finalize
    locked: bool = False
    # keys we do not use, kept on rewrite
    other: dict[str, Variant] = field(default_factory=dict)

    def encode(self) -> bytes:
        # libostree's insertion order: target, locked, merge-deployment, kargs
        d: dict[str, Variant] = {"target": self.target.to_variant()}
        if self.locked:
            d["locked"] = Variant("b", True)
        if self.merge is not None:
            d["merge-deployment"] = self.merge.to_variant()
        if self.kargs is not None:
            d["kargs"] = Variant("as", list(self.kargs))
        for k, v in self.other.items():
            d.setdefault(k, v)
        return gvariant.encode("a{sv}", d)

    @classmethod
    def decode(cls, data: bytes) -> StagedRecord | None:
        """None when the record names no target (libostree: nothing staged)."""
        try:
            d = gvariant.decode("a{sv}", data)
        except FormatError as e:
            raise FormatError(f"{staged_path()}: {e}") from None
        if "target" not in d:
            return None
        target = DeploymentRef.from_variant(d["target"], "target")
        merge = (
            DeploymentRef.from_variant(d["merge-deployment"], "merge-deployment")
            if "merge-deployment" in d
            else None
        )
        kargs = d.get("kargs")
        if kargs is not None and kargs.signature != "as":
            raise FormatError(f"{staged_path()}: 'kargs' is not a string array")
        try:
            for word in kargs.value if kargs is not None else ():
                words.check_word(word, "kernel argument")  # the options line at finalize
        except FormatError as e:
            raise FormatError(f"{staged_path()}: kargs: {e}") from None
        locked = d.get("locked")
        other = {
            k: v for k, v in d.items() if k not in ("target", "merge-deployment", "kargs", "locked")
        }
        return cls(
            target,
            merge,
            tuple(kargs.value) if kargs is not None else None,
            bool(locked.value) if locked is not None and locked.signature == "b" else False,
            other,
        )


def read_record() -> StagedRecord | None:
    """The record; None when there is none; FormatError for one that cannot be used."""
    try:
        with open(staged_path(), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:  # a directory, unreadable...
        raise FormatError(f"{staged_path()}: {e.strerror or e}") from None
    return StagedRecord.decode(data)


def legacy_locked() -> bool:
    return os.path.exists(locked_path())


def write_record(record: StagedRecord) -> None:
    os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
    fsutil.atomic_write(staged_path(), record.encode(), mode=0o644)


def set_legacy_lock(locked: bool) -> None:
    if locked:
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        os.close(
            os.open(locked_path(), os.O_CREAT | os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC, 0o640)
        )
    else:
        try:
            os.unlink(locked_path())
        except FileNotFoundError:
            pass
