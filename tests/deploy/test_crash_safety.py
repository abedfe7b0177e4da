"""Crash safety of the boot path: `sysroot admin` interrupted anywhere.

The claim (sysroot/deploy/writer.py): the only step that changes what boots next is one
rename, `boot/loader.tmp` over `boot/loader` (or `ostree/boot.N.tmp` over `ostree/boot.N`
when only the subbootversion changes). Everything before it is written where the live
configuration does not look, and flushed; everything after it removes what nothing
references any more, and a later command finishes what an interrupted one left.

Evidence, from real runs of the CLI under strace:
1. SIGKILL at deterministic points: `-e inject=SYSCALL:signal=KILL:when=N` kills the
   command on entry to the Nth call of SYSCALL (that call does not run). Points are
   chosen from an uninterrupted run's trace among the calls that change or flush the
   sysroot. After each kill: the invariant holds, the configuration is exactly the old
   one, or the new one if the committing rename ran, `ostree admin status` reads it; a
   later successful command leaves no debris and `ostree fsck` is clean.
2. Fault injection: the same points with `error=EIO` / `error=ENOSPC`: one `error:` line,
   no traceback, the invariant holds, the old configuration unless the commit ran.
3. Order: the trace of an uninterrupted run shows nothing live is touched before the
   commit, every change is flushed before it, and kernels and deployments appear under
   their final names by one rename each, when complete.

The harness (tracing, choosing points, interrupting, reading the configuration, finding
leftovers) is plain functions, so VM power-cut tests can reuse it with another way of
interrupting: only run_interrupted() is SIGKILL-specific.
"""

from __future__ import annotations

import codecs
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

import pytest

from sysroot.deploy.admin import Sysroot
from sysroot.deploy.deploy import DeployOptions
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import DEPLOY_DIR_RE, SysrootState
from sysroot.store.repo import Repo
from sysroot.util.fsutil import set_immutable
from sysroot.util.run import clean_env

