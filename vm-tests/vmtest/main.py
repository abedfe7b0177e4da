"""The runner behind vm-tests/run.

The OS tree is built (or taken from the cache) first; then the disks and scenarios run
as jobs on a worker per host core (vmtest/schedule.py): a disk per back end, each
fresh-disk scenario (4 to 9) as a job of its own, and scenarios 1-3 as one job, since
they share a machine. Long jobs are listed first, so that they start first.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sysroot.util.run import run
from vmtest import health_scenarios, install_scenarios, scenarios
from vmtest.cache import cache_dir
from vmtest.disk import BaseDisk, build_disk
from vmtest.ostree_tree import build_tree, kernel_version
from vmtest.qemu import STOP, Machine, probe_accel
from vmtest.rootfs import build_rootfs
from vmtest.schedule import Job, Outcome, Schedule, State
from vmtest.timing import Ledger, Stage
from vmtest.verdict import Context, ScenarioFailed

BACKENDS = ("systemd-boot", "grub2")
LOG_TAIL = 120  # lines of a failing boot's serial console to print
# the order jobs start in when workers are free: the longest first (see the README's
# Time section), so that no long job starts last and runs alone
START_ORDER = ("4", "8", "9", "shared", "7", "6", "5")
SCENARIOS = {**scenarios.SCENARIOS, **health_scenarios.SCENARIOS, **install_scenarios.SCENARIOS}
FRESH_DISK = scenarios.FRESH_DISK | health_scenarios.FRESH_DISK | install_scenarios.FRESH_DISK
GUEST_MEMORY_GIB = 2  # qemu -m of each guest (vmtest/qemu.py)

_print_lock = threading.Lock()


def say(text: str) -> None:
    """Print whole lines: worker threads write side by side."""
    with _print_lock:
        print(text, flush=True)


def log(message: str) -> None:
    say(f"[{time.strftime('%H:%M:%S')}] {message}")


def job_log(job: str) -> Callable[[str], None]:
    return lambda message: log(f"{job}: {message}")


def default_workers() -> int:
    """One guest per core, as many as memory holds (a guest and its host side take
    about GUEST_MEMORY_GIB + 1 GiB)."""
    available_kib = 0
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available_kib = int(line.split()[1])
    by_memory = available_kib // ((GUEST_MEMORY_GIB + 1) << 20)
    return max(1, min(os.cpu_count() or 1, by_memory))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="vm-tests/run", description=__doc__)
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run ({', '.join(SCENARIOS)}; default: all)",
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="boot-loader back end (repeatable; default: all)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="guests (and builds) side by side (default: one per core, as memory allows)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for name in args.scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.backend:  # each back end once, however often it was named
        args.backend = list(dict.fromkeys(args.backend))
    return args


@dataclass
class Result:
    label: str  # backend/scenario
    passed: bool
    text: str  # the scenario's summary, or why it failed
    seconds: float = 0.0


@dataclass
class Run:
    """What the jobs of one run share."""

    workroot: str
    accel: str
    ledger: Ledger
    tree: str  # the OS tree the disks are made from
    disks: dict[str, BaseDisk]  # per back end, filled in by the disk jobs

    def machine(self, backend: str, name: str, job: str) -> Machine:
        """A machine booting a copy of backend's disk, its files in workroot/name."""
        disk = self.disks[backend]
        workdir = os.path.join(self.workroot, name)
        os.makedirs(workdir)
        image = os.path.join(workdir, "disk.img")
        # a sparse copy: the cached base disk stays untouched
        run(["cp", "--sparse=always", disk.image, image])
        return Machine(
            image,
            workdir,
            self.accel,
            job_log(job),
            on_boot=lambda boot: self.ledger.add_boot(job, boot),
        )

    def context(self, backend: str, name: str, job: str) -> Context:
        return Context(
            self.disks[backend], self.machine(backend, name, job), job_log(job), self.ledger, job
        )


def report(result: Result, boot=None) -> Result:
    if result.passed:
        say(f"PASS {result.label} ({result.seconds:.0f} s): {result.text}")
    else:
        lines = [f"FAIL {result.label}: {result.text}"]
        if boot is not None:
            tail = boot.log.splitlines()[-LOG_TAIL:]
            lines += [
                f"--- serial console of {result.label} (last {len(tail)} lines) ---",
                *tail,
                "--- end of serial console ---",
            ]
        say("\n".join(lines))
    return result


def run_one(ctx: Context, backend: str, name: str) -> Result:
    """Scenario name on ctx's machine; a failure is a result, not an exception."""
    label = f"{backend}/{name}"
    t0 = time.monotonic()
    try:
        lockups = ctx.machine.lockups
        summary = SCENARIOS[name](ctx)
        if ctx.machine.lockups > lockups:
            summary += (
                f" [{ctx.machine.lockups - lockups} boot(s) locked up "
                "before the script and were booted again]"
            )
        return report(Result(label, True, summary, time.monotonic() - t0))
    except ScenarioFailed as e:
        return report(Result(label, False, str(e)), e.boot)
    except Exception as e:  # a harness error fails the scenario, not the run
        with _print_lock:
            traceback.print_exc()
        return report(Result(label, False, f"{type(e).__name__}: {e}"))


