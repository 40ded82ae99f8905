"""Cron rules, table by table: the instant is always a parameter, never the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from storage.cron import (
    CronError,
    TimezoneError,
    hour_field_is_fixed,
    load_timezone,
    next_fire,
    upcoming_fires,
    validate_cron,
)


def utc(text: str) -> datetime:
    """`2026-11-22T12:00` read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, zone: str, after: str, count: int) -> list[datetime]:
    return upcoming_fires(expr, zone, utc(after), count)


# --- dialect: weekdays, names, day rules, macros ------------------------------------------

# 2026-11-22 is a Sunday, 2026-11-23 a Monday.
WEEKDAYS = [
    ("0 9 * * 1", "2026-11-22T12:00", "2026-11-23T09:00"),
    ("0 9 * * 0", "2026-11-23T12:00", "2026-11-29T09:00"),
    ("0 9 * * 7", "2026-11-23T12:00", "2026-11-29T09:00"),
    ("0 9 * * SUN", "2026-11-23T12:00", "2026-11-29T09:00"),
    ("0 9 * * sun", "2026-11-23T12:00", "2026-11-29T09:00"),
    ("0 9 * * 5-7", "2026-11-23T12:00", "2026-11-27T09:00"),
    ("0 9 * * 6-7", "2026-11-28T12:00", "2026-11-29T09:00"),
    ("0 9 * * 0-7", "2026-11-28T12:00", "2026-11-29T09:00"),
    ("0 9 * * MON-FRI", "2026-11-27T12:00", "2026-11-30T09:00"),
    ("0 9 * * Mon-Fri", "2026-11-28T12:00", "2026-11-30T09:00"),
    ("0 9 * * 1,3,5", "2026-11-23T12:00", "2026-11-25T09:00"),
    ("0 9 * * sat,SUN", "2026-11-23T12:00", "2026-11-28T09:00"),
    # Steps count from the range start; 7 reached by a step is Sunday.
    ("0 9 * * 1-7/2", "2026-11-28T12:00", "2026-11-29T09:00"),
    ("0 9 * * 2-7/2", "2026-11-28T12:00", "2026-12-01T09:00"),
    ("0 9 * * */3", "2026-11-23T12:00", "2026-11-25T09:00"),
    ("0 9 * * */7", "2026-11-23T12:00", "2026-11-29T09:00"),
    ("0 9 * * 3-3", "2026-11-23T12:00", "2026-11-25T09:00"),
]


@pytest.mark.parametrize(("expr", "after", "expected"), WEEKDAYS)
def test_weekdays_count_from_sunday(expr: str, after: str, expected: str) -> None:
    assert next_fire(expr, "UTC", utc(after)) == utc(expected)


MONTHS = [
    ("0 0 1 JAN *", "2026-05-04T00:00", "2027-01-01T00:00"),
    ("0 0 1 jul *", "2026-05-04T00:00", "2026-07-01T00:00"),
    ("0 0 1 Feb-Apr *", "2026-05-04T00:00", "2027-02-01T00:00"),
    ("0 0 1 oct-dec/2 *", "2026-10-02T00:00", "2026-12-01T00:00"),
    ("0 0 1 */4 *", "2026-02-01T00:00", "2026-05-01T00:00"),
    ("0 0 1 6-6 *", "2026-06-02T00:00", "2027-06-01T00:00"),
]


@pytest.mark.parametrize(("expr", "after", "expected"), MONTHS)
def test_month_names_ranges_and_steps(expr: str, after: str, expected: str) -> None:
    assert next_fire(expr, "UTC", utc(after)) == utc(expected)


DAY_RULES = [
    # Neither day field starts with '*': a day matches if EITHER matches.
    (
        "0 0 1,15 * MON",
        "2026-11-30T12:00",
        ["2026-12-01", "2026-12-07", "2026-12-14", "2026-12-15", "2026-12-21"],
    ),
    ("0 0 13 * FRI", "2026-11-01T00:00", ["2026-11-06", "2026-11-13", "2026-11-20"]),
    # A day field starting with '*' counts as unrestricted (cronie): the fields AND.
    ("0 0 */2 * MON", "2026-11-30T12:00", ["2026-12-07", "2026-12-21", "2027-01-11"]),
    ("0 0 1-7 * */7", "2026-11-30T12:00", ["2026-12-06", "2027-01-03", "2027-02-07"]),
    ("0 0 * * MON", "2026-11-30T12:00", ["2026-12-07", "2026-12-14", "2026-12-21"]),
    ("0 0 13 * *", "2026-11-30T12:00", ["2026-12-13", "2027-01-13", "2027-02-13"]),
    ("0 0 *,13 * FRI", "2026-11-01T00:00", ["2026-11-06", "2026-11-13", "2026-11-20"]),
]


