"""Crash safety of the boot path, the harness: sysroots to interrupt, what they boot,
what an interruption may leave, and the checks after one.

tests/deploy/test_crash_safety.py states the claim and runs the tests; tests/boot/ and
future boot-path features (boot counting) reuse this with their own operations. The
pieces are plain functions, so VM power-cut tests can reuse them with another way of
interrupting: only tracing.run_interrupted() is SIGKILL- (or fault-) specific.

- State of a sysroot: `boot_config` (what boots next), `commit_targets` (the names whose
  replacement changes that), `live_paths`, `leftovers`, `ostree_status_names`, `ostree_fsck`.
- Copies: `clone`, `discard` (deployment roots are immutable).
- The test sysroots: `World` builds named states once ("base", "one", "two",
  "same-kernel", "debris") and the dry run of each `Scenario` of `SCENARIOS`.
- Checks: `kill_and_check`, `fault_and_check` (one interruption each, problems as text),
  `run_all` (in parallel), `fault_points`, and the order checks on a trace:
  `check_commit_protocol`, `check_published_by_rename`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sysroot.deploy.admin import Sysroot
from sysroot.deploy.deploy import DeployOptions
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import DEPLOY_DIR_RE, SysrootState
from sysroot.store.repo import Repo
from sysroot.util.fsutil import set_immutable
from tests.helpers.sysroots import OSNAME, TIMESTAMP
from tests.helpers.tracing import (
    ENV,
    FAULTS,
    RENAMES,
    Call,
    Interrupted,
    Point,
    is_lock,
    run_interrupted,
    sysroot_calls,
    traced_run,
    within,
)

OSTREE = shutil.which("ostree")
WORKERS = 3  # the runs wait on fsync much of the time: more than the 2 cores pays


# ============================================================== sysroot state
def boot_config(root: Path) -> tuple:
    """What boots next, in boot order: each entry's options, kernel, initramfs, title
    and version, with the deployment its ostree= argument leads to."""
    state = SysrootState.load(str(root))
    return tuple(
        (
            d.entry.get("options"),
            d.entry.get("linux"),
            tuple(d.entry.get_all("initrd")),
            d.entry.get("title"),
            d.entry.get("version"),
            d.osname,
            d.name,
        )
        for d in state.deployments
    )


def commit_targets(root: Path) -> set[str]:
    """The names whose replacement changes what boots: boot/loader, and the live
    ostree/boot.N link (the subbootversion-only swap)."""
    bv = SysrootState.load(str(root)).bootversion
    return {str(root / "boot/loader"), str(root / f"ostree/boot.{bv}")}


def live_paths(root: Path) -> list[str]:
    """Everything the current configuration reads at boot."""
    state = SysrootState.load(str(root))
    layout = state.layout
    bv, sub = state.bootversion, state.subbootversion
    out = [
        layout.loader_link,
        layout.loader_dir(bv),
        layout.bootlink_base(bv),
        layout.bootlink_dir(bv, sub),
    ]
    for d in state.deployments:
        out += [
            state.deployment_path(d),
            state.deployment_path(d) + ".origin",
            layout.kernel_dir(d.osname, d.bootcsum),
        ]
    return out


def leftovers(root: Path) -> list[str]:
    """Whatever the current configuration does not need: staging and temporary names,
    unreferenced deployments and kernels, inactive boot halves, stale deployment refs."""
    state = SysrootState.load(str(root))
    layout = state.layout
    bv, sub = state.bootversion, state.subbootversion
    configured = os.path.lexists(layout.loader_link)
    out = []

    def extra(directory: str, allowed: set[str]) -> None:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        out.extend(
            f"{os.path.relpath(os.path.join(directory, n), root)}"
            for n in sorted(names)
            if n not in allowed
        )

    boot_allowed = {"ostree", "boot"} | ({"loader", f"loader.{bv}"} if configured else set())
    extra(layout.boot, boot_allowed)
    extra(
        os.path.join(layout.boot, "ostree"),
        {layout.kernel_dir_name(d.osname, d.bootcsum) for d in state.deployments},
    )
    ostree_allowed = {"repo", "deploy", "lock"}
    if configured:
        ostree_allowed |= {f"boot.{bv}", f"boot.{bv}.{sub}"}
    extra(layout.ostree, ostree_allowed)
    for osname in state.stateroots():
        names = {d.name for d in state.deployments if d.osname == osname}
        extra(layout.deploy_parent(osname), names | {n + ".origin" for n in names})
    with Repo.open(layout.repo) as repo:
        refs = {k: v for k, v in repo.list_refs("ostree").items() if k.startswith("ostree/")}
    wanted = {f"ostree/{bv}/{sub}/{d.index}": d.csum for d in state.deployments}
    if refs != wanted:
        out.append(f"deployment refs {refs} instead of {wanted}")
    return out


def ostree_status_names(root: Path) -> list[str]:
    """Deployments (csum.serial) in the order the real ostree lists them."""
    proc = subprocess.run(
        [OSTREE, "admin", "status", f"--sysroot={root}"], capture_output=True, env=ENV
    )
    if proc.returncode != 0:
        raise AssertionError(f"ostree admin status failed: {proc.stderr.decode()}")
    return re.findall(r"^[ *] \S+ ([0-9a-f]{64}\.\d+)", proc.stdout.decode(), re.M)


def ostree_fsck(root: Path) -> str | None:
    proc = subprocess.run(
        [OSTREE, "fsck", f"--repo={root}/ostree/repo"], capture_output=True, env=ENV
    )
    if proc.returncode != 0:
        return f"ostree fsck failed: {proc.stdout.decode()} {proc.stderr.decode()}"
    return None


# ---------------------------------------------------------------- copies of sysroots
def set_deployments_immutable(root: Path, immutable: bool) -> None:
    base = root / "ostree/deploy"
    for parent in base.glob("*/deploy") if base.is_dir() else ():
        for d in parent.iterdir():
            if DEPLOY_DIR_RE.match(d.name) and d.is_dir() and not d.is_symlink():
                set_immutable(d, immutable)


def clone(src: Path, dst: Path) -> Path:
    """A copy of a sysroot, deployment roots immutable as the tools leave them."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    set_deployments_immutable(dst, True)
    return dst