def fresh_disk_job(r: Run, backend: str, name: str, job: str) -> list[Result]:
    return [run_one(r.context(backend, f"{backend}-{name}", job), backend, name)]


def shared_machine_job(r: Run, backend: str, names: list[str], job: str) -> list[Result]:
    """Scenarios that share one machine, in order; a later one asked for alone first
    runs the earlier ones as its setup. After a failure the machine's state is
    unknown: the next scenario starts again on a fresh machine."""
    results = []
    ctx: Context | None = None
    done: list[str] = []
    machines = 0
    for name in names:
        if ctx is None:
            machines += 1
            ctx = r.context(backend, f"{backend}-shared-{machines}", job)
            done = []
        for setup in [s for s in SCENARIOS if s not in FRESH_DISK]:
            if setup == name:
                break
            if setup not in done:
                ctx.log(f"setup of scenario {name}: scenario {setup}")
                SCENARIOS[setup](ctx)
                done.append(setup)
        result = run_one(ctx, backend, name)
        results.append(result)
        if result.passed:
            done.append(name)
        else:
            ctx = None
    return results


def plan(r: Run, backends: list[str], wanted: list[str]) -> tuple[list[Job], dict[str, list[str]]]:
    """The jobs, in start order, and the scenario labels each job reports."""
    jobs: list[Job] = []
    labels: dict[str, list[str]] = {}
    for backend in backends:
        jobs.append(Job(f"disk {backend}", make_disk(r, backend)))
    shared = [n for n in wanted if n not in FRESH_DISK]
    for group in START_ORDER:
        for backend in backends:
            if group == "shared" and shared:
                job, names = f"{backend}/{','.join(shared)}", shared
                work = functools.partial(shared_machine_job, r, backend, shared, job)
            elif group in wanted and group in FRESH_DISK:
                job, names = f"{backend}/{group}", [group]
                work = functools.partial(fresh_disk_job, r, backend, group, job)
            else:
                continue
            jobs.append(Job(job, work, needs=(f"disk {backend}",)))
            labels[job] = [f"{backend}/{n}" for n in names]
    return jobs, labels


def make_disk(r: Run, backend: str) -> Callable[[], None]:
    def build() -> None:
        r.disks[backend] = build_disk(r.tree, backend, job_log(f"disk {backend}"))

    return build


def _exit_on_sigterm(signum, frame):
    # STOP first: whatever this thread is doing, every running boot kills its qemu and
    # its job ends; then an exception, so that every `finally` unmounts, detaches loop
    # devices and stops servers before the process goes
    STOP.set()
    raise SystemExit(128 + signum)


def main(argv) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    wanted = [n for n in SCENARIOS if n in (args.scenarios or SCENARIOS)]
    backends = args.backend or list(BACKENDS)
    workers = args.jobs or default_workers()
    started = time.monotonic()
    if os.geteuid() != 0:
        print("vm-tests/run: error: needs root (debootstrap, loop devices, mounts)")
        return 2
    ledger = Ledger()
    log(f"cache: {cache_dir()}; {workers} worker(s)")
    t0 = time.monotonic()
    rootfs = build_rootfs(log)
    ledger.add(Stage.BUILD, "rootfs", time.monotonic() - t0)
    t0 = time.monotonic()
    tree = build_tree(rootfs, log)
    ledger.add(Stage.BUILD, "tree", time.monotonic() - t0)
    accel = probe_accel(os.path.join(tree, "usr/lib/modules", kernel_version(tree), "vmlinuz"))
    log(f"accelerator: {accel}")
    workroot = tempfile.mkdtemp(prefix="sysroot-vmtests-")
    r = Run(workroot, accel, ledger, tree, {})
    jobs, labels = plan(r, backends, wanted)
    results: list[Result] = []

    def done(name: str, outcome: Outcome) -> None:
        if name.startswith("disk "):
            ledger.add(Stage.BUILD, name, outcome.seconds)
            if outcome.state is State.FAILED:
                with _print_lock:
                    traceback.print_exception(outcome.error)
            return
        if outcome.state is State.PASSED:
            assert isinstance(outcome.value, list)
            results.extend(outcome.value)
            return
        reason = (
            f"building the disk failed: {outcome.error}"
            if outcome.state is State.NOT_RUN
            else f"{type(outcome.error).__name__}: {outcome.error}"
        )
        for label in labels[name]:
            results.append(report(Result(label, False, reason)))

    schedule = Schedule(jobs, workers)
    try:
        schedule.run(done, stop=STOP)
    except BaseException:
        STOP.set()  # e.g. ^C: the jobs must end, or the interpreter waits for them
        raise
    finally:
        if args.keep:
            log(f"work directory kept: {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    wall = time.monotonic() - started
    order = [f"{backend}/{name}" for backend in backends for name in wanted]
    results.sort(key=lambda res: order.index(res.label))
    passed = sum(res.passed for res in results)
    say(
        "results:\n"
        + "\n".join(
            f"  PASS {res.label} ({res.seconds:.0f} s)"
            if res.passed
            else f"  FAIL {res.label}: {res.text.splitlines()[0] if res.text else ''}"
            for res in results
        )
    )
    say(
        ledger.table(
            wall,
            workers,
            [(job.name, schedule.outcomes[job.name].seconds) for job in jobs if job.name in labels],
        )
    )
    log(f"total time {wall:.0f} s")
    say(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1
