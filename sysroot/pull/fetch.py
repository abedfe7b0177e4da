"""Fetching files of a remote repository over http://, https:// or file://.

One Fetcher per process of a pull: a urllib3 pool with a bounded number of connections
(shared by the threads of that process), retries on connection errors, 5xx answers and
bodies cut off midway, and timeouts. A 404 is reported as NotFoundError so the caller
decides whether it matters (a missing `.commitmeta` is normal, a missing dirtree is
not). A body shorter than its Content-Length is an error, never a short object. Every
failure is one line naming the URL.

A hostile or broken server must not hold a pull forever or fill its memory:
* whole files read into memory (get: config, summary, refs, metadata objects) stop at
  max_metadata_size, ostree's 10 MiB, whatever Content-Length says or does not say;
* a file's fetch fails once stall_timeout seconds pass with no byte of it arriving,
  counted over all its retries (each byte starts the count again, so a slow server
  that keeps sending is never cut off). ostree 2022.7 sets no such bound (a server
  that stalls holds it for as long as it keeps the connection open); later ostree
  stops a request after 30 s under 1 byte/s and retries it. The default here, 60 s,
  is two such requests.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypedDict, TypeVar

import urllib3
from urllib3.exceptions import (
    HTTPError,
    IncompleteRead,
    InsecureRequestWarning,
    MaxRetryError,
    ProtocolError,
    ResponseError,
)

from sysroot.errors import NotFoundError, SysrootError
from sysroot.store.cookies import Cookie, cookie_header

_T = TypeVar("_T")
_CHUNK = 1 << 16
MAX_METADATA_SIZE = 10 << 20  # ostree's OSTREE_MAX_METADATA_SIZE
STALL_TIMEOUT = 60.0


class FetchError(SysrootError):
    """A remote file that could not be fetched (network, server or local I/O)."""


@dataclass
class FetchOptions:
    connections: int = 8
    timeout: float = 30.0  # seconds, for connecting and for each read
    retries: int = 5  # per file, on connection errors, 5xx answers and cut-off bodies
    # seconds a file's fetch may go without a byte arriving, over all its retries
    stall_timeout: float = STALL_TIMEOUT
    max_metadata_size: int = MAX_METADATA_SIZE  # bytes; the bound of get()
    tls_permissive: bool = False  # accept any server certificate (ostree tls-permissive)
    tls_ca_path: str | None = None
    tls_client_cert_path: str | None = None
    tls_client_key_path: str | None = None
    proxy: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: tuple[Cookie, ...] = ()  # the remote's jar: each GET sends the matching ones


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
    seen: BaseException | None = exc
    while isinstance(seen, BaseException):
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or type(exc).__name__
    # urllib3 wraps its reasons as "<object at 0x...>: message"
    text = text.split(">: ", 1)[-1]
    return " ".join(text.split())


class _Budget:
    """The retries and the stall deadline of one file's fetch, over all its attempts."""

    def __init__(self, url: str, retries: int, stall: float):
        self.url = url
        self.retries = retries
        self.stall = stall
        self.attempt = 0
        self.deadline = time.monotonic() + stall

    def progress(self) -> None:
        self.deadline = time.monotonic() + self.stall

    def timeout(self, per_read: float) -> float:
        """The timeout of the next connect or read: never past the deadline."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.stalled()
        return min(per_read, left)

    def stalled(self) -> FetchError:
        return FetchError(
            f"Fetching {self.url} failed: no data received in {self.stall:g} s (stall-timeout-secs)"
        )

    def again(self, error: FetchError) -> None:
        """Wait before the next attempt, or raise: no retries or no time left."""
        if self.attempt >= self.retries:
            raise error
        pause = min(0.1 * 2**self.attempt, 2.0)
        if time.monotonic() + pause >= self.deadline:
            raise self.stalled() if self.deadline <= time.monotonic() else error
        self.attempt += 1
        time.sleep(pause)


class _PoolOptions(TypedDict, total=False):
    """The keywords of urllib3's PoolManager (and ProxyManager) that the Fetcher sets;
    all but num_pools and headers go to each connection pool."""

    num_pools: int
    maxsize: int
    block: bool
    timeout: urllib3.Timeout
    retries: urllib3.Retry
    headers: dict[str, str]
    cert_reqs: str
    ca_certs: str
    cert_file: str
    key_file: str | None


class _GetOptions(TypedDict, total=False):
    """The keywords of one GET (urlopen(), or a PoolManager's request())."""

    preload_content: bool
    decode_content: bool
    enforce_content_length: bool
    timeout: urllib3.Timeout
    headers: dict[str, str]


class Fetcher:
    """GET files relative to base_url, from any number of threads."""

    def __init__(self, base_url: str, options: FetchOptions | None = None):
        self.options = options or FetchOptions()
        self._given_url = base_url  # with its credentials, for reopen()
        try:
            parsed = urllib.parse.urlsplit(base_url.rstrip("/") + "/")
            parsed.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError as e:
            raise SysrootError(f"Invalid URL {base_url}: {e}") from None
        self.scheme = parsed.scheme
        if self.scheme not in ("http", "https", "file"):
            raise SysrootError(
                f"Unsupported URL {base_url}: only http://, https:// and file:// are supported"
            )
        # Credentials in the URL (http://USER:PASSWORD@HOST/...) are sent as HTTP basic
        # authentication, as ostree's curl does, to that URL's server only; base_url,
        # which error messages show, is the URL without them.
        self._headers = dict(self.options.headers)
        if "@" in parsed.netloc and self.scheme != "file":
            self._headers["Authorization"] = _basic_auth(parsed)
            parsed = parsed._replace(netloc=parsed.netloc.rpartition("@")[2])
        self.base_url = urllib.parse.urlunsplit(parsed)
        self.bytes_transferred = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None  # a ProxyManager with a proxy
        if self.scheme == "file":
            self._root = urllib.parse.unquote(parsed.path)
            return
        opts = self.options
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # its retry warnings would break the one-line error output; --verbose shows them
            logging.getLogger("urllib3").setLevel(logging.ERROR)
        if opts.connections < 1:
            raise SysrootError(f"Invalid connection count {opts.connections}")
        # Only redirects are urllib3's: the retries are stream()'s, which knows the
        # stall deadline (urllib3 would give each retry the full timeout again).
        self._retry = urllib3.Retry(
            total=None,
            connect=0,
            read=0,
            status=0,
            other=0,
            redirect=5,
            allowed_methods=("GET",),
            raise_on_status=False,
            raise_on_redirect=True,
            # a redirect to another host never carries the remote's cookies there
            remove_headers_on_redirect=("Authorization", "Cookie"),
        )
        kw: _PoolOptions = {
            "num_pools": 4,
            "maxsize": opts.connections,
            "block": True,
            "timeout": urllib3.Timeout(connect=opts.timeout, read=opts.timeout),
            "retries": self._retry,
            "headers": dict(self._headers),
        }
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
        pool = self._pool = (
            urllib3.ProxyManager(opts.proxy, **kw) if opts.proxy else urllib3.PoolManager(**kw)
        )
        # Every object lives on the base URL's host: asking that host's pool directly
        # skips the manager's per-request URL parsing and pool lookup, which cost as
        # much CPU as the rest of a small object's fetch. Redirects (maybe to another
        # host) and proxies take the manager's general path.
        self._host_pool = None if opts.proxy else pool.connection_from_url(self.base_url)
        self._base_path = parsed.path.rstrip("/") + "/"

    def reopen(self) -> Fetcher:
        """A fetcher like this one with connections of its own (for a forked worker)."""
        return Fetcher(self._given_url, self.options)

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
    def _budget(self, path: str) -> _Budget:
        return _Budget(self.url(path), self.options.retries, self.options.stall_timeout)

    def stream(
        self, path: str, limit: int | None = None, budget: _Budget | None = None
    ) -> Iterator[bytes]:
        """The file's bytes in chunks; NotFoundError if the server has no such file.

        More than limit bytes (if given) is an error. Failures before the first chunk
        are retried here; a body cut off later is the caller's to retry (retrying()).
        The request is made on the first next(), so a generator that is never started
        costs nothing.
        """
        url = self.url(path)
        budget = budget or self._budget(path)
        with self._lock:
            self.requests += 1
        if self.scheme == "file":
            yield from self._bounded(self._stream_file(url, path), url, limit, budget)
            return
        while True:
            resp = None
            sent = False
            try:
                resp = self._response(url, path, budget, limit)
                for chunk in self._bounded(resp.stream(_CHUNK), url, limit, budget):
                    sent = True
                    yield chunk
                return
            except HTTPError as e:
                if isinstance(e, MaxRetryError) and isinstance(e.reason, ResponseError):
                    # too many redirects: a loop, which retrying cannot help
                    raise FetchError(f"Fetching {url} failed: {_describe(e)}") from None
                error = _Retriable(f"Fetching {url} failed: {_describe(e)}")
                if sent:
                    raise error from None
                budget.again(error)
            except _Retriable as e:
                if sent:
                    raise
                budget.again(e)
            finally:
                if resp is not None:
                    if not resp.isclosed() and resp.length_remaining != 0:
                        resp.close()  # unread data would corrupt the next response on it
                    resp.release_conn()

    def _response(self, url: str, path: str, budget: _Budget, limit: int | None):
        """A 200 response whose body is still to be read, or an error."""
        timeout = budget.timeout(self.options.timeout)
        resp = self._get(url, path, urllib3.Timeout(connect=timeout, read=timeout))
        if resp.status != 200:
            _discard(resp)
            if resp.status in (500, 502, 503, 504):
                raise _Retriable(f"Fetching {url} failed: server returned HTTP {resp.status}")
            if resp.status == 404:
                raise NotFoundError(f"Fetching {url} failed: server returned HTTP 404")
            raise FetchError(f"Fetching {url} failed: server returned HTTP {resp.status}")
        declared = resp.headers.get("Content-Length")
        if limit is not None and declared and declared.strip().isdigit() and int(declared) > limit:
            _discard(resp)
            raise _too_large(url, limit)  # refused before reading any of it
        return resp

    def _bounded(
        self, chunks: Iterator[bytes], url: str, limit: int | None, budget: _Budget
    ) -> Iterator[bytes]:
        total = 0
        for chunk in chunks:
            budget.progress()
            self._count(len(chunk))
            total += len(chunk)
            if limit is not None and total > limit:
                raise _too_large(url, limit)
            yield chunk

    def _get(self, url: str, path: str, timeout: urllib3.Timeout) -> urllib3.BaseHTTPResponse:
        # enforce_content_length: 2.x defaults to it, Debian 12's 1.26 does not
        kw: _GetOptions = {
            "preload_content": False,
            "decode_content": False,
            "enforce_content_length": True,
            "timeout": timeout,
        }
        # On every request: the host's connection pool knows no headers of its own (the
        # manager's reach only what goes through the manager), and a copy, as urllib3
        # drops Authorization and Cookie from it on a redirect to another host.
        kw["headers"] = dict(self._headers)
        cookie = cookie_header(self.options.cookies, url) if self.options.cookies else None
        if cookie is not None:
            kw["headers"]["Cookie"] = cookie
        if self._host_pool is not None:
            resp = self._host_pool.urlopen(
                "GET", self._base_path + path.lstrip("/"), redirect=False, **kw
            )
            if not resp.get_redirect_location():
                return resp
            _discard(resp)
        assert self._pool is not None  # made for every scheme but file://, which never GETs
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
                    yield chunk
            except OSError as e:
                raise FetchError(f"Fetching {url} failed: {e.strerror}") from None

    def retrying(
        self, path: str, use: Callable[[Iterator[bytes]], _T], limit: int | None = None
    ) -> _T:
        """use(chunks of the file), again on a fresh stream when the body is cut off
        midway, while the file's retries and stall deadline last."""
        budget = self._budget(path)
        while True:
            try:
                return use(self.stream(path, limit, budget))
            except _Retriable as e:
                budget.again(e)

    def get(self, path: str, limit: int | None = None) -> bytes:
        """The whole file, at most limit (default: max_metadata_size) bytes;
        NotFoundError (a SysrootError) if it does not exist."""
        bound = self.options.max_metadata_size if limit is None else limit
        return self.retrying(path, b"".join, bound)

    def get_optional(self, path: str, limit: int | None = None) -> bytes | None:
        """The whole file, or None if the server does not have it."""
        try:
            return self.get(path, limit)
        except NotFoundError:
            return None


def _basic_auth(url: urllib.parse.SplitResult) -> str:
    """The Authorization header of a URL's USER[:PASSWORD]@, each part percent-decoded
    as RFC 3986 has it (ostree 2022.7 sends them still encoded: a known bug there)."""
    user, _, password = url.netloc.rpartition("@")[0].partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _discard(resp) -> None:
    """Give a response's connection back: read to the end if what is left is a small
    error page (the connection stays usable), else closed (it may never end)."""
    left = resp.length_remaining
    if left is not None and left <= _CHUNK:
        resp.drain_conn()
    else:
        resp.close()
    resp.release_conn()


class _Retriable(FetchError):
    """A failure the server may not repeat: a dropped connection, a timeout, a 5xx."""


def _too_large(url: str, limit: int) -> FetchError:
    # ostree: "URI %s exceeded maximum size of %lu bytes"
    return FetchError(f"Fetching {url} failed: exceeded maximum size of {limit} bytes")
