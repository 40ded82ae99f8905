"""PostgreSQL access: the same `storage.db.Database`, opened on a server database.

What differs from a SQLite file: the engines (psycopg 3, a pool per role), one transaction
per write instead of group commit (a commit is a round trip to the server, and other
processes of a fleet write too), reads always on reader threads (a network read must never
hold the event loop), and the schema: its version only in Alembic's table (no
`PRAGMA user_version`), prepared by one process at a time under an advisory lock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool, QueuePool
from sqlmodel import SQLModel

from storage import (
    dialects,
    schema_versions,
    tables,  # registers the tables on SQLModel.metadata
)
from storage.db import READERS, Database
from storage.errors import SchemaError
from storage.fleet_members import FLEET_METADATA
from storage.schema_steps import SCHEMA_VERSION
from storage.sqlite_file import check_version


def _partial_list_indexes() -> None:
    """The list indexes cover live schedules only here too (see `tables.LIST_INDEXES`)."""
    for index in tables.LIST_INDEXES:
        index.dialect_kwargs["postgresql_where"] = index.dialect_kwargs["sqlite_where"]


_partial_list_indexes()

DRIVER = "postgresql+psycopg"
SCHEMA_LOCK = "schema"
"""The advisory lock under which a member creates or upgrades the schema."""

_INSERTION_ORDER = "ALTER TABLE schedules ADD COLUMN rowid BIGSERIAL"
"""SQLite numbers rows in insertion order by itself (`rowid`); lists in creation order rely on
it. PostgreSQL gets the same, explicitly."""


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL of a `postgresql://` URL, on the psycopg 3 driver.

    Raises SchemaError for anything but a PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SchemaError(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() != "postgresql":
        raise SchemaError(f"not a postgresql:// URL: {parsed.render_as_string()}")
    return parsed.set(drivername=DRIVER)


def display_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return engine_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


def _engine(url: URL, connections: int) -> Engine:
    return create_engine(
        url, poolclass=QueuePool, pool_size=connections, max_overflow=0, pool_pre_ping=True
    )


async def open_database(url: str) -> Database:
    """Open the PostgreSQL database at `url`, creating or upgrading agentcron's schema.

    Raises SchemaError when the server cannot be reached, or the schema is newer than this
    agentcron or not agentcron's.
    """
    address = engine_url(url)
    writer = _engine(address, 1)
    reader = _engine(address, READERS)
    db = Database(
        None,
        writer,
        reader,
        ThreadPoolExecutor(1, thread_name_prefix="store-writer"),
        ThreadPoolExecutor(READERS, thread_name_prefix="store-reader"),
        group_commit=False,
    )
    try:
        await db.in_writer_thread(_create_or_check_schema, writer)
    except (SchemaError, DBAPIError) as exc:
        await db.close()
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"cannot open {display_url(url)}: {exc.orig}") from exc
    db.start_writing()
    return db


def _create_or_check_schema(writer: Engine) -> None:
    with writer.begin() as conn:
        prepare_schema(conn)


def prepare_schema(conn: Connection) -> None:
    """Create a new schema, upgrade an older one, refuse a newer or foreign one; one
    process at a time (the lock is held until the transaction ends)."""
    conn.execute(select(func.pg_advisory_xact_lock(dialects.advisory_key(SCHEMA_LOCK))))
    names = set(conn.execute(text(_TABLES)).scalars())
    version = schema_versions.recorded_version(conn, names)
    check_version(version, names - {schema_versions.VERSION_TABLE})
    if version == 0:
        SQLModel.metadata.create_all(conn)
        conn.exec_driver_sql(_INSERTION_ORDER)
        FLEET_METADATA.create_all(conn)
        schema_versions.stamp(conn, SCHEMA_VERSION)
    elif version < SCHEMA_VERSION:
        schema_versions.upgrade(conn, version)


def server_version(url: str) -> int:
    """The schema version of the database at `url`, read without writing (0: none yet).
    Raises SchemaError when the server cannot be reached."""
    engine = create_engine(engine_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return stored_version(conn)
    except DBAPIError as exc:
        raise SchemaError(f"cannot open {display_url(url)}: {exc.orig}") from exc
    finally:
        engine.dispose()


def stored_version(conn: Connection) -> int:
    """The schema version the database records (0: none yet)."""
    names = set(conn.execute(text(_TABLES)).scalars())
    return schema_versions.recorded_version(conn, names)


_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
