"""Pull progress: one updating line on a terminal, nothing until the end otherwise.

Workers only bump counters (under a lock); a small thread redraws the line a few
times a second, so the cost does not grow with the number of objects.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable

from sysroot.util.units import format_size


class Progress:
    def __init__(self, stream=None, *, interval: float = 0.25, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = live
        self.interval = interval
        self.fetched = 0
        self.total = 0
        self.parts_done = 0  # static delta parts
        self.parts_total = 0
        # the bytes received so far
        self.bytes_source: Callable[[], int] | None = None
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._drawing = threading.Lock()  # held while the line is written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def add_total(self, n: int = 1) -> None:
        with self._lock:
            self.total += n

    def add_fetched(self, n: int = 1) -> None:
        with self._lock:
            self.fetched += n

    def add_parts(self, total: int, done: int = 0) -> None:
        with self._lock:
            self.parts_total += total
            self.parts_done += done

    def add_part_done(self) -> None:
        with self._lock:
            self.parts_done += 1

    def line(self) -> str:
        received = self.bytes_source() if self.bytes_source else 0
        elapsed = max(time.monotonic() - self.start, 1e-6)
        with self._lock:
            done, total = self.fetched, self.total
            parts_done, parts_total = self.parts_done, self.parts_total
        pct = 100 * done // total if total else 0
        if parts_total:  # a delta pull: its parts are the bulk; objects are fallbacks
            return (
                f"Receiving delta parts: {parts_done}/{parts_total} "
                f"objects: {done}/{total} {format_size(received)} "
                f"{format_size(int(received / elapsed))}/s"
            )
        return (
            f"Receiving objects: {pct}% ({done}/{total}) {format_size(received)} "
            f"{format_size(int(received / elapsed))}/s"
        )

    def __enter__(self) -> Progress:
        self.start = time.monotonic()
        if self.live:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            self.stream.write("\r\x1b[K")  # clear the line for the final message
            self.stream.flush()

    @contextlib.contextmanager
    def paused(self):
        """No drawing inside the block: a process forked there finds the output
        stream's lock free."""
        with self._drawing:
            yield

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._drawing:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
                self._drawn = True
