"""The store: every read and write of agentcron's state, behind one documented interface.

Callers get immutable values from `storage.domain`; SQLAlchemy never leaves this package.
Every write method runs as one operation of the writer's group commit (see `storage.db`):
it is atomic, and it returns only once its transaction is durable on disk.

Schedule reads and edits may be narrowed to some agents (`agents`, a set of agent ids; None
means any): a schedule of another agent is then as absent as one of another org.

Errors: `NotFound` for a missing (or soft-deleted, or other org's or agent's) object;
`StoreUnavailable` when the database cannot be read or written; exceptions raised by a
caller's `check` pass through unchanged, and then nothing was written.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert, Update

from storage.db import Database
from storage.domain import FinishedRun, Playbook, Run, RunOutcome, Schedule
from storage.enums import (
    NotifyOn,
    Overlap,
    PermissionMode,
    RunStatus,
    RunTrigger,
    ScheduleState,
    ScheduleType,
    Source,
)
from storage.identities import Directory
from storage.tables import ORGS, PLAYBOOKS, RUNS, SCHEDULES, SERVICE_USERS, USERS
from storage.timing import TIMING_FIELDS, next_run_after

T = TypeVar("T")

_SCHEDULE_ENUMS: dict[str, Callable[[Any], Any]] = {
    "schedule_type": ScheduleType,
    "notify_on": NotifyOn,
    "permission_mode": PermissionMode,
    "source": Source,
    "overlap": Overlap,
}
_SCHEDULE_COLUMNS = frozenset(c.name for c in SCHEDULES.columns)
_IDS_PER_QUERY = 500
"""Ids in one `IN (...)` list (SQLite allows 32,766 bound values in a statement)."""

# Statements run with many parameter sets at once (one executemany, not one per row).
_CLAIM = sqlite_insert(RUNS).on_conflict_do_nothing().returning(RUNS.c.id)
_MOVE = (
    update(SCHEDULES)
    .where(SCHEDULES.c.id == bindparam("b_id"))
    .values(next_run_at=bindparam("b_next_run_at"))
)
_RUN_RESULT = (
    "status",
    "finished_at",
    "attempts",
    "identity",
    "session_id",
    "session_url",
    "error",
)
_FINISH_RUN = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _RUN_RESULT})
)
_BOOKKEEPING = (
    "last_executed_at",
    "consecutive_failures",
    "last_error_at",
    "last_error_message",
    "enabled",
    "next_run_at",
    "paused_reason",
    "stateful_session_id",
)
"""Every schedule column `_bookkeeping` may change."""
_KEEP_BOOKS = (
    update(SCHEDULES)
    .where(SCHEDULES.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _BOOKKEEPING})
)


class NotFound(LookupError):
    """The object does not exist, is deleted, or belongs to another org."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the total number of items across all pages."""

    items: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class NamedRun:
    """A run with the name of its schedule, for lists of runs across schedules."""

    run: Run
    schedule_name: str


@dataclass(frozen=True, slots=True)
class FireState:
    """The parts of a stored schedule that change without its `version` moving.

    Every edit of a schedule's definition bumps `version`; the engine's own writes (the
    advance of `next_run_at`, a run's bookkeeping, which may disable the schedule or remember
    its stateful session) do not. A schedule read earlier with the same `version`, with
    these fields applied, is the stored schedule as far as firing it is concerned.
    """

    version: int
    enabled: bool
    deleted_at: datetime | None
    next_run_at: datetime | None
    stateful_session_id: str | None

    def applied_to(self, schedule: Schedule) -> Schedule:
        """`schedule` (of the same version) with these fields; itself when they agree."""
        fields = (
            schedule.enabled,
            schedule.deleted_at,
            schedule.next_run_at,
            schedule.stateful_session_id,
        )
        if fields == (self.enabled, self.deleted_at, self.next_run_at, self.stateful_session_id):
            return schedule
        return dataclasses.replace(
            schedule,
            enabled=self.enabled,
            deleted_at=self.deleted_at,
            next_run_at=self.next_run_at,
            stateful_session_id=self.stateful_session_id,
        )


_FIRE_STATE = (
    SCHEDULES.c.id,
    SCHEDULES.c.version,
    SCHEDULES.c.enabled,
    SCHEDULES.c.deleted_at,
    SCHEDULES.c.next_run_at,
    SCHEDULES.c.stateful_session_id,
)


_ENUM_MEMBERS: dict[str, dict[Any, Any]] = {
    name: {member.value: member for member in enum}  # type: ignore[attr-defined]
    for name, enum in _SCHEDULE_ENUMS.items()
}
"""Stored value -> member, for each enum column: a lookup is cheaper than the enum's call."""


