"""The schedules table: each `Store` schedule operation as a function of one SQLite connection.

They run on a database thread inside the transaction `storage.db` gives them (or on the
loop thread for `live`, see `Database.lookup`); the contracts are `storage.store.Store`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, select, update
from sqlalchemy.engine import Connection

from storage import dialects, prepared, rules, sqlite_history
from storage.domain import Schedule
from storage.errors import NotFound, VersionMismatch
from storage.history import ENGINE
from storage.sqlite_rows import chunks, page, rows_by_id, schedule, schedule_of, values_of
from storage.store import FireState, Move, Page
from storage.tables import SCHEDULES

COLUMNS = frozenset(c.name for c in SCHEDULES.columns)

# Run with many parameter sets at once (one executemany, not one per row).
_MOVE = (
    update(SCHEDULES)
    .where(SCHEDULES.c.id == bindparam("b_id"))
    .values(next_run_at=bindparam("b_next_run_at"))
)
_NOT_DELETED = SCHEDULES.c.deleted_at.is_(None)
_CONFIG = (
    select(SCHEDULES)
    .where(SCHEDULES.c.from_config.is_(True), _NOT_DELETED)
    .order_by(SCHEDULES.c.org_id, SCHEDULES.c.name)
)
_COUNT_ACTIVE = (
    select(func.count()).select_from(SCHEDULES).where(SCHEDULES.c.enabled.is_(True), _NOT_DELETED)
)
_CREATION_ORDER: tuple[Any, ...] = (SCHEDULES.c.created_at, literal_column("schedules.rowid"))
"""SQLite's implicit `rowid` is the insertion order; PostgreSQL's schema gives the table an
explicit `rowid` column from a sequence (`storage.postgres_db`)."""


def insert(conn: Connection, stored: Schedule) -> Schedule:
    prepared.INSERT_SCHEDULE.run(conn, **values_of(stored))
    sqlite_history.record_change(conn, None, stored, stored.created_by)
    dialects.announce(conn, stored.id)
    return stored


def live(
    conn: Connection,
    schedule_id: str,
    org_id: str | None,
    agents: Collection[str] | None = None,
    *,
    lock: bool = False,
    owner_user_id: str | None = None,
) -> Schedule:
    """The live schedule by id, of `org_id`, of one of `agents` and owned by `owner_user_id`
    when given; else NotFound.

    The agent is checked on the row read by key (one row at most), which keeps the hot
    statements prepared once; lists filter in SQL (see `page_of`). `lock` keeps the row
    locked until the transaction ends (for a read-check-write among several writers).
    """
    if org_id is None:
        read = prepared.LOCKED_SCHEDULE if lock else prepared.LIVE_SCHEDULE
        values = read.one_or_none(conn, b_id=schedule_id)
    else:
        read = prepared.LOCKED_SCHEDULE_IN_ORG if lock else prepared.LIVE_SCHEDULE_IN_ORG
        values = read.one_or_none(conn, b_id=schedule_id, b_org=org_id)
    if (
        values is None
        or (agents is not None and values["agent"] not in agents)
        or (owner_user_id is not None and values["owner_user_id"] != owner_user_id)
    ):
        raise NotFound(f"schedule '{schedule_id}' not found")
    return schedule_of(values)


def edit(
    conn: Connection,
    schedule_id: str,
    changes: Mapping[str, Any],
    now: datetime,
    org_id: str | None,
    agents: Collection[str] | None,
    check: Callable[[Schedule, Schedule], None] | None,
    if_version: Collection[int] | None = None,
    owner_user_id: str | None = None,
) -> Schedule:
    """Read, compare the version, edit (`rules.edited_schedule`), check and write the
    columns the edit may touch, and record the change in the schedule's history."""
    before = live(conn, schedule_id, org_id, agents, lock=True, owner_user_id=owner_user_id)
    if if_version is not None and before.version not in if_version:
        raise VersionMismatch(schedule_id, if_version, before.version)
    unknown = set(changes) - COLUMNS
    if unknown:
        raise ValueError(f"not schedule columns: {sorted(unknown)}")
    after = rules.edited_schedule(before, changes, now)
    if check is not None:
        check(before, after)
    _write(conn, before, after, {*changes, *rules.EDIT_ALSO_CHANGES})
    sqlite_history.record_change(conn, before, after, changes.get("last_edited_by"))
    dialects.announce(conn, schedule_id)
    return after


