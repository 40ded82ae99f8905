"""The few statements that differ between SQLite and PostgreSQL, chosen by the connection.

The table operations (`storage.sqlite_*`) are SQLAlchemy Core and run on either database;
what each dialect spells its own way is here: the INSERT with an ON CONFLICT clause, and
how concurrent writers of a server database take turns.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

T = TypeVar("T")

CHANNEL = "agentcron_schedules"
"""The PostgreSQL notification channel of schedule changes (`storage.fleet_members`)."""

_DIALECTS = ("sqlite", "postgresql")


def _insert_of(name: str) -> Callable[..., Any]:
    # Imported when first used: loading SQLAlchemy's PostgreSQL dialect costs a SQLite
    # daemon tens of milliseconds of its start-up for nothing.
    if name not in _DIALECTS:
        raise KeyError(name)
    insert: Callable[..., Any] = importlib.import_module(f"sqlalchemy.dialects.{name}").insert
    return insert


class ByDialect(dict[str, T]):
    """A statement with an ON CONFLICT clause by dialect name: `build(insert)`, from that
    dialect's INSERT construct, built the first time a connection of the dialect asks."""

    def __init__(self, build: Callable[[Callable[..., Any]], T]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, name: str) -> T:
        built = self[name] = self._build(_insert_of(name))
        return built


def upsert_insert(conn: Connection) -> Callable[..., Any]:
    """The INSERT construct (with `on_conflict_do_*`) of the connection's dialect."""
    return _insert_of(conn.dialect.name)


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
