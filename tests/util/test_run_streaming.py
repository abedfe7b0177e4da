"""sysroot/util/run.py run_streaming(): lines as they come, bounded memory, a timeout that
kills the whole process group, and no hang on what a child leaves behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sysroot.errors import SysrootError
from sysroot.util.run import run_streaming


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for init to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_left(pidfile: Path) -> None:
    """Teardown: if the test failed with the child recorded in pidfile still running (a
    bug under test), kill its process group, so that no failing run leaves processes."""
    try:
        pid = int(pidfile.read_text())
        if alive(pid) and os.getpgid(pid) != os.getpgid(0):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


@pytest.fixture
def pidfile(tmp_path: Path):
    path = tmp_path / "child.pid"
    yield path
    kill_left(path)


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn(), failing the test (instead of hanging it) when it takes longer than seconds."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)  # a hung one dies with the process
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds}s"
    if errors:
        raise errors[0]
    return out[0]


def sh(script: str, **kw):
    lines: list[bytes] = []
    res = within(20, lambda: run_streaming(["bash", "-c", script], on_line=lines.append, **kw))
    return res, lines


def test_lines_both_streams_and_exit_status():
    res, lines = sh("echo out; echo err >&2; printf 'no newline'; exit 3", timeout=30)
    assert lines == [b"out", b"err", b"no newline"]
    assert (res.returncode, res.timed_out) == (3, False)


def test_output_closed_early_still_waits_for_the_exit():
    # EOF on the pipe is not the end: the child goes on without stdout and stderr
    res, lines = sh("echo bye; exec >/dev/null 2>&1; sleep 0.5; exit 3", timeout=30)
    assert (res.returncode, res.timed_out, lines) == (3, False, [b"bye"])
    assert res.duration >= 0.5


def test_output_closed_early_then_hanging_times_out():
    res, lines = sh("exec >&- 2>&-; sleep 1000", timeout=0.3, kill_grace=1)
    assert (res.returncode, res.timed_out, lines) == (-signal.SIGTERM, True, [])


def test_long_lines_are_split_at_max_line():
    res, lines = sh(
        "head -c 10000 /dev/zero | tr '\\0' x; echo; echo short", timeout=30, max_line=4096
    )
    assert [len(x) for x in lines] == [4096, 4096, 1808, 5]
    assert res.returncode == 0


def test_timeout_kills_the_group(pidfile):
    start = time.monotonic()
    res, lines = sh(f"sleep 1000 & echo $! > {pidfile}; echo started; sleep 1000", timeout=0.5)
    assert time.monotonic() - start < 10
    assert res.timed_out and res.returncode == -signal.SIGTERM
    assert lines == [b"started"]
    assert wait_dead(int(pidfile.read_text()))


def test_sigterm_ignored_then_sigkill(pidfile):
    script = f"trap '' TERM; (trap '' TERM; sleep 1000) & echo $! > {pidfile}; sleep 1000"
    start = time.monotonic()
    res, _ = sh(script, timeout=0.3, kill_grace=0.5)
    took = time.monotonic() - start
    assert res.timed_out and res.returncode == -signal.SIGKILL
    assert 0.7 < took < 10
    assert wait_dead(int(pidfile.read_text()))


def test_background_child_does_not_keep_us_waiting(pidfile):
    start = time.monotonic()
    # the child keeps the output pipe open: EOF would never come
    res, lines = sh(f"sleep 1000 & echo $! > {pidfile}; echo done", timeout=60)
    assert time.monotonic() - start < 10
    assert (res.returncode, res.timed_out, lines) == (0, False, [b"done"])
    assert wait_dead(int(pidfile.read_text()))  # killed with the group


def test_escaped_child_holding_the_pipe(pidfile):
    # setsid leaves the group, so it is not killed with it, and it holds the pipe open
    script = (
        f"setsid bash -c 'echo $$ > {pidfile}; exec sleep 1000' &"
        f" while [ ! -s {pidfile} ]; do sleep 0.01; done; echo x"
    )
    start = time.monotonic()
    res, lines = sh(script, timeout=60)
    assert time.monotonic() - start < 5  # stopped reading after a short drain
    assert (res.returncode, lines) == (0, [b"x"])
    kill_left(pidfile)  # its own group: the teardown kills it too, if this fails first


def test_exception_in_on_line_leaves_nothing_running(pidfile):

    def boom(line: bytes) -> None:
        raise RuntimeError(line)

    with pytest.raises(RuntimeError):
        run_streaming(
            ["bash", "-c", f"sleep 1000 & echo $! > {pidfile}; echo go; sleep 1000"],
            on_line=boom,
            timeout=60,
        )
    assert wait_dead(int(pidfile.read_text()))


def test_missing_command():
    with pytest.raises(SysrootError, match="no-such-command: command not found"):
        run_streaming(["no-such-command"], on_line=print, timeout=1)
