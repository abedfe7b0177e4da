"""The persistent record of each health-check run: a JSON file per run under the
stateroot's /var (var/lib/sysroot/health/), which survives a rollback (/var is shared
by the deployments of a stateroot) and a volatile journal.

Written atomically (fsutil.atomic_write: temp, fsync, rename, fsync the directory) and
bounded: each check keeps only the last lines of its output, a record that would still
be too large loses its output tails, and only the newest KEEP records stay. Read back
tolerant of anything: a file that is not a record we wrote is reported as one FormatError
line, never a traceback.

File names sort by time: "<start in ns, 20 digits>-<boot id>.json".
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, replace
from typing import Any

from sysroot.deploy.layout import SysrootLayout
from sysroot.errors import FormatError
from sysroot.health.model import (
    Check,
    CheckKind,
    CheckResult,
    HealthReport,
    Outcome,
    OutputLine,
)
from sysroot.util import fsutil

RECORDS_DIR = "var/lib/sysroot/health"  # relative to a booted root
KEEP = 10
MAX_RECORD_SIZE = 1 << 20
FORMAT = 1
_NAME = re.compile(r"[0-9]{20}-[0-9a-z]{0,64}\.json")


def records_dir(root: str) -> str:
    """The directory on a booted system (root "/"): its /var is the stateroot's."""
    return os.path.join(root, RECORDS_DIR)


def stateroot_records_dir(layout: SysrootLayout, osname: str) -> str:
    """The same directory seen from outside: the stateroot's var in a sysroot."""
    return os.path.join(layout.var(osname), "lib/sysroot/health")


@dataclass(frozen=True)
class HealthRecord:
    name: str  # the file name
    report: HealthReport
    deployment: str | None  # what the caller said was booted, e.g. "<csum>.<serial>"


def _encode(report: HealthReport, deployment: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "boot_id": report.boot_id,
        "deployment": deployment,
        "started": report.started,
        "finished": report.finished,
        "healthy": report.healthy,
        "warnings": list(report.warnings),
        "checks": [
            {
                "name": r.check.name,
                "path": r.check.path,
                "kind": r.check.kind.value,
                "outcome": r.outcome.value,
                "exit_status": r.exit_status,
                "duration": r.duration,
                "lines": r.lines,
                "tail": [[line.priority, line.text] for line in r.tail],
            }
            for r in report.results
        ],
    }


def _dump(report: HealthReport, deployment: str | None) -> bytes:
    # surrogateescape'd names (undecodable bytes) must not make the write fail
    return json.dumps(_encode(report, deployment), indent=1, ensure_ascii=True).encode()


def write_record(
    directory: str, report: HealthReport, *, deployment: str | None = None, keep: int = KEEP
) -> str:
    """Store report as a new record in directory, then drop all but the newest keep
    records. Returns the record's path."""
    data = _dump(report, deployment)
    for lines in (3, 0):  # too large (very many checks): keep less of their output
        if len(data) <= MAX_RECORD_SIZE:
            break
        cut = tuple(
            replace(r, tail=r.tail[len(r.tail) - lines :] if lines else ()) for r in report.results
        )
        data = _dump(replace(report, results=cut), deployment)
    if len(data) > MAX_RECORD_SIZE:
        raise FormatError(f"health record of {len(report.results)} checks is too large to keep")
    boot = re.sub(r"[^0-9a-z]", "", report.boot_id.lower())[:64]
    name = f"{int(report.started * 1e9):020d}-{boot}.json"
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, name)
    fsutil.atomic_write(path, data, mode=0o644)
    prune(directory, keep)
    return path


def prune(directory: str, keep: int) -> None:
    """Remove all but the newest keep records, and temp files of interrupted writes
    (older than a minute: a younger one may be another writer's)."""
    names = sorted(os.listdir(directory))
    records = [n for n in names if _NAME.fullmatch(n)]
    doomed = records[: max(0, len(records) - keep)]
    now = time.time()
    for n in names:
        if fsutil.is_temp_name(n):
            try:
                if now - os.lstat(os.path.join(directory, n)).st_mtime > 60:
                    doomed.append(n)
            except FileNotFoundError:
                pass
    for n in doomed:
        try:
            os.unlink(os.path.join(directory, n))
        except FileNotFoundError:
            pass
    if doomed:
        fsutil.fsync_dir(directory)


def read_record(path: str) -> HealthRecord:
    """One record; FormatError (one line naming the file) for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise FormatError(f"{path}: cannot read health record: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FormatError(f"{path}: not a health record: not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_RECORD_SIZE + 1)
    except OSError as e:
        raise FormatError(f"{path}: cannot read health record: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_RECORD_SIZE:
        raise FormatError(f"{path}: not a health record: larger than {MAX_RECORD_SIZE} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
        return HealthRecord(os.path.basename(path), *_decode(doc))
    except (ValueError, RecursionError, TypeError, KeyError) as e:
        why = e.args[0] if isinstance(e, _Bad) else f"invalid JSON ({type(e).__name__})"
        raise FormatError(f"{path}: not a health record: {why}") from None


def list_records(directory: str) -> tuple[list[HealthRecord], list[str]]:
    """The records in directory, oldest first, and one error line per file that is not
    one (the others are still returned)."""
    try:
        names = sorted(n for n in os.listdir(directory) if _NAME.fullmatch(n))
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [f"{directory}: {e.strerror}"]
    records: list[HealthRecord] = []
    errors: list[str] = []
    for n in names:
        try:
            records.append(read_record(os.path.join(directory, n)))
        except FormatError as e:
            errors.append(str(e))
    return records, errors


class _Bad(ValueError):
    """The JSON parses but is not shaped as our record."""


def _field(obj: object, key: str, *types: type) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Bad(f"missing {key!r}")
    value = obj[key]
    # bool is an int to isinstance; a count or a status must not be true/false
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise _Bad(f"{key!r} has the wrong type")
    return value


def _decode(doc: object) -> tuple[HealthReport, str | None]:
    if _field(doc, "format", int) != FORMAT:
        raise _Bad(f"unknown format {_field(doc, 'format', int)}")
    results: list[CheckResult] = []
    for item in _field(doc, "checks", list):
        kind_name, outcome_name = _field(item, "kind", str), _field(item, "outcome", str)
        try:
            kind, outcome = CheckKind(kind_name), Outcome(outcome_name)
        except ValueError:
            raise _Bad("unknown check kind or outcome") from None
        tail: list[OutputLine] = []
        for entry in _field(item, "tail", list):
            if not (
                isinstance(entry, list)
                and len(entry) == 2
                and type(entry[0]) is int
                and isinstance(entry[1], str)
            ):
                raise _Bad("'tail' has the wrong shape")
            tail.append(OutputLine(entry[0], entry[1]))
        check = Check(kind, _field(item, "path", str), _field(item, "name", str))
        results.append(
            CheckResult(
                check,
                outcome,
                _field(item, "exit_status", int, type(None)),
                float(_field(item, "duration", int, float)),
                tuple(tail),
                _field(item, "lines", int),
            )
        )
    report = HealthReport(
        tuple(results),
        float(_field(doc, "started", int, float)),
        float(_field(doc, "finished", int, float)),
        _field(doc, "boot_id", str),
        tuple(_strings(_field(doc, "warnings", list))),
    )
    return report, _field(doc, "deployment", str, type(None))


def _strings(items: list[Any]) -> list[str]:
    if not all(isinstance(i, str) for i in items):
        raise _Bad("'warnings' has the wrong type")
    return items