@functools.lru_cache(maxsize=8)
def _fire_state_query(size: int) -> _Prepared:
    """The `FireState` columns (id first) of `size` schedules, ids bound as b_0..b_{size-1}."""
    ids: list[Any] = [bindparam(f"b_{index}") for index in range(size)]
    return _Prepared(select(*_FIRE_STATE).where(SCHEDULES.c.id.in_(ids)))


def _schedule(row: Row[Any]) -> Schedule:
    return _schedule_of(row._asdict())


def _schedule_of(values: dict[str, Any]) -> Schedule:
    for name, members in _ENUM_MEMBERS.items():
        value = values[name]
        values[name] = members[value] if value in members else _SCHEDULE_ENUMS[name](value)
    return Schedule(**values)


def _run(row: Row[Any]) -> Run:
    values = dict(row._mapping)
    values["trigger"] = RunTrigger(values["trigger"])
    values["status"] = RunStatus(values["status"])
    return Run(**values)


def _named_run(row: Row[Any]) -> NamedRun:
    values = dict(row._mapping)
    name = values.pop("schedule_name")
    values["trigger"] = RunTrigger(values["trigger"])
    values["status"] = RunStatus(values["status"])
    return NamedRun(Run(**values), name)


_FAILED = [status.value for status in RunStatus if status.is_failure]
_IN_STATE: dict[ScheduleState, Any] = {
    ScheduleState.ALL: SCHEDULES.c.id.is_not(None),
    ScheduleState.ENABLED: SCHEDULES.c.enabled.is_(True),
    ScheduleState.PAUSED: SCHEDULES.c.enabled.is_(False),
    ScheduleState.FAILING: SCHEDULES.c.consecutive_failures > 0,
}
"""The condition a live schedule meets in each dashboard state."""


def _playbook(row: Row[Any]) -> Playbook:
    return Playbook(**row._mapping)


def _values(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _IDS_PER_QUERY):
        yield items[start : start + _IDS_PER_QUERY]


def _rows_by_id(
    conn: Connection, table: Table, ids: Iterable[str], *where: Any, columns: Sequence[Any] = ()
) -> list[Row[Any]]:
    """The rows of `table` whose id is among `ids` (and that match `where`), any order.

    Every column, or only `columns` when given.
    """
    query = select(*columns) if columns else select(table)
    rows: list[Row[Any]] = []
    for chunk in _chunks(sorted(set(ids))):
        rows.extend(conn.execute(query.where(table.c.id.in_(chunk), *where)))
    return rows


@dataclass(frozen=True, slots=True)
class _Compiled:
    dialect: Any
    sql: str
    binds: tuple[tuple[str, Any], ...]  # (bind name, bind processor) in placeholder order
    columns: tuple[tuple[str, Any], ...]  # (column name, result processor) of a SELECT


