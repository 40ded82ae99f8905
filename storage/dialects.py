"""The few statements that differ between SQLite and PostgreSQL, chosen by the connection.

The table operations (`storage.sqlite_*`) are SQLAlchemy Core and run on either database;
what each dialect spells its own way is here: the INSERT with an ON CONFLICT clause, and
how concurrent writers of a server database take turns.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

T = TypeVar("T")

CHANNEL = "agentcron_schedules"
"""The PostgreSQL notification channel of schedule changes (`storage.fleet_members`)."""

_INSERTS: dict[str, Callable[..., Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def by_name(build: Callable[[Callable[..., Any]], T]) -> dict[str, T]:
    """`build(insert)` for each dialect's INSERT construct, by dialect name: a statement
    with an ON CONFLICT clause, built once per dialect at import."""
    return {name: build(insert) for name, insert in _INSERTS.items()}


def upsert_insert(conn: Connection) -> Callable[..., Any]:
    """The INSERT construct (with `on_conflict_do_*`) of the connection's dialect."""
    return _INSERTS[conn.dialect.name]


def serialize(conn: Connection, topic: str) -> None:
    """Make transactions that touch `topic` take turns until this one ends.

    SQLite needs nothing: its one writer holds the whole file. On PostgreSQL a
    transaction-scoped advisory lock, keyed by the topic, orders writers of several
    processes that would otherwise conflict (replacing a whole table's rows).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(advisory_key(topic))))


def announce(conn: Connection, schedule_id: str) -> None:
    """Tell every member of a fleet, once this transaction commits, that the schedule changed.

    SQLite has one daemon, which re-times the schedule itself; PostgreSQL notifies the
    listeners of `storage.fleet_members.CHANNEL` (delivered on commit, dropped on rollback).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(CHANNEL, schedule_id)))


def advisory_key(topic: str) -> int:
    """A stable 63-bit key for a PostgreSQL advisory lock named `topic`."""
    return zlib.crc32(f"agentcron:{topic}".encode()) & 0x7FFFFFFF
