"""sysroot admin health: greenboot's `check`, `green` and `red`, boot counting's
`mark-good`, `mark-bad` and `check-fallback`, and what the records say.

    sysroot admin health check           greenboot check: required.d and wanted.d; exit 0
                                         healthy, 1 when a required check failed (one
                                         stderr line each)
    sysroot admin health green           greenboot green: green.d (after boot-complete.target)
    sysroot admin health red [--reboot]  greenboot red: red.d (when the checks failed);
                                         --reboot: then redboot-auto-reboot's decision
                                         (sysroot/health/counting.py): reboot while boot
                                         counting counts the booted deployment, else the
                                         loop breaker (no reboot; "manual intervention
                                         needed" in the journal, the motd and status).
                                         --dry-run prints the decision and does nothing
    sysroot admin health mark-good       the boot is good: boot counting ends (under the
                                         sysroot lock); a no-op when systemd-bless-boot
                                         did it first, or nothing is counted
    sysroot admin health mark-bad        the boot is bad: no tries left, the next boot
                                         falls back
    sysroot admin health check-fallback  greenboot's check-fallback: when the boot loader
                                         fell back, the booted deployment becomes the
                                         default and the failed one is marked (journal,
                                         motd and a stderr line say which); else silent
    sysroot admin health status          per deployment: health, boot counting, loop breaker

A deployment has one name, boot counting's deployment_key(): "STATEROOT/deploy/
CHECKSUM.SERIAL" (health/counting.py key()). `check` records the deployment it
checked under that name. On a booted system that is the booted deployment and the
record goes to /var (the stateroot's var, the one path that is writable even when
/sysroot is mounted read-only). Not booted (a chroot, a test): the default deployment
(of --os, if given), recorded in the stateroot's var in the sysroot, with a warning
saying so. The counting verbs act on the booted deployment; for a sysroot that is not
/ (a rescue system, a test), --booted=NAME says which deployment booted. The units in
units/sysroot-health-*.service run these verbs at boot.

`status --json` prints one object:

    schema        "sysroot-health-status/v2"
    sysroot       the sysroot's path
    counting      boot counting of the default: {"state": "off" | "armed" | "blessed" |
                  "bad" | "fell-back", "deployment": NAME or null (the counted one),
                  "tries_left": int or null, "tries_done": int or null (systemd-boot
                  only)}
    deployments   in boot order, each:
      index, stateroot, checksum, serial, booted, staged   as `admin status --json`
      deployment    its NAME
      health        "healthy" | "failed" | "unchecked": its newest record's verdict
      record, boot_id, started, finished   that record's file name, boot, times (null
                    when unchecked)
      failed_checks [{name, path, kind, outcome, exit_status, duration, tail}]
      counting      null unless it is the counted one: {"state", "tries_left",
                    "tries_done"} as above
      failed_boot   when boot counting gave up on it (the fall-back made permanent,
                    its origin's [sysroot-boot-counting] failed=): that time, else null
      intervention  null, or the loop breaker's record naming it: {"boot_id", "time",
                    "reason"}: a failed boot that did not reboot; cleared by a later
                    mark-good of it
    warnings      lines about records that could not be read
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import time
from typing import Any

from sysroot.boot.backends import CountingState, CountStatus
from sysroot.cli.common import add_sysroot_options
from sysroot.deploy import bootcount
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.deploy.transaction import transaction
from sysroot.errors import FormatError, SysrootError, UsageError
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
from sysroot.health.counting import (
    FALLBACK_ID,
    INTERVENTION_ID,
    REBOOT_ID,
    Intervention,
    Verdict,
    clear_intervention,
    decide_red,
    key,
    read_intervention,
    write_intervention,
)
from sysroot.health.model import Outcome
from sysroot.health.motd import append_motd, write_fallback_motd
from sysroot.health.runner import BOOT_ID_PATH
from sysroot.util import journal
from sysroot.util.run import run

REBOOT = ["systemctl", "reboot"]

STATUS_SCHEMA = "sysroot-health-status/v2"
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
    _add_booted_option(p)
    p.set_defaults(func=run_check)

    p = hsub.add_parser("green", help="Run the green.d scripts")
    _add_root_option(p)
    p.set_defaults(func=run_hooks_verb, kind=CheckKind.GREEN, reboot=False)

    p = hsub.add_parser("red", help="Run the red.d scripts (--reboot: then reboot or not)")
    _add_root_option(p)
    add_sysroot_options(p, os_option=False)
    _add_booted_option(p)
    p.add_argument(
        "--reboot",
        action="store_true",
        help="Then reboot while boot counting counts the booted deployment; else say"
        " that manual intervention is needed",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="With --reboot: print the decision, do nothing"
    )
    p.set_defaults(func=run_hooks_verb, kind=CheckKind.RED)

    for name, func, what in (
        ("mark-good", run_mark_good, "Mark the boot good: boot counting ends"),
        ("mark-bad", run_mark_bad, "Mark the boot bad: the next boot falls back"),
    ):
        p = hsub.add_parser(name, help=what)
        add_sysroot_options(p, os_option=False)
        _add_booted_option(p)
        p.set_defaults(func=func)

    p = hsub.add_parser(
        "check-fallback",
        help="When the boot loader fell back, make the booted deployment the default",
    )
    add_sysroot_options(p, os_option=False)
    _add_booted_option(p)
    _add_root_option(p)
    p.set_defaults(func=run_check_fallback)

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


def _add_booted_option(p) -> None:
    p.add_argument(
        "--booted",
        metavar="NAME",
        help="For a sysroot that is not / (rescue, tests): the deployment that booted,"
        " as STATEROOT/deploy/CHECKSUM.SERIAL",
    )


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
    if args.booted is not None:
        target = _booted(state, args.booted)  # a sysroot that is not /: as told
        directory = _records_dir(state, target)
    elif state.booted is not None:
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
    write_record(directory, report, deployment=key(target))
    return 0 if report.healthy else EXIT_UNHEALTHY


def run_hooks_verb(args) -> int:
    """greenboot green/red: every script runs; a failing one is reported, and, as in
    greenboot, does not change the exit status (the hooks are not health checks).
    red --reboot: then the red decision (what refuses it does so before red.d runs)."""
    root = _root(args.root)
    if args.kind is CheckKind.RED and args.dry_run and not args.reboot:
        raise UsageError("--dry-run: only with --reboot")
    state = _load(args.sysroot) if args.reboot else None
    booted = _booted(state, args.booted) if state is not None else None
    report = run_hooks(root, load_config(root, os.environ), args.kind)
    for result in report.failures():
        _say_failure(result)
    if state is None or booted is None:
        return 0
    return _red_decision(args, root, state, booted)


def _red_decision(args, root: str, state: SysrootState, booted: Deployment) -> int:
    decision = decide_red(bootcount.status(state), booted)
    name = key(booted)
    if decision.verdict is Verdict.REBOOT:
        message = f"{name} failed its health checks; {decision.reason}: rebooting"
    else:
        message = (
            f"{name} failed its health checks and {decision.reason}: manual intervention"
            " needed, not rebooting"
        )
    if args.dry_run:
        print(f"{decision.verdict.value}: {printable(message)}")
        return 0
    print(printable(message), file=sys.stderr)
    if decision.verdict is Verdict.REBOOT:
        journal.send(
            message,
            priority=journal.WARNING,
            message_id=REBOOT_ID,
            stderr=False,
            SYSROOT_DEPLOYMENT=name,
        )
        run(REBOOT, capture=False)
        return 0
    journal.send(
        message,
        priority=journal.ERR,
        message_id=INTERVENTION_ID,
        stderr=False,
        SYSROOT_DEPLOYMENT=name,
    )
    append_motd(root, f"Boot Status is RED - {message}")
    record = Intervention(name, _boot_id(), time.time(), decision.reason)
    write_intervention(_records_dir(state, booted), record)
    return 0


def _boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return ""


# ------------------------------------------------------------------ boot counting


def _booted(state: SysrootState, given: str | None) -> Deployment:
    """The booted deployment; for a sysroot that is not /, the one --booted names."""
    if state.booted is not None:
        if given is not None and given != key(state.booted):
            raise UsageError(f"--booted={given}: booted is {key(state.booted)}")
        return state.booted
    if given is None:
        raise SysrootError(
            f"Not booted into a deployment of {state.layout.root}"
            " (--booted=STATEROOT/deploy/CHECKSUM.SERIAL names one)"
        )
    for d in state.deployments:
        if not d.staged and key(d) == given:
            return d
    raise UsageError(f"--booted={printable(given)}: no such deployment in {state.layout.root}")


def _records_dir(state: SysrootState, d: Deployment) -> str:
    """Where d's health records are: /var when it is running, else in the sysroot."""
    if state.booted is not None and state.booted.identity == d.identity:
        return records_dir("/")
    return stateroot_records_dir(state.layout, d.osname)