def discard(root: Path) -> None:
    if root.exists():
        set_deployments_immutable(root, False)
        shutil.rmtree(root)


# ============================================================== the test sysroots
def make_tree(root: Path, kernel: str, marker: str) -> Path:
    mod = root / "usr/lib/modules/6.1.0"
    mod.mkdir(parents=True)
    (mod / "vmlinuz").write_text(f"vmlinuz {kernel}\n")
    (mod / "initramfs.img").write_text(f"initramfs {kernel}\n")
    (root / "usr/lib/os-release").write_text('NAME="Test OS"\nID=testos\nPRETTY_NAME="Test OS"\n')
    (root / "usr/etc/conf.d").mkdir(parents=True)
    (root / "usr/etc/hostname").write_text("testhost\n")
    (root / "usr/etc/conf.d/a.conf").write_text(f"marker={marker}\n")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/marker").write_text(marker)
    return root


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "sysroot", *map(str, args)]


def run_ok(argv: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, env=ENV, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{argv} failed: {proc.stderr.decode()}"
    return proc


@dataclass(frozen=True)
class Scenario:
    name: str
    start: str  # the World state it starts from
    args: tuple[str, ...]  # after `admin CMD --sysroot=...`
    followup: Callable[[Path], None]  # a later successful command (library call)
    changes_boot: bool = True

    def argv(self, root: Path) -> list[str]:
        return cli("admin", self.args[0], f"--sysroot={root}", *self.args[1:])


def _cleanup(root: Path) -> None:
    Sysroot(str(root)).cleanup()


def _deploy_same_kernel(root: Path) -> None:
    # testos/5 has the kernel of the deployment undeploy removes: a partially deleted
    # kernel directory would be taken as installed.
    Sysroot(str(root)).deploy("testos/5", DeployOptions(osname=OSNAME))


SCENARIOS = {
    # [c2, c1] -> [c4, c2]: new kernel installed, c1 and its kernel removed, c1 pruned
    "deploy": Scenario("deploy", "two", ("deploy", f"--os={OSNAME}", "testos/4"), _cleanup),
    # [c2, c1] -> [c2]
    "undeploy": Scenario("undeploy", "two", ("undeploy", "1"), _deploy_same_kernel),
    # [c3, c2] -> [c2, c3], same kernel and version: only ostree/boot.N is swapped
    "set-default": Scenario("set-default", "same-kernel", ("set-default", "1"), _cleanup),
    # debris of two interrupted deploys removed; the configuration stays
    "cleanup": Scenario("cleanup", "debris", ("cleanup",), _cleanup, changes_boot=False),
}


@dataclass
class DryRun:
    """An uninterrupted run of a scenario."""

    calls: list[Call]
    root: Path  # where it ran (a copy of the start state, now in the new state)
    old: tuple
    new: tuple
    targets: set[str]  # commit targets, as paths in `root`
    live: list[str]  # the start state's live paths, in `root`
    new_live: list[str]  # the end state's
    stdout: str


@dataclass
class World:
    base: Path
    states: dict[str, Path] = field(default_factory=dict)
    dry: dict[str, DryRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def scratch(self, name: str) -> Path:
        with self.lock:
            self.counter += 1
            return self.base / f"{name}-{self.counter}"

    def dry_run(self, scenario: Scenario) -> DryRun:
        if scenario.name not in self.dry:
            root = clone(self.state(scenario.start), self.scratch(f"dry-{scenario.name}"))
            old, targets, live = boot_config(root), commit_targets(root), live_paths(root)
            proc, calls = traced_run(scenario.argv(root), root.with_suffix(".log"))
            assert proc.returncode == 0, proc.stderr.decode()
            self.dry[scenario.name] = DryRun(
                calls,
                root,
                old,
                boot_config(root),
                targets,
                live,
                live_paths(root),
                proc.stdout.decode(),
            )
        return self.dry[scenario.name]

    def state(self, name: str) -> Path:
        if name not in self.states:
            getattr(self, "_make_" + name.replace("-", "_"))()
        return self.states[name]

    def _make_base(self) -> None:
        root = self.base / "base"
        run_ok(cli("admin", "init-fs", root))
        run_ok(cli("admin", "os-init", f"--sysroot={root}", OSNAME))
        repo = root / "ostree/repo"
        for n, kernel, version in (
            (1, "K1", "1.0"),
            (2, "K2", "2.0"),
            (3, "K2", "2.0"),
            (4, "K3", "3.0"),
            (5, "K1", "1.0"),
        ):
            tree = make_tree(self.base / f"tree{n}", kernel, f"c{n}")
            run_ok(
                [
                    OSTREE,
                    f"--repo={repo}",
                    "commit",
                    f"--branch=testos/{n}",
                    f"--timestamp={TIMESTAMP}",
                    f"--tree=dir={tree}",
                    "--subject=test",
                    f"--add-metadata-string=version={version}",
                ]
            )
        self.states["base"] = root

    def _derive(self, name: str, start: str, *commands: tuple[str, ...]) -> None:
        root = clone(self.state(start), self.base / name)
        for cmd, *rest in commands:
            run_ok(cli("admin", cmd, f"--sysroot={root}", *rest))
        self.states[name] = root

    def _make_one(self) -> None:
        self._derive("one", "base", ("deploy", f"--os={OSNAME}", "testos/1"))
        # c1 is then kept only by its deployment: removing that deployment prunes it
        run_ok([OSTREE, f"--repo={self.states['one']}/ostree/repo", "refs", "--delete", "testos/1"])

    def _make_two(self) -> None:
        self._derive("two", "one", ("deploy", f"--os={OSNAME}", "testos/2"))

    def _make_same_kernel(self) -> None:
        self._derive("same-kernel", "two", ("deploy", f"--os={OSNAME}", "testos/3"))

    def _make_debris(self) -> None:
        """[c2, c1] plus what two deploys of c4 leave when killed: one just before the
        commit rename, one just before its new deployment is renamed into place."""
        dry = self.dry_run(SCENARIOS["deploy"])
        commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
        root = clone(self.state("two"), self.base / "debris")
        argv = SCENARIOS["deploy"].argv(root)
        first_sync = next(c for c in dry.calls if c.name == "syncfs")
        for call in (commit, first_sync):
            res = run_interrupted(
                argv,
                Point(call.name, call.ordinal, call.label()),
                "signal=KILL",
                root.with_suffix(f".{call.name}.log"),
            )
            assert res.hit is not None, f"no kill at {call.label()}"
        self.states["debris"] = root


# ============================================================== checks
def check_after_interruption(
    scenario: Scenario, dry: DryRun, root: Path, res: Interrupted
) -> list[str]:
    """The checks after one interruption; problems as text."""
    problems = [f"invariant: {p}" for p in check_boot_invariant(root)]
    if problems:
        return problems
    committed = res.committed({t.replace(str(dry.root), str(root)) for t in dry.targets})
    expected = dry.new if committed else dry.old
    try:
        got = boot_config(root)
    except Exception as e:  # noqa: BLE001 - reported as a problem of this point
        return [f"configuration does not load: {e}"]
    if got != expected:
        which = "old" if got == dry.old else "new" if got == dry.new else "neither"
        problems.append(
            f"configuration is {which}, expected the {'new' if committed else 'old'} one: {got}"
        )
    try:
        names = ostree_status_names(root)
        if names != [c[-1] for c in got]:
            problems.append(f"ostree admin status lists {names}, we have {got}")
    except AssertionError as e:
        problems.append(str(e))
    return problems


def check_followup(scenario: Scenario, root: Path, lock: threading.Lock) -> list[str]:
    """After a later successful command: consistent, no debris, repo intact."""
    before = boot_config(root)
    with lock:  # library calls run one at a time; the subprocesses are the parallel part
        try:
            scenario.followup(root)
        except Exception as e:  # noqa: BLE001
            return [f"follow-up failed: {type(e).__name__}: {e}"]
    problems = [f"invariant after follow-up: {p}" for p in check_boot_invariant(root)]
    if scenario.followup is _cleanup and boot_config(root) != before:
        problems.append("cleanup changed the configuration")
    problems += [f"left over: {x}" for x in leftovers(root)]
    fsck = ostree_fsck(root)
    if fsck:
        problems.append(fsck)
    return problems


def kill_and_check(world: World, scenario: Scenario, point: Point) -> list[str]:
    dry = world.dry_run(scenario)
    root = clone(world.state(scenario.start), world.scratch(scenario.name))
    try:
        res = run_interrupted(scenario.argv(root), point, "signal=KILL", root.with_suffix(".log"))
        if res.hit is None:
            return [f"{point}: the kill did not land (rc {res.returncode})"]
        problems = check_after_interruption(scenario, dry, root, res)
        if not problems:
            problems = check_followup(scenario, root, world.lock)
        return [f"{scenario.name} killed at {point}: {p}" for p in problems]
    finally:
        discard(root)


def fault_and_check(world: World, scenario: Scenario, point: Point, error: str) -> list[str]:
    dry = world.dry_run(scenario)
    root = clone(world.state(scenario.start), world.scratch(f"fault-{scenario.name}"))
    where = f"{scenario.name} with {error} at {point}"
    try:
        res = run_interrupted(
            scenario.argv(root), point, f"error={error}", root.with_suffix(".log")
        )
        if res.hit is None:
            return [f"{where}: the fault was not injected (rc {res.returncode})"]
        problems = []
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        if res.returncode == 0:
            # A tolerated failure (e.g. a hard link falling back to a copy)
            if boot_config(root) != dry.new:
                problems.append("exit 0 but not the new configuration")
        elif (
            res.returncode < 0
            or len(lines) != 1
            or "Traceback" in res.stderr
            or not re.fullmatch(rf"error: .+: {os.strerror(getattr(errno, error))}", lines[0])
        ):
            problems.append(
                f"rc {res.returncode}, expected one line 'error: WHAT: "
                f"{os.strerror(getattr(errno, error))}', got {res.stderr!r}"
            )
        problems += check_after_interruption(scenario, dry, root, res)
        if not problems:
            problems = check_followup(scenario, root, world.lock)
        return [f"{where}: {p}" for p in problems]
    finally:
        discard(root)


def run_all(fn, jobs: list[tuple]) -> list[str]:
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda job: fn(*job), jobs))
    return [p for r in results for p in r]


