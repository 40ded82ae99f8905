"""When a schedule fires next, as its pages show it."""

from __future__ import annotations

from datetime import datetime

from storage.domain import Schedule
from storage.enums import ScheduleType
from storage.timing import next_run_after

SHOWN = 3
"""How many next fires a page shows."""


def next_fires(schedule: Schedule, now: datetime, count: int = SHOWN) -> list[datetime]:
    """The next `count` nominal instants of `schedule` after `now` (its start and end bounds
    applied); none when it is disabled. A one_time schedule has its one instant, if pending."""
    if not schedule.is_active:
        return []
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        return [schedule.next_run_at] if schedule.next_run_at else []
    fires: list[datetime] = []
    moment: datetime | None = now
    while len(fires) < count and moment is not None:
        moment = next_run_after(schedule, moment)
        if moment is not None:
            fires.append(moment)
    return fires
