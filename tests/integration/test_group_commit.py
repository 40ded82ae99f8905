"""The SQLite writer's group commit (`storage.db.Database.write`), on a real database file.

Writes that arrive while a batch is on the writer thread share the next transaction; an
operation that raises is undone alone; `close` commits what was queued and refuses what
comes after; a writer broken by something that is not a database error answers every
caller and ends its task with the error, for the daemon to stop on. A small write a launch
waits on (`write_now`) commits on the loop, on the same connection, only while the writer
is idle, once a step, and never waiting on the loop for another process's lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

import storage.db
from storage.db import Database
from storage.errors import StoreUnavailable
from tests.deadline import eventually


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    opened = await Database.open(tmp_path / "agentcron.db")
    await opened.write(lambda conn: conn.execute(text("CREATE TABLE notes (n INTEGER)")))
    try:
        yield opened
    finally:
        await opened.close()


def note(value: int, transactions: list[Any]) -> Any:
    def op(conn: Connection) -> int:
        transactions.append(conn.get_transaction())
        conn.execute(text("INSERT INTO notes VALUES (:n)"), {"n": value})
        return value

    return op


async def notes(db: Database) -> list[int]:
    rows = await db.read(lambda conn: conn.execute(text("SELECT n FROM notes ORDER BY n")).all())
    return [row.n for row in rows]


async def batch_held(db: Database) -> tuple[asyncio.Task[int], threading.Event]:
    """A batch on the writer thread, answering 0 once the event returned is set."""
    started, release = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        started.set()
        assert release.wait(10)
        return 0

    first = asyncio.create_task(db.write(held))
    await eventually(started.is_set)
    return first, release


async def test_writes_arriving_during_a_batch_share_the_next_commit(db: Database) -> None:
    first, release = await batch_held(db)
    transactions: list[Any] = []
    later = [asyncio.create_task(db.write(note(value, transactions))) for value in range(1, 6)]
    await asyncio.sleep(0)  # every later write is queued behind the running batch
    release.set()
    async with asyncio.timeout(10):
        assert await first == 0
        assert await asyncio.gather(*later) == [1, 2, 3, 4, 5]
    assert all(transaction is transactions[0] for transaction in transactions)
    assert await notes(db) == [1, 2, 3, 4, 5]


async def test_an_operation_that_raises_is_undone_alone(db: Database) -> None:
    def fails(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes VALUES (99)"))
        raise ValueError("refused")

    transactions: list[Any] = []
    results = await asyncio.gather(
        db.write(note(1, transactions)),
        db.write(fails),
        db.write(note(2, transactions)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)
    assert await notes(db) == [1, 2]


async def test_close_commits_what_was_queued_and_refuses_what_comes_after(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "agentcron.db")
    await db.write(lambda conn: conn.execute(text("CREATE TABLE notes (n INTEGER)")))
    transactions: list[Any] = []
    queued = [asyncio.create_task(db.write(note(value, transactions))) for value in range(3)]
    await asyncio.sleep(0)  # queued before the close
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailable, match="not running"):
        await db.write(note(7, transactions))
    async with asyncio.timeout(10):
        assert await asyncio.gather(*queued) == [0, 1, 2]
        await closing
    reopened = await Database.open(tmp_path / "agentcron.db")
    try:
        assert await notes(reopened) == [0, 1, 2]
    finally:
        await reopened.close()


class WriterBug(BaseException):
    """Not a database error, nor an error of one operation: the writer itself is broken."""


async def test_a_broken_writer_answers_its_callers_and_ends_its_task(db: Database) -> None:
    def breaks(conn: Connection) -> None:
        raise WriterBug("broken")

    with pytest.raises(StoreUnavailable, match="writer failed"):
        await db.write(breaks)
    task = db.writer_task
    assert task is not None
    async with asyncio.timeout(10):
        with pytest.raises(WriterBug):
            await task
    with pytest.raises(StoreUnavailable, match="not running"):
        await db.write(note(1, []))


# -- write_now: a small write committed on the loop while the writer is idle ------------------


def noted_where(value: int, where: list[tuple[int, Any]]) -> Any:
    """An operation noting the thread it ran on and the driver connection it used."""

    def op(conn: Connection) -> int:
        where.append((threading.get_ident(), conn.connection.driver_connection))
        conn.execute(text("INSERT INTO notes VALUES (:n)"), {"n": value})
        return value

    return op


def committed(path: Path) -> list[int]:
    """The notes another connection sees: what is committed, not what one connection holds."""
    with closing(sqlite3.connect(path)) as conn:
        return [n for (n,) in conn.execute("SELECT n FROM notes ORDER BY n")]


async def test_a_write_now_while_the_writer_is_idle_commits_on_the_loop(db: Database) -> None:
    where: list[tuple[int, Any]] = []
    assert await db.write_now(noted_where(1, where)) == 1
    assert db.path is not None and committed(db.path) == [1]
    await db.write(noted_where(2, where))
    (loop_thread, on_loop), (writer_thread, on_writer) = where
    assert loop_thread == threading.get_ident() != writer_thread
    assert on_loop is on_writer  # one write connection, whichever thread commits

    def settings(conn: Connection) -> tuple[int, int]:
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        return busy, conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()

    assert await db.write(settings) == (5000, 1000)  # as they were before the loop's commit

    def fails(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes VALUES (99)"))
        raise ValueError("refused")

    await asyncio.sleep(0)  # a later step of the loop may commit on it again
    with pytest.raises(ValueError, match="refused"):
        await db.write_now(fails)
    assert committed(db.path) == [1, 2]


async def test_a_write_now_while_a_batch_is_on_the_writer_waits_its_turn(db: Database) -> None:
    first, release = await batch_held(db)
    where: list[tuple[int, Any]] = []
    now = asyncio.create_task(db.write_now(noted_where(1, where)))
    await asyncio.sleep(0)
    assert not now.done() and where == []  # queued behind the batch, not run on the loop
    release.set()
    async with asyncio.timeout(10):
        assert (await first, await now) == (0, 1)
    assert where[0][0] != threading.get_ident()


async def test_only_the_first_write_now_of_a_step_commits_on_the_loop(db: Database) -> None:
    where: list[tuple[int, Any]] = []
    async with asyncio.timeout(10):
        # Both tasks take their first step in the same turn of the loop.
        assert await asyncio.gather(
            db.write_now(noted_where(1, where)), db.write_now(noted_where(2, where))
        ) == [1, 2]
    threads = [thread for thread, _ in where]
    assert threads[0] == threading.get_ident() != threads[1]
    assert db.path is not None and committed(db.path) == [1, 2]


async def test_a_write_now_never_holds_the_loop_on_another_process_lock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a wait for the lock counted as the commit's time (180 ms or more) would pause them.
    monkeypatch.setattr(storage.db, "LOOP_COMMIT_LIMIT", 0.150)
    monkeypatch.setattr(storage.db, "LOOP_COMMIT_MEAN", 1.0)
    assert db.path is not None
    where: list[tuple[int, Any]] = []
    with closing(sqlite3.connect(db.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        now = asyncio.create_task(db.write_now(noted_where(1, where)))
        ticks = 0

        async def loop_turns() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks >= 10  # the loop kept turning while the write waited

        await eventually(loop_turns)
        assert not now.done()
        other.execute("COMMIT")
    async with asyncio.timeout(10):
        assert await now == 1
    assert where[-1][0] != threading.get_ident()  # the writer's thread waited for the lock
    await asyncio.sleep(0)
    await db.write_now(noted_where(2, where))  # that wait did not count as a slow commit
    assert where[-1][0] == threading.get_ident()
    assert committed(db.path) == [1, 2]


@pytest.mark.parametrize("bound", ["LOOP_COMMIT_LIMIT", "LOOP_COMMIT_MEAN"])
async def test_slow_commits_on_the_loop_send_writes_to_the_writer_for_a_while(
    db: Database, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    monkeypatch.setattr(storage.db, bound, 0.0)  # every commit is over this bound
    where: list[tuple[int, Any]] = []
    await db.write_now(noted_where(1, where))
    await asyncio.sleep(0)
    await db.write_now(noted_where(2, where))
    assert [thread == threading.get_ident() for thread, _ in where] == [True, False]
