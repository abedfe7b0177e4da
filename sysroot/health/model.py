"""The health checks' vocabulary: what a check is, how it ended, what a run reports.

Frozen records and enums with behaviour, shared by the runner, the records on disk, the
MOTD and the journal entries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class CheckKind(enum.Enum):
    """A greenboot script directory: the two health-check sets and the two hook sets."""

    REQUIRED = "required"
    WANTED = "wanted"
    GREEN = "green"
    RED = "red"

    def strict(self) -> bool:
        """greenboot's "strict" mode: the first failure ends the run (required.d only)."""
        return self is CheckKind.REQUIRED

    def subdir(self) -> str:
        """The directory under /usr/lib/greenboot and /etc/greenboot."""
        if self in (CheckKind.REQUIRED, CheckKind.WANTED):
            return f"check/{self.value}.d"
        return f"{self.value}.d"


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # non-zero exit, or killed by a signal
    TIMED_OUT = "timed_out"  # killed (with its process group) at its timeout
    DISABLED = "disabled"  # named in DISABLED_HEALTHCHECKS
    SKIPPED = "skipped"  # not run: an earlier required check failed

    def ran(self) -> bool:
        return self in (Outcome.PASSED, Outcome.FAILED, Outcome.TIMED_OUT)

    def failed(self) -> bool:
        return self in (Outcome.FAILED, Outcome.TIMED_OUT)


@dataclass(frozen=True)
class Check:
    """One script found in a greenboot directory. path is relative to the root the run
    was given ("usr/lib/greenboot/check/required.d/01_dns.sh"); name is its basename,
    the name DISABLED_HEALTHCHECKS and the timeouts refer to."""

    kind: CheckKind
    path: str
    name: str


@dataclass(frozen=True)
class OutputLine:
    """One line of a script's output, its sd-daemon "<N>" prefix parsed into priority."""

    priority: int
    text: str


@dataclass(frozen=True)
class CheckResult:
    check: Check
    outcome: Outcome
    exit_status: int | None = None  # None when it did not run; negative: killed by that signal
    duration: float = 0.0  # seconds
    tail: tuple[OutputLine, ...] = ()  # the last lines of its output
    lines: int = 0  # how many lines it wrote in all (the tail keeps the last few)


@dataclass(frozen=True)
class HealthConfig:
    """/etc/greenboot/greenboot.conf as greenboot reads it, plus our per-check timeouts
    (keys greenboot ignores, so one file serves both). warnings: what was not understood
    and replaced by a default."""

    max_boot_attempts: int = 3
    disabled: tuple[str, ...] = ()
    timeout: float | None = 900.0  # seconds per check; None: no limit
    timeouts: tuple[tuple[str, float | None], ...] = ()  # (script name, timeout) overrides
    kill_grace: float = 5.0  # SIGTERM to SIGKILL, seconds
    tail_lines: int = 20  # output lines kept per check (journal entry and record)
    max_line: int = 2048  # bytes; longer output lines are split, as journald splits them
    warnings: tuple[str, ...] = ()

    def timeout_for(self, name: str) -> float | None:
        for script, seconds in reversed(self.timeouts):  # the last setting wins, as in bash
            if script == name:
                return seconds
        return self.timeout


@dataclass(frozen=True)
class HealthReport:
    """One run of the checks (or of the green/red hooks)."""

    results: tuple[CheckResult, ...]
    started: float  # Unix time
    finished: float
    boot_id: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        """greenboot's verdict: no required check failed (a wanted one may have)."""
        return not any(
            r.outcome.failed() and r.check.kind is CheckKind.REQUIRED for r in self.results
        )

    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.outcome.failed())
