"""A hostile HTTP server for pull tests: serves a repository like RepoServer, except that
chosen paths misbehave (endless bodies, lying Content-Length, stalls, redirect loops,
decompression bombs, replaced bytes).

Loopback only, and bounded in time: every misbehaving response ends after
response_secs, and the whole server stops itself after lifetime seconds even if the
test forgets it.
"""

from __future__ import annotations

import http.server
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Endless:
    """200 with no Content-Length, then bytes until the client hangs up.

    declared: a (huge) Content-Length to announce instead of none; status: the HTTP
    status (an endless error page)."""

    declared: int | None = None
    status: int = 200


@dataclass(frozen=True)
class WrongLength:
    """The file's real bytes under a Content-Length off by delta (negative: too short,
    the rest poisons the kept-alive connection; positive: the body ends early, then
    the connection closes, or stalls if stall is true)."""

    delta: int
    stall: bool = False


@dataclass(frozen=True)
class Stall:
    """The real Content-Length and the first `after` bytes, then nothing."""

    after: int = 0


@dataclass(frozen=True)
class Slow:
    """The real file in pieces of `piece` bytes, one every `interval` seconds."""

    piece: int
    interval: float


@dataclass(frozen=True)
class RedirectLoop:
    """302 to the other of two URLs, forever."""


@dataclass(frozen=True)
class Bomb:
    """A .filez: the real object's header (a small size), then a deflate stream of
    zeros that never ends (before secs, if given, or the server's response_secs)."""

    secs: float | None = None


@dataclass(frozen=True)
class Replace:
    """These bytes instead of the file's, with a correct Content-Length (None: 404)."""

    data: bytes | None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: HostileServer = self.server.owner
        path = self.path.lstrip("/").split("?", 1)[0]
        with srv.lock:
            srv.requests.append(path)
        how = srv.behaviours.get(path)
        try:
            if how is None:
                self._serve(srv.file(path))
            elif isinstance(how, Replace):
                self._serve(how.data)
            elif isinstance(how, Endless):
                self._endless(srv, how)
            elif isinstance(how, WrongLength):
                self._wrong_length(srv, srv.file(path), how)
            elif isinstance(how, Stall):
                self._stall(srv, srv.file(path), how)
            elif isinstance(how, Slow):
                self._slow(srv, srv.file(path), how)
            elif isinstance(how, RedirectLoop):
                self.send_response(302)
                other = "" if "?" in self.path else "?again"
                self.send_header("Location", f"/{path}{other}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif isinstance(how, Bomb):
                self._bomb(srv, srv.file(path), how)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up: what it should do

    def _serve(self, data: bytes | None) -> None:
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _head(self, length: int | None, status: int = 200) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = length is None

    def _endless(self, srv: HostileServer, how: Endless) -> None:
        self._head(how.declared, how.status)
        self.close_connection = True
        block = b"x" * _CHUNK
        end = time.monotonic() + srv.response_secs
        while time.monotonic() < end and not srv.stop.is_set():
            self.wfile.write(block)

    def _wrong_length(self, srv: HostileServer, data: bytes | None, how: WrongLength) -> None:
        assert data is not None
        self._head(max(0, len(data) + how.delta))
        self.wfile.write(data)
        self.wfile.flush()
        if how.delta > 0:
            if how.stall:
                srv.stop.wait(srv.response_secs)
            self.close_connection = True

    def _stall(self, srv: HostileServer, data: bytes | None, how: Stall) -> None:
        assert data is not None
        self._head(len(data))
        self.wfile.write(data[: how.after])
        self.wfile.flush()
        srv.stop.wait(srv.response_secs)
        self.close_connection = True

    def _slow(self, srv: HostileServer, data: bytes | None, how: Slow) -> None:
        assert data is not None
        self._head(len(data))
        for start in range(0, len(data), how.piece):
            if srv.stop.wait(how.interval):
                break
            self.wfile.write(data[start : start + how.piece])
            self.wfile.flush()

    def _bomb(self, srv: HostileServer, data: bytes | None, how: Bomb) -> None:
        assert data is not None
        header = data[: 8 + int.from_bytes(data[:4], "big")]
        self._head(None)
        self.wfile.write(header)
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        end = time.monotonic() + (how.secs or srv.response_secs)
        while time.monotonic() < end and not srv.stop.is_set():
            self.wfile.write(z.compress(zeros) + z.flush(zlib.Z_SYNC_FLUSH))


class HostileServer:
    """Serves root on 127.0.0.1; .behaviours maps a path to how it misbehaves,
    .requests lists every path asked for."""

    def __init__(self, root: Path, *, response_secs: float = 20, lifetime: float = 300):
        self.root = Path(root)
        self.behaviours: dict[str, object] = {}
        self.requests: list[str] = []
        self.response_secs = response_secs
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._closed = False

    def file(self, path: str) -> bytes | None:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root.resolve()) or not full.is_file():
            return None
        return full.read_bytes()

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._thread.join(10)

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
        self._timer.cancel()
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        """Honest again."""
        self.behaviours.clear()
        self.requests.clear()
