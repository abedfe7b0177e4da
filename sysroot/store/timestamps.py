"""Commit timestamps: ostree's rollback check (`_ostree_compare_timestamps`), shared by
`admin upgrade` and `pull --timestamp-check`, and GLib's %c, in which it words them."""

from __future__ import annotations

import datetime as dt
import os

from sysroot.errors import SysrootError
from sysroot.store.repo import Repo


def _figure_space() -> bool:
    """GLib pads a one-digit day (%e) with a figure space (U+2007) when the locale's
    charset is UTF-8, with a plain space otherwise; ostree sets the locale from the
    environment, so its message depends on it."""
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(var)
        if value:
            return "utf-8" in value.lower() or "utf8" in value.lower()
    return False


def format_glib_time(ts: int, *, local: bool = False) -> str:
    """GLib's %c in the C locale, in UTC (or the local time zone): "Mon Jan  3 03:04:06
    2022"."""
    t = dt.datetime.fromtimestamp(ts, None if local else dt.UTC)
    day = f"{t.day:2d}"
    if t.day < 10 and _figure_space():
        day = "\u2007" + day[1:]
    return f"{t:%a %b} {day} {t:%H:%M:%S %Y}"


def compare_timestamps(current_rev: str, current_ts: int, new_rev: str, new_ts: int) -> None:
    """Refuse new_rev when it is older than current_rev: a man in the middle (or a
    stale mirror) must not be able to roll a system back. Equal timestamps pass, as
    in ostree (whose comment says it meant to require the same commit, but whose code
    does not)."""
    if new_ts >= current_ts:
        return
    try:
        old_text, new_text = format_glib_time(current_ts), format_glib_time(new_ts)
    except (ValueError, OverflowError, OSError):
        raise SysrootError(
            f"Upgrade target revision '{new_rev}' timestamp ({new_ts}) or "
            f"current revision '{current_rev}' timestamp ({current_ts}) is "
            "invalid"
        ) from None
    raise SysrootError(
        f"Upgrade target revision '{new_rev}' with timestamp '{new_text}' is "
        f"chronologically older than current revision '{current_rev}' with timestamp "
        f"'{old_text}'; use --allow-downgrade to permit"
    )


def check_timestamps(repo: Repo, from_rev: str, to_rev: str) -> None:
    """compare_timestamps for two commits of repo."""
    compare_timestamps(
        from_rev, repo.load_commit(from_rev).timestamp, to_rev, repo.load_commit(to_rev).timestamp
    )
