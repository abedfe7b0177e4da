"""The health checks meet boot counting: one name for a deployment, the red path's
decision (greenboot's redboot-auto-reboot) and the loop breaker's record.

Names: a deployment is named as counting names it, deployment_key()
("STATEROOT/deploy/CHECKSUM.SERIAL"), in the check records, the loop breaker's
record, the journal and `admin health status`.

The red decision (after red.d ran, the checks having failed):

- REBOOT when the booted deployment is the counted default and the boot loader still
  counts it: tries left (armed), or none left (bad; on systemd-boot the name already
  says +0, which reads as fell-back while that boot runs): the next boot tries it
  again or falls back to the previous deployment, either way a way forward;
- MANUAL otherwise, the loop breaker: nothing counts the booted deployment (counting
  off, blessed, or it is the fall-back itself, still unhealthy), so a reboot would
  boot the same failing deployment again, forever. greenboot's redboot-auto-reboot
  refuses there too ("Manual intervention necessary").
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from typing import Any

from sysroot.boot.backends import CountingState, CountStatus
from sysroot.deploy import bootcount
from sysroot.deploy.state import Deployment
from sysroot.errors import FormatError
from sysroot.util import fsutil

# uuid4s, fixed forever (as sysroot.util.journal's)
FALLBACK_ID = "5d1f0f7e8b8e4d55a3f0c1e2b7a94c61"  # a fall-back was made permanent
REBOOT_ID = "0b6e3c8d2f9a4e1b8c7d5a4f3e2d1c0b"  # the red path reboots to try again
INTERVENTION_ID = "c4a2e9f1d3b54a7e9f8d6c5b4a3e2f10"  # the loop breaker: no reboot

INTERVENTION_NAME = "intervention.json"  # in the health records directory
_FORMAT = 1
_MAX_SIZE = 1 << 16


def key(d: Deployment) -> str:
    """The one name of a deployment: deployment_key(), as boot counting names it."""
    return bootcount.key(d)


class Verdict(enum.Enum):
    REBOOT = "reboot"
    MANUAL = "manual-intervention"


@dataclass(frozen=True)
class RedDecision:
    verdict: Verdict
    reason: str  # completes "<deployment> failed its health checks; <reason>"


def decide_red(counting: CountingState, booted: Deployment) -> RedDecision:
    """Whether a failed boot of booted reboots (see the module docstring)."""
    name = key(booted)
    mine = counting.deployment == name
    if mine and counting.status is CountStatus.ARMED:
        left = counting.tries_left
        return RedDecision(Verdict.REBOOT, f"boot counting has {left} tries left")
    if mine and counting.status in (CountStatus.BAD, CountStatus.FELL_BACK):
        return RedDecision(
            Verdict.REBOOT, "no tries left: the boot loader falls back to the previous deployment"
        )
    if counting.status is CountStatus.FELL_BACK and counting.deployment is not None:
        why = f"it is the fall-back from {counting.deployment}, which failed before it"
    elif counting.status is CountStatus.BLESSED and mine:
        why = (
            "boot counting ended for it (marked good, or made the default after a"
            " fall-back), so a reboot would boot it again"
        )
    else:
        why = "boot counting does not count it, so a reboot would boot it again"
    return RedDecision(Verdict.MANUAL, why)


# ------------------------------------------------------------------ the loop breaker


@dataclass(frozen=True)
class Intervention:
    """The loop breaker's record: which deployment needs a human, since when, why."""

    deployment: str
    boot_id: str
    time: float
    reason: str


def write_intervention(directory: str, record: Intervention) -> str:
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, INTERVENTION_NAME)
    doc = {"format": _FORMAT, **record.__dict__}
    fsutil.atomic_write(path, json.dumps(doc, indent=1).encode(), mode=0o644)
    return path


def read_intervention(directory: str) -> Intervention | None:
    """The record in directory, None when there is none; FormatError (one line) for a
    file that is not one."""
    path = os.path.join(directory, INTERVENTION_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FormatError(f"{path}: cannot read: {e.strerror}") from None
    try:
        doc: Any = json.loads(data.decode("utf-8"))
        if len(data) > _MAX_SIZE or not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError("not ours")
        fields = (doc["deployment"], doc["boot_id"], doc["time"], doc["reason"])
        if not all(isinstance(v, str) for v in (fields[0], fields[1], fields[3])):
            raise ValueError("wrong type")
        if isinstance(fields[2], bool) or not isinstance(fields[2], (int, float)):
            raise ValueError("wrong type")
        return Intervention(fields[0], fields[1], float(fields[2]), fields[3])
    except (ValueError, KeyError, RecursionError):
        raise FormatError(f"{path}: not a loop-breaker record") from None


def clear_intervention(directory: str, deployment: str) -> bool:
    """Remove the record when it names deployment (a later good boot of it). True when
    one was removed; a record of another deployment, or a damaged one, stays."""
    try:
        found = read_intervention(directory)
    except FormatError:
        return False
    if found is None or found.deployment != deployment:
        return False
    try:
        os.unlink(os.path.join(directory, INTERVENTION_NAME))
    except FileNotFoundError:
        return False
    fsutil.fsync_dir(directory)
    return True
