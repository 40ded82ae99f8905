"""The fleet's membership on PostgreSQL: who is alive, by heartbeat.

Each daemon sharing a PostgreSQL database is a member with a row in `fleet_members`, its
`heartbeat_at` renewed every `[fleet] heartbeat`; a member whose heartbeat is younger than
`[fleet] lease` is live. Times are the database server's (`now()`), so members on hosts whose
clocks disagree still agree on who is live. A SQLite file has one daemon (`storage.lock`) and
no such table.

Schedule changes are announced on the channel `CHANNEL` (a notification per change, its
payload the schedule id; `storage.dialects.announce`), so the member owning the schedule
re-times it (`listen`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from storage.dialects import CHANNEL
from storage.errors import StoreUnavailable

FLEET_METADATA = MetaData()
FLEET_MEMBERS = Table(
    "fleet_members",
    FLEET_METADATA,
    Column("member_id", String, primary_key=True),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, index=True),
)
"""Created with the PostgreSQL schema (`storage.postgres_db`), apart from the tables both
databases share."""


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


def heartbeat(conn: Connection, member_id: str, host: str, pid: int) -> None:
    """Record that the member is alive now (joining if it has no row)."""
    statement = insert(FLEET_MEMBERS).values(
        member_id=member_id, host=host, pid=pid, started_at=func.now(), heartbeat_at=func.now()
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["member_id"], set_={"heartbeat_at": func.now()}
        )
    )


def live_members(conn: Connection, lease: float) -> list[Member]:
    """The members whose last heartbeat is younger than `lease` seconds, by id."""
    young = FLEET_MEMBERS.c.heartbeat_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, lease)
    query = select(FLEET_MEMBERS).where(young).order_by(FLEET_MEMBERS.c.member_id)
    return [Member(**row._mapping) for row in conn.execute(query)]


def leave(conn: Connection, member_id: str) -> None:
    """The member stops: the others take its share at their next heartbeat."""
    conn.execute(delete(FLEET_MEMBERS).where(FLEET_MEMBERS.c.member_id == member_id))


@contextlib.asynccontextmanager
async def one_at_a_time(url: str, key: int) -> AsyncIterator[None]:
    """Hold the session advisory lock `key` (other members wait for it) for the body.

    On a connection of its own, held as long as the body takes, across many transactions;
    released when the body ends, or by the server if this process dies.
    """
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot take the lock: {exc}") from exc
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


async def listen(url: str) -> AsyncIterator[str]:
    """The ids of schedules changed by any member, as they commit, from now on.

    Ends (raising StoreUnavailable) if the connection is lost; notifications sent meanwhile
    are lost with it, so the caller re-reads what it holds before listening again.
    """
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            async for notification in conn.notifies():
                yield notification.payload
    except psycopg.Error as exc:
        raise StoreUnavailable(f"lost the database's notifications: {exc}") from exc
