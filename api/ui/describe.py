"""Cron expressions in words, for people: "At 09:00, Monday through Friday".

The words come from cron-descriptor. It reads the day fields as cron-descriptor's own
dialect does, so the one place where that differs from ours (`storage.cron`: when both day
fields are restricted, a day matches if either matches, unless one of them starts with `*`,
when it must match both) is phrased here.
"""

from __future__ import annotations

from functools import lru_cache

from cron_descriptor import ExpressionDescriptor, Options

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros `storage.cron` accepts, as the five fields they stand for."""


def _options() -> Options:
    options = Options()
    options.use_24hour_time_format = True
    return options


_OPTIONS = _options()


@lru_cache(maxsize=4096)
def cron_in_words(expr: str) -> str:
    """`expr` (a checked expression) in English; the expression itself if it cannot be read."""
    fields = MACROS.get(expr.strip().lower(), expr).split()
    try:
        described = ExpressionDescriptor(" ".join(fields), _OPTIONS)
        if len(fields) == 5 and fields[2] != "*" and fields[4] != "*":
            either = not fields[2].startswith("*") and not fields[4].startswith("*")
            return _both_days(described, either=either)
        return str(described.get_description())
    except Exception:  # the library's own errors are of several unrelated types
        return expr


def _both_days(described: ExpressionDescriptor, *, either: bool) -> str:
    """The words of an expression whose day-of-month and day-of-week are both restricted."""
    week = described.get_day_of_week_description().removeprefix(", ").removeprefix("or ")
    week = week.removeprefix("only ")
    joined = f", or {week}" if either else f", and only {week}"
    return str(
        described.get_time_of_day_description()
        + described.get_day_of_month_description()
        + joined
        + described.get_month_description()
    )
