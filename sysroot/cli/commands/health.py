"""sysroot admin health: greenboot's `check`, `green` and `red`, and what the records say.

    sysroot admin health check   greenboot check: required.d and wanted.d; exit 0 healthy,
                                 1 when a required check failed (one stderr line each)
    sysroot admin health green   greenboot green: green.d (after boot-complete.target)
    sysroot admin health red     greenboot red: red.d (when the checks failed)
    sysroot admin health status  per deployment: healthy, failed or unchecked

`check` names the deployment it checked in its record as "STATEROOT/CHECKSUM.SERIAL"
(the stateroot, checksum and serial `admin status --json` gives). On a booted system
that is the booted deployment and the record goes to /var (the stateroot's var, the one
path that is writable even when /sysroot is mounted read-only). Not booted (a chroot, a
test): the default deployment (of --os, if given), recorded in the stateroot's var in
the sysroot, with a warning saying so. The units in units/sysroot-health-*.service run
these verbs at boot.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from typing import Any

from sysroot.cli.common import add_sysroot_options
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.errors import SysrootError, UsageError
from sysroot.health import (
    RUNNING,
    CheckKind,
    CheckResult,
    HealthRecord,
    list_records,
    load_config,
    motd_text,
    records_dir,
    run_checks,
    run_hooks,
    stateroot_records_dir,
    write_motd,
    write_record,
)
from sysroot.health.model import Outcome

STATUS_SCHEMA = "sysroot-health-status/v1"
EXIT_UNHEALTHY = 1
STATUS_TAIL = 3  # output lines of a failed check that `status` shows (--json: all kept)


def register(sub) -> None:
    """Nothing at the top level: `health` is an admin verb, added by register_verbs()
    (cli/main.py calls it with admin's subcommands)."""


def register_verbs(asub) -> None:
    health = asub.add_parser("health", help="Boot health checks (greenboot-compatible)")
    hsub = health.add_subparsers(
        dest="health_command", metavar="COMMAND", parser_class=type(health)
    )
    health.set_defaults(func=lambda a: health.print_help(sys.stderr) or 2)

    p = hsub.add_parser(
        "check", help="Run the required and wanted health checks and record the result"
    )
    add_sysroot_options(p)
    _add_root_option(p)
    p.set_defaults(func=run_check)

    for name, kind in (("green", CheckKind.GREEN), ("red", CheckKind.RED)):
        p = hsub.add_parser(name, help=f"Run the {name}.d scripts")
        _add_root_option(p)
        p.set_defaults(func=run_hooks_verb, kind=kind)

    p = hsub.add_parser("status", help="Show the last health check of each deployment")
    add_sysroot_options(p)
    p.add_argument("--json", "-J", action="store_true", help="Machine-readable output")
    p.set_defaults(func=run_status)


def _add_root_option(p) -> None:
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="Where the greenboot directories and /etc/greenboot are (default /)",
    )


def deployment_name(d: Deployment) -> str:
    """How a record names a deployment: STATEROOT/CHECKSUM.SERIAL."""
    return f"{d.osname}/{d.name}"


def _load(path: str) -> SysrootState:
    sr = Sysroot(path)
    if not os.path.isdir(sr.layout.root):
        raise SysrootError(f"opendir({sr.layout.root}): No such file or directory")
    state = sr.load()
    state.require_initialized()
    return state


def _root(path: str) -> str:
    if not os.path.isdir(path):
        raise UsageError(f"--root={path}: not a directory")
    return path


# ------------------------------------------------------------------ check, green, red


def run_check(args) -> int:
    root = _root(args.root)
    state = _load(args.sysroot)
    # everything that can refuse the command does so before a check runs
    if state.booted is not None:
        if args.os is not None and args.os != state.booted.osname:
            raise UsageError(
                f"--os={args.os}: the booted deployment is of stateroot {state.booted.osname}"
            )
        target = state.booted
        directory = records_dir("/")  # the booted deployment's /var is its stateroot's
    else:
        candidates = [
            d
            for d in state.deployments
            if not d.staged and (args.os is None or d.osname == args.os)
        ]
        if not candidates:
            where = f" of stateroot {args.os}" if args.os is not None else ""
            raise SysrootError(f"{state.layout.root}: no deployment{where} to record a check of")
        target = candidates[0]
        directory = stateroot_records_dir(state.layout, target.osname)
        print(
            f"warning: not booted into a deployment of {state.layout.root}; recording the"
            f" result under its default deployment {target.osname} {target.name}",
            file=sys.stderr,
        )
    config = load_config(root, os.environ)
    write_motd(root, RUNNING)  # what a login shows while the checks run
    report = run_checks(root, config)
    for result in report.failures():
        _say_failure(result)
    write_motd(root, motd_text(report))
    write_record(directory, report, deployment=deployment_name(target))
    return 0 if report.healthy else EXIT_UNHEALTHY