class _Prepared:
    """A Core statement compiled once per dialect and run on the driver's own cursor.

    For the hottest statements (a schedule read by id for every GET and PATCH, the PATCH's
    UPDATE, the create's INSERT) SQLAlchemy's execution machinery, and for an INSERT of
    46 values building the statement, costs several times the statement itself. The
    SQL is still the Core statement's, compiled by SQLAlchemy's dialect, and the bound
    values and the row go through each type's own processors (UTC datetimes, JSON,
    booleans), so what is written and read is exactly what `conn.execute` would do.
    """

    def __init__(self, statement: Select[Any] | Update | Insert) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def one_or_none(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        """The row of a SELECT as a dict of converted values, or None."""
        compiled, raw = self._execute(conn, params, lambda cursor: cursor.fetchone())
        if raw is None:
            return None
        return {
            name: value if process is None else process(value)
            for (name, process), value in zip(compiled.columns, raw, strict=True)
        }

    def all(self, conn: Connection, **params: Any) -> list[list[Any]]:
        """The rows of a SELECT as lists of converted values."""
        compiled, raw = self._execute(conn, params, lambda cursor: cursor.fetchall())
        converting = [(i, process) for i, (_, process) in enumerate(compiled.columns) if process]
        rows = []
        for values in raw:
            row = list(values)
            for index, process in converting:
                row[index] = process(row[index])
            rows.append(row)
        return rows

    def run(self, conn: Connection, **params: Any) -> int:
        """Execute an UPDATE or INSERT; the number of rows it changed."""
        return int(self._execute(conn, params, lambda cursor: cursor.rowcount)[1])

    def _execute(
        self, conn: Connection, params: Mapping[str, Any], fetch: Callable[[Any], Any]
    ) -> tuple[_Compiled, Any]:
        """Run the statement on a fresh driver cursor; `fetch(cursor)` takes what it returns.

        A driver error is raised as SQLAlchemy raises it from `conn.execute` (an
        `OperationalError` wrapping the sqlite3 one, and so on), so that callers handle
        one kind of error whichever way a statement ran.
        """
        compiled = self._compile(conn)
        arguments = self._arguments(compiled, params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:  # closed at once: an open statement would keep its read snapshot
            return compiled, fetch(cursor.execute(compiled.sql, arguments))
        except sqlite3.Error as exc:
            raise DBAPIError.instance(compiled.sql, arguments, exc, sqlite3.Error) from exc
        finally:
            cursor.close()

    @staticmethod
    def _arguments(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            params[name] if process is None else process(params[name])
            for name, process in compiled.binds
        )

    def _compile(self, conn: Connection) -> _Compiled:
        compiled = self._compiled
        if compiled is None or compiled.dialect is not conn.dialect:
            dialect = conn.dialect
            sql = self.statement.compile(dialect=dialect)
            binds = tuple(
                (name, sql.binds[name].type.bind_processor(dialect))
                for name in sql.positiontup or ()
            )
            selected = self.statement.selected_columns if isinstance(self.statement, Select) else ()
            columns = tuple(
                (column.name, column.type.result_processor(dialect, None)) for column in selected
            )
            compiled = self._compiled = _Compiled(dialect, str(sql), binds, columns)
        return compiled


_LIVE = select(SCHEDULES).where(
    SCHEDULES.c.id == bindparam("b_id"), SCHEDULES.c.deleted_at.is_(None)
)
_LIVE_READ = _Prepared(_LIVE)
_LIVE_IN_ORG_READ = _Prepared(_LIVE.where(SCHEDULES.c.org_id == bindparam("b_org")))


_SCHEDULE_INSERT = _Prepared(
    insert(SCHEDULES).values({column.name: bindparam(column.name) for column in SCHEDULES.c})
)


def _live_schedule(
    conn: Connection,
    schedule_id: str,
    org_id: str | None,
    agents: Collection[str] | None = None,
) -> Schedule:
    """The live schedule by id, of `org_id` and of one of `agents` when given; else NotFound.

    The agent is checked on the row read by key (one row at most), which keeps the hot
    statements prepared once; lists filter in SQL (see `Store.list_schedules`).
    """
    if org_id is None:
        values = _LIVE_READ.one_or_none(conn, b_id=schedule_id)
    else:
        values = _LIVE_IN_ORG_READ.one_or_none(conn, b_id=schedule_id, b_org=org_id)
    if values is None or (agents is not None and values["agent"] not in agents):
        raise NotFound(f"schedule '{schedule_id}' not found")
    return _schedule_of(values)


_ALWAYS_CHANGED = ("updated_at", "version", "paused_reason", "next_run_at")
"""Columns `_changed_schedule` may set besides those it is asked to change."""


def _changeable(changes: Mapping[str, Any]) -> set[str]:
    return {*changes, *_ALWAYS_CHANGED}


def _changed_schedule(current: Schedule, changes: Mapping[str, Any], now: datetime) -> Schedule:
    unknown = set(changes) - _SCHEDULE_COLUMNS
    if unknown:
        raise ValueError(f"not schedule columns: {sorted(unknown)}")
    updates = dict(changes)
    if changes.get("enabled") is True and not current.enabled and "paused_reason" not in changes:
        updates["paused_reason"] = None  # re-enabling ends a pause
    if TIMING_FIELDS.intersection(changes) and "next_run_at" not in changes:
        updates["next_run_at"] = next_run_after(dataclasses.replace(current, **updates), now)
    updates |= {"updated_at": now, "version": current.version + 1}
    return dataclasses.replace(current, **updates)


def _write_schedule(
    conn: Connection, before: Schedule, after: Schedule, names: Iterable[str] = _SCHEDULE_COLUMNS
) -> None:
    """Write the columns among `names` whose value differs between `before` and `after`."""
    values = {
        name: value for name in names if (value := getattr(after, name)) != getattr(before, name)
    }
    if values:
        params = {f"b_{name}": value for name, value in values.items()}
        _schedule_update(tuple(sorted(values))).run(conn, b_id=after.id, **params)


@functools.lru_cache(maxsize=256)
def _schedule_update(names: tuple[str, ...]) -> _Prepared:
    """The UPDATE of these schedule columns, built and compiled once per column set."""
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in names}
    return _Prepared(update(SCHEDULES).where(SCHEDULES.c.id == bindparam("b_id")).values(values))


def _page(
    conn: Connection, table: Table, where: Any, order: Sequence[Any], limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    rows = conn.execute(
        select(table).where(where).order_by(*order).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


class Store:
    """agentcron's persistent state. Open with `await Store.open(path)`, close with `close()`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open or create the database file. Raises SchemaError / StoreUnavailable."""
        return cls(await Database.open(path))

    async def close(self) -> None:
        """Commit queued writes and close the file."""
        await self.db.close()

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule, *, now: datetime) -> Schedule:
        """Insert `schedule` with its `next_run_at` computed from `now`; return what was stored."""
        stored = dataclasses.replace(schedule, next_run_at=next_run_after(schedule, now))

        def op(conn: Connection) -> Schedule:
            _SCHEDULE_INSERT.run(conn, **_values(stored))
            return stored

        return await self.db.write(op)

    async def get_schedule(
        self,
        schedule_id: str,
        *,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Schedule:
        """The live schedule `schedule_id` (of `org_id`, of one of `agents`, when given).
        Raises NotFound."""
        return await self.db.lookup(lambda conn: _live_schedule(conn, schedule_id, org_id, agents))

    async def list_schedules(
        self,
        org_id: str,
        *,
        limit: int,
        offset: int,
        owner_user_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Page[Schedule]:
        """Live schedules of an org (optionally of one owner, of some agents) in creation
        order, paged; `total` counts the schedules that match, on every page."""
        where = and_(SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None))
        if owner_user_id is not None:
            where = and_(where, SCHEDULES.c.owner_user_id == owner_user_id)
        if agents is not None:
            where = and_(where, SCHEDULES.c.agent.in_(sorted(agents)))
        order: tuple[Any, ...] = (SCHEDULES.c.created_at, literal_column("schedules.rowid"))

        def op(conn: Connection) -> Page[Schedule]:
            rows, total = _page(conn, SCHEDULES, where, order, limit, offset)
            return Page([_schedule(r) for r in rows], total)

        return await self.db.read(op)

    async def find_schedule_by_name(self, org_id: str, name: str) -> Schedule | None:
        """The live schedule named `name` in `org_id`, or None."""

        def op(conn: Connection) -> Schedule | None:
            row = conn.execute(
                select(SCHEDULES).where(
                    SCHEDULES.c.org_id == org_id,
                    SCHEDULES.c.name == name,
                    SCHEDULES.c.deleted_at.is_(None),
                )
            ).first()
            return None if row is None else _schedule(row)

        return await self.db.read(op)

    async def list_config_schedules(self) -> list[Schedule]:
        """Live schedules made by the configuration file (`from_config`), of every org.

        Ordered by org, then name. Schedules made through the API are never listed here.
        """
        query = (
            select(SCHEDULES)
            .where(SCHEDULES.c.from_config.is_(True), SCHEDULES.c.deleted_at.is_(None))
            .order_by(SCHEDULES.c.org_id, SCHEDULES.c.name)
        )
        return await self.db.read(lambda conn: [_schedule(r) for r in conn.execute(query)])

    async def update_schedule(
        self,
        schedule_id: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
        check: Callable[[Schedule, Schedule], None] | None = None,
    ) -> Schedule:
        """Apply `changes` (column name -> value) atomically; return the schedule after them.

        Bumps `updated_at` and `version` (even for empty changes: the caller asked for a write).
        `next_run_at` is recomputed from `now` when a timing field changes. `check(before, after)`
        runs inside the transaction and may raise to refuse the change: nothing is written then.
        Raises NotFound.
        """

        def op(conn: Connection) -> Schedule:
            before = _live_schedule(conn, schedule_id, org_id, agents)
            after = _changed_schedule(before, changes, now)
            if check is not None:
                check(before, after)
            _write_schedule(conn, before, after, _changeable(changes))
            return after

        return await self.db.write(op)

    async def delete_schedule(
        self,
        schedule_id: str,
        *,
        now: datetime,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
        by: str | None = None,
    ) -> Schedule:
        """Soft-delete: it disappears from reads and never fires again. Raises NotFound."""
        changes = {"deleted_at": now, "next_run_at": None, "last_edited_by": by}
        return await self.update_schedule(
            schedule_id, changes, now=now, org_id=org_id, agents=agents
        )

    # -- engine ----------------------------------------------------------------------------

    async def due_schedules(
        self, until: datetime, *, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Schedule]:
        """Active schedules whose `next_run_at` is at or before `until`, soonest first.

        Ordered by (`next_run_at`, `id`); pass the last pair of a page as `after` to read the
        next page (keyset paging on the `next_run_at` index).
        """
        where = and_(
            SCHEDULES.c.next_run_at <= until,
            SCHEDULES.c.enabled.is_(True),
            SCHEDULES.c.deleted_at.is_(None),
        )
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
        return await self.db.read(lambda conn: [_schedule(r) for r in conn.execute(query)])

    async def get_schedules(self, schedule_ids: Iterable[str]) -> dict[str, Schedule]:
        """The live schedules among `schedule_ids`, by id (unknown or deleted ones are absent)."""
        ids = list(schedule_ids)

        def op(conn: Connection) -> dict[str, Schedule]:
            rows = _rows_by_id(conn, SCHEDULES, ids, SCHEDULES.c.deleted_at.is_(None))
            return {row.id: _schedule(row) for row in rows}

        return await self.db.read(op)

    async def fire_states(self, schedule_ids: Iterable[str]) -> dict[str, FireState]:
        """The `FireState` of each schedule among `schedule_ids`, by id, deleted ones included
        (unknown ids are absent). Much cheaper than `get_schedules` for a large batch."""
        ids = list(schedule_ids)

        def op(conn: Connection) -> dict[str, FireState]:
            states = {}
            for chunk in _chunks(sorted(set(ids))):
                params = {f"b_{index}": value for index, value in enumerate(chunk)}
                for row in _fire_state_query(len(chunk)).all(conn, **params):
                    states[row[0]] = FireState(*row[1:])
            return states

        return await self.db.read(op)

    async def count_active_schedules(self) -> int:
        """How many schedules are enabled and not deleted."""
        query = (
            select(func.count())
            .select_from(SCHEDULES)
            .where(SCHEDULES.c.enabled.is_(True), SCHEDULES.c.deleted_at.is_(None))
        )
        return await self.db.read(lambda conn: int(conn.execute(query).scalar_one()))

    async def disable_if_due(self, schedule_id: str, expected: datetime, *, now: datetime) -> bool:
        """Disable the schedule (`next_run_at` cleared) if `next_run_at` still equals `expected`.

        For a one_time schedule whose instant was missed beyond its catch-up window; the
        compare-and-set leaves a schedule alone that was edited meanwhile. Returns whether
        it was disabled.
        """

        def op(conn: Connection) -> bool:
            result = conn.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.next_run_at == expected)
                .values(
                    enabled=False,
                    next_run_at=None,
                    updated_at=now,
                    version=SCHEDULES.c.version + 1,
                )
            )
            return bool(result.rowcount)

        return await self.db.write(op)

    async def advance_schedules(
        self, moves: Sequence[tuple[str, datetime | None, datetime | None]]
    ) -> list[str]:
        """For each (id, expected, new): set `next_run_at = new` where it still equals `expected`.

        The compare-and-set keeps a concurrent edit (which recomputed `next_run_at`) from being
        overwritten by an engine that computed from the old definition. Returns the ids moved.
        """

        return await self.db.write(lambda conn: _advance(conn, moves))

    async def claim_runs(self, runs: Sequence[Run]) -> list[Run]:
        """Insert the runs in one transaction; return those that were new.

        A run whose (schedule_id, scheduled_for) already exists is silently not inserted: that
        instant was claimed before (by a restart, a double wake-up or another process).
        """

        return await self.db.write(lambda conn: _claim(conn, runs))

    async def finish_runs(
        self, outcomes: Sequence[RunOutcome], *, max_consecutive_failures: int
    ) -> list[FinishedRun]:
        """Finish each run and fold its outcome into its schedule, all in one transaction.

        Success resets `consecutive_failures`; failure (failed, interrupted) increments it and
        sets `last_error_at`/`last_error_message`; every launch sets `last_executed_at`.
        A one_time schedule is disabled after its (scheduled or catch-up) fire. When
        `max_consecutive_failures > 0` is reached the schedule is disabled with a
        `paused_reason`. The first session of a stateful schedule is remembered.
        Runs that are unknown or already finished are ignored.
        """

        def op(conn: Connection) -> list[FinishedRun]:
            return _finish_runs(conn, outcomes, max_consecutive_failures)

        return await self.db.write(op)

    async def record_finished_run(self, run: Run) -> bool:
        """Insert an already-finished run (skipped, missed) unless its instant was claimed."""
        claimed = await self.claim_runs([run])
        return bool(claimed)

    async def launching_runs(self) -> list[Run]:
        """Every run still `launching`: at start-up, the runs an earlier process left behind."""
        query = select(RUNS).where(RUNS.c.status == RunStatus.LAUNCHING)
        return await self.db.read(lambda conn: [_run(row) for row in conn.execute(query)])

    async def mark_dispatched(self, run_id: str, *, at: datetime) -> None:
        """Record that the launch request of `run_id` is about to be sent, at `at` (also the
        run's `started_at` from now on: a paced catch-up starts when it launches).

        Callers send the request only once this returned: a run left `launching` without
        `dispatched_at` never reached the session service, and may be launched again.
        """
        statement = update(RUNS).where(RUNS.c.id == run_id).values(dispatched_at=at, started_at=at)
        await self.db.write(lambda conn: conn.execute(statement).rowcount)

    async def claim_catchups(
        self, moves: Sequence[tuple[str, datetime | None, datetime | None]], runs: Sequence[Run]
    ) -> tuple[list[str], list[Run]]:
        """Settle missed instants in one transaction: advance, then claim what advanced.

        Each move is (id, expected, new), applied as in `advance_schedules`. Of `runs` (the
        missed and catch-up runs), those of a schedule that moved are inserted unless their
        instant was claimed before. A crash therefore leaves either the schedule behind with
        nothing claimed (the next start plans it again) or both done. Returns the ids moved
        and the runs inserted.
        """

        def op(conn: Connection) -> tuple[list[str], list[Run]]:
            moved = _advance(conn, moves)
            moving = set(moved)
            return moved, _claim(conn, [run for run in runs if run.schedule_id in moving])

        return await self.db.write(op)

    async def get_run(self, run_id: str) -> Run:
        """The run `run_id`. Raises NotFound."""

        def op(conn: Connection) -> Run:
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one_or_none()
            if row is None:
                raise NotFound(f"run '{run_id}' not found")
            return _run(row)

        return await self.db.read(op)

    async def list_runs(self, schedule_id: str, *, limit: int, offset: int) -> Page[Run]:
        """Runs of a schedule, newest first (by nominal instant), paged."""
        where = RUNS.c.schedule_id == schedule_id
        order = (RUNS.c.scheduled_for.desc(), RUNS.c.started_at.desc())

        def op(conn: Connection) -> Page[Run]:
            rows, total = _page(conn, RUNS, where, order, limit, offset)
            return Page([_run(r) for r in rows], total)

        return await self.db.read(op)

    # -- dashboard views -------------------------------------------------------------------

    async def list_schedules_in_state(
        self, org_id: str, state: ScheduleState, *, limit: int, offset: int
    ) -> list[Schedule]:
        """Live schedules of an org in `state` (see `ScheduleState`), every agent's, ordered by
        name (then id) along the (org, name) index, paged. No total: `count_schedules_by_state`
        counts every state in the one pass a page's total would cost."""
        where = and_(
            SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None), _IN_STATE[state]
        )
        query = (
            select(SCHEDULES)
            .where(where)
            .order_by(SCHEDULES.c.name, SCHEDULES.c.id)
            .limit(limit)
            .offset(offset)
        )
        return await self.db.read(lambda conn: [_schedule(r) for r in conn.execute(query)])

    async def count_schedules_by_state(self, org_id: str) -> dict[ScheduleState, int]:
        """How many live schedules of an org are in each `ScheduleState`, in one pass."""
        query = select(*(func.count().filter(_IN_STATE[state]) for state in ScheduleState)).where(
            SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None)
        )

        def op(conn: Connection) -> dict[ScheduleState, int]:
            counts = conn.execute(query).one()
            return {state: int(count) for state, count in zip(ScheduleState, counts, strict=True)}

        return await self.db.read(op)

    async def last_runs(self, schedule_ids: Iterable[str]) -> dict[str, Run]:
        """The latest run (by `started_at`) of each of `schedule_ids` that has one, by schedule
        id. Two index look-ups per schedule, however long its history."""
        ids = sorted(set(schedule_ids))
        latest = (
            select(RUNS.c.id)
            .where(RUNS.c.schedule_id == SCHEDULES.c.id)
            .order_by(RUNS.c.started_at.desc())
            .limit(1)
            .correlate(SCHEDULES)
            .scalar_subquery()
        )

        def op(conn: Connection) -> dict[str, Run]:
            runs: dict[str, Run] = {}
            for chunk in _chunks(ids):
                run_ids = select(latest).where(SCHEDULES.c.id.in_(chunk))
                for row in conn.execute(select(RUNS).where(RUNS.c.id.in_(run_ids))):
                    runs[row.schedule_id] = _run(row)
            return runs

        return await self.db.read(op)

    async def list_org_runs(
        self, org_id: str, *, limit: int, offset: int, failures_first: bool = False
    ) -> tuple[list[NamedRun], bool]:
        """Runs of the org's live schedules, newest first (failed and interrupted ones before
        the others when `failures_first`), paged; returns the page and whether more follow.

        No total: counting every run of a large org would cost more than the page itself.
        """
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

        def op(conn: Connection) -> tuple[list[NamedRun], bool]:
            rows = conn.execute(query).all()
            named = [_named_run(row) for row in rows[:limit]]
            return named, len(rows) > limit

        return await self.db.read(op)

    # -- playbooks -------------------------------------------------------------------------

    async def create_playbook(self, playbook: Playbook) -> Playbook:
        """Insert a playbook; return it."""

        def op(conn: Connection) -> Playbook:
            conn.execute(insert(PLAYBOOKS).values(_values(playbook)))
            return playbook

        return await self.db.write(op)

    async def upsert_playbook(self, playbook: Playbook) -> Playbook:
        """Insert or replace the playbook with this id (keeps the original `created_at`)."""

        def op(conn: Connection) -> Playbook:
            values = _values(playbook)
            statement = sqlite_insert(PLAYBOOKS).values(values)
            keep = {"id", "created_at", "created_by"}
            statement = statement.on_conflict_do_update(
                index_elements=["id"],
                set_={k: statement.excluded[k] for k in values if k not in keep},
            )
            conn.execute(statement)
            row = conn.execute(select(PLAYBOOKS).where(PLAYBOOKS.c.id == playbook.id)).one()
            return _playbook(row)

        return await self.db.write(op)

    async def get_playbook(self, playbook_id: str, *, org_id: str | None = None) -> Playbook:
        """The live playbook (of `org_id` when given). Raises NotFound."""
        return await self.db.read(lambda conn: _live_playbook(conn, playbook_id, org_id))

    async def playbook_titles(self, playbook_ids: Iterable[str]) -> dict[str, str]:
        """Titles of the given live playbooks, by id (unknown ids are absent)."""
        ids = sorted(set(playbook_ids))
        if not ids:
            return {}
        query = select(PLAYBOOKS.c.id, PLAYBOOKS.c.title).where(
            PLAYBOOKS.c.id.in_(ids), PLAYBOOKS.c.deleted_at.is_(None)
        )
        return await self.db.read(lambda conn: {r.id: r.title for r in conn.execute(query)})

    async def list_playbooks(
        self, org_id: str, *, first: int, after: str | None
    ) -> tuple[list[Playbook], bool]:
        """Live playbooks of an org ordered by id, `first` of them after the id `after`.

        Returns the page and whether more follow.
        """
        where = and_(PLAYBOOKS.c.org_id == org_id, PLAYBOOKS.c.deleted_at.is_(None))
        if after is not None:
            where = and_(where, PLAYBOOKS.c.id > after)
        query = select(PLAYBOOKS).where(where).order_by(PLAYBOOKS.c.id).limit(first + 1)

        def op(conn: Connection) -> tuple[list[Playbook], bool]:
            rows = [_playbook(r) for r in conn.execute(query)]
            return rows[:first], len(rows) > first

        return await self.db.read(op)

    async def count_playbooks(self, org_id: str) -> int:
        """How many live playbooks the org has."""
        query = (
            select(func.count())
            .select_from(PLAYBOOKS)
            .where(PLAYBOOKS.c.org_id == org_id, PLAYBOOKS.c.deleted_at.is_(None))
        )
        return await self.db.read(lambda conn: int(conn.execute(query).scalar_one()))

    async def update_playbook(
        self, playbook_id: str, changes: Mapping[str, Any], *, org_id: str | None = None
    ) -> Playbook:
        """Apply `changes` to a live playbook; return it. Raises NotFound."""

        def op(conn: Connection) -> Playbook:
            current = _live_playbook(conn, playbook_id, org_id)
            updated = dataclasses.replace(current, **changes)
            conn.execute(
                update(PLAYBOOKS).where(PLAYBOOKS.c.id == playbook_id).values(_values(updated))
            )
            return updated

        return await self.db.write(op)

    # -- identities ------------------------------------------------------------------------

    async def replace_identities(self, directory: Directory) -> None:
        """Replace every org, user and service user with those of `directory`."""

        def op(conn: Connection) -> None:
            for table in (ORGS, USERS, SERVICE_USERS):
                conn.execute(delete(table))
            for org in directory.orgs.values():
                conn.execute(insert(ORGS).values(id=org.id, name=org.name))
            for user in directory.users.values():
                conn.execute(
                    insert(USERS).values(
                        id=user.id, orgs=sorted(user.orgs), permissions=sorted(user.permissions)
                    )
                )
            for su in directory.service_users_by_hash.values():
                conn.execute(
                    insert(SERVICE_USERS).values(
                        id=su.id,
                        org_id=su.org_id,
                        permissions=sorted(su.permissions),
                        token_hash=su.token_hash,
                    )
                )

        await self.db.write(op)