STRACE = shutil.which("strace")
OSTREE = shutil.which("ostree")
OSNAME = "testos"
TIMESTAMP = "2023-01-02 03:04:05"
# No bytecode writes and a fixed hash seed: the same command makes the same calls in the
# same order every time, so "the Nth renameat" names the same moment in every run.
ENV = clean_env({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"})
WORKERS = 3  # the runs wait on fsync much of the time: more than the 2 cores pays
KILLS_PER_OPERATION = 18

RENAMES = ("rename", "renameat", "renameat2")
# Calls that change or flush a file system (openat and ioctl only in some forms).
CHANGING = (
    *RENAMES,
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rmdir",
    "write",
    "fsync",
    "fdatasync",
    "syncfs",
    "openat",
    "ioctl",
)
FLUSHES = ("fsync", "fdatasync", "syncfs")
FAULTS = (
    "fsync",
    "write",
    "rename",
    "renameat",
    "renameat2",
    "symlink",
    "symlinkat",
    "mkdir",
    "mkdirat",
    "linkat",
    "openat",
    "syncfs",
    "unlinkat",
)


# ============================================================== strace logs
@dataclass(frozen=True)
class Call:
    """One system call of a strace log (`-f -y`), with the paths it acts on resolved."""

    seq: int  # position in the log
    name: str
    ordinal: int  # 1 for the process's first call of this name: strace's when=N
    args: tuple[str, ...]
    result: str
    paths: tuple[str, ...]  # absolute; for renames and links the destination is last

    @property
    def ok(self) -> bool:
        return not self.result.startswith(("-1", "?"))

    @property
    def injected(self) -> bool:
        return "(INJECTED)" in self.result

    @property
    def flush(self) -> bool:
        return self.name in FLUSHES

    @property
    def changes(self) -> bool:
        """Whether the call changes the file system (flushes do not)."""
        if self.name == "openat":
            return bool(re.search(r"O_(CREAT|TRUNC|WRONLY|RDWR)", self.args[2]))
        if self.name == "ioctl":
            return "SETFLAGS" in self.args[1]
        return self.name not in FLUSHES

    @property
    def dest(self) -> str:
        return self.paths[-1] if self.paths else ""

    def under(self, root: str | Path) -> bool:
        return any(_within(p, root) for p in self.paths)

    def label(self, root: str | Path = "/") -> str:
        rel = [os.path.relpath(p, root) if _within(p, root) else p for p in self.paths]
        return f"{self.name}#{self.ordinal}({', '.join(rel)}) = {self.result}"


def _within(path: str, root: str | Path) -> bool:
    root = str(root).rstrip("/")
    return path == root or path.startswith(root + "/")


def _split_args(text: str) -> list[str]:
    """Top-level arguments of a strace call: commas inside quotes, (), [], {} and the
    <path> decorations of -y do not split."""
    out, cur, depth, i, quoted = [], [], 0, 0, False
    while i < len(text):
        c = text[i]
        cur.append(c)
        if quoted:
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            cur.pop()
            out.append("".join(cur).strip())
            cur = []
        i += 1
    if cur:
        out.append("".join(cur).strip())
    return out


def _string(arg: str) -> str:
    m = re.match(r'^"((?:[^"\\]|\\.)*)"', arg)
    if not m:
        return ""
    raw = codecs.escape_decode(m.group(1).encode())[0]
    return os.fsdecode(raw)


def _fd_path(arg: str, cwd: str) -> str:
    if arg.startswith("AT_FDCWD"):
        return cwd
    m = re.match(r"^-?\d+<(.*)>$", arg)
    return m.group(1).removesuffix(" (deleted)") if m else ""


def _at(dirfd: str, name: str, cwd: str) -> str:
    path = _string(name)
    if not path:
        return ""
    base = _fd_path(dirfd, cwd)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _paths(name: str, a: list[str], cwd: str) -> tuple[str, ...]:
    def s(i):
        return _at("AT_FDCWD", a[i], cwd)

    def at(i):
        return _at(a[i], a[i + 1], cwd)

    table: dict[str, Callable[[], list[str]]] = {
        "rename": lambda: [s(0), s(1)],
        "renameat": lambda: [at(0), at(2)],
        "renameat2": lambda: [at(0), at(2)],
        "symlink": lambda: [s(1)],
        "symlinkat": lambda: [_at(a[1], a[2], cwd)],
        "link": lambda: [s(1)],
        "linkat": lambda: [at(2)],
        "mkdir": lambda: [s(0)],
        "mkdirat": lambda: [at(0)],
        "unlink": lambda: [s(0)],
        "rmdir": lambda: [s(0)],
        "unlinkat": lambda: [at(0)],
        "openat": lambda: [at(0)],
    }
    if name in table:
        try:
            return tuple(p for p in table[name]() if p)
        except IndexError:
            return ()
    return (_fd_path(a[0], cwd),) if a and _fd_path(a[0], cwd) else ()


_CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(.*)$")


def parse_strace(text: str, cwd: str) -> list[Call]:
    """The calls of a `strace -f -y -qq -e signal=none` log, in order."""
    calls: list[Call] = []
    counts: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        pid, name, args, result = m.groups()
        n = counts[(pid, name)] = counts.get((pid, name), 0) + 1
        a = _split_args(args)
        calls.append(Call(len(calls), name, n, tuple(a), result.strip(), _paths(name, a, cwd)))
    return calls


def strace_command(argv: list[str], log: Path, syscalls, inject: str | None = None):
    cmd = [
        STRACE,
        "-f",
        "-qq",
        "-y",
        "-e",
        "signal=none",
        "-o",
        str(log),
        "-e",
        "trace=" + ",".join(f"?{s}" for s in syscalls),
    ]
    if inject:
        cmd += ["-e", f"inject={inject}"]
    else:
        # Much faster (untraced calls do not stop), but strace 6.1 silently skips
        # when=N injections with it.
        cmd.append("--seccomp-bpf")
    return cmd + [str(a) for a in argv]


def traced_run(
    argv: list[str],
    log: Path,
    *,
    syscalls=CHANGING,
    inject: str | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.CompletedProcess, list[Call]]:
    """Run argv under strace; its completed process and its calls of `syscalls`."""
    cwd = cwd or log.parent
    proc = subprocess.run(
        strace_command(argv, log, syscalls, inject),
        capture_output=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return proc, parse_strace(log.read_text(errors="replace"), str(cwd))


# ============================================================== interruption
@dataclass(frozen=True)
class Point:
    """Where to interrupt: on entry to the `when`th call of `syscall`."""

    syscall: str
    when: int
    what: str  # that call in the uninterrupted run, for messages

    def __str__(self) -> str:
        return f"{self.syscall}#{self.when} [{self.what}]"


def _is_lock(path: str) -> bool:
    return path.endswith(("/ostree/lock", "/repo/.lock"))


def sysroot_calls(calls: list[Call], root: Path) -> list[Call]:
    """Calls that change or flush something in the sysroot, lock files aside."""
    return [
        c
        for c in calls
        if (c.changes or c.flush) and c.under(root) and not any(_is_lock(p) for p in c.paths)
    ]


def spread(items: list, k: int) -> list:
    """k items evenly spread over items, first and last included."""
    if k <= 0:
        return []
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _publishes(c: Call, root: Path) -> bool:
    """A rename or symlink that makes a name appear in boot/, boot/ostree/, ostree/ or
    a deploy directory (not inside a tree being prepared)."""
    if not (c.name in RENAMES or c.name.startswith("symlink")) or "/.staging-" in c.dest:
        return False
    parent = os.path.relpath(os.path.dirname(c.dest), root)
    return (
        parent in ("boot", "boot/ostree", "ostree")
        or re.fullmatch(r"ostree/deploy/[^/]+/deploy", parent) is not None
    )


_UNITS = re.compile(
    r"^(boot/ostree/[^/]+|boot/loader\.[01]|ostree/boot\.[01]\.[01]"
    r"|ostree/deploy/[^/]+/deploy/[^/]+)/"
)


def _half_done(cands: list[Call], root: Path) -> set[int]:
    """For each kernel directory, loader directory, link farm and deployment that is
    built or removed file by file: the middle call of that work (a half-done unit)."""
    units: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        m = _UNITS.match(os.path.relpath(c.dest, root) + "/") if c.changes else None
        if m:
            units.setdefault(m.group(1), []).append(i)
    return {idx[len(idx) // 2] for idx in units.values() if len(idx) >= 2}


def interruption_points(
    calls: list[Call], root: Path, limit: int, targets: set[str]
) -> list[Point]:
    """Up to `limit` points: the commit (a rename onto one of targets) and the call right
    after it; then, in tiers, the renames and symlinks that publish something, the
    middle of each unit built or removed file by file, the other renames and symlinks,
    and evenly spread calls of every kind."""
    cands = sysroot_calls(calls, root)
    chosen, publish, other = set(), set(), set()
    for i, c in enumerate(cands):
        if c.name in RENAMES and c.dest in targets:
            chosen |= {i, min(i + 1, len(cands) - 1)}
        elif _publishes(c, root):
            publish.add(i)
        elif c.name in RENAMES or c.name.startswith("symlink"):
            other.add(i)
    for tier, share in ((publish, 0.4), (_half_done(cands, root), 0.7), (other, 0.8)):
        chosen |= set(spread(sorted(tier - chosen), int(limit * share) - len(chosen)))
    rest = [i for i in range(len(cands)) if i not in chosen]
    chosen |= set(spread(rest, limit - len(chosen)))
    return [Point(cands[i].name, cands[i].ordinal, cands[i].label(root)) for i in sorted(chosen)]


@dataclass
class Interrupted:
    point: Point
    returncode: int
    stderr: str
    calls: list[Call]  # the renames, and every call of the interrupted kind
    hit: Call | None  # the call the interruption landed on

    def committed(self, targets: set[str]) -> bool:
        """Whether a rename onto one of targets (the commit) ran before the end."""
        return any(c.name in RENAMES and c.ok and c.dest in targets for c in self.calls)


def run_interrupted(argv: list[str], point: Point, action: str, log: Path) -> Interrupted:
    """Run argv, interrupted at point by action: `signal=KILL`, `error=EIO`, ..."""
    syscalls = sorted(set(RENAMES) | {point.syscall})
    proc, calls = traced_run(
        argv, log, syscalls=syscalls, inject=f"{point.syscall}:{action}:when={point.when}"
    )
    hit = None
    if action.startswith("signal="):
        # strace ends itself with the tracee's signal, maybe before logging "+++ killed"
        if proc.returncode < 0 or proc.returncode > 128:
            hit = next((c for c in reversed(calls) if c.result == "?"), None)
    else:
        hit = next((c for c in calls if c.injected), None)
    return Interrupted(point, proc.returncode, proc.stderr.decode(errors="replace"), calls, hit)


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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    assert STRACE, "strace is required (apt-get install strace)"
    assert OSTREE, "the real ostree is required: it is the test oracle"
    w = World(tmp_path_factory.mktemp("crash"))
    yield w
    for p in w.base.iterdir():
        if p.is_dir():
            set_deployments_immutable(p, False)


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


# ============================================================== tests
def test_invariant_holds_for_both_tools(world, tmp_path, ostree):
    """The invariant accepts what the real ostree writes, and what we write."""
    for name in ("one", "two", "same-kernel"):
        assert check_boot_invariant(world.state(name)) == [], name
    root = tmp_path / "by-ostree"
    root.mkdir()
    ostree("admin", "init-fs", str(root))
    ostree("admin", "os-init", f"--sysroot={root}", OSNAME)
    for n in (1, 2):
        tree = make_tree(tmp_path / f"t{n}", f"K{n}", f"c{n}")
        ostree(f"--repo={root}/ostree/repo", "commit", f"--branch=testos/{n}", f"--tree=dir={tree}")
        ostree("admin", "deploy", f"--sysroot={root}", f"--os={OSNAME}", f"testos/{n}")
    assert check_boot_invariant(root) == []
    assert leftovers(root) == []


def _break(root: Path, how: str) -> str:
    """Break one thing the next boot needs; returns a word the problem must mention."""
    state = SysrootState.load(str(root))
    d = state.deployments[0]
    layout = state.layout
    if how == "kernel":
        os.unlink(os.path.join(layout.boot, d.entry.get("linux").lstrip("/")))
        return "linux"
    if how == "initrd":
        os.unlink(os.path.join(layout.boot, d.entry.get("initrd").lstrip("/")))
        return "initrd"
    if how == "origin":
        os.unlink(layout.origin_path(d.osname, d.csum, d.deployserial))
        return "origin"
    if how == "deployment":
        path = state.deployment_path(d)
        set_immutable(path, False)
        os.rename(path, path + "-gone")
        return "does not exist"
    if how == "bootlink":
        os.unlink(layout.bootlink_base(state.bootversion))
        return f"boot.{state.bootversion}"
    if how == "loader":
        os.unlink(layout.loader_link)
        os.symlink("loader.7", layout.loader_link)
        return "loader.7"
    if how == "incomplete-entry":
        entry = d.entry
        with open(entry.filename, "w") as f:
            f.write("".join(f"{k} {v}\n" for k, v in entry.items if k != "linux"))
        return "'linux'"
    if how == "entries":
        shutil.rmtree(layout.entries_dir(state.bootversion))
        return "entries"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "kernel",
        "initrd",
        "origin",
        "deployment",
        "bootlink",
        "loader",
        "incomplete-entry",
        "entries",
    ],
)
def test_invariant_detects_breakage(world, tmp_path, how):
    root = clone(world.state("two"), tmp_path / "sr")
    word = _break(root, how)
    problems = check_boot_invariant(root)
    assert problems, f"broken {how} not detected"
    assert any(word in p for p in problems), problems


def test_leftovers_sees_debris(world):
    """The debris state really holds what cleanup must remove (else the cleanup
    scenario would prove nothing)."""
    debris = leftovers(world.state("debris"))
    text = "\n".join(debris)
    assert "boot/loader.tmp" in debris
    assert "boot/loader.1" in debris or "boot/loader.0" in debris
    assert re.search(r"deploy/\.staging-", text), debris
    assert re.search(r"deploy/[0-9a-f]{64}\.0\n", text + "\n"), debris
    assert re.search(r"boot/ostree/testos-[0-9a-f]{64}", text), debris
    assert check_boot_invariant(world.state("debris")) == []
    assert boot_config(world.state("debris")) == boot_config(world.state("two"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sigkill_anywhere(world, name):
    """SIGKILL at deterministic points of each operation."""
    scenario = SCENARIOS[name]
    dry = world.dry_run(scenario)
    if scenario.changes_boot:
        assert dry.new != dry.old
    else:
        assert dry.new == dry.old
    points = interruption_points(dry.calls, dry.root, KILLS_PER_OPERATION, dry.targets)
    assert len(points) >= 15, points
    problems = run_all(kill_and_check, [(world, scenario, p) for p in points])
    assert not problems, "\n".join(problems)


def fault_points(dry: DryRun) -> list[tuple[Point, str]]:
    """For each kind of call: the last one before the commit (mostly the boot writer's);
    for some also the first (preparing the deployment) and the first after the commit
    (cleanup)."""
    cands = [
        c
        for c in dry.calls
        if c.under(dry.root)
        and c.name in FAULTS
        and not any(_is_lock(p) for p in c.paths)
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


def test_faults_fail_cleanly(world):
    """A failing file-system call: one error line, and the old configuration stays
    (the new one only if the commit rename already ran)."""
    scenario = SCENARIOS["deploy"]
    dry = world.dry_run(scenario)
    jobs = fault_points(dry)
    kinds = {p.syscall for p, _ in jobs}
    assert {
        "fsync",
        "write",
        "renameat",
        "rename",
        "symlinkat",
        "mkdir",
        "linkat",
        "openat",
        "syncfs",
    } <= kinds, kinds
    problems = run_all(fault_and_check, [(world, scenario, p, e) for p, e in jobs])
    assert not problems, "\n".join(problems)


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
        return any(_within(path, p) for p in live)

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
        if _within(c.dest, root / fs)
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
        if c.changes and any(_within(p, n) for p in c.paths for n in new_live):
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
        if c.seq < pub.seq and c.changes and any(_within(p, final) for p in c.paths):
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


def test_deploy_commits_with_one_flushed_rename(world):
    dry = world.dry_run(SCENARIOS["deploy"])
    root = dry.root
    assert "bootconfig swap: yes" in dry.stdout
    problems = check_commit_protocol(dry.calls, root, dry.live, dry.targets, dry.new_live)
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    assert commit.dest == str(root / "boot/loader")
    # the new deployment and the new kernel directory
    state = SysrootState.load(str(root))
    new = state.deployments[0]
    kernel = state.layout.kernel_dir(new.osname, new.bootcsum)
    problems += check_published_by_rename(
        dry.calls, state.deployment_path(new), r"\.staging-.*", root
    )
    problems += check_published_by_rename(dry.calls, kernel, r"\..*\.tmp", root)
    origin = state.deployment_path(new) + ".origin"
    published = next(
        c.seq for c in dry.calls if c.dest == state.deployment_path(new) and c.name in RENAMES
    )
    assert any(c.name in RENAMES and c.dest == origin and c.seq < published for c in dry.calls), (
        "the origin must be in place before the deployment"
    )
    assert not problems, "\n".join(problems)


def test_subbootversion_swap_commits_with_one_flushed_rename(world):
    dry = world.dry_run(SCENARIOS["set-default"])
    assert "bootconfig swap: no" in dry.stdout
    problems = check_commit_protocol(dry.calls, dry.root, dry.live, dry.targets, dry.new_live)
    assert not problems, "\n".join(problems)
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    assert re.fullmatch(r".*/ostree/boot\.[01]", commit.dest), commit.label(dry.root)
    assert not any(c.dest == str(dry.root / "boot/loader") for c in dry.calls if c.changes)


def test_protocol_check_catches_a_live_write(world):
    """The order check is not vacuous: a trace that writes into the live entries before
    the commit, or does not sync, is refused."""
    dry = world.dry_run(SCENARIOS["deploy"])
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    live_entry = os.path.join(dry.live[1], "entries", "ostree-1-testos.conf")
    bad = Call(0, "unlink", 1, (f'"{live_entry}"',), "0", (live_entry,))
    calls = [
        Call(i, c.name, c.ordinal, c.args, c.result, c.paths)
        for i, c in enumerate(dry.calls[: commit.seq - 3] + [bad] + dry.calls[commit.seq - 3 :])
    ]
    problems = check_commit_protocol(calls, dry.root, dry.live, dry.targets, dry.new_live)
    assert any("live configuration changed" in p for p in problems), problems
    no_sync = [c for c in dry.calls if c.name != "syncfs"]
    problems = check_commit_protocol(no_sync, dry.root, dry.live, dry.targets, dry.new_live)
    assert any("synced" in p for p in problems), problems
