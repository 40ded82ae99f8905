"""`Store` on a PostgreSQL database: the SQLite store's operations, on a server.

The table operations (`storage.sqlite_schedules`, `sqlite_runs`, ...) are SQLAlchemy Core
and run on either database (what differs is in `storage.dialects`); only how the database is
opened differs (`storage.postgres_db`). Several daemons may share one database: every
read-check-write locks the rows it reads, and each instant is claimed once by the unique
(schedule_id, scheduled_for) key, whichever process claims it.
"""

from __future__ import annotations

from storage.postgres_db import display_url, open_database
from storage.sqlite_store import SqliteStore


class PostgresStore(SqliteStore):
    """agentcron's state in a PostgreSQL database. Open with `await PostgresStore.connect(url)`
    (a `postgresql://` URL), close with `close()`; between the two it is a `Store`."""

    url: str = ""

    @classmethod
    async def connect(cls, url: str) -> PostgresStore:
        """Open the database, creating or upgrading the schema. Raises SchemaError."""
        store = cls(await open_database(url))
        store.url = display_url(url)
        return store
