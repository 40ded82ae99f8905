"""`Store` on a PostgreSQL database: the SQLite store's operations, on a server.

The table operations (`storage.sqlite_schedules`, `sqlite_runs`, ...) are SQLAlchemy Core
and run on either database (what differs is in `storage.dialects`); only how the database is
opened differs (`storage.postgres_db`). Several daemons may share one database: every
read-check-write locks the rows it reads, and each instant is claimed once by the unique
(schedule_id, scheduled_for) key, whichever process claims it. The fleet's membership and
its change notifications (`storage.fleet_members`) are this store's alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from storage import dialects, fleet_members
from storage.db import Database
from storage.fleet_members import Member
from storage.postgres_db import display_url, open_database
from storage.sqlite_store import SqliteStore


class PostgresStore(SqliteStore):
    """agentcron's state in a PostgreSQL database. Open with `await PostgresStore.connect(url)`
    (a `postgresql://` URL), close with `close()`; between the two it is a `Store`."""

    def __init__(self, db: Database, url: str) -> None:
        super().__init__(db)
        self._url = url
        self.url = display_url(url)
        """The database, its password hidden."""

    @classmethod
    async def connect(cls, url: str) -> PostgresStore:
        """Open the database, creating or upgrading the schema. Raises SchemaError."""
        return cls(await open_database(url), url)

    def generation(self) -> int | None:
        return None  # other members write too: no answer may be kept

    # -- the fleet -------------------------------------------------------------------------

    async def heartbeat(self, member_id: str, host: str, pid: int) -> None:
        """Record that the member is alive (joining the fleet the first time)."""
        await self.db.write(lambda conn: fleet_members.heartbeat(conn, member_id, host, pid))

    async def live_members(self, lease: float) -> list[Member]:
        """Members whose last heartbeat is younger than `lease` seconds, by id."""
        return await self.db.read(lambda conn: fleet_members.live_members(conn, lease))

    async def leave(self, member_id: str) -> None:
        """Remove the member: the others take its share at their next heartbeat."""
        await self.db.write(lambda conn: fleet_members.leave(conn, member_id))

    def one_at_a_time(self, topic: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the fleet-wide lock named `topic` for the body of an `async with` (the other
        members wait); for work of many transactions that members must not interleave."""
        return fleet_members.one_at_a_time(self._url, dialects.advisory_key(topic))

    def schedule_changes(self) -> AsyncIterator[str]:
        """Ids of schedules changed by any member, as they commit (see `fleet_members.listen`)."""
        return fleet_members.listen(self._url)