def _advance(
    conn: Connection, moves: Sequence[tuple[str, datetime | None, datetime | None]]
) -> list[str]:
    # Read, compare and write in one transaction of the only writer: nothing can change
    # `next_run_at` between the compare and the set.
    columns = (SCHEDULES.c.id, SCHEDULES.c.next_run_at)
    rows = _rows_by_id(conn, SCHEDULES, (move[0] for move in moves), columns=columns)
    current = {row.id: row.next_run_at for row in rows}
    moved, writes = [], {}
    for schedule_id, expected, new in moves:
        if schedule_id in current and current[schedule_id] == expected:
            current[schedule_id] = writes[schedule_id] = new
            moved.append(schedule_id)
    if writes:
        conn.execute(_MOVE, [{"b_id": k, "b_next_run_at": v} for k, v in writes.items()])
    return moved


def _claim(conn: Connection, runs: Sequence[Run]) -> list[Run]:
    if not runs:
        return []
    inserted = set(conn.execute(_CLAIM, [_values(run) for run in runs]).scalars())
    return [run for run in runs if run.id in inserted]


def _live_playbook(conn: Connection, playbook_id: str, org_id: str | None) -> Playbook:
    query = select(PLAYBOOKS).where(PLAYBOOKS.c.id == playbook_id, PLAYBOOKS.c.deleted_at.is_(None))
    if org_id is not None:
        query = query.where(PLAYBOOKS.c.org_id == org_id)
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"playbook '{playbook_id}' not found")
    return _playbook(row)