def _sysroot(path: str) -> Sysroot:
    sr = Sysroot(path)
    if not os.path.isdir(sr.layout.root):
        raise SysrootError(f"opendir({sr.layout.root}): No such file or directory")
    return sr


def run_mark_good(args) -> int:
    """bless() under the lock. On systemd-boot, systemd-bless-boot.service may rename
    the entry first: then ours finds nothing counted (a no-op), or, when it renamed
    between our read and our rename, fails; then the state decides (blessed by the
    other one: done)."""
    sr = _sysroot(args.sysroot)
    with transaction(sr.layout) as tx:
        state = tx.load()
        state.require_initialized()
        booted = _booted(state, args.booted)
        name = key(booted)
        try:
            changed = bootcount.bless(tx, booted)
        except SysrootError:
            if _still_counted(bootcount.status(tx.load()), name):
                raise
            changed = False  # someone else ended the counting meanwhile
    if changed:
        print(f"{name}: boot marked good, boot counting ended")
    clear_intervention(_records_dir(state, booted), name)
    return 0


def _still_counted(counting: CountingState, name: str) -> bool:
    return counting.deployment == name and counting.status is CountStatus.ARMED


def run_mark_bad(args) -> int:
    sr = _sysroot(args.sysroot)
    with transaction(sr.layout) as tx:
        state = tx.load()
        state.require_initialized()
        booted = _booted(state, args.booted)
        changed = bootcount.mark_bad(tx, booted)
    if changed:
        print(f"{key(booted)}: boot marked bad, the next boot falls back")
    else:
        print(f"{key(booted)}: not counted (nothing to mark bad)", file=sys.stderr)
    return 0


