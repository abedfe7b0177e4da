"""Test servers for pulls: Python's http.server in a thread (with request counting and
injected faults) and a private nginx. Both listen on 127.0.0.1 on a free port."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.conftest import COMMIT_ARGS, make_rich_tree

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # else each response waits for a delayed ACK

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: RepoServer = self.server.owner
        path = self.path.lstrip("/").split("?", 1)[0]
        with srv.lock:
            srv.requests.append(path)
            n = len(srv.requests)
        srv.cookies.append(self.headers.get("Cookie"))
        srv.headers.append((path, dict(self.headers)))
        if srv.serves is not None and not srv.serves(path):
            if srv.bare_404:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)
            return
        if srv.required_cookie is not None and srv.required_cookie not in (
            self.headers.get("Cookie") or ""
        ):
            self.send_error(403)
            return
        fault = srv.faults.get(path)
        if srv.die_after is not None and n > srv.die_after:
            srv.kill()
            self.close_connection = True
            return  # no answer at all: the client sees the connection drop
        if fault == "hold":  # answer only once the test releases it
            srv.held.set()
            srv.release.wait(60)
            fault = None
        if fault == "404":
            self.send_error(404)
            return
        if fault in ("corrupt", "truncate"):
            data = bytearray((Path(srv.root) / path).read_bytes())
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault == "corrupt":
                data[len(data) // 2] ^= 0xFF
                self.wfile.write(bytes(data))
            else:
                self.wfile.write(bytes(data[: len(data) // 2]))
                self.close_connection = True
            return
        super().do_GET()


class RepoServer:
    """Serves root over HTTP; .requests lists every path asked for, in order."""

    def __init__(self, root: Path, *, tls_context=None):
        self.root = str(root)
        self.requests: list[str] = []
        # path -> "404" | "corrupt" | "truncate" | "hold" (answered after .release)
        self.faults: dict[str, str] = {}
        self.held = threading.Event()  # a "hold" request has arrived
        self.release = threading.Event()
        self.die_after: int | None = None  # stop answering after this many requests
        self.required_cookie: str | None = None  # "NAME=VALUE" every request must carry
        self.cookies: list[str | None] = []  # the Cookie header of each request
        self.headers: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each
        self.serves: Callable[[str], bool] | None = None  # the paths it has (default: all)
        self.bare_404 = False  # a 404 for what it does not serve has no body (no error page)
        self.lock = threading.Lock()
        handler = lambda *a, **kw: _Handler(*a, directory=self.root, **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if tls_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._dead = False

    def __enter__(self) -> RepoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.kill()
        self._thread.join()

    def kill(self) -> None:
        """Stop listening (as a dead server would); safe to call from a handler."""
        with self.lock:
            if self._dead:
                return
            self._dead = True
        threading.Thread(target=self._shutdown).start()

    def _shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        self.release.set()
        self.held, self.release = threading.Event(), threading.Event()
        self.requests.clear()
        self.headers.clear()
        self.faults.clear()
        self.die_after = None

    def object_requests(self) -> list[str]:
        return [p for p in self.requests if p.startswith("objects/")]


@contextmanager
def repo_servers(root: Path, *serves: Callable[[str], bool] | None) -> Iterator[list[RepoServer]]:
    """One RepoServer of root per entry of serves: the paths it has (None: all)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(RepoServer(root)) for _ in serves]
        for server, has in zip(servers, serves, strict=True):
            server.serves = has
        yield servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """A private nginx serving root, started and stopped by the caller."""

    def __init__(self, root: Path, workdir: Path, *, worker_connections: int = 1024):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        temp = {k: workdir / k for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        user = "user root;" if os.geteuid() == 0 else ""  # workers must read the repo
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(f"""
{user}
daemon off;
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        location / {{ }}
    }}
}}
""")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode(errors="replace")
                    self.__exit__()
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def object_requests(self) -> int:
        log = self.workdir / "access.log"
        return sum(1 for line in log.read_text().splitlines() if "GET /objects/" in line)


def object_names(repo: Path) -> set[str]:
    return {
        str(p.relative_to(repo / "objects"))
        for p in (repo / "objects").rglob("*")
        if not p.is_dir()
    }


def object_bytes(repo: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo / "objects")): p.read_bytes()
        for p in (repo / "objects").rglob("*")
        if not p.is_dir()
    }


def refs_of(repo: Path) -> dict[str, str]:
    out = {}
    for base in ("refs/heads", "refs/remotes"):
        for p in sorted((repo / base).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(repo))] = p.read_text().strip()
    return out


def new_repo(ostree, path: Path, mode: str, url: str | None = None, name: str = "origin") -> Path:
    ostree("init", f"--repo={path}", f"--mode={mode}")
    if url is not None:
        ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", name, url)
    return path


def make_served_repo(ostree, base: Path) -> dict:
    """An archive repo made by ostree: main = C1 <- C2 (the rich tree), other = C1,
    with a summary. Returns paths and checksums."""
    tree = make_rich_tree(base / "tree")
    (tree / "usr/share/big").write_bytes(os.urandom(3 << 19))  # 1.5 MiB, incompressible
    repo = base / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    first = base / "first"
    first.mkdir()
    (first / "hello").write_text("first commit\n")
    (first / "sub").mkdir()
    (first / "sub/file").write_text("in sub\n")
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", *COMMIT_ARGS, str(first))
    c2 = ostree.out("commit", f"--repo={repo}", "-b", "main", *COMMIT_ARGS, str(tree))
    other = ostree.out("commit", f"--repo={repo}", "-b", "other", *COMMIT_ARGS, str(first))
    ostree("summary", f"--repo={repo}", "-u")
    return {"repo": repo, "c1": c1, "c2": c2, "other": other}