@pytest.mark.parametrize(("expr", "after", "expected"), DAY_RULES)
def test_day_of_month_and_day_of_week(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", after, len(expected)) == [utc(d + "T00:00") for d in expected]


MACROS = [
    ("@yearly", "2027-01-01T00:00"),
    ("@annually", "2027-01-01T00:00"),
    ("@monthly", "2026-06-01T00:00"),
    ("@weekly", "2026-05-10T00:00"),
    ("@daily", "2026-05-05T00:00"),
    ("@midnight", "2026-05-05T00:00"),
    ("@hourly", "2026-05-04T14:00"),
    ("@DAILY", "2026-05-05T00:00"),
    ("  @Weekly ", "2026-05-10T00:00"),
]


@pytest.mark.parametrize(("expr", "expected"), MACROS)
def test_macros(expr: str, expected: str) -> None:
    # 2026-05-04T13:07 is a Monday.
    assert next_fire(expr, "UTC", utc("2026-05-04T13:07")) == utc(expected)


CALENDAR_EDGES = [
    ("0 0 31 * *", "2026-04-01T00:00", "2026-05-31T00:00"),
    ("0 0 30 * *", "2027-02-01T00:00", "2027-03-30T00:00"),
    ("0 0 29 2 *", "2026-03-01T00:00", "2028-02-29T00:00"),
    ("0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00"),  # 2100 is no leap year
    ("0 0 29 2 */7", "2026-01-01T00:00", "2032-02-29T00:00"),  # Feb 29 that is a Sunday
    ("0 0 31 2 1", "2026-01-01T00:00", "2026-02-02T00:00"),  # OR: any Monday in February
    ("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59"),
    ("0 12 * * *", "2026-05-04T12:00", "2026-05-05T12:00"),  # strictly after
    ("0 12 * * *", "2026-05-04T11:59:59.999999", "2026-05-04T12:00"),
    ("* * * * *", "2026-05-04T13:07:30", "2026-05-04T13:08"),
    ("*/15 * * * *", "2026-12-31T23:59", "2027-01-01T00:00"),
    ("5-5 * * * *", "2026-05-04T13:07", "2026-05-04T14:05"),
    ("0-59/20 * * * *", "2026-05-04T13:07", "2026-05-04T13:20"),
    ("10-50/20 * * * *", "2026-05-04T13:31", "2026-05-04T13:50"),
    ("*/90 * * * *", "2026-05-04T13:07", "2026-05-04T14:00"),
    ("0 9-17/4 * * *", "2026-05-04T13:07", "2026-05-04T17:00"),
]


@pytest.mark.parametrize(("expr", "after", "expected"), CALENDAR_EDGES)
def test_calendar_edges(expr: str, after: str, expected: str) -> None:
    assert next_fire(expr, "UTC", utc(after)) == utc(expected)


def test_after_may_be_in_any_timezone() -> None:
    after = datetime(2026, 5, 4, 15, 7, tzinfo=timezone(timedelta(hours=2)))
    fire = next_fire("0 * * * *", "UTC", after)
    assert fire == utc("2026-05-04T14:00")
    assert fire is not None and fire.tzinfo is UTC


# --- validation -----------------------------------------------------------------------

NORMALISED = [
    ("0 9 * * *", "0 9 * * *"),
    ("  0   9\t* *  MON-FRI \n", "0 9 * * MON-FRI"),
    ("@Daily", "@daily"),
    (" @HOURLY ", "@hourly"),
    ("*/5 * * * *", "*/5 * * * *"),
    ("0 0 29 2 *", "0 0 29 2 *"),
    ("0 0 31 2 1", "0 0 31 2 1"),
]


@pytest.mark.parametrize(("expr", "expected"), NORMALISED)
def test_validate_cron_normalises(expr: str, expected: str) -> None:
    assert validate_cron(expr) == expected


NEVER_FIRES = [
    ("0 0 30 2 *", "never fires: day-of-month '30' never occurs in month '2'"),
    ("0 0 31 2 *", "never fires"),
    ("0 0 30,31 feb *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires: day-of-month '31' never occurs in month '4,6,9,11'"),
    ("0 0 31 2 */2", "never fires"),  # '*' in day-of-week: the fields AND
]


@pytest.mark.parametrize(("expr", "reason"), NEVER_FIRES)
def test_never_firing_expressions_are_rejected(expr: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        validate_cron(expr)
    assert str(caught.value).startswith(reason)


INVALID = [
    ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"),
    ("   ", "got 0"),
    ("0 9 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
    ("0 0 9 * * *", "got 6; seconds and year fields are not supported"),
    ("0 0 9 * * * 2027", "got 7; seconds and year fields are not supported"),
    ("@reboot", "@reboot is not supported"),
    ("@every 5m", "unknown macro '@every 5m'"),
    ("@fortnightly", "unknown macro '@fortnightly'; use one of @yearly, @annually"),
    ("60 * * * *", "bad minute '60': 60 is out of range 0-59"),
    ("* 24 * * *", "bad hour '24': 24 is out of range 0-23"),
    ("* * 0 * *", "bad day-of-month '0': 0 is out of range 1-31"),
    ("* * 32 * *", "bad day-of-month '32'"),
    ("* * * 13 *", "bad month '13': 13 is out of range 1-12"),
    ("* * * * 8", "bad day-of-week '8': 8 is out of range 0-7"),
    ("* * * * -1", "bad day-of-week '-1'"),
    ("*/0 * * * *", "bad minute '*/0': a step must be at least 1"),
    ("5/15 * * * *", "bad minute '5/15': a step needs '*' or a range before it"),
    ("5-1 * * * *", "bad minute '5-1': the range 5-1 runs backwards"),
    ("* * * * FRI-MON", "bad day-of-week 'FRI-MON': the range FRI-MON runs backwards"),
    ("*-5 * * * *", "bad minute '*-5': '*' cannot start a range"),
    ("1,,2 * * * *", "bad minute '1,,2': empty list element"),
    ("1, * * * *", "bad minute '1,': empty list element"),
    ("x * * * *", "bad minute 'x': names are not allowed in the minute field"),
    ("* * * smarch *", "bad month 'smarch': unknown name 'smarch'"),
    ("* * * * monday", "bad day-of-week 'monday': unknown name 'monday'"),
    ("* * * JAN/2 *", "bad month 'JAN/2': a step needs '*' or a range before it"),
    ("* * * * 1/a", "bad day-of-week '1/a': '1/a' is not a value, range or step"),
    ("1.5 * * * *", "bad minute '1.5'"),
    ("0 0 L * *", "bad day-of-month 'L': 'L', 'W', '#', '?' and 'H' are extensions"),
    ("0 0 15W * *", "are extensions; only standard cron is supported"),
    ("0 0 LW * *", "are extensions"),
    ("0 0 * * 5L", "are extensions"),
    ("0 0 * * 1#2", "bad day-of-week '1#2': 'L', 'W', '#', '?' and 'H' are extensions"),
    ("0 0 ? * 1", "bad day-of-month '?'"),
    ("H * * * *", "bad minute 'H'"),
    ("0\u00a09 * * *", "got 4"),
]


@pytest.mark.parametrize(("expr", "reason"), INVALID)
def test_invalid_expressions_say_why(expr: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        validate_cron(expr)
    assert reason in str(caught.value)


def test_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="never fires"):
        next_fire("0 0 30 2 *", "UTC", utc("2026-01-01T00:00"))


HOUR_FIELDS = [
    ("* * * * *", False),
    ("0 */2 * * *", False),
    ("0 0-23/3 * * *", False),
    ("0 00-23/3 * * *", False),
    ("0 0-23 * * *", False),
    ("0 */1 * * *", False),
    ("@hourly", False),
    ("0 9 * * *", True),
    ("0 9-17 * * *", True),
    ("0 9-17/2 * * *", True),
    ("0 0-22/2 * * *", True),
    ("0 1-23/2 * * *", True),
    ("0 */2,1 * * *", True),
    ("0 0,12 * * *", True),
    ("@daily", True),
    ("@midnight", True),
    ("@weekly", True),
    ("@monthly", True),
    ("@yearly", True),
]


@pytest.mark.parametrize(("expr", "fixed"), HOUR_FIELDS)
def test_hour_field_is_fixed(expr: str, fixed: bool) -> None:
    assert hour_field_is_fixed(expr) is fixed


def test_hour_field_is_fixed_rejects_bad_expressions() -> None:
    with pytest.raises(CronError):
        hour_field_is_fixed("0 25 * * *")


# --- arguments ------------------------------------------------------------------------


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("* * * * *", "UTC", datetime(2026, 5, 4, 13, 7))


def test_upcoming_fires_counts() -> None:
    assert fires("0 9 * * *", "UTC", "2026-05-04T13:07", 0) == []
    assert fires("0 9 * * *", "UTC", "2026-05-04T13:07", 2) == [
        utc("2026-05-05T09:00"),
        utc("2026-05-06T09:00"),
    ]
    with pytest.raises(ValueError, match="count"):
        fires("0 9 * * *", "UTC", "2026-05-04T13:07", -1)


ZONES = ["UTC", "Etc/UTC", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe"]


@pytest.mark.parametrize("name", ZONES)
def test_load_timezone(name: str) -> None:
    assert load_timezone(name) == ZoneInfo(name)


BAD_ZONES = [
    "",
    "Mars/Olympus_Mons",
    "/etc/localtime",
    "/usr/share/zoneinfo/UTC",
    "../zoneinfo/UTC",
    "Europe/../UTC",
    "Europe/",
    "America",
    "Europe/Berlin ",
    "Europe\\Berlin",
]


@pytest.mark.parametrize("name", BAD_ZONES)
def test_unknown_timezones_are_rejected(name: str) -> None:
    with pytest.raises(TimezoneError, match="unknown timezone"):
        load_timezone(name)


def test_next_fire_rejects_unknown_timezone() -> None:
    with pytest.raises(TimezoneError):
        next_fire("* * * * *", "Nowhere/Special", utc("2026-05-04T13:07"))


# --- timezones and daylight saving ------------------------------------------------------

TIMEZONES = [
    # Berlin is UTC+1 in winter and UTC+2 in summer.
    ("0 9 * * *", "Europe/Berlin", "2026-01-10T00:00", ["2026-01-10T08:00", "2026-01-11T08:00"]),
    ("0 9 * * *", "Europe/Berlin", "2026-07-10T00:00", ["2026-07-10T07:00", "2026-07-11T07:00"]),
    ("0 9 * * 1", "America/New_York", "2026-11-22T12:00", ["2026-11-23T14:00"]),
    ("30 23 * * *", "Asia/Kolkata", "2026-05-04T00:00", ["2026-05-04T18:00", "2026-05-05T18:00"]),
    # Local Monday 00:30 in Tokyo is Sunday in UTC.
    ("30 0 * * MON", "Asia/Tokyo", "2026-11-20T00:00", ["2026-11-22T15:30"]),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), TIMEZONES)
def test_expressions_read_local_time(expr: str, zone: str, after: str, expected: list[str]) -> None:
    assert fires(expr, zone, after, len(expected)) == [utc(x) for x in expected]


# New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
# Santiago (at midnight): 2026-04-05 00:00 -03 -> 04-04 23:00 -04 (03:00Z);
#                         2026-09-06 00:00 -04 -> 01:00 -03 (04:00Z).
# Lord Howe (half an hour): 2026-04-05 02:00 +11 -> 01:30 +10:30 (04-04 15:00Z);
#                           2026-10-04 02:00 +10:30 -> 02:30 +11 (10-03 15:30Z).
FIXED_HOUR_DST = [
    # A local time in the spring-forward gap fires once, at the end of the gap.
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-08T00:00",
        ["2026-03-08T07:00", "2026-03-09T06:30"],
    ),
    (
        "0,30 2 * * *",
        "America/New_York",
        "2026-03-08T00:00",
        ["2026-03-08T07:00", "2026-03-09T06:00"],
    ),
    (
        "0 2,3 * * *",
        "America/New_York",
        "2026-03-08T00:00",
        ["2026-03-08T07:00", "2026-03-09T06:00", "2026-03-09T07:00"],
    ),
    ("*/20 2 * * *", "America/New_York", "2026-03-08T06:59:59", ["2026-03-08T07:00"]),
    ("30 2 * * *", "America/New_York", "2026-03-08T07:00", ["2026-03-09T06:30"]),
    # A local time that happens twice fires once, at its first occurrence.
    (
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00",
        ["2026-11-01T05:30", "2026-11-02T06:30"],
    ),
    (
        "*/20 1 * * *",
        "America/New_York",
        "2026-11-01T04:00",
        ["2026-11-01T05:00", "2026-11-01T05:20", "2026-11-01T05:40", "2026-11-02T06:00"],
    ),
    ("30 1 * * *", "America/New_York", "2026-11-01T06:10", ["2026-11-02T06:30"]),
    ("30 2 * * *", "Europe/Berlin", "2026-03-29T00:00", ["2026-03-29T01:00", "2026-03-30T00:30"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:00", ["2026-10-25T00:30", "2026-10-26T01:30"]),
    ("0 0 * * *", "America/Santiago", "2026-09-05T12:00", ["2026-09-06T04:00", "2026-09-07T03:00"]),
    (
        "30 23 * * *",
        "America/Santiago",
        "2026-04-04T12:00",
        ["2026-04-05T02:30", "2026-04-06T03:30"],
    ),
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T00:00",
        ["2026-10-03T15:30", "2026-10-04T15:15"],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00",
        ["2026-04-04T14:45", "2026-04-05T15:15"],
    ),
    # Samoa skipped 2011-12-30 entirely: that day's 09:00 fires when 12-31 begins.
    (
        "0 9 * * *",
        "Pacific/Apia",
        "2011-12-29T00:00",
        ["2011-12-29T19:00", "2011-12-30T10:00", "2011-12-30T19:00"],
    ),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), FIXED_HOUR_DST)
def test_fixed_hour_fires_once_per_local_time(
    expr: str, zone: str, after: str, expected: list[str]
) -> None:
    assert fires(expr, zone, after, len(expected)) == [utc(x) for x in expected]


CADENCE_DST = [
    # Every matching real minute: a repeated hour fires twice, a skipped one not at all.
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-03-08T06:00",
        ["2026-03-08T06:30", "2026-03-08T07:00", "2026-03-08T07:30"],
    ),
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T05:00",
        ["2026-11-01T05:30", "2026-11-01T06:00", "2026-11-01T06:30", "2026-11-01T07:00"],
    ),
    # 01:30 EDT is the first 01:30; the next :00 is the second 01:00, half an hour on.
    ("0 * * * *", "America/New_York", "2026-11-01T05:30", ["2026-11-01T06:00", "2026-11-01T07:00"]),
    ("30 1 * * *", "America/New_York", "2026-11-01T05:45", ["2026-11-02T06:30"]),  # fixed: once
    (
        "30 * * * *",
        "America/New_York",
        "2026-11-01T05:45",
        ["2026-11-01T06:30", "2026-11-01T07:30"],
    ),
    (
        "0 */2 * * *",
        "America/New_York",
        "2026-11-01T03:00",
        ["2026-11-01T04:00", "2026-11-01T07:00"],
    ),
    (
        "0 */2 * * *",
        "America/New_York",
        "2026-03-08T05:30",
        ["2026-03-08T08:00", "2026-03-08T10:00"],
    ),
    (
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-10-25T00:00",
        ["2026-10-25T00:30", "2026-10-25T01:00", "2026-10-25T01:30"],
    ),
    ("0 * * * *", "America/Santiago", "2026-09-06T03:00", ["2026-09-06T04:00", "2026-09-06T05:00"]),
    (
        "30 * * * *",
        "America/Santiago",
        "2026-04-05T02:00",
        ["2026-04-05T02:30", "2026-04-05T03:30", "2026-04-05T04:30"],
    ),
    (
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2026-10-03T15:00",
        ["2026-10-03T15:15", "2026-10-03T15:30", "2026-10-03T15:45"],
    ),
    ("0 * 30 12 *", "Pacific/Apia", "2011-12-29T00:00", ["2012-12-29T10:00"]),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), CADENCE_DST)
