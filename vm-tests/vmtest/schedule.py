"""Running the suite's jobs side by side: builds and scenario chains as a small
dependency graph on a fixed number of workers.

Under TCG a guest's vCPU is one host thread, so one guest keeps about one core busy.
Two one-vCPU guests on a two-core machine get twice the work done that one two-vCPU
guest does (measured in vm-tests/README.md), and the scenarios are independent disks,
so they run as separate jobs: a worker per core. A job runs once everything it needs
has succeeded; a job whose dependency failed does not run and fails with the reason.
Among the ready jobs the one listed first starts first, so the caller lists the long
ones first.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"  # a dependency failed


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[], object]
    needs: tuple[str, ...] = ()


@dataclass
class Outcome:
    state: State
    value: object = None  # what run() returned
    error: BaseException | None = None
    started: float = 0.0  # time.monotonic()
    seconds: float = 0.0


@dataclass
class Schedule:
    jobs: Sequence[Job]
    workers: int
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [job.name for job in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names repeat: {names}")
        for job in self.jobs:
            unknown = [n for n in job.needs if n not in names]
            if unknown:
                raise ValueError(f"job {job.name} needs unknown job(s) {unknown}")
        if self.workers < 1:
            raise ValueError("at least one worker")

    def _ready(self, pending: list[Job]) -> list[Job]:
        passed = {n for n, o in self.outcomes.items() if o.state is State.PASSED}
        return [job for job in pending if passed.issuperset(job.needs)]

    def _blocked(self, pending: list[Job]) -> list[tuple[Job, list[str]]]:
        """Pending jobs that can never run, each with the dependencies that failed."""
        out = []
        for job in pending:
            failed = [
                n
                for n in job.needs
                if n in self.outcomes and self.outcomes[n].state is not State.PASSED
            ]
            if failed:
                out.append((job, failed))
        return out

    def run(
        self,
        on_done: Callable[[str, Outcome], None] = lambda name, outcome: None,
        stop: threading.Event | None = None,
    ) -> dict[str, Outcome]:
        """Run every job; on_done is called (in this thread) as each one ends. When
        this thread is interrupted (SIGTERM as SystemExit, ^C), stop is set, so that the
        running jobs end early, and they are waited for before the exception goes on."""
        pending = list(self.jobs)
        running: dict[concurrent.futures.Future, tuple[str, float]] = {}

        def settle(name: str, outcome: Outcome) -> None:
            self.outcomes[name] = outcome
            on_done(name, outcome)

        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            try:
                while pending or running:
                    blocked = self._blocked(pending)
                    while blocked:  # a job not run may block others in turn
                        for job, failed in blocked:
                            pending.remove(job)
                            settle(
                                job.name,
                                Outcome(
                                    State.NOT_RUN,
                                    error=RuntimeError(
                                        f"not run: {', '.join(failed)} did not succeed"
                                    ),
                                ),
                            )
                        blocked = self._blocked(pending)
                    for job in self._ready(pending)[: self.workers - len(running)]:
                        pending.remove(job)
                        running[pool.submit(job.run)] = (job.name, time.monotonic())
                    if not running:
                        if pending:  # a cycle of needs: fail loudly rather than hang
                            raise RuntimeError(f"jobs cannot start: {[j.name for j in pending]}")
                        break
                    finished, _ = concurrent.futures.wait(
                        running, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for future in finished:
                        name, started = running.pop(future)
                        seconds = time.monotonic() - started
                        error = future.exception()
                        state = State.PASSED if error is None else State.FAILED
                        value = future.result() if error is None else None
                        settle(name, Outcome(state, value, error, started, seconds))
            except BaseException:
                if stop is not None:
                    stop.set()
                raise
        return self.outcomes
