"""The SQLite writer's group commit (`storage.db.Database.write`), on a real database file.

Writes that arrive while a batch is on the writer thread share the next transaction; an
operation that raises is undone alone; `close` commits what was queued and refuses what
comes after; a writer broken by something that is not a database error answers every
caller and ends its task with the error, for the daemon to stop on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

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


async def test_writes_arriving_during_a_batch_share_the_next_commit(db: Database) -> None:
    started, release = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        started.set()
        assert release.wait(10)
        return 0

    first = asyncio.create_task(db.write(held))
    await eventually(started.is_set)  # the first batch is on the writer thread
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