def test_hour_star_or_step_keeps_real_cadence(
    expr: str, zone: str, after: str, expected: list[str]
) -> None:
    assert fires(expr, zone, after, len(expected)) == [utc(x) for x in expected]


FULL_HOUR_RANGE = [
    # `0-23` covers every hour, so it counts as `*`: the repeated hour fires twice (a fixed
    # hour would fire once) and the skipped one not at all, every step one real hour.
    (
        "0 0-23 * * *",
        "America/New_York",
        "2026-11-01T04:00",
        ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"],
    ),
    (
        "0 0-23 * * *",
        "America/New_York",
        "2026-03-08T05:00",
        ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00"],
    ),
    (
        "30 0-23 * * *",
        "Europe/Berlin",
        "2026-10-24T23:00",
        ["2026-10-24T23:30", "2026-10-25T00:30", "2026-10-25T01:30", "2026-10-25T02:30"],
    ),
    (
        "*/30 0-23 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T14:00",
        ["2026-04-04T14:30", "2026-04-04T15:00", "2026-04-04T15:30", "2026-04-04T16:00"],
    ),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), FULL_HOUR_RANGE)
def test_an_hour_field_of_0_to_23_counts_as_star_through_dst(
    expr: str, zone: str, after: str, expected: list[str]
) -> None:
    star = expr.replace("0-23", "*")
    assert fires(expr, zone, after, len(expected)) == [utc(x) for x in expected]
    assert fires(expr, zone, after, 48) == fires(star, zone, after, 48)