def _finish_runs(
    conn: Connection, outcomes: Sequence[RunOutcome], max_failures: int
) -> list[FinishedRun]:
    """Fold `outcomes` in order into their runs and schedules: reads and writes in bulk."""
    runs = {row.id: _run(row) for row in _rows_by_id(conn, RUNS, (o.run_id for o in outcomes))}
    schedule_ids = (run.schedule_id for run in runs.values())
    before = {row.id: _schedule(row) for row in _rows_by_id(conn, SCHEDULES, schedule_ids)}
    schedules = dict(before)
    finished = []
    for outcome in outcomes:
        current = runs.get(outcome.run_id)
        if current is None or current.status != RunStatus.LAUNCHING:
            continue  # unknown, or already finished (also earlier in this batch)
        run = runs[current.id] = _finished(current, outcome)
        previous = schedules[run.schedule_id]
        after = schedules[run.schedule_id] = _bookkeeping(previous, run, max_failures)
        paused = after.paused_reason is not None and previous.paused_reason != after.paused_reason
        finished.append(FinishedRun(run=run, schedule=after, auto_paused=paused))
    if finished:
        conn.execute(_FINISH_RUN, [_bound(item.run, ("id", *_RUN_RESULT)) for item in finished])
    changed = [after for sid, after in schedules.items() if after != before[sid]]
    if changed:
        conn.execute(_KEEP_BOOKS, [_bound(after, ("id", *_BOOKKEEPING)) for after in changed])
    return finished


