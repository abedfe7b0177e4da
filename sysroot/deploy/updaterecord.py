"""The record of the last automatic-update run of a stateroot (autoupdate.py writes
it, `admin status` reads it): JSON in the stateroot's /var/lib/sysroot/auto-update.json,
written atomically. Apart from autoupdate.py so that status, which scripts run most,
loads none of the upgrade machinery.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass

from sysroot.deploy.layout import SysrootLayout
from sysroot.util import fsutil

RECORD = os.path.join("lib", "sysroot", "auto-update.json")  # under the stateroot's var
MAX_RECORD_BYTES = 64 * 1024


class Outcome(enum.Enum):
    DISABLED = "disabled"  # policy none
    NO_UPDATE = "no-update"
    AVAILABLE = "available"  # policy check found one
    STAGED = "staged"  # staged now, or it was already
    FAILED = "failed"


@dataclass(frozen=True)
class AutoUpdateRecord:
    """What the last run did (the JSON file's fields, same names)."""

    policy: str
    outcome: str
    time: str  # ISO 8601, UTC
    osname: str
    deployed: str | None = None  # the merge deployment's commit
    commit: str | None = None  # the update's commit
    version: str | None = None
    error: str | None = None

    def line(self) -> str:
        """One line for `admin status`."""
        what = {
            Outcome.DISABLED.value: "disabled",
            Outcome.NO_UPDATE.value: "no update available",
            Outcome.AVAILABLE.value: f"update available: {self.commit}",
            Outcome.STAGED.value: f"staged {self.commit}",
            Outcome.FAILED.value: f"failed: {self.error}",
        }.get(self.outcome, self.outcome)
        if self.version is not None and self.outcome in ("available", "staged"):
            what += f" (version {self.version})"
        return f"AutomaticUpdates: {self.policy}; last run {self.time}: {what}"


def record_path(layout: SysrootLayout, osname: str) -> str:
    return os.path.join(layout.var(osname), RECORD)


def read_record(layout: SysrootLayout, osname: str) -> AutoUpdateRecord | None:
    """The last run's record, or None (none yet, or unreadable: status must not fail
    over it)."""
    try:
        with open(record_path(layout, osname), "rb") as f:
            fields = json.loads(f.read(MAX_RECORD_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(fields, dict):
        return None
    values = {k: fields.get(k) for k in AutoUpdateRecord.__dataclass_fields__}
    if not all(v is None or isinstance(v, str) for v in values.values()):
        return None
    if None in (values["policy"], values["time"], values["osname"]):
        return None
    if values["outcome"] not in {o.value for o in Outcome}:
        return None
    # /var is the running system's: nothing from it reaches a terminal unprintable
    return AutoUpdateRecord(**{k: _printable(v) for k, v in values.items()})  # type: ignore[arg-type]


def _printable(value: str | None) -> str | None:
    if value is None:
        return None
    return "".join(c if c.isprintable() else " " for c in value)[:1024]


def write_record(layout: SysrootLayout, record: AutoUpdateRecord) -> None:
    path = record_path(layout, record.osname)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    text = json.dumps(asdict(record), indent=2) + "\n"
    fsutil.atomic_write(path, text.encode(), mode=0o644)
