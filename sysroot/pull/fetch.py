"""Fetching files of a remote repository over http://, https:// or file://.

One Fetcher per process of a pull: a urllib3 pool with a bounded number of connections
(shared by the threads of that process), retries on connection errors and 5xx answers,
and timeouts. A 404 is reported as NotFoundError so the caller decides whether it
matters (a missing `.commitmeta` is normal, a missing dirtree is not). A body shorter
than its Content-Length is an error, never a short object. Every failure is one line
naming the URL.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import urllib3
from urllib3.exceptions import (
    HTTPError,
    IncompleteRead,
    InsecureRequestWarning,
    MaxRetryError,
    ProtocolError,
)

from sysroot.errors import NotFoundError, SysrootError

_CHUNK = 1 << 16


class FetchError(SysrootError):
    """A remote file that could not be fetched (network, server or local I/O)."""


@dataclass
class FetchOptions:
    connections: int = 8
    timeout: float = 30.0  # seconds, for connecting and for each read
    retries: int = 5  # per request, on connection errors and 5xx answers
    tls_permissive: bool = False  # accept any server certificate (ostree tls-permissive)
    tls_ca_path: str | None = None
    tls_client_cert_path: str | None = None
    tls_client_key_path: str | None = None
    proxy: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    """The innermost reason of a urllib3 error, on one line."""
    if isinstance(exc, ProtocolError) and isinstance(exc.__context__, IncompleteRead):
        exc = exc.__context__
    if isinstance(exc, IncompleteRead):
        return f"truncated response ({exc.partial} bytes read, {exc.expected} more expected)"
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    while exc.__context__ is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    for arg in getattr(exc, "args", ()):  # ProtocolError("Connection aborted.", OSError)
        if isinstance(arg, OSError) and arg.strerror:
            return arg.strerror
    seen = exc
    while isinstance(seen, BaseException):
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or type(exc).__name__
    # urllib3 wraps its reasons as "<object at 0x...>: message"
    text = text.split(">: ", 1)[-1]
    return " ".join(text.split())


class Fetcher:
    """GET files relative to base_url, from any number of threads."""

    def __init__(self, base_url: str, options: FetchOptions | None = None):
        self.options = options or FetchOptions()
        self.base_url = base_url.rstrip("/") + "/"
        parsed = urllib.parse.urlsplit(self.base_url)
        self.scheme = parsed.scheme
        if self.scheme not in ("http", "https", "file"):
            raise SysrootError(f"Unsupported URL {base_url}: only http://, https:// and "
                               "file:// are supported")
        self.bytes_transferred = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._pool = None
        if self.scheme == "file":
            self._root = urllib.parse.unquote(parsed.path)
            return
        opts = self.options
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # its retry warnings would break the one-line error output; --verbose shows them
            logging.getLogger("urllib3").setLevel(logging.ERROR)
        if opts.connections < 1:
            raise SysrootError(f"Invalid connection count {opts.connections}")
        self._retry = urllib3.Retry(
            total=opts.retries, connect=opts.retries, read=opts.retries,
            status=opts.retries, other=0, redirect=5, backoff_factor=0.1,
            status_forcelist=(500, 502, 503, 504), allowed_methods=("GET",),
            raise_on_status=False, raise_on_redirect=True)
        kw = dict(num_pools=4, maxsize=opts.connections, block=True,
                  timeout=urllib3.Timeout(connect=opts.timeout, read=opts.timeout),
                  retries=self._retry, headers=dict(opts.headers))
        if self.scheme == "https":
            if opts.tls_permissive:
                kw["cert_reqs"] = "CERT_NONE"
                urllib3.disable_warnings(InsecureRequestWarning)
            else:
                kw["cert_reqs"] = "CERT_REQUIRED"
                if opts.tls_ca_path:
                    kw["ca_certs"] = opts.tls_ca_path
            if opts.tls_client_cert_path:
                kw["cert_file"] = opts.tls_client_cert_path
                kw["key_file"] = opts.tls_client_key_path
        self._pool = (urllib3.ProxyManager(opts.proxy, **kw) if opts.proxy
                      else urllib3.PoolManager(**kw))
        # Every object lives on the base URL's host: asking that host's pool directly
        # skips the manager's per-request URL parsing and pool lookup, which cost as
        # much CPU as the rest of a small object's fetch. Redirects (maybe to another
        # host) and proxies take the manager's general path.
        self._host_pool = None if opts.proxy else self._pool.connection_from_url(self.base_url)
        self._base_path = parsed.path.rstrip("/") + "/"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_transferred += n

    # ------------------------------------------------------------------ one file
    def stream(self, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks; NotFoundError if the server has no such file.

        The request is made on the first next(), so a generator that is never started
        costs nothing.
        """
        url = self.url(path)
        with self._lock:
            self.requests += 1
        if self.scheme == "file":
            yield from self._stream_file(url, path)
            return
        try:
            resp = self._get(url, path)
        except HTTPError as e:
            raise FetchError(f"Fetching {url} failed: {_describe(e)}") from None
        complete = False
        try:
            if resp.status != 200:
                resp.drain_conn()  # a small error page: keep the connection usable
                complete = True
                if resp.status == 404:
                    raise NotFoundError(f"Fetching {url} failed: server returned HTTP 404")
                raise FetchError(f"Fetching {url} failed: server returned HTTP {resp.status}")
            # urllib3 enforces Content-Length: a short body raises, never ends early
            for chunk in resp.stream(_CHUNK):
                self._count(len(chunk))
                yield chunk
            complete = True
        except HTTPError as e:
            raise FetchError(f"Fetching {url} failed: {_describe(e)}") from None
        finally:
            if not complete:
                resp.close()  # unread data would corrupt the next response on it
            resp.release_conn()

    def _get(self, url: str, path: str):
        # enforce_content_length: 2.x defaults to it, Debian 12's 1.26 does not
        kw = dict(preload_content=False, decode_content=False, enforce_content_length=True)
        if self._host_pool is not None:
            resp = self._host_pool.urlopen("GET", self._base_path + path.lstrip("/"),
                                           redirect=False, **kw)
            if not resp.get_redirect_location():
                return resp
            resp.drain_conn()
            resp.release_conn()
        return self._pool.request("GET", url, **kw)

    def _stream_file(self, url: str, path: str) -> Iterator[bytes]:
        full = os.path.join(self._root, path.lstrip("/"))
        try:
            f = open(full, "rb")  # noqa: SIM115 (closed below, across yields)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"Fetching {url} failed: no such file") from None
        except OSError as e:
            raise FetchError(f"Fetching {url} failed: {e.strerror}") from None
        with f:
            try:
                while chunk := f.read(_CHUNK):
                    self._count(len(chunk))
                    yield chunk
            except OSError as e:
                raise FetchError(f"Fetching {url} failed: {e.strerror}") from None

    def get(self, path: str) -> bytes:
        """The whole file; NotFoundError (a SysrootError) if it does not exist."""
        return b"".join(self.stream(path))

    def get_optional(self, path: str) -> bytes | None:
        """The whole file, or None if the server does not have it."""
        try:
            return self.get(path)
        except NotFoundError:
            return None