def _write(conn: Connection, before: Schedule, after: Schedule, names: Iterable[str]) -> None:
    """Write the columns among `names` whose value differs between `before` and `after`."""
    values = {
        name: value for name in names if (value := getattr(after, name)) != getattr(before, name)
    }
    if values:
        params = {f"b_{name}": value for name, value in values.items()}
        prepared.update_schedule_columns(tuple(sorted(values))).run(conn, b_id=after.id, **params)


def page_of(
    conn: Connection,
    org_id: str,
    limit: int,
    offset: int,
    owner_user_id: str | None,
    agents: Collection[str] | None,
) -> Page[Schedule]:
    where = and_(SCHEDULES.c.org_id == org_id, _NOT_DELETED)
    if owner_user_id is not None:
        where = and_(where, SCHEDULES.c.owner_user_id == owner_user_id)
    if agents is not None:
        where = and_(where, SCHEDULES.c.agent.in_(sorted(agents)))
    rows, total = page(conn, SCHEDULES, where, _CREATION_ORDER, limit, offset)
    return Page([schedule(r) for r in rows], total)


def by_name(conn: Connection, org_id: str, name: str) -> Schedule | None:
    query = select(SCHEDULES).where(
        SCHEDULES.c.org_id == org_id, SCHEDULES.c.name == name, _NOT_DELETED
    )
    row = conn.execute(query).first()
    return None if row is None else schedule(row)


def from_config(conn: Connection) -> list[Schedule]:
    return [schedule(r) for r in conn.execute(_CONFIG)]


def on_launchers(conn: Connection, names: list[str]) -> list[Schedule]:
    if not names:
        return []
    query = (
        select(SCHEDULES)
        .where(SCHEDULES.c.launcher.in_(names), _NOT_DELETED)
        .order_by(SCHEDULES.c.org_id, SCHEDULES.c.name)
    )
    return [schedule(row) for row in conn.execute(query)]


def due(
    conn: Connection, until: datetime, limit: int, after: tuple[datetime, str] | None
) -> list[Schedule]:
    """A page of active schedules due by `until`, keyset-paged on (`next_run_at`, `id`)."""
    where = and_(SCHEDULES.c.next_run_at <= until, SCHEDULES.c.enabled.is_(True), _NOT_DELETED)
    if after is not None:
        instant, schedule_id = after
        where = and_(
            where,
            (SCHEDULES.c.next_run_at > instant)
            | and_(SCHEDULES.c.next_run_at == instant, SCHEDULES.c.id > schedule_id),
        )
    query = (
        select(SCHEDULES)
        .where(where)
        .order_by(SCHEDULES.c.next_run_at, SCHEDULES.c.id)
        .limit(limit)
    )
    return [schedule(r) for r in conn.execute(query)]


def live_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Schedule]:
    return {row.id: schedule(row) for row in rows_by_id(conn, SCHEDULES, ids, _NOT_DELETED)}


def fire_states(conn: Connection, ids: Iterable[str]) -> dict[str, FireState]:
    states = {}
    for chunk in chunks(sorted(set(ids))):
        params = {f"b_{index}": value for index, value in enumerate(chunk)}
        for row in prepared.fire_state_query(len(chunk)).all(conn, **params):
            states[row[0]] = FireState(*row[1:])
    return states


def count_active(conn: Connection) -> int:
    return int(conn.execute(_COUNT_ACTIVE).scalar_one())


def disable_if_due(conn: Connection, schedule_id: str, expected: datetime, now: datetime) -> bool:
    before = live_by_id(conn, [schedule_id]).get(schedule_id)
    if before is None or before.next_run_at != expected:
        return False
    after = rules.disabled_when_missed(before, now)
    _write(conn, before, after, ("enabled", "next_run_at", "updated_at", "version"))
    sqlite_history.record_change(conn, before, after, ENGINE)
    return True


def advance(conn: Connection, moves: Sequence[Move]) -> list[str]:
    """Compare-and-set `next_run_at` of each move, in order; the ids moved."""
    # Read, compare and write in one transaction, the rows locked (SQLite: by its only
    # writer): nothing can change `next_run_at` between the compare and the set.
    columns = (SCHEDULES.c.id, SCHEDULES.c.next_run_at)
    rows = rows_by_id(conn, SCHEDULES, (move[0] for move in moves), columns=columns, lock=True)
    current = {row.id: row.next_run_at for row in rows}
    moved, writes = [], {}
    for schedule_id, expected, new in moves:
        if schedule_id in current and current[schedule_id] == expected:
            current[schedule_id] = writes[schedule_id] = new
            moved.append(schedule_id)
    if writes:
        conn.execute(_MOVE, [{"b_id": k, "b_next_run_at": v} for k, v in writes.items()])
    return moved
