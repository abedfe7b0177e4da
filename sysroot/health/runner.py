"""Run the health checks and the green/red hooks the way greenboot does, with a timeout.

Order (greenboot `check`): /usr/lib/greenboot/check/required.d (strict), then its
wanted.d (relaxed), then the same two under /etc/greenboot. Strict: the first failing
required script ends the run; everything not yet run is reported SKIPPED (greenboot
stops the same way and exits 1). Relaxed: a failure is logged and the next script runs.
Scripts named in DISABLED_HEALTHCHECKS are not run, in any directory (as greenboot's
script runner, which checks the name for green.d and red.d too).

Each script runs as `bash SCRIPT` in a process group of its own, stdout and stderr
merged as systemd-cat merges them, each line's sd-daemon "<N>" prefix parsed into a
priority. Beyond greenboot: a timeout (default or per script) after which the whole
group is killed, so a hanging check fails instead of hanging the boot.

Evidence: every output line goes to the journal at its priority (as systemd-cat sends
it), each script's result as one entry with MESSAGE_ID=CHECK_ID and SYSROOT_* fields
(result, exit status, duration, last lines), and the verdict of a run as one entry with
MESSAGE_ID=RESULT_ID: `journalctl MESSAGE_ID=<id>` lists them.
"""

from __future__ import annotations

import collections
import os
import re
import time

from sysroot.health.discovery import BASE_DIRS, check_dir, discover
from sysroot.health.model import (
    Check,
    CheckKind,
    CheckResult,
    HealthConfig,
    HealthReport,
    Outcome,
    OutputLine,
)
from sysroot.util import journal
from sysroot.util.run import run_streaming

# Our catalog ids (uuid4, fixed forever), as sysroot.util.journal's.
CHECK_ID = "a961cedb5e2943f0ae691c6d38e3030c"  # one health-check or hook script ran (or not)
RESULT_ID = "a8655e9231544ff19e4d6bcaf0a9232e"  # the verdict of a health-check run

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
DEFAULT_PRIORITY = journal.INFO  # systemd-cat's default for unprefixed lines
CRIT = 2

# journald's level prefix (syslog_parse_priority without facility): "<N>", "<0N>", "<00N>"
_PREFIX = re.compile(rb"<0{0,2}([0-7])>")


def parse_line(raw: bytes) -> OutputLine:
    """One output line: its "<N>" priority prefix taken off, as journald takes it."""
    m = _PREFIX.match(raw)
    if m is None:
        return OutputLine(DEFAULT_PRIORITY, raw.decode("utf-8", "replace"))
    return OutputLine(int(m.group(1)), raw[m.end() :].decode("utf-8", "replace"))


def run_script(root: str, check: Check, config: HealthConfig) -> CheckResult:
    """Run one script (as `bash SCRIPT`, from root) and report how it ended."""
    tail: collections.deque[OutputLine] = collections.deque(maxlen=config.tail_lines)
    count = 0

    def on_line(raw: bytes) -> None:
        nonlocal count
        count += 1
        line = parse_line(raw)
        tail.append(line)
        # what systemd-cat does for greenboot: each line in the journal at its priority
        journal.send(line.text, priority=line.priority, stderr=False, SYSROOT_CHECK=check.name)

    ended = run_streaming(
        ["bash", os.path.join(root, check.path)],
        on_line=on_line,
        timeout=config.timeout_for(check.name),
        kill_grace=config.kill_grace,
        max_line=config.max_line,
        cwd=root,
    )
    if ended.timed_out:
        outcome = Outcome.TIMED_OUT
    elif ended.returncode == 0:
        outcome = Outcome.PASSED
    else:
        outcome = Outcome.FAILED
    return CheckResult(check, outcome, ended.returncode, ended.duration, tuple(tail), count)


