"""The one door for external processes.

Every external command goes through run(): stdin closed, a C.UTF-8 environment so
parsed output is stable, the command line logged at debug level, and a failure
reported as what ran, its exit code and the last lines of its stderr.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sysroot.errors import SysrootError

Completed = subprocess.CompletedProcess[bytes]  # what run() returns

log = logging.getLogger(__name__)


class CommandError(SysrootError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str):
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        msg = f"{shlex.join(argv)} exited with status {returncode}"
        super().__init__(f"{msg}: {tail}" if tail else msg)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    inherit_stdin: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv; raise CommandError on a non-zero exit when check is true.
    inherit_stdin: the child reads our stdin (an interactive editor), else /dev/null."""
    argv = [os.fspath(a) for a in argv]
    log.debug("running: %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None or inherit_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=clean_env(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise SysrootError(f"{argv[0]}: command not found") from e
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace") if proc.stderr else ""
        raise CommandError(argv, proc.returncode, stderr)
    return proc


@dataclass(frozen=True)
class Streamed:
    """How a run_streaming() child ended. returncode is Popen's: negative for a signal."""

    returncode: int
    timed_out: bool
    duration: float


def run_streaming(
    argv: Sequence[str],
    *,
    on_line: Callable[[bytes], None],
    timeout: float | None,
    kill_grace: float = 5.0,
    max_line: int = 4096,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Streamed:
    """Run argv in a process group of its own, stdout and stderr merged, handing each
    output line (without its newline) to on_line as it comes; never raises for an exit
    status. For programs that may hang or flood (health checks): memory stays bounded
    (a line longer than max_line bytes is split, as journald splits), and at the timeout
    the whole group gets SIGTERM, then SIGKILL after kill_grace seconds. When the child
    itself exits, what it left running in its group is killed too: a background process
    holding the output pipe open would otherwise keep us waiting for an EOF that never
    comes."""
    argv = [os.fspath(a) for a in argv]
    log.debug("running (group, timeout %s): %s", timeout, shlex.join(argv))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            cwd=cwd,
            start_new_session=True,  # its own process group (pgid == pid), to kill as one
        )
    except FileNotFoundError as e:
        raise SysrootError(f"{argv[0]}: command not found") from e
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    # The pidfd turns readable when the child exits, and until we reap it the zombie keeps
    # its pid, so the process group id cannot be reused by another group while we kill it.
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel older than 5.3
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        raise
    sel = selectors.DefaultSelector()
    sel.register(out, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    buf = b""
    timed_out = exited = eof = False
    deadline = None if timeout is None else start + timeout
    drain_until: float | None = None

    def feed(data: bytes) -> None:
        nonlocal buf
        buf += data
        while True:
            cut = buf.find(b"\n")
            if cut < 0 and len(buf) <= max_line:
                return
            end = cut if 0 <= cut <= max_line else max_line
            on_line(buf[:end])
            buf = buf[end + 1 :] if end == cut else buf[end:]

    try:
        # Done when the child has exited and its output is read to the end, or when the
        # output has not ended a moment after the exit: a process that left the group
        # (setsid) still holds the pipe, and it is none of ours to wait for. EOF alone is
        # not the end: a child may close its output and go on working.
        while not (exited and (eof or time.monotonic() >= (drain_until or 0))):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if not timed_out:
                    timed_out = True
                    _killpg(proc.pid, signal.SIGTERM)
                    deadline = now + kill_grace
                else:
                    _killpg(proc.pid, signal.SIGKILL)
                    deadline = None
                continue
            wait = [t - now for t in (deadline, drain_until) if t is not None]
            for key, _ in sel.select(min(wait) if wait else None):
                if key.fd == pidfd:
                    exited = True
                    deadline = None
                    sel.unregister(pidfd)
                    _killpg(proc.pid, signal.SIGKILL)  # leftovers; the zombie pins the pgid
                    drain_until = time.monotonic() + 1.0
                else:
                    data = os.read(out, 65536)
                    if data:
                        feed(data)
                    else:
                        eof = True
                        sel.unregister(out)
        if buf:
            on_line(buf)
    finally:
        sel.close()
        if not exited:  # interrupted (an exception from on_line, ^C): leave nothing behind
            _killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
        os.close(pidfd)
        proc.stdout.close()
    return Streamed(returncode, timed_out, time.monotonic() - start)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:  # the group is already gone
            raise
