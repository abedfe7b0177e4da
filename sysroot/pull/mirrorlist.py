"""`mirrorlist=URL` as a remote's url or contenturl, as ostree 2022.7 reads it.

The list is a text file, one URL a line; empty lines and lines starting with `#` are
skipped, and so are entries that are not http:// or https:// (ostree does not take
local mirrors from a list) or do not parse. The mirrors are probed in order by
fetching their `config` until one serves it; that one and every entry after it (not
probed) are the pull's mirrors. Each file is asked of them in that order: a mirror that
answers with an error (a 404 too) passes it on to the next, and the last one's failure
is the file's, as in ostree 2022.7. So a dead mirror listed last fails any file the ones
before it lack (ostree's too: `summary.sig`, which no mirror need have).

Differences from ostree 2022.7, each where ostree fails a pull that could succeed:
* a mirror that cannot be reached for a file passes it on too (ostree stops there);
* a mirror's error page is never taken for the file (ostree's curl fetcher keeps the
  body of a 404 that has one in front of the next mirror's answer, and the object then
  fails its checksum).
Every mirror but the last gets one attempt per file, the last the remote's retries.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TypeVar

from sysroot.errors import NotFoundError, SysrootError
from sysroot.pull.fetch import Fetcher, FetchError, FetchOptions

_T = TypeVar("_T")

PREFIX = "mirrorlist="

log = logging.getLogger(__name__)


def is_mirrorlist(url: str) -> bool:
    return url.startswith(PREFIX)


def _fetch_list(list_url: str, options: FetchOptions) -> str:
    # the Fetcher serves paths below a base: the list's directory, then its name
    parts = urllib.parse.urlsplit(list_url)
    directory, _, name = parts.path.rpartition("/")
    base = urllib.parse.urlunsplit(parts._replace(path=directory + "/", query="", fragment=""))
    if parts.query:
        name += "?" + parts.query
    try:
        with Fetcher(base, options) as fetcher:
            data = fetcher.get(name)
    except SysrootError as e:
        raise SysrootError(f"While fetching mirrorlist '{list_url}': {e}") from None
    return data.decode("utf-8", "replace")


def _candidates(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            scheme = urllib.parse.urlsplit(entry).scheme
        except ValueError:
            log.debug("Can't parse mirrorlist line '%s'", entry)
            continue
        if scheme not in ("http", "https"):
            log.debug("Ignoring non-http/s mirrorlist entry '%s'", entry)
            continue
        out.append(entry)
    return out


def choose_mirrors(url: str, options: FetchOptions) -> list[str]:
    """The mirrors a `mirrorlist=LIST-URL` stands for: the first of the list that serves
    its `config`, then the entries after it, unprobed (as ostree). SysrootError when the
    list cannot be fetched or no mirror works."""
    list_url = url[len(PREFIX) :]
    candidates = _candidates(_fetch_list(list_url, options))
    for i, mirror in enumerate(candidates):
        try:
            with Fetcher(mirror, options) as fetcher:
                fetcher.get("config")
        except SysrootError as e:
            log.debug("Failed to fetch config from mirror '%s': %s", mirror, e)
            continue
        return candidates[i:]
    raise SysrootError(f"No valid mirrors were found in mirrorlist '{list_url}'")


def open_fetcher(url: str, options: FetchOptions) -> Fetcher:
    """A Fetcher for a remote's url or contenturl: for a `mirrorlist=`, one that asks
    the list's mirrors in turn for each file."""
    if not is_mirrorlist(url):
        return Fetcher(url, options)
    mirrors = choose_mirrors(url, options)
    return Fetcher(mirrors[0], options) if len(mirrors) == 1 else MirroredFetcher(mirrors, options)


class _Mirror(Fetcher):
    """A mirror after the first: its bytes count in its MirroredFetcher's total."""

    def __init__(self, url: str, options: FetchOptions, count: Callable[[int], None]):
        super().__init__(url, options)
        self._add = count

    def _count(self, n: int) -> None:
        self._add(n)


class MirroredFetcher(Fetcher):
    """The first mirror (itself, its base_url what messages show), then the others,
    for each file until one serves it. Every mirror but the last gets one attempt."""

    def __init__(self, mirrors: list[str], options: FetchOptions):
        once = dataclasses.replace(options, retries=0)
        super().__init__(mirrors[0], once)
        self.mirrors = list(mirrors)
        self.given_options = options
        self._others = [
            _Mirror(m, once if i < len(mirrors) - 2 else options, self._count)
            for i, m in enumerate(mirrors[1:])
        ]

    def close(self) -> None:
        super().close()
        for other in self._others:
            other.close()

    def reopen(self) -> Fetcher:
        return MirroredFetcher(self.mirrors, self.given_options)

    def retrying(
        self, path: str, use: Callable[[Iterator[bytes]], _T], limit: int | None = None
    ) -> _T:
        try:
            return super().retrying(path, use, limit)
        except (FetchError, NotFoundError) as e:
            error: SysrootError = e
        for other in self._others:
            log.debug("%s; trying mirror %s", error, other.base_url)
            try:
                return other.retrying(path, use, limit)
            except (FetchError, NotFoundError) as e:
                error = e
        raise error
