"""Cron rules: when a cron expression fires, read in an IANA timezone.

The dialect is standard 5-field cron as Vixie cron and cronie read it:

- fields ``minute hour day-of-month month day-of-week``; each is a comma list of
  ``*``, ``*/step``, ``n``, ``n-m`` or ``n-m/step``;
- day-of-week 0 and 7 are both Sunday; names ``JAN``..``DEC`` and ``SUN``..``SAT``
  work in any case, as values or range ends (``MON-FRI``);
- a range that runs backwards (``FRI-MON``) is an error, an equal range (``5-5``)
  is that one value, and a step needs ``*`` or a range (``5/15`` is an error);
- day-of-month and day-of-week: cronie treats a field whose text starts with ``*``
  as unrestricted. If neither day field starts with ``*`` a day matches when
  **either** matches (``0 0 1,15 * MON`` fires on the 1st, the 15th and every
  Monday); if either starts with ``*`` a day must match **both**, so
  ``0 0 */2 * MON`` fires only on Mondays that fall on an odd day of the month;
- macros ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily``
  ``@midnight`` ``@hourly``. ``@reboot``, seconds and year fields, and the
  ``L``/``W``/``#``/``?``/``H`` extensions are rejected, as is an expression that
  can never fire (``0 0 30 2 *``).

The expression is read in the schedule's local wall-clock time. Daylight saving:

- if the hour field is fixed (not ``*``, not ``0-23``, which covers every hour and so
  counts as ``*``, and not a step over all hours such as ``*/2`` or ``0-23/3``), the
  schedule fires once per matching local time. A local
  time that does not exist that day (spring forward) fires at the end of the gap,
  the first instant after it; several such times fire once. A local time that
  happens twice (fall back) fires once, at its first occurrence;
- otherwise the schedule keeps its real elapsed cadence: it fires at exactly the
  instants (whole minutes) whose local time matches, so a repeated hour fires
  twice and a skipped hour not at all.

The expression is checked against cronie's grammar and expanded into value sets in
`storage.cron_grammar` (the only module that uses croniter, which reads a wider dialect);
fire instants are computed from those sets in `storage.cron_search`, skipping months, days
and hours that cannot match: that is several times faster than croniter's iterator and
keeps the DST rules above in one place. This module is the interface the rest of the
project uses.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage.cron_grammar import CronError, parse_cron
from storage.cron_search import next_instant

__all__ = [
    "CronError",
    "TimezoneError",
    "hour_field_is_fixed",
    "load_timezone",
    "next_fire",
    "upcoming_fires",
    "validate_cron",
]


class TimezoneError(ValueError):
    """Unknown IANA timezone name."""


_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)


@lru_cache(maxsize=1024)
def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone called `name` (e.g. ``Europe/Berlin``, ``UTC``), cached.

    Raises TimezoneError for an unknown name, an empty string or anything shaped
    like a file path.
    """
    if not _ZONE_NAME.fullmatch(name) or ".." in name.split("/"):
        raise TimezoneError(f"unknown timezone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TimezoneError(f"unknown timezone {name!r}") from exc


def next_fire(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire instant of `expr` in `timezone` strictly after `after`, in UTC.

    `after` must be timezone-aware (ValueError otherwise). Returns an aware UTC
    datetime, or None if there is none within the search bound of 400 years before
    the end of year 9999 (a checked expression fires within it). Raises CronError for
    a bad expression and TimezoneError for an unknown zone.
    """
    if after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    rules = parse_cron(expr)
    zone = load_timezone(timezone)
    return next_instant(rules, zone, after)


def upcoming_fires(expr: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants after `after`, each strictly after the one before.

    Fewer only if the datetime range runs out. Raises as next_fire does, and
    ValueError for a negative count.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    fires: list[datetime] = []
    moment: datetime | None = after
    while len(fires) < count and moment is not None:
        moment = next_fire(expr, timezone, moment)
        if moment is not None:
            fires.append(moment)
    return fires


def validate_cron(expr: str) -> str:
    """`expr` normalised, or CronError with a readable reason.

    Normalised: surrounding whitespace stripped, fields separated by single spaces
    (their text otherwise kept as given), macros lower-cased and kept as macros.
    """
    return parse_cron(expr).expression


def hour_field_is_fixed(expr: str) -> bool:
    """Whether `expr` fires once per local time through DST (see the module docstring).

    False when the hour field is `*` or one step over all hours (`*/2`, `0-23/3`),
    so ``@hourly`` keeps its cadence; True otherwise, including ``@daily``.
    """
    return parse_cron(expr).hour_is_fixed
