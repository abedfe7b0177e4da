"""A remote's cookie jar, `$repo/REMOTE.cookies.txt`, in the Netscape format ostree's
curl back end reads and writes (domain, subdomains flag, path, secure flag, expiry,
name, value: tab-separated), and which cookies a request carries.

Servers behind a CDN that hands out access tokens as cookies need them on every
object request; `remote add-cookie` puts them here, and pull sends the matching ones.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import urllib.parse
from dataclasses import dataclass

from sysroot.errors import NotFoundError, UsageError
from sysroot.store.repo import Repo
from sysroot.util import fsutil

HTTPONLY_PREFIX = "#HttpOnly_"  # curl marks HttpOnly cookies so; still a cookie
LIFETIME_YEARS = 25  # how long a cookie added by hand lasts, as in ostree


@dataclass(frozen=True)
class Cookie:
    domain: str
    include_subdomains: bool
    path: str
    secure: bool
    expires: int  # seconds since the epoch; 0: a session cookie
    name: str
    value: str

    def line(self) -> str:
        flag = "TRUE" if self.include_subdomains else "FALSE"
        secure = "TRUE" if self.secure else "FALSE"
        return "\t".join(
            (self.domain, flag, self.path, secure, str(self.expires), self.name, self.value)
        )

    @classmethod
    def parse(cls, line: str) -> Cookie | None:
        """A cookie from one line of a jar; None for comments, blanks and bad lines."""
        if line.startswith(HTTPONLY_PREFIX):
            line = line[len(HTTPONLY_PREFIX) :]
        elif line.startswith("#"):
            return None
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 7 or not fields[4].isdigit():
            return None
        domain, sub, path, secure, expires, name, value = fields
        return cls(domain, sub == "TRUE", path, secure == "TRUE", int(expires), name, value)

    def key(self) -> tuple[str, str, str]:
        return (self.domain, self.path, self.name)

    def matches(self, url: str, now: float) -> bool:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        domain = self.domain.lower().lstrip(".")
        if host != domain and not (self.include_subdomains and host.endswith("." + domain)):
            return False
        path = parts.path or "/"
        if not (
            path == self.path
            or path.startswith(self.path)
            and (self.path.endswith("/") or path[len(self.path)] == "/")
        ):
            return False
        if self.secure and parts.scheme != "https":
            return False
        return self.expires == 0 or self.expires > now


def _years_later(now: float) -> int:
    start = dt.datetime.fromtimestamp(int(now), dt.UTC)
    try:
        end = start.replace(year=start.year + LIFETIME_YEARS)
    except ValueError:  # Feb 29 into a common year
        end = start.replace(year=start.year + LIFETIME_YEARS, day=28)
    return int(end.timestamp())


def jar_path(repo: Repo, remote: str) -> str:
    return os.path.join(repo.path, f"{remote}.cookies.txt")


def read_jar(path: str) -> list[Cookie]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [c for c in map(Cookie.parse, f) if c is not None]
    except FileNotFoundError:
        return []


def _write_jar(path: str, cookies: list[Cookie]) -> None:
    fsutil.atomic_write(path, "".join(c.line() + "\n" for c in cookies).encode(), mode=0o644)


def add_cookie(
    repo: Repo, remote: str, domain: str, path: str, name: str, value: str, now: float | None = None
) -> None:
    """Add (or replace: same domain, path and name) a cookie in remote's jar."""
    for word, what in ((domain, "domain"), (path, "path"), (name, "name"), (value, "value")):
        if any(c in word for c in "\t\r\n") or (what != "value" and not word):
            raise UsageError(f"Invalid cookie {what} '{word}'")
    now = time.time() if now is None else now
    cookie = Cookie(domain, domain.startswith("."), path, False, _years_later(now), name, value)
    jar = jar_path(repo, remote)
    cookies = [c for c in read_jar(jar) if c.key() != cookie.key()]
    _write_jar(jar, [*cookies, cookie])


def delete_cookie(repo: Repo, remote: str, domain: str, path: str, name: str) -> None:
    jar = jar_path(repo, remote)
    cookies = read_jar(jar)
    kept = [c for c in cookies if c.key() != (domain, path, name)]
    if len(kept) == len(cookies):
        raise NotFoundError("Cookie not found in jar")
    _write_jar(jar, kept)


def cookie_header(cookies: tuple[Cookie, ...], url: str, now: float | None = None) -> str | None:
    """The Cookie header of a GET of url, or None when no cookie goes with it."""
    now = time.time() if now is None else now
    sent = [f"{c.name}={c.value}" for c in cookies if c.matches(url, now)]
    return "; ".join(sent) or None