def fault_points(dry: DryRun) -> list[tuple[Point, str]]:
    """For each kind of call: the last one before the commit (mostly the boot writer's);
    for some also the first (preparing the deployment) and the first after the commit
    (cleanup)."""
    cands = [
        c
        for c in dry.calls
        if c.under(dry.root)
        and c.name in FAULTS
        and not any(is_lock(p) for p in c.paths)
        and (c.changes or c.flush or c.name == "openat")
    ]
    commit = next(c.seq for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    out = []
    for kind in FAULTS:
        before = [c for c in cands if c.name == kind and c.seq < commit]
        after = [c for c in cands if c.name == kind and c.seq > commit]
        chosen = before[-1:]
        if kind in ("write", "linkat", "mkdirat", "fsync") and len(before) > 1:
            chosen.insert(0, before[0])
        if kind in ("fsync", "write", "renameat", "rename", "unlinkat"):
            chosen += after[:1]
        error = "ENOSPC" if kind in ("write", "mkdir", "mkdirat", "linkat") else "EIO"
        out += [(Point(c.name, c.ordinal, c.label(dry.root)), error) for c in chosen]
    return out


# ---------------------------------------------------------------- order of operations
def check_commit_protocol(
    calls: list[Call], root: Path, live: list[str], targets: set[str], new_live: list[str]
) -> list[str]:
    """The writer's claim, checked on the trace of one uninterrupted run.

    - exactly one rename changes what boots (onto a commit target), from a fixed
      `*.tmp` name;
    - before it, no change touches anything the live configuration reads;
    - between the last change before it and the rename, both file systems are synced,
      and the temporary link was flushed;
    - after it, its directory is fsynced before anything live is deleted, and nothing
      the new configuration reads (new_live) changes any more.
    """
    problems = []
    mine = sysroot_calls(calls, root)
    commits = [c for c in mine if c.name in RENAMES and c.ok and c.dest in targets]
    if len(commits) != 1:
        return [f"expected one committing rename, got {[c.label(root) for c in commits]}"]
    commit = commits[0]
    src = commit.paths[0]
    if src != commit.dest + ".tmp":  # loader.tmp, boot.N.tmp: fixed names, as libostree's
        problems.append(f"commit renames from {src}")

    def is_live(path: str) -> bool:
        return any(within(path, p) for p in live)

    before = [c for c in mine if c.seq < commit.seq]
    for c in before:
        if c.changes and any(is_live(p) for p in c.paths):
            problems.append(f"live configuration changed before the commit: {c.label(root)}")
    tmp_link = [c for c in before if c.name.startswith("symlink") and c.dest == src]
    if not tmp_link:
        problems.append(f"no symlink creates {src} before the commit")
        return problems
    changes = [
        c
        for c in before
        if c.changes
        and c.seq < tmp_link[-1].seq
        and not (c.name.startswith("unlink") and c.dest == src)
    ]
    last_change = changes[-1].seq if changes else -1
    synced = {
        fs
        for c in before
        if c.name == "syncfs" and c.seq > last_change
        for fs in ("boot", "ostree")
        if within(c.dest, root / fs)
    }
    if synced != {"boot", "ostree"}:
        problems.append(
            f"after the last change ({changes[-1].label(root)}) only "
            f"{sorted(synced)} are synced before the commit"
        )
    parent = os.path.dirname(src)
    if not any(c.flush and c.dest == parent and c.seq > tmp_link[-1].seq for c in before):
        problems.append(f"{src} is not flushed before the rename")
    after = [c for c in mine if c.seq > commit.seq]
    first_delete = next((c for c in after if c.changes and any(is_live(p) for p in c.paths)), None)
    limit = first_delete.seq if first_delete else len(calls)
    if not any(c.flush and c.dest == os.path.dirname(commit.dest) and c.seq < limit for c in after):
        problems.append("the commit is not fsynced before the old configuration is removed")
    for c in after:
        if c.changes and any(within(p, n) for p in c.paths for n in new_live):
            problems.append(f"new configuration changed after the commit: {c.label(root)}")
    return problems


def check_published_by_rename(
    calls: list[Call], final: str, staging_re: str, root: Path
) -> list[str]:
    """`final` appears by one rename from a staging name, after its content was written
    and flushed; nothing changes under the final name before that (the immutable flag
    aside)."""
    renames = [c for c in calls if c.name in RENAMES and c.ok and c.dest == final]
    if len(renames) != 1:
        return [f"{final}: expected one rename into place, got {len(renames)}"]
    pub = renames[0]
    staging = pub.paths[0]
    problems = []
    if not re.fullmatch(staging_re, os.path.basename(staging)):
        problems.append(f"{final} published from {staging}")
    for c in calls:
        if c.seq < pub.seq and c.changes and any(within(p, final) for p in c.paths):
            problems.append(f"{c.label(root)} before {final} is published")
        if c.seq > pub.seq and c.changes and c.under(staging):
            problems.append(f"{c.label(root)} after {staging} was published")
    last = max(
        (c.seq for c in calls if c.seq < pub.seq and c.changes and c.under(staging)), default=-1
    )
    if not any(
        c.flush and last < c.seq < pub.seq and (c.name == "syncfs" or c.dest == staging)
        for c in calls
    ):
        problems.append(f"{staging} is not flushed between its last change and the rename")
    return problems
