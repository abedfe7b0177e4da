"""The pull's fetch workers (sysroot.pull.workers) on their own: forked processes that
run a function over the items of each task and send back outputs and errors."""

from __future__ import annotations

import os
import time

import pytest

from sysroot.errors import CorruptObjectError, SysrootError
from sysroot.pull.workers import WorkerPool

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def _work(kind: str, item):
    """What the tests' workers do: the item's action in the child process."""
    if item == "corrupt":
        raise CorruptObjectError("ab" * 32, "file", "content hashes to cd")
    if item == "bug":
        raise _Unpicklable("odd")
    if item == "exit":
        os._exit(3)
    if item == "slow":
        time.sleep(0.2)
    return (kind, item, os.getpid())


def _pool(lanes: int, setup=lambda: None, processes: int = 8) -> WorkerPool:
    return WorkerPool(processes, lanes, setup, _work, lambda: 7)


@pytest.mark.parametrize("processes,lanes", [(3, 3), (2, 5), (1, 4)])
def test_every_item_done_once_in_other_processes(processes, lanes):
    with _pool(lanes, processes=processes) as pool:
        assert len(pool._procs) == processes and len(pool._lanes) == lanes
        for i in range(0, 40, 4):
            pool.submit("file", list(range(i, i + 4)))
        results = list(pool.results())
        assert pool.received() == 7 * processes  # each process's last count
    assert sorted(i for r in results for i in r.items) == list(range(40))
    for r in results:
        assert r.error is None
        assert [(k, i) for k, i, _ in r.outputs] == [(r.kind, i) for i in r.items]
    pids = {pid for r in results for _, _, pid in r.outputs}
    assert os.getpid() not in pids and 1 <= len(pids) <= processes


def test_urgent_tasks_go_first():
    with _pool(1) as pool:
        pool.submit("file", [1])
        pool.submit("file", [2])
        pool.submit("meta", [3], urgent=True)
        assert [r.items for r in pool.results()] == [[3], [1], [2]]


def test_error_keeps_the_outputs_before_it_and_its_details():
    with _pool(1) as pool:
        pool.submit("file", ["a", "b", "corrupt", "c"])
        pool.submit("file", ["d"])
        results = list(pool.results())
    first = results[0]
    assert [o[1] for o in first.outputs] == ["a", "b"]
    assert isinstance(first.error, CorruptObjectError)
    assert first.error.problem == "content hashes to cd"
    assert str(first.error) == f"Corrupted file object {'ab' * 32}: content hashes to cd"
    # nothing else is done: the task already in the worker's pipe comes back undone, or
    # it was never handed out (the worker can stop the pool between the parent's two
    # sends: it sets the shared flag itself, without waiting for the parent)
    assert [(r.items, r.outputs, r.error) for r in results[1:]] in ([(["d"], [], None)], [])


def test_a_failure_stops_the_other_workers_after_their_item_in_hand():
    start = time.monotonic()
    with _pool(2) as pool:
        pool.submit("file", ["slow"] * 10)
        pool.submit("file", ["corrupt"])
        pool.submit("file", ["never"])
        results = list(pool.results())
    slow = next(r for r in results if r.items[0] == "slow")
    assert len(slow.outputs) < 10
    assert time.monotonic() - start < 1.5
    assert all(r.outputs == [] for r in results if r.items == ["never"])


def test_a_bug_in_a_worker_arrives_with_its_traceback():
    with _pool(1) as pool:
        pool.submit("file", ["bug"])
        (result,) = pool.results()
    assert isinstance(result.error, RuntimeError)
    assert "_Unpicklable: odd" in str(result.error) and "Traceback" in str(result.error)


def test_a_worker_that_dies_is_reported():
    with _pool(1) as pool:
        pool.submit("file", ["ok", "exit"])
        (result,) = pool.results()
    assert isinstance(result.error, SysrootError)
    assert "fetch worker" in str(result.error) and "exit status 3" in str(result.error)


def test_a_failed_setup_fails_the_first_task():
    def setup():
        raise SysrootError("Unsupported URL x")

    with _pool(1, setup) as pool:
        pool.submit("file", [1])
        (result,) = pool.results()
    assert str(result.error) == "Unsupported URL x" and result.outputs == []


def test_workers_end_with_the_pool():
    with _pool(4, processes=2) as pool:
        procs = list(pool._procs)
        pool.submit("file", [1])
        list(pool.results())
    assert len(procs) == 2 and all(p.exitcode == 0 for p in procs)
    with pytest.raises(KeyboardInterrupt), _pool(2) as pool:
        procs = list(pool._procs)
        raise KeyboardInterrupt
    assert all(not p.is_alive() for p in procs)
