"""The fast path: a few hot Core statements compiled once and run on the sqlite3 cursor.

For the hottest statements (a schedule read by id for every GET and PATCH, the PATCH's
UPDATE, the create's INSERT, the fire-state reads, a launch's dispatch mark, an edit's
history entry) SQLAlchemy's execution machinery, and for an INSERT of 46 values building the
statement, costs several times the statement itself. The SQL is still the Core statement's,
compiled by SQLAlchemy's dialect, and the bound values and the row go through each type's
own processors (UTC datetimes, JSON, booleans), so what is written and read is exactly what
`conn.execute` would do (`tests/integration/test_prepared.py` holds every prepared statement
to that).

The fast path is SQLite's alone: on another database (PostgreSQL, over the network, where the
round trip dwarfs SQLAlchemy's overhead) a prepared statement simply runs through
`conn.execute`, with the same results.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert, Update

from storage.tables import RUNS, SCHEDULE_HISTORY, SCHEDULES

_DIALECTS = 8
"""Compiled forms kept per statement. A database has three engines (the writer, the
readers, the loop's lookups), each with its own dialect object, and a statement runs on
several of them; a store opened again (as tests do) brings new ones, so the cache starts
over rather than grow."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    binds: tuple[tuple[str, Any], ...]  # (bind name, bind processor) in placeholder order
    columns: tuple[tuple[str, Any], ...]  # (column name, result processor) of a SELECT


class Prepared:
    """A Core statement compiled once per dialect and run on the driver's own cursor.

    Built once, at import or in a bounded cache, never per call. `compilations` counts how
    often it was compiled, the cost this class exists to pay once. Shared by the database
    threads without a lock: each dict operation is atomic, and two threads meeting a new
    dialect at once at worst both compile it.
    """

    __slots__ = ("_compiled", "compilations", "statement")

    def __init__(self, statement: Select[Any] | Update | Insert) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, _Compiled] = {}
        self.compilations = 0

    def one_or_none(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        """The row of a SELECT as a dict of converted values, or None."""
        if not _fast(conn):
            row = conn.execute(self.statement, params).first()
            return None if row is None else row._asdict()
        compiled, raw = self._execute(conn, params, _fetchone)
        if raw is None:
            return None
        return {
            name: value if process is None else process(value)
            for (name, process), value in zip(compiled.columns, raw, strict=True)
        }

    def all(self, conn: Connection, **params: Any) -> list[list[Any]]:
        """The rows of a SELECT as lists of converted values."""
        if not _fast(conn):
            return [list(row) for row in conn.execute(self.statement, params)]
        compiled, raw = self._execute(conn, params, _fetchall)
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
        if not _fast(conn):
            return int(conn.execute(self.statement, params).rowcount)
        return int(self._execute(conn, params, _rowcount)[1])

    def _execute(
        self, conn: Connection, params: Mapping[str, Any], fetch: Callable[[Any], Any]
    ) -> tuple[_Compiled, Any]:
        """Run the statement on a fresh driver cursor; `fetch(cursor)` takes what it returns.

        A driver error is raised as SQLAlchemy raises it from `conn.execute` (an
        `OperationalError` wrapping the sqlite3 one, and so on), so that callers handle
        one kind of error whichever way a statement ran.
        """
        compiled = self._compiled.get(conn.dialect) or self._compile(conn.dialect)
        arguments = tuple(
            params[name] if process is None else process(params[name])
            for name, process in compiled.binds
        )
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:  # closed at once: an open statement would keep its read snapshot
            return compiled, fetch(cursor.execute(compiled.sql, arguments))
        except sqlite3.Error as exc:
            raise DBAPIError.instance(compiled.sql, arguments, exc, sqlite3.Error) from exc
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect) -> _Compiled:
        sql = self.statement.compile(dialect=dialect)
        binds = tuple(
            (name, sql.binds[name].type.bind_processor(dialect)) for name in sql.positiontup or ()
        )
        selected = self.statement.selected_columns if isinstance(self.statement, Select) else ()
        columns = tuple(
            (column.name, column.type.result_processor(dialect, None)) for column in selected
        )
        if len(self._compiled) >= _DIALECTS:
            self._compiled.clear()
        compiled = self._compiled[dialect] = _Compiled(str(sql), binds, columns)
        self.compilations += 1
        return compiled


def _fast(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _fetchone(cursor: Any) -> Any:
    return cursor.fetchone()


def _fetchall(cursor: Any) -> Any:
    return cursor.fetchall()


def _rowcount(cursor: Any) -> Any:
    return cursor.rowcount


# -- the prepared statements ---------------------------------------------------------------

_LIVE = select(SCHEDULES).where(
    SCHEDULES.c.id == bindparam("b_id"), SCHEDULES.c.deleted_at.is_(None)
)
LIVE_SCHEDULE = Prepared(_LIVE)
"""Every column of the live schedule `b_id`."""

LIVE_SCHEDULE_IN_ORG = Prepared(_LIVE.where(SCHEDULES.c.org_id == bindparam("b_org")))
"""Every column of the live schedule `b_id` of the org `b_org`."""

LOCKED_SCHEDULE = Prepared(_LIVE.with_for_update())
LOCKED_SCHEDULE_IN_ORG = Prepared(
    _LIVE.where(SCHEDULES.c.org_id == bindparam("b_org")).with_for_update()
)
"""The two reads above, for an edit: on a database with other writers (PostgreSQL), the row
stays locked until the edit commits; SQLite, whose one writer holds the whole file, renders
them as the plain reads."""

INSERT_SCHEDULE = Prepared(
    insert(SCHEDULES).values({column.name: bindparam(column.name) for column in SCHEDULES.c})
)
"""A new schedule, every column bound by its own name."""

HISTORY_COLUMNS = ("schedule_id", "org_id", "at", "by", "action", "changes")
INSERT_HISTORY = Prepared(
    insert(SCHEDULE_HISTORY).values({name: bindparam(name) for name in HISTORY_COLUMNS})
)
"""One edit history entry, each of `HISTORY_COLUMNS` bound by its own name (every edit)."""

MARK_DISPATCHED = Prepared(
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values(dispatched_at=bindparam("b_at"), started_at=bindparam("b_at"))
)
"""The run `b_id` is about to be sent, at `b_at` (one write for every launch of a burst)."""

FIRE_STATE_COLUMNS = (
    SCHEDULES.c.id,
    SCHEDULES.c.version,
    SCHEDULES.c.enabled,
    SCHEDULES.c.deleted_at,
    SCHEDULES.c.next_run_at,
    SCHEDULES.c.stateful_session_id,
)
"""The id, then the fields of `storage.store.FireState` in their order."""


@functools.lru_cache(maxsize=256)
def update_schedule_columns(names: tuple[str, ...]) -> Prepared:
    """The UPDATE of these schedule columns (bound as b_<name>) of the schedule `b_id`,
    built and compiled once per column set."""
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in names}
    return Prepared(update(SCHEDULES).where(SCHEDULES.c.id == bindparam("b_id")).values(values))


@functools.lru_cache(maxsize=8)
def fire_state_query(size: int) -> Prepared:
    """`FIRE_STATE_COLUMNS` of `size` schedules, ids bound as b_0..b_{size-1}."""
    ids: list[Any] = [bindparam(f"b_{index}") for index in range(size)]
    return Prepared(select(*FIRE_STATE_COLUMNS).where(SCHEDULES.c.id.in_(ids)))