def _finished(run: Run, outcome: RunOutcome) -> Run:
    return dataclasses.replace(
        run,
        status=outcome.status,
        finished_at=outcome.finished_at,
        attempts=outcome.attempts,
        identity=outcome.identity or run.identity,
        session_id=outcome.session_id,
        session_url=outcome.session_url,
        error=outcome.error,
    )


def _bound(value: Any, names: Sequence[str]) -> dict[str, Any]:
    """Parameters for the `b_`-prefixed bind names of a bulk statement."""
    return {f"b_{name}": getattr(value, name) for name in names}


def _bookkeeping(schedule: Schedule, run: Run, max_failures: int) -> Schedule:
    """The schedule after `run` finished (pure).

    A run that ended without a launch (a catch-up dropped as `missed`, an overlap `skipped`)
    changes nothing: it neither ran nor failed.
    """
    if run.status in (RunStatus.MISSED, RunStatus.SKIPPED):
        return schedule
    changes: dict[str, Any] = {"last_executed_at": run.started_at}
    if run.status == RunStatus.SUCCEEDED:
        changes["consecutive_failures"] = 0
    elif run.status.is_failure:
        failures = schedule.consecutive_failures + 1
        changes |= {
            "consecutive_failures": failures,
            "last_error_at": run.finished_at,
            "last_error_message": run.error,
        }
        if max_failures > 0 and failures >= max_failures and schedule.enabled:
            changes |= {
                "enabled": False,
                "next_run_at": None,
                "paused_reason": f"auto-paused after {failures} consecutive failures: {run.error}",
            }
    fired_one_time = run.trigger in (RunTrigger.ONE_TIME, RunTrigger.CATCHUP)
    if schedule.schedule_type == ScheduleType.ONE_TIME and fired_one_time:
        changes |= {"enabled": False, "next_run_at": None}
    if schedule.is_stateful and run.session_id and schedule.stateful_session_id is None:
        changes["stateful_session_id"] = run.session_id
    return dataclasses.replace(schedule, **changes)
