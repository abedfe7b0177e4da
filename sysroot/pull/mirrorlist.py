"""`mirrorlist=URL` as a remote's url or contenturl, as ostree 2022.7 reads it.

The list is a text file, one URL a line; empty lines and lines starting with `#` are
skipped, and so are entries that are not http:// or https:// (ostree does not take
local mirrors from a list) or do not parse. The mirrors are probed in order by
fetching their `config`, and the pull uses the first that serves it.

Unlike ostree, which goes on to the next mirror of the list for any single file the
chosen one fails to serve, a pull here stays on the chosen mirror: a mirror that fails
midway fails the pull (the next pull probes again and skips it).
"""

from __future__ import annotations

import logging
import urllib.parse

from sysroot.errors import SysrootError
from sysroot.pull.fetch import Fetcher, FetchOptions

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


def choose_mirror(url: str, options: FetchOptions) -> str:
    """The mirror a `mirrorlist=LIST-URL` stands for: the first of the list that serves
    its `config`. SysrootError when the list cannot be fetched or no mirror works."""
    list_url = url[len(PREFIX) :]
    for mirror in _candidates(_fetch_list(list_url, options)):
        try:
            with Fetcher(mirror, options) as fetcher:
                fetcher.get("config")
        except SysrootError as e:
            log.debug("Failed to fetch config from mirror '%s': %s", mirror, e)
            continue
        return mirror
    raise SysrootError(f"No valid mirrors were found in mirrorlist '{list_url}'")
