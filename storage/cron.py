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

This is the only module that uses croniter. croniter reads a wider dialect than
cronie (seconds, ``L``, ``5/15``, wrapped ranges, and it widens ``5-5`` to the whole
field), so every field is first checked against cronie's grammar here and croniter
expands the checked fields into value sets. Fire instants are then computed from
those sets directly, skipping months, days and hours that cannot match: that is
several times faster than croniter's iterator and keeps the DST rules above in one
place.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = [
    "CronError",
    "TimezoneError",
    "hour_field_is_fixed",
    "load_timezone",
    "next_fire",
    "upcoming_fires",
    "validate_cron",
]


class CronError(ValueError):
    """Invalid, unsupported or never-firing expression; str() is a readable reason."""


class TimezoneError(ValueError):
    """Unknown IANA timezone name."""


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One of the five cron fields: its name in messages, bounds and value names."""

    name: str
    low: int
    high: int
    names: Mapping[str, int]
    every: tuple[int, ...]


_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

_FIELDS = (
    _Field("minute", 0, 59, {}, tuple(range(60))),
    _Field("hour", 0, 23, {}, tuple(range(24))),
    _Field("day-of-month", 1, 31, {}, tuple(range(1, 32))),
    _Field("month", 1, 12, {n: i for i, n in enumerate(_MONTH_NAMES, 1)}, tuple(range(1, 13))),
    _Field("day-of-week", 0, 7, {n: i for i, n in enumerate(_WEEKDAY_NAMES)}, tuple(range(7))),
)
_HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK = 1, 2, 3, 4  # positions in _FIELDS

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_LAYOUT = "minute hour day-of-month month day-of-week"
_TERM = re.compile(
    r"(?P<start>\*|[0-9]+|[a-z]+)(?:-(?P<end>[0-9]+|[a-z]+))?(?:/(?P<step>[0-9]+))?",
    re.ASCII | re.IGNORECASE,
)
# Quartz/croniter extensions, recognised only to say why they are refused.
_EXTENSION = re.compile(
    r"[#?]|^(?:[0-9]*[lw][0-9]*|lw|h(?:\([0-9-]*\))?(?:/[0-9]+)?)$", re.ASCII | re.IGNORECASE
)
_FIELD_SEPARATOR = re.compile(r"[ \t]+")


class _BadTerm(Exception):
    """A list element breaks the grammar; the argument is the reason."""


@dataclass(frozen=True, eq=False)
class _Rules:
    """A checked expression, expanded into what the fire search needs."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    # Matching days of a month, by the month's shape: (weekday of the 1st, length).
    days_by_shape: Mapping[tuple[int, int], tuple[int, ...]]
    hour_is_fixed: bool

    def days_of(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of `month` in `year`, ascending (empty if the month is excluded)."""
        if month not in self.months:
            return ()
        monday_based_weekday, length = calendar.monthrange(year, month)
        return self.days_by_shape[((monday_based_weekday + 1) % 7, length)]


def _canonical_term(term: str, field: _Field) -> str:
    """One list element checked against cronie's grammar, written as croniter should read it.

    Returns ``*``, ``*/s``, ``n`` or ``n-m[/s]`` with numbers only; raises _BadTerm.
    """
    match = _TERM.fullmatch(term)
    if match is None or _EXTENSION.search(term):
        raise _BadTerm(_unreadable_reason(term))
    start, end, step = match.group("start", "end", "step")
    if step is not None and int(step) == 0:
        raise _BadTerm("a step must be at least 1")
    suffix = "" if step is None else f"/{int(step)}"
    if start == "*":
        if end is not None:
            raise _BadTerm("'*' cannot start a range")
        return "*" + suffix
    first = _value(start, field)
    if end is None:
        if step is not None:
            hint = f"'*/{int(step)}' or '{start}-{field.high}/{int(step)}'"
            raise _BadTerm(f"a step needs '*' or a range before it, e.g. {hint}")
        return str(first)
    last = _value(end, field)
    if first > last:
        raise _BadTerm(f"the range {start}-{end} runs backwards")
    # cronie reads an equal range as its one value; croniter would widen it to the field.
    return str(first) if first == last else f"{first}-{last}{suffix}"


def _unreadable_reason(term: str) -> str:
    if _EXTENSION.search(term):
        return "'L', 'W', '#', '?' and 'H' are extensions; only standard cron is supported"
    if not term:
        return "empty list element"
    return f"'{term}' is not a value, range or step"


def _value(text: str, field: _Field) -> int:
    if text.isdigit():
        value = int(text)
    elif text.lower() in field.names:
        value = field.names[text.lower()]
    elif field.names:
        raise _BadTerm(f"unknown name '{text}'")
    else:
        raise _BadTerm(f"names are not allowed in the {field.name} field")
    if not field.low <= value <= field.high:
        raise _BadTerm(f"{value} is out of range {field.low}-{field.high}")
    return value


def _canonical_field(text: str, field: _Field) -> str:
    try:
        return ",".join(_canonical_term(term, field) for term in text.split(","))
    except _BadTerm as bad:
        raise CronError(f"bad {field.name} '{text}': {bad.args[0]}") from None


def _split_fields(expr: str) -> tuple[str, list[str]]:
    """The normalised expression and its five field texts (macros expanded)."""
    text = expr.strip()
    if text.startswith("@"):
        macro = text.lower()
        return macro, _macro_fields(macro)
    fields = _FIELD_SEPARATOR.split(text) if text else []
    if len(fields) != len(_FIELDS):
        raise CronError(_field_count_reason(len(fields)))
    return " ".join(fields), fields


def _macro_fields(macro: str) -> list[str]:
    if macro in _MACROS:
        return _MACROS[macro].split(" ")
    if macro == "@reboot":
        raise CronError("@reboot is not supported: schedules fire at clock times")
    raise CronError(f"unknown macro '{macro}'; use one of {', '.join(_MACROS)}")


def _field_count_reason(count: int) -> str:
    reason = f"expected 5 fields ({_FIELD_LAYOUT}), got {count}"
    if count in (6, 7):
        return reason + "; seconds and year fields are not supported"
    return reason


def _expand(canonical: list[str]) -> list[tuple[int, ...]]:
    """croniter's value sets for checked fields, `*` spelled out and Sunday as 0."""
    try:
        expanded, _ = croniter.expand(" ".join(canonical))
    except CroniterError as exc:  # the grammar check above should have caught it
        raise CronError(f"invalid expression: {exc}") from exc
    return [_values(column, field) for column, field in zip(expanded, _FIELDS, strict=True)]


def _values(column: Sequence[int | str], field: _Field) -> tuple[int, ...]:
    if "*" in column:  # croniter keeps a bare '*' list element as it is
        return field.every
    # Day-of-week 7 is Sunday, which the search counts as 0.
    return tuple(
        sorted(
            {int(value) % 7 if field is _FIELDS[_DAY_OF_WEEK] else int(value) for value in column}
        )
    )


_ALL_HOURS = re.compile(r"(?:\*|0-23)(?:/[0-9]+)?")


def _hour_is_fixed(canonical_hour: str) -> bool:
    """False for `*` and for one step over all hours (`*/2`, `0-23/3`); True otherwise.

    A list is fixed even if one of its elements is such a step (`*/6,1`).
    """
    return _ALL_HOURS.fullmatch(canonical_hour) is None


def _days_by_shape(
    days: tuple[int, ...], weekdays: tuple[int, ...], either: bool
) -> dict[tuple[int, int], tuple[int, ...]]:
    """The matching days for every month shape (weekday of the 1st, length)."""
    day_set, weekday_set = frozenset(days), frozenset(weekdays)

    def matches(day: int, weekday: int) -> bool:
        if either:
            return day in day_set or weekday in weekday_set
        return day in day_set and weekday in weekday_set

    return {
        (first, length): tuple(d for d in range(1, length + 1) if matches(d, (first + d - 1) % 7))
        for first in range(7)
        for length in (28, 29, 30, 31)
    }


def _month_lengths(month: int) -> tuple[int, ...]:
    return (28, 29) if month == 2 else (30,) if month in (4, 6, 9, 11) else (31,)


def _check_fires(rules: _Rules, fields: list[str]) -> None:
    """Raise CronError unless some date matches.

    Every (month, length, weekday of the 1st) combination occurs in the Gregorian
    calendar, so an expression fires iff one of its months has a shape with a
    matching day. Only a day-of-month that no selected month has can fail: a
    restricted day-of-week always adds days under the OR rule, and under the AND
    rule one of the day fields starts with `*` and so holds day 1 or Sunday.
    """
    for month in rules.months:
        for length in _month_lengths(month):
            if any(rules.days_by_shape[(first, length)] for first in range(7)):
                return
    raise CronError(
        f"never fires: day-of-month '{fields[_DAY_OF_MONTH]}'"
        f" never occurs in month '{fields[_MONTH]}'"
    )


@lru_cache(maxsize=4096)
def _parse(expr: str) -> _Rules:
    """The checked, expanded expression; raises CronError (not cached)."""
    normalised, fields = _split_fields(expr)
    canonical = [_canonical_field(text, field) for text, field in zip(fields, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = _expand(canonical)
    # cronie: a day field whose text starts with '*' counts as unrestricted.
    either = not (fields[_DAY_OF_MONTH].startswith("*") or fields[_DAY_OF_WEEK].startswith("*"))
    rules = _Rules(
        expression=normalised,
        minutes=minutes,
        hours=hours,
        months=frozenset(months),
        days_by_shape=_days_by_shape(days, weekdays, either),
        hour_is_fixed=_hour_is_fixed(canonical[_HOUR]),
    )
    _check_fires(rules, fields)
    return rules


# --- timezones -------------------------------------------------------------------------

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


# --- wall-clock search -----------------------------------------------------------------

# The Gregorian calendar repeats every 400 years, so an expression that matches any
# date matches one within 400 years of any start: the search is exact and bounded.
_SEARCH_MONTHS = 400 * 12


def _matching_days(rules: _Rules, start: date) -> Iterator[date]:
    """Matching dates from `start` on, ascending, within the search bound."""
    year, month, first_day = start.year, start.month, start.day
    for _ in range(_SEARCH_MONTHS):
        days = rules.days_of(year, month)
        for day in days[bisect_left(days, first_day) :]:
            yield date(year, month, day)
        year, month, first_day = (year, month + 1, 1) if month < 12 else (year + 1, 1, 1)
        if year > MAXYEAR:
            return


def _matching_walls(rules: _Rules, start: datetime) -> Iterator[datetime]:
    """Matching local wall times (naive, whole minutes) at or after `start`, ascending."""
    start_day = start.date()
    for day in _matching_days(rules, start_day):
        from_hour = start.hour if day == start_day else 0
        for hour in _from(rules.hours, from_hour):
            from_minute = start.minute if day == start_day and hour == start.hour else 0
            for minute in _from(rules.minutes, from_minute):
                yield datetime(day.year, day.month, day.day, hour, minute)


def _from(values: tuple[int, ...], lowest: int) -> tuple[int, ...]:
    return values[bisect_left(values, lowest) :]


# --- wall time to instants -------------------------------------------------------------


def _offsets(wall: datetime, zone: ZoneInfo) -> tuple[timedelta, timedelta]:
    """UTC offsets of `wall` read as its first (fold=0) and second (fold=1) occurrence.

    Equal offsets: the wall time happens once. First > second: it happens twice (fall
    back). First < second: it does not exist (spring forward); zoneinfo then gives the
    offsets from before and after the gap.
    """
    first = wall.replace(tzinfo=zone).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None  # a ZoneInfo always has an offset
    return first, second


def _utc(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _instants(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Every instant whose local time is `wall`: one, two (first first) or none (a gap)."""
    first, second = _offsets(wall, zone)
    if first == second:
        return (_utc(wall, first),)
    if first > second:
        return (_utc(wall, first), _utc(wall, second))
    return ()


def _fixed_fire(wall: datetime, zone: ZoneInfo) -> datetime:
    """When a fixed-hour schedule fires for `wall`: its first occurrence, or the gap's end."""
    first, second = _offsets(wall, zone)
    if first >= second:
        return _utc(wall, first)
    # `wall` read with the later offset is an instant before the gap, read with the
    # earlier offset one after it; the gap ends at the offset change between them.
    return _offset_change(_utc(wall, second), _utc(wall, first), zone, first)


def _offset_change(
    earlier: datetime, later: datetime, zone: ZoneInfo, offset: timedelta
) -> datetime:
    """The first instant in (earlier, later] whose UTC offset is no longer `offset`.

    `earlier` has `offset` and `later` does not; bisect on whole seconds.
    """
    low, high = int(earlier.timestamp()), int(later.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


# --- next fire -------------------------------------------------------------------------


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None, fold=0)


def _next_fixed(rules: _Rules, zone: ZoneInfo, after: datetime) -> datetime | None:
    # Fire instants never decrease as wall times increase (gaps collapse onto their end,
    # repeats keep their first occurrence), and no wall time before the local time of
    # `after` fires after it: the first wall time that fires after `after` is the answer.
    for wall in _matching_walls(rules, _floor_minute(after.astimezone(zone))):
        fire = _fixed_fire(wall, zone)
        if fire > after:
            return fire
    return None


def _next_cadence(rules: _Rules, zone: ZoneInfo, after: datetime) -> datetime | None:
    # Instants do not grow with wall times here: the second occurrence of a repeated wall
    # time comes after the first occurrence of later wall times. The first occurrences
    # do grow, so keep the earliest instant seen and stop at the first wall time whose
    # first occurrence is already after `after`.
    best: datetime | None = None
    for wall in _matching_walls(rules, _cadence_start(zone, after)):
        instants = _instants(wall, zone)
        for instant in instants:
            if instant > after and (best is None or instant < best):
                best = instant
        if instants and instants[0] > after:
            return best
    return best


def _cadence_start(zone: ZoneInfo, after: datetime) -> datetime:
    """The earliest local wall time that an instant after `after` can have.

    That is the local time of `after`, unless `after` is the first occurrence of a
    repeated wall time: then the repeat, which starts earlier, is still to come.
    """
    local = after.astimezone(zone)
    first, second = _offsets(local.replace(tzinfo=None), zone)
    if local.fold == 0 and first > second:
        return _floor_minute(local) - (first - second)
    return _floor_minute(local)


def next_fire(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire instant of `expr` in `timezone` strictly after `after`, in UTC.

    `after` must be timezone-aware (ValueError otherwise). Returns an aware UTC
    datetime, or None if there is none within the search bound of 400 years before
    the end of year 9999 (a checked expression fires within it). Raises CronError for
    a bad expression and TimezoneError for an unknown zone.
    """
    if after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    rules = _parse(expr)
    zone = load_timezone(timezone)
    search = _next_fixed if rules.hour_is_fixed else _next_cadence
    try:
        return search(rules, zone, after.astimezone(UTC))
    except OverflowError:  # the search ran into the end of the datetime range
        return None


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
    return _parse(expr).expression


def hour_field_is_fixed(expr: str) -> bool:
    """Whether `expr` fires once per local time through DST (see the module docstring).

    False when the hour field is `*` or one step over all hours (`*/2`, `0-23/3`),
    so ``@hourly`` keeps its cadence; True otherwise, including ``@daily``.
    """
    return _parse(expr).hour_is_fixed
