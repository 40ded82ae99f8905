"""When a schedule fires next: a pure function of the schedule and an instant."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from storage import cron
from storage.catalogue import RESCHEDULING
from storage.domain import Schedule
from storage.enums import ScheduleType

TIMING_FIELDS = RESCHEDULING
"""Changing any of these recomputes `next_run_at`; other edits keep the pending instant."""

_TICK = timedelta(microseconds=1)


def next_run_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first nominal fire instant of `schedule` strictly after `after`, or None.

    A disabled or deleted schedule never fires. A one_time schedule fires at `scheduled_at`
    even when that instant has passed (the engine decides whether it is still worth a catch-up).
    `start_at` and `end_at` bound the instants when set.
    """
    if not schedule.is_active:
        return None
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        instant = schedule.scheduled_at
        if instant is None or (schedule.start_at is not None and instant < schedule.start_at):
            return None
    else:
        instant = _next_cron_instant(schedule, after)
    if instant is None or (schedule.end_at is not None and instant > schedule.end_at):
        return None
    return instant


def _next_cron_instant(schedule: Schedule, after: datetime) -> datetime | None:
    if schedule.cron is None:
        return None
    if schedule.start_at is not None and schedule.start_at - _TICK > after:
        after = schedule.start_at - _TICK
    return cron.next_fire(schedule.cron, schedule.timezone, after)


def jitter_offset(
    schedule: Schedule, instant: datetime, next_instant: datetime | None
) -> timedelta:
    """A deterministic delay in [0, jitter_s) for this schedule and instant.

    Derived from the schedule id and the instant, so every process and restart agrees; kept
    below the gap to the next instant so a jittered fire never reaches the next one.
    """
    if schedule.jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule.id}|{instant.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    limit = schedule.jitter_s
    if next_instant is not None:
        limit = min(limit, max((next_instant - instant).total_seconds() - 1.0, 0.0))
    return timedelta(seconds=fraction * limit)


def cron_instants_between(
    schedule: Schedule, start: datetime, end: datetime, *, limit: int
) -> list[datetime]:
    """The nominal cron instants of `schedule` in [start, end), at most `limit` of them.

    Whether the schedule is enabled does not matter (a backfill of a paused schedule is an
    explicit request); its `start_at`/`end_at` bound the instants as for regular fires. A
    one_time schedule has no cron instants: the answer is empty.
    """
    if schedule.cron is None or schedule.schedule_type == ScheduleType.ONE_TIME:
        return []
    if schedule.start_at is not None:
        start = max(start, schedule.start_at)
    if schedule.end_at is not None:
        end = min(end, schedule.end_at + _TICK)
    instants: list[datetime] = []
    moment = cron.next_fire(schedule.cron, schedule.timezone, start - _TICK)
    while moment is not None and moment < end and len(instants) < limit:
        instants.append(moment)
        moment = cron.next_fire(schedule.cron, schedule.timezone, moment)
    return instants
