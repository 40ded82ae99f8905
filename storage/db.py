"""SQLite access: one writer with group commit, a small pool of readers.

SQLite allows one writer at a time. Instead of a pool of connections fighting over the write
lock, every write goes through one queue served by one connection: the writer takes whatever
operations are waiting, runs each inside its own SAVEPOINT within one `BEGIN IMMEDIATE`
transaction, commits once (one fsync for the whole batch) and only then answers the callers.
An operation that raises rolls back its savepoint alone; its caller gets the exception.

Operations are plain synchronous functions of a SQLAlchemy `Connection` (Core statements on the
SQLModel tables); they run on the event loop's greenlet bridge, so they must not block on
anything but the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, NestedTransaction
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

T = TypeVar("T")

SCHEMA_VERSION = 1
"""Bumped with every schema change; `MIGRATIONS[n]` upgrades a database from version n."""

MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

MAX_BATCH = 256
READERS = 4


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be written or read right now (disk full, read-only, locked)."""


class SchemaError(StoreError):
    """The file is not an agentcron database this version can open."""


@dataclass(slots=True)
class _WriteOp:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" hook below emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",
    ):
        cursor.execute(pragma)
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _engine(path: Path, *, writer: bool) -> AsyncEngine:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=1 if writer else READERS,
        max_overflow=0,
    )
    event.listen(engine.sync_engine, "connect", _set_pragmas)
    if writer:
        event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


def _check_file(path: Path) -> None:
    """Refuse a file that exists but is not an agentcron database this version can use.

    Runs before anything opens the file for writing: even switching it to WAL would
    change a foreign database's header. The file is read as immutable, which creates no
    -wal or -shm file; what a -wal file may add is checked again when the writer opens it.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        raise SchemaError(f"{path} is not a SQLite database (refusing to overwrite it)")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        ) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = {row[0] for row in conn.execute(_TABLES)}
    except sqlite3.Error as exc:
        raise SchemaError(f"cannot open {path}: {exc} (refusing to use it)") from exc
    _check_version(version, names)


_TABLES = "SELECT name FROM sqlite_master WHERE type='table'"


def _check_version(version: int, table_names: set[str]) -> None:
    """SchemaError unless the schema version is one this agentcron can open or upgrade."""
    if version == 0 and table_names:
        raise SchemaError(
            "the database has tables but no agentcron schema version; refusing to use it"
        )
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, newer than this agentcron "
            f"understands ({SCHEMA_VERSION}); upgrade agentcron or use another file"
        )


def _prepare_schema(conn: Connection) -> None:
    """Create a new database, upgrade an older one, refuse a newer or foreign one."""
    version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
    _check_version(version, set(conn.exec_driver_sql(_TABLES).scalars()))
    if version == 0:
        SQLModel.metadata.create_all(conn)
    for old in range(max(version, 1), SCHEMA_VERSION):
        MIGRATIONS[old](conn)
    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _unavailable(exc: BaseException) -> StoreUnavailable:
    reason = getattr(exc, "orig", exc)
    return StoreUnavailable(f"the database cannot be written: {reason}")


class Database:
    """An open agentcron SQLite file. Create with `await Database.open(path)`."""

    def __init__(self, path: Path, writer: AsyncEngine, reader: AsyncEngine) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: asyncio.Queue[_WriteOp | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at `path`.

        Raises SchemaError for a file that is not an agentcron database or has a newer schema,
        StoreUnavailable when the file cannot be opened for writing.
        """
        _check_file(path)
        writer, reader = _engine(path, writer=True), _engine(path, writer=False)
        try:
            async with writer.begin() as conn:
                await conn.run_sync(_prepare_schema)
        except (SchemaError, DBAPIError, sqlite3.Error) as exc:
            await writer.dispose()
            await reader.dispose()
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"cannot open {path}: {getattr(exc, 'orig', exc)}") from exc
        db = cls(path, writer, reader)
        db._task = asyncio.create_task(db._write_loop(), name="store-writer")
        return db

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        """The task serving writes; if it ever ends while open, the store is broken."""
        return self._task

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None
        await self._writer.dispose()
        await self._reader.dispose()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a reader connection; it sees every write already answered."""
        try:
            async with self._reader.connect() as conn:
                return await conn.run_sync(fn)
        except OperationalError as exc:
            raise StoreUnavailable(f"the database cannot be read: {exc.orig}") from exc

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in the writer's next transaction; return once that transaction committed.

        Exceptions raised by `fn` reach the caller (its savepoint is rolled back, the rest of
        the batch commits). A failed commit raises StoreUnavailable to every caller in the batch.
        """
        if self._task is None or self._task.done():
            raise StoreUnavailable("the database writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_WriteOp(fn, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                op = self._queue.get_nowait()
                if op is None:
                    await self._commit(batch)
                    return
                batch.append(op)
            await self._commit(batch)

    async def _commit(self, batch: list[_WriteOp]) -> None:
        try:
            async with self._writer.connect() as conn:
                await conn.run_sync(_apply_batch, batch)
        except (DBAPIError, sqlite3.Error, OSError) as exc:
            error = _unavailable(exc)
            for op in batch:
                op.error = error
        for op in batch:
            if op.future.done():
                continue
            if op.error is not None:
                op.future.set_exception(op.error)
            else:
                op.future.set_result(op.result)


def _apply_batch(conn: Connection, batch: list[_WriteOp]) -> None:
    with conn.begin():
        for op in batch:
            savepoint = conn.begin_nested()
            try:
                op.result = op.fn(conn)
            except Exception as exc:
                _rollback_savepoint(savepoint, exc)
                op.error = _unavailable(exc) if isinstance(exc, OperationalError) else exc
            else:
                savepoint.commit()


def _rollback_savepoint(savepoint: NestedTransaction, error: Exception) -> None:
    """Undo one operation; if SQLite already rolled the whole transaction back (it does on
    a full disk), the batch fails with the operation's error, not with the missing savepoint."""
    try:
        savepoint.rollback()
    except DBAPIError:
        raise error from None


async def integrity_check(db: Database) -> str:
    """SQLite's own verdict on the file ('ok' when sound)."""
    return await db.read(
        lambda conn: str(conn.execute(text("PRAGMA integrity_check")).scalar_one())
    )
