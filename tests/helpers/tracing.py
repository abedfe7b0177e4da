"""Tracing and interrupting a command under strace: the machinery of the crash tests.

A command runs under `strace -f -y`; its log is parsed into `Call`s with the paths they
act on resolved. From an uninterrupted run's calls, `interruption_points` chooses where
to interrupt; `run_interrupted` runs the command again and, with strace's
`-e inject=SYSCALL:ACTION:when=N`, kills it (`signal=KILL`) or fails a call
(`error=EIO`) on entry to the Nth call of SYSCALL, which then does not run. The same
command makes the same calls in the same order every time (see ENV), so "the Nth
renameat" names the same moment in every run.

Nothing here knows what a sysroot holds but the names of its lock files; what a run must
leave behind is tests/helpers/crash.py's business.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sysroot.util.run import clean_env

STRACE = shutil.which("strace")
# No bytecode writes and a fixed hash seed: the same command makes the same calls in the
# same order every time, so "the Nth renameat" names the same moment in every run.
ENV = clean_env({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"})

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
        return any(within(p, root) for p in self.paths)

    def label(self, root: str | Path = "/") -> str:
        rel = [os.path.relpath(p, root) if within(p, root) else p for p in self.paths]
        return f"{self.name}#{self.ordinal}({', '.join(rel)}) = {self.result}"


def within(path: str, root: str | Path) -> bool:
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


def is_lock(path: str) -> bool:
    return path.endswith(("/ostree/lock", "/repo/.lock"))


def sysroot_calls(calls: list[Call], root: Path) -> list[Call]:
    """Calls that change or flush something in the sysroot, lock files aside."""
    return [
        c
        for c in calls
        if (c.changes or c.flush) and c.under(root) and not any(is_lock(p) for p in c.paths)
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
