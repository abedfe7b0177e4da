"""What `admin health status` shows, as data: per deployment its newest health
record, boot counting, a failed boot and the loop breaker's record.

    status = health_status(load_sysroot("/sysroot"))
    status.to_json()    # the sysroot-health-status/v2 object (cli/commands/health.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sysroot.boot.backends import CountingState, CountStatus
from sysroot.deploy import bootcount
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.errors import FormatError, SysrootError
from sysroot.health.counting import Intervention, key, read_intervention
from sysroot.health.records import HealthRecord, list_records, stateroot_records_dir

STATUS_SCHEMA = "sysroot-health-status/v2"


def finite(value: float) -> float | None:
    """A record's number, or None for NaN and infinities (which JSON cannot carry)."""
    return value if math.isfinite(value) else None


def counting_json(counting: CountingState, *, with_name: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"state": counting.status.value}
    if with_name:
        out["deployment"] = counting.deployment
    out.update(tries_left=counting.tries_left, tries_done=counting.tries_done)
    return out


@dataclass(frozen=True)
class DeploymentHealth:
    deployment: Deployment
    name: str  # key(deployment)
    booted: bool
    record: HealthRecord | None  # its newest record, None: unchecked
    counting: CountingState | None  # None unless it is the counted one
    failed_boot: str | None  # when boot counting gave up on it
    intervention: Intervention | None  # the loop breaker's record naming it

    @property
    def health(self) -> str:
        if self.record is None:
            return "unchecked"
        return "healthy" if self.record.report.healthy else "failed"

    def to_json(self) -> dict[str, Any]:
        d = self.deployment
        entry: dict[str, Any] = {
            "index": d.index,
            "stateroot": d.osname,
            "checksum": d.csum,
            "serial": d.deployserial,
            "deployment": self.name,
            "booted": self.booted,
            "staged": d.staged,
            "health": self.health,
            "record": None,
            "boot_id": None,
            "started": None,
            "finished": None,
            "failed_checks": [],
        }
        if self.record is not None:
            report = self.record.report
            entry.update(
                record=self.record.name,
                boot_id=report.boot_id,
                started=finite(report.started),
                finished=finite(report.finished),
                failed_checks=[
                    {
                        "name": r.check.name,
                        "path": "/" + r.check.path,
                        "kind": r.check.kind.value,
                        "outcome": r.outcome.value,
                        "exit_status": r.exit_status,
                        "duration": finite(r.duration),
                        "tail": [line.text for line in r.tail],
                    }
                    for r in report.failures()
                ],
            )
        entry["counting"] = (
            counting_json(self.counting, with_name=False) if self.counting is not None else None
        )
        entry["failed_boot"] = self.failed_boot
        found = self.intervention
        entry["intervention"] = (
            {"boot_id": found.boot_id, "time": finite(found.time), "reason": found.reason}
            if found is not None
            else None
        )
        return entry


@dataclass(frozen=True)
class HealthStatus:
    sysroot: str
    counting: CountingState  # of the default
    deployments: list[DeploymentHealth]  # in boot order
    warnings: list[str] = field(default_factory=list)  # records that could not be read

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA,
            "sysroot": self.sysroot,
            "counting": counting_json(self.counting, with_name=True),
            "deployments": [d.to_json() for d in self.deployments],
            "warnings": list(self.warnings),
        }


def health_status(state: SysrootState, osname: str | None = None) -> HealthStatus:
    """The status of state's deployments (of stateroot osname, if given). Unreadable
    records and a damaged grubenv become warnings: the rest is still worth showing."""
    deployments = [d for d in state.deployments if osname is None or d.osname == osname]
    warnings: list[str] = []
    records: dict[str, list[HealthRecord]] = {}
    interventions: dict[str, Intervention | None] = {}
    for stateroot in dict.fromkeys(d.osname for d in deployments):
        directory = stateroot_records_dir(state.layout, stateroot)
        records[stateroot], errors = list_records(directory)
        warnings += errors
        try:
            interventions[stateroot] = read_intervention(directory)
        except FormatError as e:
            interventions[stateroot] = None
            warnings.append(str(e))
    try:
        counting = bootcount.status(state)
    except SysrootError as e:
        counting = CountingState(CountStatus.OFF)
        warnings.append(f"boot counting: {e}")
    out = []
    for d in deployments:
        name = key(d)
        newest = next((r for r in reversed(records[d.osname]) if r.deployment == name), None)
        found = interventions[d.osname]
        out.append(
            DeploymentHealth(
                deployment=d,
                name=name,
                booted=state.booted is not None and d.identity == state.booted.identity,
                record=newest,
                counting=counting if counting.deployment == name else None,
                failed_boot=(d.origin.get(bootcount.FAILED_GROUP, "failed") if d.origin else None),
                intervention=found if found is not None and found.deployment == name else None,
            )
        )
    return HealthStatus(state.layout.root, counting, out, warnings)
