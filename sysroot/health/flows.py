"""The health verbs as library calls, one function per verb; each returns what
happened and leaves printing to its caller (cli/commands/health.py, or another
program). What refuses a verb (SysrootError, UsageError for a wrong argument) does so
before anything ran or changed.

    state = load_sysroot("/sysroot")
    target = check_target(state, booted=None, osname=None)  # which deployment a check names
    report = check("/", target, os.environ)                  # required.d + wanted.d, recorded
    red = red_checks("/", "/sysroot", None, os.environ, reboot=do_reboot)  # red.d + decision
    mark_good("/sysroot", None); mark_bad(...); check_fallback("/", "/sysroot", None)

A deployment is named as boot counting names it (counting.key()). booted: the
deployment that booted, for a sysroot that is not / (a rescue system, a test), as
STATEROOT/deploy/CHECKSUM.SERIAL; None on a booted system.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sysroot.boot.backends import CountingState, CountStatus
from sysroot.deploy import bootcount
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.deploy.transaction import transaction
from sysroot.errors import SysrootError, UsageError
from sysroot.health.config import load_config
from sysroot.health.counting import (
    FALLBACK_ID,
    INTERVENTION_ID,
    REBOOT_ID,
    Intervention,
    RedDecision,
    Verdict,
    clear_intervention,
    decide_red,
    key,
    write_intervention,
)
from sysroot.health.model import CheckKind, HealthReport
from sysroot.health.motd import RUNNING, append_motd, motd_text, write_fallback_motd, write_motd
from sysroot.health.records import records_dir, stateroot_records_dir, write_record
from sysroot.health.runner import BOOT_ID_PATH, run_checks, run_hooks
from sysroot.util import journal


def printable(text: str) -> str:
    """text with control characters escaped: a record or a script's output must not
    drive the terminal it is shown on (and a reason stays one line)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def open_sysroot(path: str) -> Sysroot:
    sr = Sysroot(path)
    if not os.path.isdir(sr.layout.root):
        raise SysrootError(f"opendir({sr.layout.root}): No such file or directory")
    return sr


def load_sysroot(path: str) -> SysrootState:
    state = open_sysroot(path).load()
    state.require_initialized()
    return state


def check_root(path: str) -> str:
    """The root of the greenboot directories (--root)."""
    if not os.path.isdir(path):
        raise UsageError(f"--root={path}: not a directory")
    return path


def booted_deployment(state: SysrootState, given: str | None) -> Deployment:
    """The booted deployment; for a sysroot that is not /, the one given names."""
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


def deployment_records_dir(state: SysrootState, d: Deployment) -> str:
    """Where d's health records are: /var when it is running, else in the sysroot."""
    if state.booted is not None and state.booted.identity == d.identity:
        return records_dir("/")
    return stateroot_records_dir(state.layout, d.osname)


# ------------------------------------------------------------------ check


@dataclass(frozen=True)
class CheckTarget:
    deployment: Deployment
    directory: str  # where its record goes
    warning: str | None  # set when not booted: the default stands in for the booted one


def check_target(state: SysrootState, booted: str | None, osname: str | None) -> CheckTarget:
    """The deployment a check names: the booted one (or the one booted names); not
    booted, the default (of stateroot osname, if given), with a warning saying so."""
    if booted is not None:
        target = booted_deployment(state, booted)
        return CheckTarget(target, deployment_records_dir(state, target), None)
    if state.booted is not None:
        if osname is not None and osname != state.booted.osname:
            raise UsageError(
                f"--os={osname}: the booted deployment is of stateroot {state.booted.osname}"
            )
        # the booted deployment's /var is its stateroot's
        return CheckTarget(state.booted, records_dir("/"), None)
    candidates = [
        d for d in state.deployments if not d.staged and (osname is None or d.osname == osname)
    ]
    if not candidates:
        where = f" of stateroot {osname}" if osname is not None else ""
        raise SysrootError(f"{state.layout.root}: no deployment{where} to record a check of")
    target = candidates[0]
    warning = (
        f"not booted into a deployment of {state.layout.root}; recording the"
        f" result under its default deployment {target.osname} {target.name}"
    )
    return CheckTarget(target, stateroot_records_dir(state.layout, target.osname), warning)


def check(root: str, target: CheckTarget, env: Mapping[str, str]) -> HealthReport:
    """greenboot check: required.d and wanted.d under root, the motd while they run
    and after, the record of target."""
    config = load_config(root, env)
    write_motd(root, RUNNING)  # what a login shows while the checks run
    report = run_checks(root, config)
    write_motd(root, motd_text(report))
    write_record(target.directory, report, deployment=key(target.deployment))
    return report


def hooks(root: str, kind: CheckKind, env: Mapping[str, str]) -> HealthReport:
    """greenboot green/red: every script runs; a failing one does not make the verb
    fail (the hooks are not health checks)."""
    return run_hooks(root, load_config(root, env), kind)


# ------------------------------------------------------------------ red --reboot


@dataclass(frozen=True)
class RedOutcome:
    """The decision after red.d, and the message saying it (not escaped)."""

    decision: RedDecision
    deployment: str | None  # None when the sysroot could not be loaded
    message: str

    @property
    def reboot(self) -> bool:
        return self.decision.verdict is Verdict.REBOOT


@dataclass(frozen=True)
class RedPlan:
    """What red --reboot acts on, found before red.d runs: the booted deployment, or
    why the sysroot could not be loaded (then the loop breaker decides)."""

    state: SysrootState | None
    booted: Deployment | None
    error: str | None


