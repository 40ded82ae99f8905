"""SQLite access: one writer with group commit, a small pool of readers.

SQLite allows one writer at a time. Instead of a pool of connections fighting over the write
lock, every write goes through one queue served by one connection: the writer takes whatever
operations are waiting, runs each inside its own SAVEPOINT within one `BEGIN IMMEDIATE`
transaction, commits once (one fsync for the whole batch) and only then answers the callers.
An operation that raises rolls back its savepoint alone; its caller gets the exception.

Operations are plain synchronous functions of a SQLAlchemy `Connection` (Core statements on the
SQLModel tables). They run on database threads, never on the event loop: a whole batch runs
on the writer's thread and a whole read on a reader's thread, so a batch of hundreds of
statements costs one hand-over between the loop and a thread instead of one per statement,
and the loop keeps serving while SQLite works. An operation must therefore not touch the
event loop or anything else that is not thread-safe; it may only compute and use `conn`.

One exception keeps a fire quick under load: a small write a launch waits on (`write_now`)
is committed on the loop itself, on the same one connection, when the writer is idle. Each
hand-over to the writer's thread and back waits for that thread to get a CPU and the
interpreter from a busy loop: milliseconds, against a fraction of one for the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import QueuePool
from sqlmodel import SQLModel

from storage import (
    schema_versions,
    tables,  # noqa: F401  (registers the tables on SQLModel.metadata)
)
from storage.errors import SchemaError, StoreUnavailable
from storage.errors import StoreError as StoreError  # re-exported: its earlier home
from storage.schema_steps import SCHEMA_VERSION
from storage.sqlite_file import (
    TABLES,
    align_companions,
    check_file,
    check_version,
    create_private,
)
from storage.write_batches import WriteOp, batch_of, each_of, unavailable

T = TypeVar("T")

log = structlog.get_logger("agentcron.store")

MAX_BATCH = 256
READERS = 4
BULK_SWITCH_INTERVAL = 0.001
"""The GIL switch interval while a bulk read runs (Python's default is 0.005 s)."""
BUSY_TIMEOUT_MS = 5000
"""How long a statement waits for another process's lock on the file."""
AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default: a commit leaving more pages than this in the log checkpoints it."""
LOOP_COMMIT_LIMIT, LOOP_COMMIT_MEAN = 0.020, 0.005
"""Seconds a commit on the loop (`write_now`) may take, and their running mean. A disk slow
to sync sends one commit over the first or several over the second; every write then goes
to the writer's thread for `LOOP_COMMIT_PAUSE` seconds. (A lone commit of a few ms happens
on a busy machine when the loop's thread loses its CPU meanwhile.)"""
LOOP_COMMIT_PAUSE = 60.0


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" hook below emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(pragma)
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _never_wait(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _engine(path: Path, *, writer: bool, connections: int = 1) -> Engine:
    # A connection is used by one thread at a time, but not always the same reader thread.
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=QueuePool,
        pool_size=connections,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _set_pragmas)
    if writer:
        event.listen(engine, "begin", _begin_immediate)
    return engine


def _busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _prepare_schema(conn: Connection) -> None:
    """Create a new database, upgrade an older one (`storage.schema_versions`), refuse a
    newer or foreign one."""
    names = set(conn.exec_driver_sql(TABLES).scalars())
    pragma = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
    version = max(pragma, schema_versions.recorded_version(conn, names))
    check_version(version, names)
    if version == 0:
        SQLModel.metadata.create_all(conn)  # a new database has the current schema
        schema_versions.stamp(conn, SCHEMA_VERSION)
    elif version < SCHEMA_VERSION:
        schema_versions.upgrade(conn, version)
    elif schema_versions.recorded_version(conn, names) != version:
        schema_versions.stamp(conn, version)  # made before versions were Alembic's too
    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


class Database:
    """An open agentcron SQLite file. Create with `await Database.open(path)`."""

    def __init__(
        self,
        path: Path | None,
        writer: Engine,
        reader: Engine,
        writer_thread: ThreadPoolExecutor,
        reader_threads: ThreadPoolExecutor,
        *,
        group_commit: bool = True,
        bulk: Engine | None = None,
    ) -> None:
        self.path = path  # None for a server database (PostgreSQL)
        self._group_commit = group_commit
        self._writer = writer
        self._reader = reader
        self._writer_thread = writer_thread
        self._reader_threads = reader_threads
        self._bulk = reader if bulk is None else bulk
        """Unpaged reads' own connection (SQLite); a server database's pool serves them too."""
        self._bulk_thread = ThreadPoolExecutor(1, thread_name_prefix="store-bulk")
        self._connections = _ThreadConnections()
        self._inline: Engine | None = None
        self._loop_commits = False  # SQLite: a small write may be committed on the loop
        self._committed_this_step = False
        self._loop_commits_from = 0.0  # monotonic; later after slow commits on the loop
        self._loop_commit_mean = 0.0  # seconds, weighted towards the latest
        self._pending: deque[WriteOp] = deque()
        self._in_flight = False  # a batch is on the writer thread
        self._closing = False
        self._stopped: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.generation = 0
        """Moves before and after every batch the writer commits (see `Store.generation`)."""

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at `path`.

        Raises SchemaError for a file that is not an agentcron database or has a newer schema,
        StoreUnavailable when the file cannot be opened for writing.
        """
        check_file(path)
        create_private(path)
        writer = _engine(path, writer=True)
        reader = _engine(path, writer=False, connections=READERS)
        inline = _engine(path, writer=False)
        event.listen(inline, "connect", _never_wait)
        writer_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        reader_threads = ThreadPoolExecutor(READERS, thread_name_prefix="store-reader")
        bulk = _engine(path, writer=False)
        db = cls(path, writer, reader, writer_thread, reader_threads, bulk=bulk)
        db._inline = inline
        db._loop_commits = True
        try:
            await db._in_writer_thread(_create_or_check_schema, writer)
        except (SchemaError, DBAPIError, sqlite3.Error) as exc:
            db._release()
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"cannot open {path}: {getattr(exc, 'orig', exc)}") from exc
        align_companions(path)
        db.start_writing()
        return db

    def start_writing(self) -> None:
        """Serve `write` from now on, once the schema is ready."""
        self._stopped = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve_writes(), name="store-writer")

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        """The task serving writes; if it ever ends while open, the store is broken."""
        return self._task

    async def _serve_writes(self) -> None:
        """Lives while writes are served: ends after `close` once the last batch is
        answered, or with the error that broke the writer."""
        assert self._stopped is not None
        await self._stopped

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        if self._stopped is not None:
            self._closing = True  # no more writes; those queued are still committed
            if not self._in_flight:
                self._stop()
            await asyncio.wait([self._stopped])  # a broken writer's error is its task's
        if self._task is not None:
            await asyncio.wait([self._task])
            self._task = None
        self._release()

    def _release(self) -> None:
        self._writer_thread.shutdown(wait=True)
        self._reader_threads.shutdown(wait=True)  # reads in flight finish first
        self._bulk_thread.shutdown(wait=True)
        self._connections.close_all()
        self._writer.dispose()
        self._reader.dispose()
        self._bulk.dispose()
        if self._inline is not None:
            self._inline.dispose()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a reader connection (on a reader thread); it sees every write already
        answered."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._reader_threads, self._connections.use, self._reader, fn
            )
        except OperationalError as exc:
            raise StoreUnavailable(f"the database cannot be read: {exc.orig}") from exc

    async def read_bulk(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn`, a read of unbounded size, on the one bulk reader thread.

        Such reads (a list of every schedule a user owns) queue behind each other, never
        ahead of the engine's and the keyed reads on the reader threads. While one runs:

        - the GIL is handed over every millisecond instead of every five, so the event
          loop's thread waits about that long, not five, each time it needs the
          interpreter back from the bulk thread;
        - the cyclic garbage collector is paused. The tens of thousands of objects of a
          long list live only until it is encoded and are freed by reference counting;
          collections run meanwhile would promote them to the oldest generation and then
          walk them in a full collection (40 ms measured), holding the GIL throughout.
          Collection resumes, with the garbage counted meanwhile, as soon as the read ends.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._bulk_thread, self._bulk_read, fn)
        except OperationalError as exc:
            raise StoreUnavailable(f"the database cannot be read: {exc.orig}") from exc

    def _bulk_read(self, fn: Callable[[Connection], T]) -> T:
        # Only this thread changes either setting, so restoring one cannot undo another's.
        interval, collecting = sys.getswitchinterval(), gc.isenabled()
        sys.setswitchinterval(min(interval, BULK_SWITCH_INTERVAL))
        gc.disable()
        try:
            return self._connections.use(self._bulk, fn)
        finally:
            if collecting:
                gc.enable()
            sys.setswitchinterval(interval)

    async def lookup(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn`, a read of a few rows by key, on the calling thread, the event loop's.

        Handing such a read to a reader thread and back costs the process several times the
        read itself. In WAL mode a reader never waits for the writer, so this does not hold
        the loop on a lock; should the file be busy anyway (a checkpoint resetting the log),
        the read goes to a reader thread instead. Sees every write already answered.
        """
        if self._inline is None:
            return await self.read(fn)
        try:
            return self._connections.use(self._inline, fn)
        except OperationalError as exc:
            if _busy(exc):
                return await self.read(fn)
            raise StoreUnavailable(f"the database cannot be read: {exc.orig}") from exc

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in the writer's next transaction; return once that transaction committed.

        Exceptions raised by `fn` reach the caller (its savepoint is rolled back, the rest of
        the batch commits). A failed commit raises StoreUnavailable to every caller in the batch.
        """
        if self._stopped is None or self._stopped.done() or self._closing:
            raise StoreUnavailable("the database writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(WriteOp(fn, future))
        if not self._in_flight:
            self._start_batch()
        return await future

    async def write_now(self, fn: Callable[[Connection], T]) -> T:
        """`write` for a small write a launch waits on (a fire's claim, a dispatch mark).

        While the writer is idle it is committed at once, in the caller's own step of the
        loop, on the one write connection: no other write can start meanwhile, since only
        the loop starts them. Otherwise it is an ordinary `write`: when a batch is on the
        writer's thread or waiting, when another write was committed on the loop in this
        step already (a burst shares the writer's commits instead), when another process
        holds the file's lock (the loop never waits for it), and for a while after slow
        commits on the loop (`LOOP_COMMIT_LIMIT`). Either way the answer comes after COMMIT.
        """
        if not self._may_commit_on_loop():
            return await self.write(fn)
        loop = asyncio.get_running_loop()
        self._committed_this_step = True
        loop.call_soon(self._next_step)
        op = WriteOp(fn, loop.create_future())
        began, locked = time.monotonic(), False
        self.generation += 1  # as around a batch (see `_start_batch`)
        try:
            self._on_write_connection(lambda conn: _without_waiting(conn, batch_of([op])))
        except OperationalError as exc:
            if not _busy(exc):
                raise unavailable(exc) from exc
            locked = True
        except (DBAPIError, sqlite3.Error, OSError) as exc:
            raise unavailable(exc) from exc
        finally:
            self.generation += 1
            self._timed_loop_commit(time.monotonic() - began)
        if locked:
            return await self.write(fn)  # nothing was written: the lock was not taken
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[no-any-return]

    def _may_commit_on_loop(self) -> bool:
        return (
            self._loop_commits
            and not self._in_flight
            and not self._pending
            and not self._committed_this_step
            and self._stopped is not None
            and not self._stopped.done()
            and not self._closing
            and time.monotonic() >= self._loop_commits_from
        )

    def _timed_loop_commit(self, took: float) -> None:
        mean = self._loop_commit_mean = 0.8 * self._loop_commit_mean + 0.2 * took
        if took > LOOP_COMMIT_LIMIT or mean > LOOP_COMMIT_MEAN:
            self._loop_commits_from = time.monotonic() + LOOP_COMMIT_PAUSE
            self._loop_commit_mean = 0.0
            log.info(
                "store_loop_commits_paused",
                took_s=round(took, 4),
                mean_s=round(mean, 4),
                pause_s=LOOP_COMMIT_PAUSE,
            )

    def _next_step(self) -> None:
        self._committed_this_step = False

    def _on_write_connection(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on the one write connection: on the writer's thread, or on the loop
        while that thread is idle."""
        return self._connections.use(self._writer, fn, shared=True)

    async def in_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the writer's thread (before the write loop starts: the schema)."""
        return await self._in_writer_thread(fn, *args)

    async def _in_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, fn, *args)

    # -- group commit: one batch on the writer thread at a time -----------------------------
    #
    # A write arriving while the writer is idle starts a batch at once, in the caller's own
    # step of the loop; writes arriving while a batch runs wait, and the next batch takes
    # them all when it is answered. Each batch costs one hand-over each way: the loop hands
    # it to the writer thread, and the writer thread, once it committed, hands it back by
    # scheduling `_settle`, which answers every caller in the same step.

    def _start_batch(self) -> None:
        batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
        self._in_flight = True
        # Before: an answer read from here on may see the batch, and is remembered under a
        # generation that is over once the batch is. After (`_settle`): before any writer
        # hears back.
        self.generation += 1
        apply = batch_of(batch) if self._group_commit else each_of(batch)
        loop = asyncio.get_running_loop()  # on the loop: from `write` or `_settle`
        self._writer_thread.submit(self._apply, batch, apply, loop)

    def _apply(
        self,
        batch: list[WriteOp],
        apply: Callable[[Connection], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """On the writer thread: run and commit the batch, then hand it back to the loop."""
        broken: BaseException | None = None
        try:
            self._on_write_connection(apply)
        except (DBAPIError, sqlite3.Error, OSError) as exc:
            error = unavailable(exc)
            for op in batch:
                op.error = error
        except BaseException as exc:  # not the database's: the writer itself is broken
            broken = exc
            for op in batch:
                op.error = StoreUnavailable(f"the database writer failed: {exc!r}")
        loop.call_soon_threadsafe(self._settle, batch, broken)

    def _settle(self, batch: list[WriteOp], broken: BaseException | None) -> None:
        """On the loop: answer the batch's callers, then start the next batch if any."""
        self.generation += 1
        _answer(batch)
        self._in_flight = False
        if broken is not None:
            waiting = list(self._pending)
            self._pending.clear()
            for op in waiting:
                op.error = StoreUnavailable("the database writer is not running")
            _answer(waiting)
            self._stop(broken)
        elif self._pending:
            self._start_batch()
        elif self._closing:
            self._stop()

    def _stop(self, error: BaseException | None = None) -> None:
        if self._stopped is None or self._stopped.done():
            return
        if error is None:
            self._stopped.set_result(None)
        else:
            self._stopped.set_exception(error)


def _answer(batch: list[WriteOp]) -> None:
    for op in batch:
        if op.future.done():
            continue  # its caller was cancelled
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _without_waiting(conn: Connection, apply: Callable[[Connection], None]) -> None:
    """`apply` on the loop: a lock held by another process fails it at once (the write
    then goes to the writer's thread), and its commit leaves the log's checkpoint to the
    writer's next one, which may have a whole log to copy."""
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA busy_timeout=0")
    raw.execute("PRAGMA wal_autocheckpoint=0")
    try:
        apply(conn)
    finally:
        try:
            raw.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error:
            conn.invalidate()  # opened again, with its settings, for the next write


def _create_or_check_schema(writer: Engine) -> None:
    with writer.begin() as conn:
        _prepare_schema(conn)


def _reset(conn: Connection) -> bool:
    """End the failed transaction; close the connection if even that fails (then False)."""
    try:
        if conn.in_transaction():
            conn.rollback()
    except DBAPIError:
        conn.close()
        return False
    return True


class _ThreadConnections:
    """One connection per database thread, kept for the thread's life; and, `shared`, the
    one write connection, used by one thread at a time (see `Database.write_now`).

    Checking a connection out of the pool and back in (with its reset) costs more than a
    small read; a thread keeps its own instead. A connection that fails is closed and the
    next use opens a new one; one that only saw an error of its statement (a full disk,
    a constraint) is kept, with the settings made on it.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._shared: dict[Engine, Connection] = {}
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    def use(self, engine: Engine, fn: Callable[[Connection], T], *, shared: bool = False) -> T:
        kept: dict[Engine, Connection] = (
            self._shared if shared else self._local.__dict__.setdefault("kept", {})
        )
        conn = kept.get(engine)
        if conn is None or conn.closed or conn.invalidated:
            conn = kept[engine] = engine.connect()
            with self._lock:
                self._opened.append(conn)
        try:
            return fn(conn)
        except BaseException:
            if not _reset(conn):
                del kept[engine]
            raise
        finally:
            if conn.in_transaction() and not conn.closed:
                conn.rollback()  # a read ends its autobegun (driver-level no-op) transaction

    def close_all(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(DBAPIError, sqlite3.Error):
                conn.close()


async def integrity_check(db: Database) -> str:
    """SQLite's own verdict on the file ('ok' when sound)."""
    return await db.read(
        lambda conn: str(conn.execute(text("PRAGMA integrity_check")).scalar_one())
    )
