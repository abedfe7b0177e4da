"""sysroot admin health: greenboot's `check`, `green` and `red`, boot counting's
`mark-good`, `mark-bad` and `check-fallback`, and what the records say.

    sysroot admin health check           greenboot check: required.d and wanted.d; exit 0
                                         healthy, 1 when a required check failed (one
                                         stderr line each); --check-fallback: first what
                                         check-fallback does
    sysroot admin health green           greenboot green: green.d (after boot-complete.target);
                                         --mark-good: first what mark-good does (its error,
                                         if any, after green.d ran)
    sysroot admin health red [--reboot]  greenboot red: red.d (when the checks failed);
                                         --reboot: then redboot-auto-reboot's decision
                                         (sysroot/health/counting.py): reboot while boot
                                         counting counts the booted deployment, else the
                                         loop breaker (no reboot; "manual intervention
                                         needed" in the journal, the motd and status;
                                         exit 1, the unit fails, as greenboot's). A
                                         sysroot that cannot be loaded still runs red.d,
                                         then the loop breaker.
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
units/sysroot-health-*.service run these verbs at boot: `check --check-fallback` and
`green --mark-good`, one Python process for each pair (measured in a TCG guest: 1.5 to
1.8 s a process, most of it start-up and imports). The logic is the library's
(health/flows.py, health/status.py): this module parses, calls and prints.

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
import os
import sys
from typing import TYPE_CHECKING, Any

from sysroot.cli.common import add_sysroot_options
from sysroot.errors import SysrootError, UsageError
from sysroot.util import journal  # noqa: F401 (the tests replace journal.send through it)
from sysroot.util.run import run

# sysroot.health (flows, status, the checks' runner) is imported inside the verbs: its
# package imports all of deploy/, and `admin status`, `admin --help` load this module
# too, to register `admin health` (start-up time, issue 21)
if TYPE_CHECKING:
    from sysroot.health import CheckKind, CheckResult
    from sysroot.health.flows import FellBack, Marked

REBOOT = ["systemctl", "reboot"]

__all__ = ["format_status", "register", "register_verbs"]

EXIT_UNHEALTHY = 1
EXIT_MANUAL = 1  # red --reboot, the loop breaker: greenboot's "Manual intervention necessary"
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
    p.add_argument(
        "--check-fallback",
        action="store_true",
        help="First do what check-fallback does (the boot unit: one process, not two)",
    )
    p.set_defaults(func=run_check)

    p = hsub.add_parser(
        "green", help="Run the green.d scripts (--mark-good: mark the boot good first)"
    )
    _add_root_option(p)
    add_sysroot_options(p, os_option=False)
    _add_booted_option(p)
    p.add_argument(
        "--mark-good",
        action="store_true",
        help="First do what mark-good does (the boot unit: one process, not two)",
    )
    p.set_defaults(func=run_hooks_verb, kind="green", reboot=False)

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
    p.set_defaults(func=run_hooks_verb, kind="red")

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


# ------------------------------------------------------------------ the verbs: parse, call, print


def run_check(args) -> int:
    from sysroot.health.flows import check, check_fallback, check_root, check_target, load_sysroot

    root = check_root(args.root)
    if args.check_fallback:
        _say_fell_back(check_fallback(root, args.sysroot, args.booted))
    state = load_sysroot(args.sysroot)
    # everything that can refuse the command does so before a check runs
    target = check_target(state, args.booted, args.os)
    if target.warning is not None:
        print(f"warning: {target.warning}", file=sys.stderr)
    report = check(root, target, os.environ)
    for result in report.failures():
        _say_failure(result)
    return 0 if report.healthy else EXIT_UNHEALTHY


def run_hooks_verb(args) -> int:
    """greenboot green/red: a failing script is reported and, as in greenboot, does
    not change the exit status. red --reboot: then the red decision (what refuses it
    does so before red.d runs; a sysroot that cannot be loaded does not: red.d runs,
    then the loop breaker)."""
    from sysroot.health import CheckKind
    from sysroot.health.flows import (
        check_root,
        hooks,
        mark_good,
        printable,
        red_act,
        red_decision,
        red_plan,
    )

    root = check_root(args.root)
    kind = CheckKind(args.kind)
    if kind is CheckKind.RED and args.dry_run and not args.reboot:
        raise UsageError("--dry-run: only with --reboot")
    plan = red_plan(args.sysroot, args.booted) if args.reboot else None
    marking: SysrootError | None = None
    if getattr(args, "mark_good", False):
        try:
            _say_marked(mark_good(args.sysroot, args.booted))
        except SysrootError as e:
            marking = e  # the green.d scripts run all the same; then the error
    report = hooks(root, kind, os.environ)
    for result in report.failures():
        _say_failure(result)
    if marking is not None:
        raise marking
    if plan is None:
        return 0
    outcome = red_decision(plan)
    if args.dry_run:
        print(f"{outcome.decision.verdict.value}: {printable(outcome.message)}")
        return 0
    print(printable(outcome.message), file=sys.stderr)
    red_act(root, plan, outcome, reboot=_reboot)
    # the loop breaker fails the unit, as greenboot's redboot-auto-reboot does:
    # `systemctl --failed` shows that the boot needs a human
    return 0 if outcome.reboot else EXIT_MANUAL


def _reboot() -> None:
    run(REBOOT, capture=False)


def run_mark_good(args) -> int:
    from sysroot.health.flows import mark_good

    _say_marked(mark_good(args.sysroot, args.booted))
    return 0


def _say_marked(marked: Marked) -> None:
    if marked.changed:
        before = marked.before
        left = (
            f" ({before.tries_left} tries left)"
            if before is not None and before.tries_left is not None
            else ""
        )
        print(f"{marked.deployment}: boot marked good{left}, boot counting ended")


def run_mark_bad(args) -> int:
    from sysroot.health.flows import mark_bad

    marked = mark_bad(args.sysroot, args.booted)
    if marked.changed:
        print(f"{marked.deployment}: boot marked bad, the next boot falls back")
    else:
        print(f"{marked.deployment}: not counted (nothing to mark bad)", file=sys.stderr)
    return 0


def run_check_fallback(args) -> int:
    from sysroot.health.flows import check_fallback, check_root

    root = check_root(args.root)
    _say_fell_back(check_fallback(root, args.sysroot, args.booted))
    return 0


def _say_fell_back(fell_back: FellBack | None) -> None:
    if fell_back is not None:
        print(f"warning: {fell_back.message}", file=sys.stderr)


def run_status(args) -> int:
    from sysroot.health.flows import load_sysroot, printable
    from sysroot.health.status import health_status

    status = health_status(load_sysroot(args.sysroot), args.os)
    for line in status.warnings:
        print(f"warning: {printable(line)}", file=sys.stderr)
    data = status.to_json()
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(format_status(data))
    return 0


def _how(result: CheckResult) -> str:
    from sysroot.health import Outcome

    if result.outcome is Outcome.TIMED_OUT:
        return f"timed out after {result.duration:.1f}s, killed"
    status = result.exit_status or 0
    return f"killed by signal {-status}" if status < 0 else f"exit code {status}"


def _say_failure(result: CheckResult) -> None:
    """One line: which check, how it ended, its last output line."""
    from sysroot.health.flows import printable

    check = result.check
    level = "error" if check.kind.strict() else "warning"
    last = f": {printable(result.tail[-1].text)}" if result.tail else ""
    print(
        f"{level}: {check.kind.value} {_noun(check.kind)} {printable(check.name)} failed"
        f" ({_how(result)}){last}",
        file=sys.stderr,
    )


def _noun(kind: CheckKind) -> str:
    from sysroot.health import CheckKind

    return "health check" if kind in (CheckKind.REQUIRED, CheckKind.WANTED) else "script"


# ------------------------------------------------------------------ status as text


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
    from sysroot.health import Outcome
    from sysroot.health.flows import printable

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
    from sysroot.health.flows import printable

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