def red_plan(sysroot: str, booted: str | None) -> RedPlan:
    """A sysroot that cannot be loaded must not silence red.d: its error is kept for
    the decision. A --booted that names nothing is the caller's mistake: refused."""
    try:
        state = load_sysroot(sysroot)
    except SysrootError as e:
        return RedPlan(None, None, str(e))
    return RedPlan(state, booted_deployment(state, booted), None)


def red_decision(plan: RedPlan) -> RedOutcome:
    if plan.state is None or plan.booted is None:
        why = printable(f"the sysroot could not be loaded ({plan.error})")
        decision = RedDecision(Verdict.MANUAL, why)
        message = (
            f"the booted deployment failed its health checks and {why}: manual"
            " intervention needed, not rebooting"
        )
        return RedOutcome(decision, None, message)
    name = key(plan.booted)
    try:
        decision = decide_red(bootcount.status(plan.state), plan.booted)
    except SysrootError as e:
        # a damaged grubenv (say), found after red.d ran: the loop breaker decides, not
        # an error that would leave the boot without a decision or a record
        why = printable(f"the boot counting state could not be read ({e})")
        decision = RedDecision(Verdict.MANUAL, why)
    if decision.verdict is Verdict.REBOOT:
        message = f"{name} failed its health checks; {decision.reason}: rebooting"
    else:
        message = (
            f"{name} failed its health checks and {decision.reason}: manual intervention"
            " needed, not rebooting"
        )
    return RedOutcome(decision, name, message)


def red_act(root: str, plan: RedPlan, outcome: RedOutcome, reboot: Callable[[], object]) -> None:
    """Reboot (journal first), or the loop breaker: journal, motd, and the record that
    `status` shows (when the deployment is known)."""
    journal.send(
        outcome.message,
        priority=journal.WARNING if outcome.reboot else journal.ERR,
        message_id=REBOOT_ID if outcome.reboot else INTERVENTION_ID,
        stderr=False,
        SYSROOT_DEPLOYMENT=outcome.deployment,
    )
    if outcome.reboot:
        reboot()
        return
    append_motd(root, f"Boot Status is RED - {outcome.message}")
    if plan.state is not None and plan.booted is not None and outcome.deployment is not None:
        record = Intervention(outcome.deployment, boot_id(), time.time(), outcome.decision.reason)
        write_intervention(deployment_records_dir(plan.state, plan.booted), record)


def boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return ""


# ------------------------------------------------------------------ boot counting


@dataclass(frozen=True)
class Marked:
    deployment: str
    changed: bool  # False: nothing was counted (or someone else ended it)
    # the counting as it stood before: how many tries the boot loader had left (the
    # evidence that this boot ran counted)
    before: CountingState | None = None


def mark_good(sysroot: str, booted: str | None) -> Marked:
    """bless() under the lock. On systemd-boot, systemd-bless-boot.service may rename
    the entry first: then ours finds nothing counted (a no-op), or, when it renamed
    between our read and our rename, fails; then the state decides (blessed by the
    other one: done). A loop breaker's record of it goes: the boot is good."""
    sr = open_sysroot(sysroot)
    with transaction(sr.layout, operation="health-mark-good") as tx:
        state = tx.load()
        state.require_initialized()
        d = booted_deployment(state, booted)
        name = key(d)
        before = bootcount.status(state)
        try:
            changed = bootcount.bless(tx, d)
        except SysrootError:
            if _still_counted(bootcount.status(tx.load()), name):
                raise
            changed = False  # someone else ended the counting meanwhile
    clear_intervention(deployment_records_dir(state, d), name)
    return Marked(name, changed, before if before.deployment == name else None)


def _still_counted(counting: CountingState, name: str) -> bool:
    return counting.deployment == name and counting.status is CountStatus.ARMED


def mark_bad(sysroot: str, booted: str | None) -> Marked:
    sr = open_sysroot(sysroot)
    with transaction(sr.layout, operation="health-mark-bad") as tx:
        state = tx.load()
        state.require_initialized()
        d = booted_deployment(state, booted)
        changed = bootcount.mark_bad(tx, d)
    return Marked(key(d), changed)


@dataclass(frozen=True)
class FellBack:
    failed: str | None  # the deployment that failed to boot
    booted: str  # the fall-back, now the default
    message: str


def check_fallback(root: str, sysroot: str, booted: str | None) -> FellBack | None:
    """greenboot check-fallback: when the boot loader fell back, booted becomes the
    default (journal and motd say which failed); None when it did not."""
    sr = open_sysroot(sysroot)
    with transaction(sr.layout, operation="health-check-fallback") as tx:
        state = tx.load()
        state.require_initialized()
        d = booted_deployment(state, booted)
        counting = bootcount.status(state)
        change = bootcount.make_fallback_permanent(tx, d)
    if change is None:
        return None
    done = f" after {counting.tries_done} tries" if counting.tries_done else ""
    message = (
        f"{counting.deployment} failed to boot{done}: the boot loader fell back to"
        f" {key(d)}, which is now the default"
    )
    journal.send(
        message,
        priority=journal.WARNING,
        message_id=FALLBACK_ID,
        stderr=False,
        SYSROOT_FAILED_DEPLOYMENT=counting.deployment,
        SYSROOT_DEPLOYMENT=key(d),
    )
    write_fallback_motd(root, f"Boot Status is FALLBACK - {message}")
    return FellBack(counting.deployment, key(d), message)
