"""Free-form dates (commit --timestamp, prune --keep-younger-than) against the oracle:
ostree's own parse of each string, in UTC and in a zone with summer time."""

from __future__ import annotations

import os
import re
import time

import pytest

from sysroot.errors import UsageError
from sysroot.util.datetimes import parse_date

ABSOLUTE = [
    "October 25 1985",
    "25 October 1985",
    "Oct 25 1985 10:00",
    "Oct 25, 1985",
    "Sept 1 2001",
    "Mon Oct 25 1985",
    "Fri, 25 Oct 1985 10:00:00 +0200",
    "1985-10-25",
    "1985-10-25 10:00:00",
    "1985-10-25 10:00:00.5",
    "1985-10-25T10:00:00Z",
    "1985-10-25T10:00:00+02:00",
    "1985-10-25 10:00 +0100",
    "1985-10-25 10:00 -0530",
    "1985-10-25 UTC",
    "1985-10-25 10:00 UTC",
    "1985-10-25 3pm",
    "1985-10-25 12:30 pm",
    "1985-07-01 12:00",  # summer time in Berlin
    "10/25/1985",
    "25 Oct 85",
    "2024-02-29",
    "@499996800",
]
RELATIVE = [
    "now",
    "today",
    "yesterday",
    "tomorrow 10:00",
    "2 days ago",
    "+3 hours",
    "last week",
    "1 month ago",
    "Friday",
    "Oct 25",
    "10:30",
    "12am",
]
REFUSED = ["garbage", "1985-13-01", "1985-02-30", "2023-02-29", "2001-09-01 25:00", "42"]


def _ostree_timestamp(ostree, repo, tree, text: str, tz: str) -> int | None:
    proc = ostree(
        f"--repo={repo}",
        "commit",
        "--orphan",
        "-s",
        "s",
        f"--timestamp={text}",
        tree,
        check=False,
        env={"TZ": tz},
    )
    if proc.returncode != 0:
        return None
    raw = ostree.out(f"--repo={repo}", "show", "--raw", proc.stdout.decode().strip())
    m = re.search(r"uint64 (\d+)", raw)
    assert m, raw
    return int(m.group(1))


@pytest.fixture
def local_zone():
    saved = os.environ.get("TZ")

    def use(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield use
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture(scope="module")
def oracle_repo(tmp_path_factory, ostree):
    base = tmp_path_factory.mktemp("dates")
    (base / "tree").mkdir()
    (base / "tree/f").write_text("x")
    ostree("init", f"--repo={base / 'repo'}", "--mode=archive")
    return base / "repo", base / "tree"


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_dates_as_ostree_parses_them(ostree, oracle_repo, local_zone, tz):
    repo, tree = oracle_repo
    local_zone(tz)
    for text in ABSOLUTE:
        assert parse_date(text) == _ostree_timestamp(ostree, repo, tree, text, tz), text
    for text in RELATIVE:  # both against the clock: a second or two apart at most
        before = time.time()
        theirs = _ostree_timestamp(ostree, repo, tree, text, tz)
        ours = parse_date(text, now=before)
        assert theirs is not None and abs(theirs - ours) <= 2, (text, theirs, ours)
    for text in REFUSED:
        assert _ostree_timestamp(ostree, repo, tree, text, tz) is None, text
        with pytest.raises(UsageError, match=f"Could not parse '{re.escape(text)}'"):
            parse_date(text)


@pytest.mark.unit
def test_calendar_arithmetic_is_mktimes(local_zone):
    local_zone("UTC")
    jan31 = parse_date("2023-01-31 12:00")
    # one month after Jan 31 is "Feb 31", which mktime makes Mar 3
    assert parse_date("1 month ago", now=parse_date("2023-03-31 12:00")) == parse_date(
        "2023-03-03 12:00"
    )
    assert time.gmtime(parse_date("2023-01-31 12:00 +1 month"))[:3] == (2023, 3, 3)
    assert parse_date("yesterday", now=jan31) == jan31 - 86400


def test_commit_takes_them(ostree, sysroot, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    for tool, name in ((ostree, "theirs"), (sysroot, "ours")):
        tool("init", f"--repo={tmp_path / name}", "--mode=archive")
    args = ["commit", "--orphan", "-s", "s", "--timestamp=October 25 1985", tree]
    env = {"TZ": "Europe/Berlin"}
    assert ostree.out(f"--repo={tmp_path / 'theirs'}", *args, env=env) == sysroot.out(
        f"--repo={tmp_path / 'ours'}", *args, env=env
    )
    bad = sysroot(
        f"--repo={tmp_path / 'ours'}", "commit", "--orphan", "--timestamp=nope", tree, check=False
    )
    assert bad.returncode == 2 and bad.stderr == b"error: Could not parse 'nope'\n"