TRANSITIONS = [
    ("America/New_York", "2026-03-08T04:00", [], ["02:00", "02:30"]),
    ("America/New_York", "2026-11-01T04:00", ["01:00", "01:30"], []),
    ("Europe/Berlin", "2026-03-28T23:00", [], ["02:00", "02:30"]),
    ("Europe/Berlin", "2026-10-24T23:00", ["02:00", "02:30"], []),
    ("America/Santiago", "2026-04-05T00:00", ["23:00", "23:30"], []),
    ("America/Santiago", "2026-09-06T01:00", [], ["00:00", "00:30"]),
]


@pytest.mark.parametrize(("zone", "after", "repeated", "skipped"), TRANSITIONS)
def test_half_hourly_cadence_is_thirty_real_minutes_through_transitions(
    zone: str, after: str, repeated: list[str], skipped: list[str]
) -> None:
    instants = fires("*/30 * * * *", zone, after, 12)
    steps = {later - earlier for earlier, later in pairwise(instants)}
    assert steps == {timedelta(minutes=30)}
    walls = [instant.astimezone(ZoneInfo(zone)).strftime("%H:%M") for instant in instants]
    assert all(walls.count(wall) == 2 for wall in repeated)
    assert not set(walls) & set(skipped)
    assert len(set(walls)) == 12 - len(repeated)


