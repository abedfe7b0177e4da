"""A pull's fetch workers: a forked process per CPU, a few threads in each, one
connection per thread.

Why processes: fetching a small object is CPU work in Python (the HTTP exchange,
inflating, hashing, writing a file), and all the threads of one process take turns on
one core under the GIL; eight threads in one process spent more time handing the GIL
over than fetching. Why threads as well: a distant server answers slowly, and only
several requests in flight hide that; yet more processes than CPUs cost more CPU than
they save. A forked process starts with the parent's state (the transaction and its
staging directory, the remote's options) and needs no set-up beyond its connections.

The parent talks to each thread (a "lane") over its own pipe: it sends tasks (a kind
and a short list of items) and reads results; the lane calls `work(kind, item)` for
each item and sends back the outputs in order. A lane holds at most two tasks, so it
never waits for the parent between them, and tasks queued as urgent (the directory
metadata the walk needs to go on) go out first. After the first failure (or stop())
lanes finish only the item in hand and report what they completed, so the parent can
still keep it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import pickle
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from ctypes import c_bool, c_uint64
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sysroot.errors import SysrootError

_DEPTH = 2  # tasks a lane holds at once: one in hand, the next already in its pipe


@dataclass
class TaskResult:
    # Items and outputs are the caller's, whose type depends on the kind (the pool only
    # passes them through a pipe): Any, so the caller unpacks them as its kind says.
    kind: str
    items: list[Any]  # the items of the task, in order
    outputs: list[Any]  # work()'s result for items[:len(outputs)]
    error: BaseException | None = None  # what stopped the task before its end


_Task = tuple[str, list[Any]]  # (kind, items)


@dataclass
class _Lane:
    process: multiprocessing.process.BaseProcess  # a fork context's Process
    conn: multiprocessing.connection.Connection  # the parent's end
    # (kind, items) sent, not answered
    tasks: deque[_Task] = field(default_factory=deque)


class WorkerPool:
    """Use as a context manager; the processes are forked on entering.

    `lanes` threads spread over at most `processes` processes. In each child setup()
    runs first (its own connections, its own temp names), then work(kind, item) for
    every item; received() there gives the bytes that process has received so far.
    """

    def __init__(
        self,
        processes: int,
        lanes: int,
        setup: Callable[[], None],
        work: Callable[[str, Any], object],  # (kind, one item of that kind)
        received: Callable[[], int],
    ):
        self.processes = max(1, min(processes, lanes))
        self.lanes = max(lanes, 1)
        self._setup = setup
        self._work = work
        self._received = received
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._lanes: list[_Lane] = []
        self._urgent: deque[_Task] = deque()
        self._queued: deque[_Task] = deque()
        # made on entering, in shared memory: the forked workers see and set them
        self._stop: c_bool | None = None
        self._bytes: ctypes.Array[c_uint64] | None = None

    @property
    def _stopped(self) -> c_bool:
        """The stop flag (set by either side)."""
        assert self._stop is not None, "WorkerPool used outside its with block"
        return self._stop

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> WorkerPool:
        ctx = multiprocessing.get_context("fork")
        self._stop = ctx.RawValue(c_bool, False)
        self._bytes = ctx.RawArray(c_uint64, self.processes)
        try:
            for index in range(self.processes):
                count = self.lanes // self.processes + (index < self.lanes % self.processes)
                pipes = [ctx.Pipe() for _ in range(count)]
                proc = ctx.Process(
                    target=self._serve,
                    daemon=True,
                    args=(index, [c for _, c in pipes], [p for p, _ in pipes]),
                )
                proc.start()
                self._procs.append(proc)
                for parent, child in pipes:
                    child.close()
                    self._lanes.append(_Lane(proc, parent))
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._kill()  # e.g. ^C: nothing more of this pull is wanted
            return
        for lane in self._lanes:
            try:
                lane.conn.send(None)
            except OSError:
                pass  # its process is gone already
        for proc in self._procs:
            proc.join(10)
        self._kill()

    def _kill(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        for proc in self._procs:
            proc.join()
        for lane in self._lanes:
            lane.conn.close()
        self._procs = []
        self._lanes = []

    # ------------------------------------------------------------ the parent's side
    def submit(self, kind: str, items: list[Any], *, urgent: bool = False) -> None:
        if items and not self._stopped.value:
            (self._urgent if urgent else self._queued).append((kind, items))

    @property
    def busy(self) -> bool:
        return bool(self._urgent or self._queued or any(ln.tasks for ln in self._lanes))

    def received(self) -> int:
        """Bytes the workers have received so far."""
        return sum(self._bytes) if self._bytes is not None else 0

    def stop(self) -> None:
        """Hand out nothing more; lanes stop after the item in hand."""
        self._stopped.value = True
        self._urgent.clear()
        self._queued.clear()

    def results(self) -> Iterator[TaskResult]:
        """Results as tasks finish, until none is queued or out; hands tasks out."""
        while self.busy:
            self._dispatch()
            waiting = [ln for ln in self._lanes if ln.tasks]
            ready = set(
                multiprocessing.connection.wait(
                    [ln.conn for ln in waiting] + list({ln.process.sentinel for ln in waiting})
                )
            )
            for lane in waiting:
                if lane.conn not in ready and lane.process.sentinel not in ready:
                    continue
                try:
                    outputs, error = lane.conn.recv()
                except (EOFError, OSError):
                    kind, items = lane.tasks.popleft()
                    lane.tasks.clear()
                    self.stop()
                    proc = lane.process
                    proc.join(1)
                    yield TaskResult(
                        kind,
                        items,
                        [],
                        SysrootError(
                            f"A fetch worker (pid {proc.pid}) died (exit status {proc.exitcode})"
                        ),
                    )
                    continue
                kind, items = lane.tasks.popleft()
                if error is not None:
                    self.stop()
                yield TaskResult(kind, items, outputs, error)

    def _dispatch(self) -> None:
        """Top up the lanes, the least loaded first, so work spreads evenly."""
        while (self._urgent or self._queued) and not self._stopped.value and self._lanes:
            lane = min(self._lanes, key=lambda ln: len(ln.tasks))
            if len(lane.tasks) >= _DEPTH:
                return
            task = (self._urgent or self._queued).popleft()
            lane.tasks.append(task)
            try:
                lane.conn.send(task)
            except OSError:
                return  # its process died: results() finds the pipe closed and says so

    # ------------------------------------------------------------ the child's side
    def _serve(
        self,
        index: int,
        conns: list[multiprocessing.connection.Connection],
        parent_ends: list[multiprocessing.connection.Connection],
    ) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about ^C
        # Close the parent's ends of every pipe, this process's too: the parent's exit
        # must show here as end of file, never leave a worker waiting forever.
        for conn in parent_ends:
            conn.close()
        for lane in self._lanes:
            lane.conn.close()
        try:
            self._setup()
            broken = None
        except BaseException as e:
            broken = _portable(e)  # reported as the failure of each lane's first task
        threads = [
            threading.Thread(target=self._serve_lane, args=(index, conn, broken))
            for conn in conns[1:]
        ]
        for t in threads:
            t.start()
        self._serve_lane(index, conns[0], broken)
        for t in threads:
            t.join()

    def _serve_lane(
        self, index: int, conn: multiprocessing.connection.Connection, broken: BaseException | None
    ) -> None:
        counters = self._bytes
        assert counters is not None  # made before the fork
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            kind, items = task
            outputs: list[object] = []
            error = broken
            for item in items:
                if self._stopped.value or error is not None:
                    break
                try:
                    outputs.append(self._work(kind, item))
                except BaseException as e:
                    error = _portable(e)
                    self._stopped.value = True  # the others too, without waiting for the parent
                counters[index] = self._received()
            try:
                conn.send((outputs, error))
            except OSError:
                return  # the parent is gone


def _portable(error: BaseException) -> BaseException:
    """The error as the parent can receive it: itself when it pickles, else (a bug)
    a RuntimeError carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        text = "".join(traceback.format_exception(error))
        return RuntimeError(f"fetch worker failed:\n{text}")
