"""The runner behind vm-tests/run."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
import traceback

from sysroot.util.run import run
from vmtest.cache import cache_dir
from vmtest.disk import build_disk
from vmtest.ostree_tree import build_tree, kernel_version
from vmtest.qemu import Machine, probe_accel
from vmtest.rootfs import build_rootfs
from vmtest.scenarios import FRESH_DISK, SCENARIOS, Context, ScenarioFailed

BACKENDS = ("systemd-boot", "grub2")
LOG_TAIL = 120  # lines of a failing boot's serial console to print


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="vm-tests/run", description=__doc__)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"scenarios to run ({', '.join(SCENARIOS)}; default: all)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="boot-loader back end (repeatable; default: all)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for name in args.scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return args


def fresh_machine(disk, workroot: str, accel: str, name: str) -> Machine:
    workdir = os.path.join(workroot, name)
    os.makedirs(workdir)
    image = os.path.join(workdir, "disk.img")
    # a sparse copy: the cached base disk stays untouched
    run(["cp", "--sparse=always", disk.image, image])
    return Machine(image, workdir, accel, log)


def _exit_on_sigterm(signum, frame):
    # as an exception, so that every `finally` unmounts, detaches loop devices and
    # stops qemu before the process goes
    raise SystemExit(128 + signum)


def main(argv) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    wanted = args.scenarios or list(SCENARIOS)
    backends = args.backend or list(BACKENDS)
    started = time.monotonic()
    if os.geteuid() != 0:
        print("vm-tests/run: error: needs root (debootstrap, loop devices, mounts)")
        return 2
    log(f"cache: {cache_dir()}")
    tree = build_tree(build_rootfs(log), log)
    accel = probe_accel(os.path.join(tree, "usr/lib/modules", kernel_version(tree), "vmlinuz"))
    log(f"accelerator: {accel}")
    passed = failed = 0
    workroot = tempfile.mkdtemp(prefix="sysroot-vmtests-")
    try:
        for backend in backends:
            try:
                disk = build_disk(tree, backend, log)
            except Exception as e:  # no disk: every scenario of this back end fails
                traceback.print_exc()
                for name in wanted:
                    failed += 1
                    print(f"FAIL {backend}/{name}: building the disk failed: {e}", flush=True)
                continue
            shared = None
            done_shared: list[str] = []
            for name in wanted:
                label = f"{backend}/{name}"
                try:
                    if name in FRESH_DISK:
                        ctx = Context(disk, fresh_machine(disk, workroot, accel, label.replace(
                            "/", "-")), log)
                    else:
                        if shared is None:
                            shared = Context(disk, fresh_machine(
                                disk, workroot, accel, f"{backend}-shared"), log)
                        # earlier scenarios of the shared machine are this one's setup
                        for setup in [s for s in SCENARIOS if s not in FRESH_DISK]:
                            if setup == name:
                                break
                            if setup not in done_shared:
                                log(f"{label}: setup: scenario {setup}")
                                SCENARIOS[setup](shared)
                                done_shared.append(setup)
                        ctx = shared
                    t0 = time.monotonic()
                    lockups = ctx.machine.lockups
                    summary = SCENARIOS[name](ctx)
                    if ctx.machine.lockups > lockups:
                        summary += (f" [{ctx.machine.lockups - lockups} boot(s) locked up "
                                    "before the script and were booted again]")
                    if name not in FRESH_DISK:
                        done_shared.append(name)
                    passed += 1
                    print(f"PASS {label} ({time.monotonic() - t0:.0f} s): {summary}", flush=True)
                except ScenarioFailed as e:
                    failed += 1
                    print(f"FAIL {label}: {e}", flush=True)
                    if e.boot is not None:
                        tail = e.boot.log.splitlines()[-LOG_TAIL:]
                        print(f"--- serial console (last {len(tail)} lines) ---")
                        print("\n".join(tail))
                        print("--- end of serial console ---", flush=True)
                    if name not in FRESH_DISK:
                        shared = None  # the machine's state is unknown now
                        done_shared = []
                except Exception as e:  # a harness error fails the scenario, not the run
                    failed += 1
                    print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
                    traceback.print_exc()
                    shared = None
                    done_shared = []
    finally:
        if args.keep:
            log(f"work directory kept: {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    log(f"total time {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1