ODD_ZONES = ["Australia/Lord_Howe", "America/Santiago", "America/Sao_Paulo", "Pacific/Apia"]
ODD_EXPRESSIONS = ["*/7 * * * *", "0 0 * * *", "30 0 * * *", "15 2 * * *", "0 */5 * * 0"]


@pytest.mark.parametrize("zone", ODD_ZONES)
@pytest.mark.parametrize("expr", ODD_EXPRESSIONS)
def test_odd_zones_are_searched_without_hanging(zone: str, expr: str) -> None:
    # Sao Paulo moved its clocks at midnight until 2019; Samoa skipped 2011-12-30.
    for after in ("2011-12-29T00:00", "2018-11-03T00:00", "2019-02-16T00:00", "2026-04-04T00:00"):
        instants = fires(expr, zone, after, 40)
        assert len(instants) == 40
        assert all(a < b for a, b in pairwise(instants))


END_OF_TIME = [
    ("0 0 1 1 *", "UTC", "9999-06-01T00:00"),
    ("* * * * *", "UTC", "9999-12-31T23:59"),
    ("* * * * *", "Pacific/Kiritimati", "9999-12-31T09:59"),
]


@pytest.mark.parametrize(("expr", "zone", "after"), END_OF_TIME)
def test_no_fire_past_the_end_of_the_datetime_range(expr: str, zone: str, after: str) -> None:
    assert next_fire(expr, zone, utc(after)) is None
    assert fires(expr, zone, after, 3) == []
