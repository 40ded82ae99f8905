"""The fire search: the first instant after a given one at which checked cron rules fire.

Matching local wall times are walked day by day, skipping months, days and hours that cannot
match, and each is turned into instants in the zone under the daylight-saving rules that
`storage.cron` describes: a fixed hour fires once per local time (a gap at its end, a repeat
at its first occurrence); any other keeps its real elapsed cadence.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from storage.cron_grammar import CronRules

# The Gregorian calendar repeats every 400 years, so an expression that matches any
# date matches one within 400 years of any start: the search is exact and bounded.
_SEARCH_MONTHS = 400 * 12


def _matching_days(rules: CronRules, start: date) -> Iterator[date]:
    """Matching dates from `start` on, ascending, within the search bound."""
    year, month, first_day = start.year, start.month, start.day
    for _ in range(_SEARCH_MONTHS):
        days = rules.days_of(year, month)
        for day in days[bisect_left(days, first_day) :]:
            yield date(year, month, day)
        year, month, first_day = (year, month + 1, 1) if month < 12 else (year + 1, 1, 1)
        if year > MAXYEAR:
            return


def _matching_walls(rules: CronRules, start: datetime) -> Iterator[datetime]:
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


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None, fold=0)


def _next_fixed(rules: CronRules, zone: ZoneInfo, after: datetime) -> datetime | None:
    # Fire instants never decrease as wall times increase (gaps collapse onto their end,
    # repeats keep their first occurrence), and no wall time before the local time of
    # `after` fires after it: the first wall time that fires after `after` is the answer.
    for wall in _matching_walls(rules, _floor_minute(after.astimezone(zone))):
        fire = _fixed_fire(wall, zone)
        if fire > after:
            return fire
    return None


def _next_cadence(rules: CronRules, zone: ZoneInfo, after: datetime) -> datetime | None:
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


def next_instant(rules: CronRules, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire instant of `rules` in `zone` strictly after `after` (aware), in UTC.

    None when there is none before the end of the datetime range.
    """
    search = _next_fixed if rules.hour_is_fixed else _next_cadence
    try:
        return search(rules, zone, after.astimezone(UTC))
    except OverflowError:  # the search ran into the end of the datetime range
        return None
