"""Free-form dates as `ostree commit --timestamp` takes them (gnulib's parse_datetime):
"October 25 1985", "1985-10-25 10:00 +0100", "Fri, 25 Oct 1985 10:00:00 +0200",
"10/25/1985", "@499996800", "now", "yesterday", "2 days ago", "tomorrow 10:00",
"last week", "Friday".

The common subset, with gnulib's rules: a date without a time is midnight, a time
without a date is today, a zone-less date is local time, relative items are added
last (calendar units through mktime's normalization, so Jan 31 + 1 month is Mar 3),
a weekday alone is the next such day (today if it is that day). Anything else is
refused rather than guessed.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

from sysroot.errors import UsageError

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (
            ("monday", "mon"),
            ("tuesday", "tue", "tues"),
            ("wednesday", "wed", "wednes"),
            ("thursday", "thu", "thur", "thurs"),
            ("friday", "fri"),
            ("saturday", "sat"),
            ("sunday", "sun"),
        )
    )
    for name in names
}
_UNITS = {  # name -> (calendar field, amount)
    "year": ("year", 1),
    "month": ("month", 1),
    "fortnight": ("day", 14),
    "week": ("day", 7),
    "day": ("day", 1),
    "hour": ("second", 3600),
    "minute": ("second", 60),
    "min": ("second", 60),
    "second": ("second", 1),
    "sec": ("second", 1),
}
_DAY_WORDS = {"now": 0, "today": 0, "yesterday": -1, "tomorrow": 1}
_ORDINALS = {"last": -1, "this": 0, "next": 1}

_MONTH_NAME = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY_NAME = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_UNIT_NAME = "|".join(sorted(_UNITS, key=len, reverse=True))

# a zone stands after a space or right after a time ("10:00:00+02:00"), never after a
# date's digits ("1985-10-25" ends in "-25")
_ZONE = re.compile(r"(?:(?<=\s)|(?<=:\d\d))(?:(?P<utc>z|utc|gmt)|(?P<off>[+-]\d{2}(?::?\d{2})?))$")
_RELATIVE = re.compile(
    rf"(?:(?P<n>[+-]?\s*\d+)\s*|\b(?P<ord>last|this|next)\s+|\b)(?P<unit>{_UNIT_NAME})s?\b"
    r"(?P<ago>\s+ago\b)?"
)
_DAY_WORD = re.compile(r"\b(?P<w>now|today|yesterday|tomorrow)\b")
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?=t|\b)")
_US_DATE = re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:/(?P<y>\d{2,4}))?\b")
_NAMED_DATE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}})\s+(?P<m1>{_MONTH_NAME})\.?|(?P<m2>{_MONTH_NAME})\.?\s+"
    rf"(?P<d2>\d{{1,2}})\b)(?:,?\s+(?P<y>\d{{2,4}})\b)?"
)
_TIME = re.compile(
    r"(?:\bt|\b)(?P<h>\d{1,2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d+)?)?)?"
    r"\s*(?P<ampm>am|pm)?\b"
)
_WEEKDAY = re.compile(rf"\b(?P<w>{_WEEKDAY_NAME})\b\.?,?")


@dataclass
class _Parsed:
    date: tuple[int, int, int] | None = None
    clock: tuple[int, int, int] | None = None
    weekday: int | None = None
    offset: int | None = None  # seconds east of UTC; None: local time
    relative: dict[str, int] = field(
        default_factory=lambda: {"year": 0, "month": 0, "day": 0, "second": 0}
    )


def parse_date(text: str, now: float | None = None) -> int:
    """Seconds since the epoch for text; UsageError "Could not parse 'TEXT'"."""
    now = time.time() if now is None else now
    s = " ".join(text.strip().lower().split())
    if re.fullmatch(r"@-?\d+", s):
        return int(s[1:])
    try:
        parsed = _parse(s)
        return _resolve(parsed, now)
    except (ValueError, OverflowError):
        raise UsageError(f"Could not parse '{text}'") from None


def _take(pattern: re.Pattern[str], s: str) -> tuple[re.Match[str] | None, str]:
    m = pattern.search(s)
    if m is None:
        return None, s
    return m, s[: m.start()] + " " + s[m.end() :]


def _year(text: str) -> int:
    y = int(text)
    if len(text) == 2:
        y += 1900 if y >= 69 else 2000
    return y


def _parse(s: str) -> _Parsed:
    p = _Parsed()
    m, s = _take(_ZONE, s)
    if m is not None:
        if m.group("utc"):
            p.offset = 0
        else:
            digits = m.group("off").replace(":", "")
            sign = -1 if digits[0] == "-" else 1
            minutes = int(digits[1:3]) * 60 + (int(digits[3:5]) if len(digits) > 3 else 0)
            p.offset = sign * minutes * 60
    while (m := _DAY_WORD.search(s)) is not None:
        p.relative["day"] += _DAY_WORDS[m.group("w")]
        s = s[: m.start()] + " " + s[m.end() :]
    for pattern in (_ISO_DATE, _NAMED_DATE, _US_DATE):
        m, s = _take(pattern, s)
        if m is not None:
            p.date = _date_of(m)
            break
    while (m := _RELATIVE.search(s)) is not None:
        if m.group("n") is not None:
            n = int(m.group("n").replace(" ", ""))
        elif m.group("ord") is not None:
            n = _ORDINALS[m.group("ord")]
        else:
            n = 1
        if m.group("ago"):
            n = -n
        unit, amount = _UNITS[m.group("unit")]
        p.relative[unit] += n * amount
        s = s[: m.start()] + " " + s[m.end() :]
    m, s = _take(_WEEKDAY, s)
    if m is not None:
        p.weekday = _WEEKDAYS[m.group("w")]
    m, s = _take(_TIME, s)
    if m is not None:
        if m.group("mi") is None and m.group("ampm") is None:
            raise ValueError("a bare number")
        h = int(m.group("h"))
        if m.group("ampm"):
            if not 1 <= h <= 12:
                raise ValueError("hour")
            h = h % 12 + (12 if m.group("ampm") == "pm" else 0)
        p.clock = (h, int(m.group("mi") or 0), int(m.group("s") or 0))
        if p.clock[0] > 23 or p.clock[1] > 59 or p.clock[2] > 60:
            raise ValueError("time")
    if s.strip(" ,"):
        raise ValueError(f"left over: {s!r}")
    return p


def _date_of(m: re.Match[str]) -> tuple[int, int, int]:
    groups = m.groupdict()
    if "m1" in groups:
        month = _MONTHS[groups["m1"] or groups["m2"]]
        day = int(groups["d1"] or groups["d2"])
    else:
        month, day = int(groups["m"]), int(groups["d"])
    year = _year(groups["y"]) if groups.get("y") else 0  # 0: this year
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise ValueError("date")
    return year, month, day


def _resolve(p: _Parsed, now: float) -> int:
    local = time.localtime(now)
    if p.date is not None:
        year, month, day = p.date
        year = year or local.tm_year
        if day > calendar.monthrange(year, month)[1]:
            raise ValueError("day")
    else:
        year, month, day = local.tm_year, local.tm_mon, local.tm_mday
    if p.clock is not None:
        clock = p.clock
    elif p.date is not None or p.weekday is not None:
        clock = (0, 0, 0)
    else:
        clock = (local.tm_hour, local.tm_min, local.tm_sec)
    if p.weekday is not None and p.date is None:
        day += (p.weekday - local.tm_wday) % 7
    r = p.relative
    fields = (year + r["year"], month + r["month"], day + r["day"], *clock)
    if p.offset is None:
        stamp = int(time.mktime((*fields, 0, 0, -1)))
    else:
        stamp = calendar.timegm((*fields, 0, 0, 0)) - p.offset
    return stamp + r["second"]
