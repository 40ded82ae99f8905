"""Cron rules against a brute-force reading of the same contract.

Random expressions are built together with the value sets they denote; the oracle
walks real minutes one by one and decides from those sets whether each minute fires:

- hour `*` or a step over all hours: a minute fires when its local time matches;
- fixed hour: a minute fires when its local time matches and is that time's first
  occurrence, or when the clock jumped forward over a matching local time to reach it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.cron import hour_field_is_fixed, upcoming_fires, validate_cron

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe"]
MINUTE = timedelta(minutes=1)
LIMIT = 5
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]


@dataclass(frozen=True)
class Expression:
    minute: Field
    hour: Field
    day: Field
    month: Field
    weekday: Field

    @property
    def text(self) -> str:
        fields = (self.minute, self.hour, self.day, self.month, self.weekday)
        return " ".join(field.text for field in fields)

    @property
    def hour_is_fixed(self) -> bool:
        return re.fullmatch(r"(\*|0-23)(/[0-9]+)?", self.hour.text) is None

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and wall.month in self.month.values
            and self.day_matches(wall)
        )

    def day_matches(self, wall: datetime) -> bool:
        by_day = wall.day in self.day.values
        by_weekday = wall.isoweekday() % 7 in self.weekday.values
        if self.day.text.startswith("*") or self.weekday.text.startswith("*"):
            return by_day and by_weekday
        return by_day or by_weekday


# --- expressions ------------------------------------------------------------------------


@st.composite
def terms(
    draw: st.DrawFn, low: int, high: int, names: list[str], highest_value: int
) -> tuple[str, set[int]]:
    """One list element and the values it denotes (day-of-week 7 not yet folded).

    Values written out stay at or below `highest_value`; `*` still means low-high.
    """
    kind = draw(st.sampled_from(["star", "star-step", "value", "range", "range-step"]))
    step = draw(st.integers(1, high - low + 2))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "star-step":
        return f"*/{step}", set(range(low, high + 1, step))
    first = draw(st.integers(low, highest_value))
    if kind == "value":
        return spell(first, low, names, draw), {first}
    last = draw(st.integers(first, highest_value))
    text = f"{spell(first, low, names, draw)}-{spell(last, low, names, draw)}"
    if kind == "range":
        return text, set(range(first, last + 1))
    return f"{text}/{step}", set(range(first, last + 1, step))


def spell(value: int, low: int, names: list[str], draw: st.DrawFn) -> str:
    index = value - low
    if index < len(names) and draw(st.booleans()):
        name = names[index]
        return draw(st.sampled_from([name, name.upper(), name.title()]))
    return str(value)


@st.composite
def fields(
    draw: st.DrawFn,
    low: int,
    high: int,
    names: list[str] | None = None,
    star_often: bool = False,
    highest_value: int | None = None,
) -> Field:
    if star_often and draw(st.integers(0, 2)) > 0:
        return Field("*", frozenset(range(low, high + 1)))
    element = terms(low, high, names or [], high if highest_value is None else highest_value)
    parts = draw(st.lists(element, min_size=1, max_size=3))
    values = set().union(*(denoted for _, denoted in parts))
    if high == 7:  # day-of-week: 7 is Sunday
        values = {value % 7 for value in values}
    return Field(",".join(text for text, _ in parts), frozenset(values))


def hours() -> st.SearchStrategy[Field]:
    """Hour fields, with cadence shapes as often as fixed ones."""
    return st.one_of(fields(0, 23), cadence_hours())


@st.composite
def cadence_hours(draw: st.DrawFn) -> Field:
    """`*` and steps over all hours (`*/n`, `0-23/n`): the real-cadence shapes."""
    step = draw(st.integers(1, 12))
    text = draw(st.sampled_from(["*", f"*/{step}", f"0-23/{step}", "0-23"]))
    values = range(0, 24, 1 if text in ("*", "0-23") else step)
    return Field(text, frozenset(values))


def listed(values: st.SearchStrategy[int]) -> st.SearchStrategy[Field]:
    """A plain list field such as `5,20,45`."""
    chosen = st.sets(values, min_size=1, max_size=3)
    return chosen.map(lambda c: Field(",".join(map(str, sorted(c))), frozenset(c)))


@st.composite
def expressions(draw: st.DrawFn) -> Expression:
    month = draw(fields(1, 12, MONTH_NAMES, star_often=True))
    # Days up to 28 exist in every month: a restricted month never makes it unfireable.
    day = draw(fields(1, 31, star_often=True, highest_value=31 if month.text == "*" else 28))
    return Expression(
        minute=draw(fields(0, 59)),
        hour=draw(hours()),
        day=day,
        month=month,
        weekday=draw(fields(0, 7, WEEKDAY_NAMES, star_often=True)),
    )


# --- start instants ---------------------------------------------------------------------

FIRST, LAST = datetime(2025, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)


@lru_cache
def transitions(zone: str) -> list[datetime]:
    """The instants at which `zone` changes its UTC offset in 2025-2027 (whole minutes)."""
    tz, found, moment, step = ZoneInfo(zone), [], FIRST, timedelta(hours=12)
    while moment < LAST:
        if offset(moment + step, tz) != offset(moment, tz):
            found.append(first_minute_with_new_offset(moment, moment + step, tz))
        moment += step
    return found


def first_minute_with_new_offset(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """Bisect (before, after], which holds exactly one offset change, to the minute."""
    while after - before > MINUTE:
        middle = before + (after - before) // 2
        middle = middle.replace(second=0)
        if offset(middle, tz) == offset(before, tz):
            before = middle
        else:
            after = middle
    return after


def offset(moment: datetime, tz: ZoneInfo) -> timedelta | None:
    return moment.astimezone(tz).utcoffset()


@st.composite
def starts(draw: st.DrawFn, zone: str) -> datetime:
    """Instants anywhere in 2025-2027, or within two days of a DST transition."""
    near_a_transition = draw(st.booleans())
    if near_a_transition and transitions(zone):
        return draw(starts_near_transitions(zone, timedelta(days=2)))
    minutes = int((LAST - FIRST) / MINUTE)
    return FIRST + draw(st.integers(0, minutes)) * MINUTE + draw(seconds())


@st.composite
def starts_near_transitions(draw: st.DrawFn, zone: str, spread: timedelta) -> datetime:
    minutes = int(spread / MINUTE)
    base = draw(st.sampled_from(transitions(zone)))
    return base + draw(st.integers(-minutes, minutes)) * MINUTE + draw(seconds())


def seconds() -> st.SearchStrategy[timedelta]:
    return st.sampled_from([0, 0, 30, 59]).map(lambda s: timedelta(seconds=s))


# --- the oracle -------------------------------------------------------------------------


def brute_force(
    expr: Expression, zone: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """The first LIMIT fires in (after, until], one real minute at a time."""
    found: list[datetime] = []
    fixed_hour = expr.hour_is_fixed
    moment = after.replace(second=0, microsecond=0) + MINUTE
    previous = local_wall(moment - MINUTE, zone)
    while moment <= until and len(found) < LIMIT:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        if fires_at(expr, fixed_hour, wall, local.fold, previous):
            found.append(moment)
        previous, moment = wall, moment + MINUTE
    return found


def fires_at(
    expr: Expression, fixed_hour: bool, wall: datetime, fold: int, previous: datetime
) -> bool:
    if not fixed_hour:
        return expr.matches(wall)
    if expr.matches(wall) and fold == 0:
        return True
    skipped = previous + MINUTE
    while skipped < wall:  # the clock jumped forward over these local times
        if expr.matches(skipped):
            return True
        skipped += MINUTE
    return False


def local_wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Expression, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return draw(expressions()), zone, draw(starts(zone))


@st.composite
def cases_around_transitions(draw: st.DrawFn, fixed_hour: bool) -> tuple[Expression, str, datetime]:
    """Daily schedules started within hours of a transition, in the hours it touches."""
    zone = draw(st.sampled_from([zone for zone in ZONES if transitions(zone)]))
    transition = draw(st.sampled_from(transitions(zone)))
    after = transition + draw(st.integers(-180, 60)) * MINUTE + draw(seconds())
    # The local hours around the transition: before it, skipped or repeated, after it.
    hour = (transition - MINUTE).astimezone(ZoneInfo(zone)).hour
    touched = [(hour + shift) % 24 for shift in range(-1, 4)]
    expr = Expression(
        minute=draw(st.one_of(fields(0, 59), listed(st.integers(0, 59)))),
        hour=draw(listed(st.sampled_from(touched)) if fixed_hour else cadence_hours()),
        day=Field("*", frozenset(range(1, 32))),
        month=Field("*", frozenset(range(1, 13))),
        weekday=Field("*", frozenset(range(7))),
    )
    return expr, zone, after


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_fires_match_brute_force(case: tuple[Expression, str, datetime]) -> None:
    check_against_brute_force(*case, window=timedelta(days=3))


@SETTINGS
@given(cases_around_transitions(fixed_hour=True))
def test_fixed_hours_match_brute_force_around_transitions(
    case: tuple[Expression, str, datetime],
) -> None:
    check_against_brute_force(*case, window=timedelta(days=1))


@SETTINGS
@given(cases_around_transitions(fixed_hour=False))
def test_cadence_matches_brute_force_around_transitions(
    case: tuple[Expression, str, datetime],
) -> None:
    check_against_brute_force(*case, window=timedelta(days=1))


def check_against_brute_force(
    expr: Expression, zone: str, after: datetime, window: timedelta
) -> None:
    assert validate_cron(expr.text) == expr.text
    assert hour_field_is_fixed(expr.text) is expr.hour_is_fixed

    expected = brute_force(expr, ZoneInfo(zone), after, after + window)
    actual = upcoming_fires(expr.text, zone, after, len(expected) + 1)

    assert actual[: len(expected)] == expected
    if len(expected) < LIMIT and len(actual) > len(expected):
        # The oracle saw the whole window: the next fire lies beyond it.
        assert actual[len(expected)] > after + window
