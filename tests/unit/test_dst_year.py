"""A daily schedule at a fixed local time fires exactly once on every local day of a year.

Walked with `next_fire` from the instant before the year starts to the instant after it
ends, in zones whose transitions stress the DST rules of DESIGN section 3:

- America/New_York, Europe/Berlin: the classic 02:00/03:00 gaps and repeats;
- America/Santiago, America/Sao_Paulo (2018, when Brazil still had DST): transitions at
  midnight, so `0 0 * * *` does not exist on the spring-forward day;
- Australia/Lord_Howe: a half-hour shift (02:00-02:29 skipped, 01:30-01:59 repeated).

The expected instants come from an oracle that knows nothing of the cron module: on a
15-minute UTC grid (every offset and transition here falls on it), the fire for local time
W on a day is the first instant whose local wall clock has reached W. That is one
definition of all three rules: a normal day's W itself, the end of a gap that swallowed W,
and the first of two occurrences of W.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest

from storage.cron import next_fire

GRID = timedelta(minutes=15)

YEARS = {
    "America/New_York": 2024,
    "Europe/Berlin": 2024,
    "America/Santiago": 2024,
    "America/Sao_Paulo": 2018,
    "Australia/Lord_Howe": 2024,
}
EXPRESSIONS = {
    "30 2 * * *": time(2, 30),  # in the New York and Berlin gaps; repeated in Berlin
    "0 0 * * *": time(0, 0),  # in the Santiago and Sao Paulo gaps
    "30 1 * * *": time(1, 30),  # repeated in New York and Lord Howe
    "0 2 * * *": time(2, 0),  # the first minute of the Lord Howe gap
    "45 1 * * *": time(1, 45),  # inside the Lord Howe repeat
    "30 23 * * *": time(23, 30),  # repeated in Santiago and Sao Paulo
}


@cache
def wall_clock(zone_name: str, year: int) -> tuple[list[datetime], list[datetime]]:
    """UTC grid instants around `year` and the running maximum of their local wall times."""
    zone = ZoneInfo(zone_name)
    start = datetime(year - 1, 12, 30, tzinfo=UTC)
    end = datetime(year + 1, 1, 3, tzinfo=UTC)
    instants = [start + i * GRID for i in range(int((end - start) / GRID))]
    walls = [instant.astimezone(zone).replace(tzinfo=None) for instant in instants]
    return instants, list(itertools.accumulate(walls, max))


def first_reaching(zone_name: str, year: int, wall: datetime) -> datetime:
    """The first instant whose local wall clock in `zone_name` reads `wall` or later."""
    instants, reached = wall_clock(zone_name, year)
    return instants[bisect_left(reached, wall)]


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


def fires_during(expr: str, zone_name: str, year: int) -> list[datetime]:
    """Every fire of `expr` whose local date falls in `year`, by iterating next_fire."""
    zone = ZoneInfo(zone_name)
    moment = first_reaching(zone_name, year, datetime(year, 1, 1)) - timedelta(seconds=1)
    fires = []
    while True:
        fire = next_fire(expr, zone_name, moment)
        assert fire is not None
        assert fire > moment
        if fire.astimezone(zone).year > year:
            return fires
        fires.append(fire)
        moment = fire


def transition_days(zone_name: str, year: int) -> list[date]:
    """Local dates on which the zone's UTC offset changes (to show the year has DST)."""
    zone = ZoneInfo(zone_name)
    noon_offsets = [datetime.combine(day, time(12), zone).utcoffset() for day in days_of(year)]
    return [
        day
        for day, before, after in zip(
            days_of(year)[1:], noon_offsets, noon_offsets[1:], strict=False
        )
        if before != after
    ]


@pytest.mark.parametrize("zone_name", YEARS)
def test_the_year_has_two_transitions(zone_name: str) -> None:
    assert len(transition_days(zone_name, YEARS[zone_name])) == 2


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("zone_name", YEARS)
def test_a_fixed_time_fires_once_every_local_day_of_the_year(zone_name: str, expr: str) -> None:
    year, at = YEARS[zone_name], EXPRESSIONS[expr]
    zone = ZoneInfo(zone_name)
    fires = fires_during(expr, zone_name, year)

    local_days = Counter(fire.astimezone(zone).date() for fire in fires)
    assert sorted(local_days) == days_of(year), "a local day without a fire"
    assert set(local_days.values()) == {1}, "a local day with two fires"
    expected = [first_reaching(zone_name, year, datetime.combine(day, at)) for day in days_of(year)]
    assert fires == expected
    assert all(fire.tzinfo is UTC for fire in fires)


@pytest.mark.parametrize(
    ("zone_name", "expr", "local_day", "fires_at"),
    [
        # spring forward: the first instant after the gap
        ("America/New_York", "30 2 * * *", date(2024, 3, 10), "2024-03-10T07:00:00+00:00"),
        ("Europe/Berlin", "30 2 * * *", date(2024, 3, 31), "2024-03-31T01:00:00+00:00"),
        ("America/Santiago", "0 0 * * *", date(2024, 9, 8), "2024-09-08T04:00:00+00:00"),
        ("America/Sao_Paulo", "0 0 * * *", date(2018, 11, 4), "2018-11-04T03:00:00+00:00"),
        ("Australia/Lord_Howe", "0 2 * * *", date(2024, 10, 6), "2024-10-05T15:30:00+00:00"),
        # fall back: the first of the two occurrences
        ("America/New_York", "30 1 * * *", date(2024, 11, 3), "2024-11-03T05:30:00+00:00"),
        ("Europe/Berlin", "30 2 * * *", date(2024, 10, 27), "2024-10-27T00:30:00+00:00"),
        ("America/Santiago", "30 23 * * *", date(2024, 4, 6), "2024-04-07T02:30:00+00:00"),
        ("America/Sao_Paulo", "30 23 * * *", date(2018, 2, 17), "2018-02-18T01:30:00+00:00"),
        ("Australia/Lord_Howe", "45 1 * * *", date(2024, 4, 7), "2024-04-06T14:45:00+00:00"),
    ],
)
def test_transition_days_fire_where_the_rules_say(
    zone_name: str, expr: str, local_day: date, fires_at: str
) -> None:
    """Hand-checked instants for each transition day, independent of the oracle."""
    zone = ZoneInfo(zone_name)
    fires = fires_during(expr, zone_name, local_day.year)
    on_the_day = [fire for fire in fires if fire.astimezone(zone).date() == local_day]
    assert [fire.isoformat() for fire in on_the_day] == [fires_at]