def run_hooks_verb(args) -> int:
    """greenboot green/red: every script runs; a failing one is reported, and, as in
    greenboot, does not change the exit status (the hooks are not health checks)."""
    root = _root(args.root)
    report = run_hooks(root, load_config(root, os.environ), args.kind)
    for result in report.failures():
        _say_failure(result)
    return 0


def _how(result: CheckResult) -> str:
    if result.outcome is Outcome.TIMED_OUT:
        return f"timed out after {result.duration:.1f}s, killed"
    status = result.exit_status or 0
    return f"killed by signal {-status}" if status < 0 else f"exit code {status}"


def _say_failure(result: CheckResult) -> None:
    """One line: which check, how it ended, its last output line."""
    check = result.check
    level = "error" if check.kind.strict() else "warning"
    last = f": {printable(result.tail[-1].text)}" if result.tail else ""
    print(
        f"{level}: {check.kind.value} {_noun(check.kind)} {printable(check.name)} failed"
        f" ({_how(result)}){last}",
        file=sys.stderr,
    )


def _noun(kind: CheckKind) -> str:
    return "health check" if kind in (CheckKind.REQUIRED, CheckKind.WANTED) else "script"


def printable(text: str) -> str:
    """text with control characters escaped: a record or a script's output must not
    drive the terminal it is shown on."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


# ------------------------------------------------------------------ status


def run_status(args) -> int:
    state = _load(args.sysroot)
    deployments = [d for d in state.deployments if args.os is None or d.osname == args.os]
    warnings: list[str] = []
    records: dict[str, list[HealthRecord]] = {}
    for osname in dict.fromkeys(d.osname for d in deployments):
        records[osname], errors = list_records(stateroot_records_dir(state.layout, osname))
        warnings += errors
    for line in warnings:
        print(f"warning: {printable(line)}", file=sys.stderr)
    out = []
    for d in deployments:
        name = deployment_name(d)
        newest = next((r for r in reversed(records[d.osname]) if r.deployment == name), None)
        booted = state.booted is not None and d.identity == state.booted.identity
        out.append(_status_entry(d, booted, newest))
    data = {
        "schema": STATUS_SCHEMA,
        "sysroot": state.layout.root,
        "deployments": out,
        "warnings": warnings,
    }
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(format_status(data))
    return 0


def _status_entry(d: Deployment, booted: bool, record: HealthRecord | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": d.index,
        "stateroot": d.osname,
        "checksum": d.csum,
        "serial": d.deployserial,
        "booted": booted,
        "staged": d.staged,
        "health": "unchecked",
        "record": None,
        "boot_id": None,
        "started": None,
        "finished": None,
        "failed_checks": [],
    }
    if record is None:
        return entry
    report = record.report
    entry.update(
        health="healthy" if report.healthy else "failed",
        record=record.name,
        boot_id=report.boot_id,
        started=_finite(report.started),
        finished=_finite(report.finished),
        failed_checks=[
            {
                "name": r.check.name,
                "path": "/" + r.check.path,
                "kind": r.check.kind.value,
                "outcome": r.outcome.value,
                "exit_status": r.exit_status,
                "duration": _finite(r.duration),
                "tail": [line.text for line in r.tail],
            }
            for r in report.failures()
        ],
    )
    return entry


def _finite(value: float) -> float | None:
    """A record's number, or None for NaN and infinities (which JSON cannot carry)."""
    return value if math.isfinite(value) else None


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "at an unknown time"
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # a record's time out of range
        return f"@{seconds}"


def format_status(data: dict[str, Any]) -> str:
    if not data["deployments"]:
        return "No deployments.\n"
    lines = []
    for d in data["deployments"]:
        mark = "*" if d["booted"] else " "
        extra = " (staged)" if d["staged"] else ""
        lines.append(f"{mark} {d['stateroot']} {d['checksum']}.{d['serial']}{extra}")
        if d["record"] is None:
            lines.append("    Health: unchecked")
            continue
        boot = f", boot {printable(d['boot_id'])}" if d["boot_id"] else ""
        lines.append(f"    Health: {d['health']} (checked {_when(d['finished'])}{boot})")
        for c in d["failed_checks"]:
            status = c["exit_status"]
            if c["outcome"] == Outcome.TIMED_OUT.value:
                how = "timed out"
            elif status is not None and status < 0:
                how = f"killed by signal {-status}"
            else:
                how = f"exit code {status}"
            lines.append(f"    Failed: {printable(c['name'])} ({c['kind']}, {how})")
            lines.extend(f"      | {printable(t)}" for t in c["tail"][-STATUS_TAIL:])
    return "\n".join(lines) + "\n"
