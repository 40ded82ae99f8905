"""The runs table: each `Store` run operation as a function of one SQLite connection.

They run on a database thread inside the transaction `storage.db` gives them; the contracts
are `storage.store.Store`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from storage import dialects, prepared, rules, sqlite_history
from storage.domain import FinishedRun, HistoryEntry, Run, RunOutcome, Schedule
from storage.enums import RunStatus
from storage.errors import NotFound
from storage.history import ENGINE, entry_of
from storage.sqlite_rows import bound, page, rows_by_id, run, schedule, values_of
from storage.store import OrgLaunch, Page
from storage.tables import RUNS, SCHEDULES

# Run with many parameter sets at once (one executemany, not one per row).
_CLAIM = dialects.ByDialect(
    lambda insert: insert(RUNS).on_conflict_do_nothing().returning(RUNS.c.id)
)
_FINISH_RUN = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in rules.RUN_RESULT})
)
_KEEP_BOOKS = (
    update(SCHEDULES)
    .where(SCHEDULES.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in rules.BOOKKEEPING})
)

_LAUNCHING = select(RUNS).where(RUNS.c.status == RunStatus.LAUNCHING)
_UNFINISHED = select(RUNS).where(RUNS.c.status.in_([RunStatus.LAUNCHING, RunStatus.RUNNING]))
_NEWEST_FIRST = (RUNS.c.scheduled_for.desc(), RUNS.c.started_at.desc())


def claim(conn: Connection, runs: Sequence[Run]) -> list[Run]:
    """Insert the runs whose (schedule_id, scheduled_for) is new; those, in order."""
    if not runs:
        return []
    claim_ = _CLAIM[conn.dialect.name]
    inserted = set(conn.execute(claim_, [values_of(item) for item in runs]).scalars())
    return [item for item in runs if item.id in inserted]


def finish(
    conn: Connection, outcomes: Sequence[RunOutcome], max_failures: int
) -> list[FinishedRun]:
    """Fold `outcomes` into their runs and schedules: reads and writes in bulk."""
    run_ids = (o.run_id for o in outcomes)
    runs = {row.id: run(row) for row in rows_by_id(conn, RUNS, run_ids, lock=True)}
    schedule_ids = (item.schedule_id for item in runs.values())
    before = {row.id: schedule(row) for row in rows_by_id(conn, SCHEDULES, schedule_ids, lock=True)}
    finished, after = rules.fold_outcomes(runs, before, outcomes, max_failures)
    if finished:
        names = ("id", *rules.RUN_RESULT)
        conn.execute(_FINISH_RUN, [bound(item.run, names) for item in finished])
    changed = [value for sid, value in after.items() if value != before[sid]]
    if changed:
        conn.execute(_KEEP_BOOKS, [bound(value, ("id", *rules.BOOKKEEPING)) for value in changed])
        sqlite_history.record(conn, _engine_edits(before, changed))
    return finished


def _engine_edits(
    before: Mapping[str, Schedule], changed: Iterable[Schedule]
) -> Iterator[HistoryEntry | None]:
    """History entries of the schedules a batch of outcomes paused or disabled (the rest
    changed only bookkeeping, which is not history)."""
    for after in changed:
        previous = before[after.id]
        if previous.version != after.version:
            yield entry_of(previous, after, by=ENGINE, at=after.updated_at)


def launching(conn: Connection) -> list[Run]:
    return [run(row) for row in conn.execute(_LAUNCHING)]


def unfinished(conn: Connection) -> list[Run]:
    return [run(row) for row in conn.execute(_UNFINISHED)]


def mark_dispatched(conn: Connection, run_id: str, at: datetime) -> int:
    return prepared.MARK_DISPATCHED.run(conn, b_id=run_id, b_at=at)


def get(conn: Connection, run_id: str) -> Run:
    row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one_or_none()
    if row is None:
        raise NotFound(f"run '{run_id}' not found")
    return run(row)


def page_of(conn: Connection, schedule_id: str, limit: int, offset: int) -> Page[Run]:
    where = RUNS.c.schedule_id == schedule_id
    rows, total = page(conn, RUNS, where, _NEWEST_FIRST, limit, offset)
    return Page([run(r) for r in rows], total)


def previous(conn: Connection, schedule_id: str, before: datetime) -> Run | None:
    statement = (
        select(RUNS)
        .where(RUNS.c.schedule_id == schedule_id, RUNS.c.scheduled_for < before)
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )
    row = conn.execute(statement).one_or_none()
    return None if row is None else run(row)


def last_success_at(conn: Connection, schedule_id: str) -> datetime | None:
    statement = select(func.max(RUNS.c.finished_at)).where(
        RUNS.c.schedule_id == schedule_id, RUNS.c.status == RunStatus.SUCCEEDED
    )
    moment: datetime | None = conn.execute(statement).scalar_one_or_none()
    return moment  # max() keeps the column's type: read back as an aware datetime


def launches_since(conn: Connection, since: datetime) -> list[OrgLaunch]:
    statement = (
        select(SCHEDULES.c.org_id, RUNS.c.id, RUNS.c.dispatched_at)
        .join(SCHEDULES, SCHEDULES.c.id == RUNS.c.schedule_id)
        .where(RUNS.c.dispatched_at >= since)
        .order_by(RUNS.c.dispatched_at)
    )
    return [OrgLaunch(org_id, run_id, at) for org_id, run_id, at in conn.execute(statement)]
