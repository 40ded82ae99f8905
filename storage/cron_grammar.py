"""Cron grammar: an expression checked against cronie's dialect and expanded for the search.

The dialect and its rules are described in `storage.cron`. croniter reads a wider dialect
than cronie (seconds, ``L``, ``5/15``, wrapped ranges, and it widens ``5-5`` to the whole
field), so every field is first checked against cronie's grammar here, and croniter only
expands the checked fields into value sets. This is the only module that uses croniter.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from croniter import CroniterError, croniter


class CronError(ValueError):
    """Invalid, unsupported or never-firing expression; str() is a readable reason."""


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
class CronRules:
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


def _check_fires(rules: CronRules, fields: list[str]) -> None:
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
def parse_cron(expr: str) -> CronRules:
    """The checked, expanded expression; raises CronError (not cached)."""
    normalised, fields = _split_fields(expr)
    canonical = [_canonical_field(text, field) for text, field in zip(fields, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = _expand(canonical)
    # cronie: a day field whose text starts with '*' counts as unrestricted.
    either = not (fields[_DAY_OF_MONTH].startswith("*") or fields[_DAY_OF_WEEK].startswith("*"))
    rules = CronRules(
        expression=normalised,
        minutes=minutes,
        hours=hours,
        months=frozenset(months),
        days_by_shape=_days_by_shape(days, weekdays, either),
        hour_is_fixed=_hour_is_fixed(canonical[_HOUR]),
    )
    _check_fires(rules, fields)
    return rules
