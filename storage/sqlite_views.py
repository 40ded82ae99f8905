"""The dashboard's reads on SQLite: schedules by state, last runs, an org's runs.

Plain functions of a connection, run by `SqliteStore` on a reader thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, case, func, select
from sqlalchemy.engine import Connection

from storage import sqlite_rows as rows
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleState
from storage.store import NamedRun
from storage.tables import RUNS, SCHEDULES

_FAILED = [status.value for status in RunStatus if status.is_failure]
_IN_STATE: dict[ScheduleState, Any] = {
    ScheduleState.ALL: SCHEDULES.c.id.is_not(None),
    ScheduleState.ENABLED: SCHEDULES.c.enabled.is_(True),
    ScheduleState.PAUSED: SCHEDULES.c.enabled.is_(False),
    ScheduleState.FAILING: SCHEDULES.c.consecutive_failures > 0,
}
"""The condition a live schedule meets in each dashboard state."""

_LATEST = (
    select(RUNS.c.id)
    .where(RUNS.c.schedule_id == SCHEDULES.c.id)
    .order_by(RUNS.c.started_at.desc())
    .limit(1)
    .correlate(SCHEDULES)
    .scalar_subquery()
)


def schedules_in_state(
    conn: Connection, org_id: str, state: ScheduleState, limit: int, offset: int
) -> list[Schedule]:
    where = and_(SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None), _IN_STATE[state])
    query = (
        select(SCHEDULES)
        .where(where)
        .order_by(SCHEDULES.c.name, SCHEDULES.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [rows.schedule(row) for row in conn.execute(query)]


def count_by_state(conn: Connection, org_id: str) -> dict[ScheduleState, int]:
    query = select(*(func.count().filter(_IN_STATE[state]) for state in ScheduleState)).where(
        SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None)
    )
    counts = conn.execute(query).one()
    return {state: int(count) for state, count in zip(ScheduleState, counts, strict=True)}


def last_runs(conn: Connection, schedule_ids: Sequence[str]) -> dict[str, Run]:
    """Two index look-ups per schedule, however long its history."""
    runs: dict[str, Run] = {}
    for chunk in rows.chunks(sorted(set(schedule_ids))):
        run_ids = select(_LATEST).where(SCHEDULES.c.id.in_(chunk))
        for row in conn.execute(select(RUNS).where(RUNS.c.id.in_(run_ids))):
            runs[row.schedule_id] = rows.run(row)
    return runs


def org_runs(
    conn: Connection, org_id: str, limit: int, offset: int, failures_first: bool
) -> tuple[list[NamedRun], bool]:
    order: list[Any] = [RUNS.c.started_at.desc(), RUNS.c.id]
    if failures_first:
        order.insert(0, case((RUNS.c.status.in_(_FAILED), 0), else_=1))
    query = (
        select(RUNS, SCHEDULES.c.name.label("schedule_name"))
        .join(SCHEDULES, RUNS.c.schedule_id == SCHEDULES.c.id)
        .where(SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None))
        .order_by(*order)
        .limit(limit + 1)
        .offset(offset)
    )
    found = conn.execute(query).all()
    return [_named_run(row) for row in found[:limit]], len(found) > limit


def _named_run(row: Row[Any]) -> NamedRun:
    values = dict(row._mapping)
    name = values.pop("schedule_name")
    values["trigger"] = RunTrigger(values["trigger"])
    values["status"] = RunStatus(values["status"])
    return NamedRun(Run(**values), name)
