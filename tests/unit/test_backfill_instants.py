"""`cron_instants_between`: the instants a backfill covers, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.domain import Schedule
from storage.enums import ScheduleType
from storage.timing import cron_instants_between

T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)


def schedule(cron: str | None = "0 * * * *", **fields: Any) -> Schedule:
    return Schedule(
        org_id="o", name="n", prompt="p", cron=cron, created_at=T0, updated_at=T0, **fields
    )


def hours(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(hours=h) for h in offsets]


@pytest.mark.parametrize(
    ("value", "start", "end", "limit", "expected"),
    [
        # [start, end): the start is included, the end is not.
        (schedule(), T0, T0 + timedelta(hours=3), 10, hours(0, 1, 2)),
        (schedule(), T0 + timedelta(seconds=1), T0 + timedelta(hours=3), 10, hours(1, 2)),
        (schedule(), T0, T0 + timedelta(hours=3, seconds=1), 10, hours(0, 1, 2, 3)),
        # at most `limit` (the caller asks one more to tell "too many")
        (schedule(), T0, T0 + timedelta(hours=5), 2, hours(0, 1)),
        # the schedule's own window bounds it, both ends included as for regular fires
        (
            schedule(start_at=hours(1)[0], end_at=hours(2)[0]),
            T0,
            T0 + timedelta(hours=5),
            10,
            hours(1, 2),
        ),
        # paused: still its instants (a backfill is explicit)
        (schedule(enabled=False), T0, T0 + timedelta(hours=2), 10, hours(0, 1)),
        # the spring-forward night in Paris, as the engine fires it: 02:30 does not exist on
        # 29 March and fires at the change, 03:00 local
        (
            schedule("30 1-3 * * *", timezone="Europe/Paris"),
            T0,
            T0 + timedelta(hours=6),
            10,
            [
                datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
                datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
            ],
        ),
        # a one_time schedule has no cron instants
        (
            schedule(None, schedule_type=ScheduleType.ONE_TIME, scheduled_at=T0),
            T0,
            T0 + timedelta(hours=1),
            10,
            [],
        ),
    ],
)
def test_the_instants_of_a_range(
    value: Schedule, start: datetime, end: datetime, limit: int, expected: list[datetime]
) -> None:
    assert cron_instants_between(value, start, end, limit=limit) == expected