def run_check_fallback(args) -> int:
    root = _root(args.root)
    sr = _sysroot(args.sysroot)
    with transaction(sr.layout) as tx:
        state = tx.load()
        state.require_initialized()
        booted = _booted(state, args.booted)
        counting = bootcount.status(state)
        change = bootcount.make_fallback_permanent(tx, booted)
    if change is None:
        return 0
    done = f" after {counting.tries_done} tries" if counting.tries_done else ""
    message = (
        f"{counting.deployment} failed to boot{done}: the boot loader fell back to"
        f" {key(booted)}, which is now the default"
    )
    journal.send(
        message,
        priority=journal.WARNING,
        message_id=FALLBACK_ID,
        stderr=False,
        SYSROOT_FAILED_DEPLOYMENT=counting.deployment,
        SYSROOT_DEPLOYMENT=key(booted),
    )
    write_fallback_motd(root, f"Boot Status is FALLBACK - {message}")
    print(f"warning: {message}", file=sys.stderr)
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
    interventions: dict[str, Intervention | None] = {}
    for osname in dict.fromkeys(d.osname for d in deployments):
        directory = stateroot_records_dir(state.layout, osname)
        records[osname], errors = list_records(directory)
        warnings += errors
        try:
            interventions[osname] = read_intervention(directory)
        except FormatError as e:
            interventions[osname] = None
            warnings.append(str(e))
    try:
        counting = bootcount.status(state)
    except SysrootError as e:  # a damaged grubenv: the rest is still worth showing
        counting = CountingState(CountStatus.OFF)
        warnings.append(f"boot counting: {e}")
    for line in warnings:
        print(f"warning: {printable(line)}", file=sys.stderr)
    out = []
    for d in deployments:
        name = key(d)
        newest = next((r for r in reversed(records[d.osname]) if r.deployment == name), None)
        booted = state.booted is not None and d.identity == state.booted.identity
        entry = _status_entry(d, booted, newest)
        entry["counting"] = (
            _counting_json(counting, with_name=False) if counting.deployment == name else None
        )
        failed = d.origin.get(bootcount.FAILED_GROUP, "failed") if d.origin else None
        entry["failed_boot"] = failed
        found = interventions[d.osname]
        entry["intervention"] = (
            {"boot_id": found.boot_id, "time": _finite(found.time), "reason": found.reason}
            if found is not None and found.deployment == name
            else None
        )
        out.append(entry)
    data = {
        "schema": STATUS_SCHEMA,
        "sysroot": state.layout.root,
        "counting": _counting_json(counting, with_name=True),
        "deployments": out,
        "warnings": warnings,
    }
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(format_status(data))
    return 0


def _counting_json(counting: CountingState, *, with_name: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"state": counting.status.value}
    if with_name:
        out["deployment"] = counting.deployment
    out.update(tries_left=counting.tries_left, tries_done=counting.tries_done)
    return out


def _status_entry(d: Deployment, booted: bool, record: HealthRecord | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": d.index,
        "stateroot": d.osname,
        "checksum": d.csum,
        "serial": d.deployserial,
        "deployment": key(d),
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
        lines += _health_lines(d) + _counting_lines(d)
    return "\n".join(lines) + "\n"


def _health_lines(d: dict[str, Any]) -> list[str]:
    if d["record"] is None:
        return ["    Health: unchecked"]
    boot = f", boot {printable(d['boot_id'])}" if d["boot_id"] else ""
    lines = [f"    Health: {d['health']} (checked {_when(d['finished'])}{boot})"]
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
    return lines


def _counting_lines(d: dict[str, Any]) -> list[str]:
    """Only what there is: most deployments are not counted, never failed a boot."""
    lines = []
    counting = d["counting"]
    if counting is not None:
        tries = [
            f"{counting[k]} {word}"
            for k, word in (("tries_left", "left"), ("tries_done", "done"))
            if counting[k] is not None
        ]
        how = f" ({', '.join(tries)})" if tries else ""
        lines.append(f"    Boot counting: {counting['state']}{how}")
    if d["failed_boot"] is not None:
        lines.append(
            f"    Failed boot: {printable(d['failed_boot'])} (the fall-back is the default)"
        )
    if d["intervention"] is not None:
        why = printable(d["intervention"]["reason"])
        lines.append(
            f"    Manual intervention needed since {_when(d['intervention']['time'])}: {why}"
        )
    return lines