def run_checks(root: str, config: HealthConfig, *, boot_id: str | None = None) -> HealthReport:
    """greenboot `check` under root ("/" on a booted system): required.d and wanted.d of
    /usr/lib/greenboot, then of /etc/greenboot. report.healthy is greenboot's exit
    status 0."""
    started = time.time()
    warnings = list(config.warnings)
    results: list[CheckResult] = []
    seen: set[str] = set()
    failed = False
    for base in BASE_DIRS:
        for kind in (CheckKind.REQUIRED, CheckKind.WANTED):
            for check in discover(root, check_dir(base, kind), kind, warnings):
                seen.add(check.name)
                if failed:
                    result = CheckResult(check, Outcome.SKIPPED)
                elif check.name in config.disabled:
                    result = CheckResult(check, Outcome.DISABLED)
                else:
                    result = run_script(root, check, config)
                    failed = kind.strict() and result.outcome.failed()
                log_result(result)
                results.append(result)
    for name in dict.fromkeys(config.disabled):
        if name not in seen:  # greenboot's own warning, word for word
            warnings.append(f"WARNING: {name} was not found and may be misspelled")
    report = HealthReport(
        tuple(results),
        started,
        time.time(),
        _boot_id() if boot_id is None else boot_id,
        tuple(warnings),
    )
    log_verdict(report)
    return report


def run_hooks(root: str, config: HealthConfig, kind: CheckKind) -> HealthReport:
    """greenboot `green` or `red`: green.d (or red.d) of /usr/lib/greenboot, then of
    /etc/greenboot, relaxed: a failing hook is logged, the others still run."""
    if kind not in (CheckKind.GREEN, CheckKind.RED):
        raise ValueError(kind)
    started = time.time()
    warnings = list(config.warnings)
    results: list[CheckResult] = []
    for base in BASE_DIRS:
        for check in discover(root, check_dir(base, kind), kind, warnings):
            if check.name in config.disabled:
                result = CheckResult(check, Outcome.DISABLED)
            else:
                result = run_script(root, check, config)
            log_result(result)
            results.append(result)
    return HealthReport(tuple(results), started, time.time(), _boot_id(), tuple(warnings))


def describe(result: CheckResult) -> str:
    """greenboot's line for a script, with our outcomes added."""
    name = result.check.name
    if result.outcome is Outcome.PASSED:
        return f"Script '{name}' SUCCESS"
    if result.outcome is Outcome.TIMED_OUT:
        return f"Script '{name}' FAILURE (timed out after {result.duration:.1f}s, killed)"
    if result.outcome is Outcome.FAILED:
        status = result.exit_status or 0
        how = f"killed by signal {-status}" if status < 0 else f"exit code '{status}'"
        relaxed = "" if result.check.kind.strict() else ". Continuing..."
        return f"Script '{name}' FAILURE ({how}){relaxed}"
    if result.outcome is Outcome.DISABLED:
        return f"'{name}' was skipped, as specified in config"
    return f"Script '{name}' was skipped due to a previous failure"


def log_result(result: CheckResult) -> None:
    if result.outcome.failed():
        # greenboot says <0> for a required failure; EMERG would also be broadcast to
        # every terminal, so CRIT (still shown by `journalctl -p 2`, as greenboot-status
        # filters); a wanted failure is <2> in greenboot, ERR here.
        priority = CRIT if result.check.kind.strict() else journal.ERR
    elif result.outcome.ran():
        priority = journal.INFO
    else:
        priority = journal.NOTICE
    journal.send(
        describe(result),
        priority=priority,
        message_id=CHECK_ID,
        SYSROOT_CHECK=result.check.name,
        SYSROOT_CHECK_PATH="/" + result.check.path,
        SYSROOT_CHECK_KIND=result.check.kind.value,
        SYSROOT_RESULT=result.outcome.value,
        SYSROOT_EXIT_STATUS=result.exit_status,
        SYSROOT_DURATION=f"{result.duration:.3f}" if result.outcome.ran() else None,
        SYSROOT_OUTPUT_LINES=result.lines if result.outcome.ran() else None,
        SYSROOT_OUTPUT_TAIL="\n".join(line.text for line in result.tail) or None,
    )


def log_verdict(report: HealthReport) -> None:
    failures = report.failures()
    if report.healthy:
        message, priority = "Boot Status is GREEN - Health Check SUCCESS", journal.NOTICE
    else:
        message, priority = "Boot Status is RED - Health Check FAILURE!", CRIT
    journal.send(
        message,
        priority=priority,
        message_id=RESULT_ID,
        SYSROOT_RESULT="green" if report.healthy else "red",
        SYSROOT_BOOT_ID=report.boot_id or None,
        SYSROOT_CHECKS_RUN=sum(1 for r in report.results if r.outcome.ran()),
        SYSROOT_CHECKS_FAILED=len(failures),
        SYSROOT_FAILED_CHECKS=" ".join(r.check.name for r in failures) or None,
    )
    for warning in report.warnings:
        journal.send(warning, priority=journal.WARNING)


def _boot_id() -> str:
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return ""
