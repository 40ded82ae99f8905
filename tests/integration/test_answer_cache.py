"""AgentScope's unpaged schedule list, kept until the next write (`api.answer_cache`): over the
real API, the real SQLite store and its writer.

To see that an answer came from the cache and not from the database, the database is changed
behind the store's back (another connection, as no client of the daemon can): the kept answer
does not show it until this process writes something, and then shows everything."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from api.answer_cache import AnswerCache
from storage.sqlite_store import SqliteStore
from tests.conftest import ApiHarness
from tests.deadline import eventually
from tests.integration.test_agentscope_api import ALICE, call, create

BOB = "user-bob"


def rename_behind_the_stores_back(db_path: Path, schedule_id: str, name: str) -> None:
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("UPDATE schedules SET name = ? WHERE id = ?", (name, schedule_id))


async def names(api: ApiHarness, user: str = ALICE) -> list[str]:
    status, listed = await call(api, "GET", "/schedule/", user)
    assert status == 200, listed
    return [item["data"]["name"] for item in listed["schedules"]]


async def test_a_list_is_answered_again_until_this_process_writes(
    api: ApiHarness, db_path: Path
) -> None:
    first = await create(api, name="first")
    assert await names(api) == ["first"]
    rename_behind_the_stores_back(db_path, first, "renamed elsewhere")
    assert await names(api) == ["first"]  # kept: no write of this process since

    await create(api, name="second")
    assert await names(api) == ["renamed elsewhere", "second"]  # the write moved it on


async def test_every_write_is_seen_by_the_next_list(api: ApiHarness) -> None:
    made = await create(api, name="a")
    assert await names(api) == ["a"]
    status, _ = await call(api, "PATCH", f"/schedule/{made}", json={"name": "b"})
    assert status == 200 and await names(api) == ["b"]
    status, _ = await call(api, "DELETE", f"/schedule/{made}")
    assert status == 204 and await names(api) == []


async def test_each_owner_has_an_answer_of_their_own(api: ApiHarness) -> None:
    await create(api, name="alices")
    assert (await names(api), await names(api, BOB)) == (["alices"], [])
    assert (await names(api), await names(api, BOB)) == (["alices"], [])


async def test_callers_asking_at_once_share_one_read(store: SqliteStore) -> None:
    cache = AnswerCache(store)
    release = asyncio.Event()
    reads = 0

    async def read() -> bytes:
        nonlocal reads
        reads += 1
        await release.wait()
        return b"[]"

    callers = [asyncio.create_task(cache.answer("key", read)) for _ in range(5)]
    await eventually(lambda: reads == 1)
    release.set()
    assert await asyncio.gather(*callers) == [b"[]"] * 5
    assert reads == 1
    assert await cache.answer("key", read) == b"[]" and reads == 1  # and it was kept


async def test_a_shared_read_whose_first_caller_went_away_is_read_again(
    store: SqliteStore,
) -> None:
    cache = AnswerCache(store)
    started: list[asyncio.Event] = []

    async def read() -> bytes:
        started.append(asyncio.Event())
        await started[-1].wait()
        return f"answer {len(started)}".encode()

    first = asyncio.create_task(cache.answer("key", read))
    await eventually(lambda: len(started) == 1)
    second = asyncio.create_task(cache.answer("key", read))
    await asyncio.sleep(0)  # let the second caller join the first read
    first.cancel()
    await eventually(lambda: len(started) == 2)
    started[1].set()
    assert await second == b"answer 2"
    assert first.cancelled()


async def test_a_failed_read_reaches_every_caller_and_is_not_kept(store: SqliteStore) -> None:
    cache = AnswerCache(store)
    attempts = 0

    async def read() -> bytes:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("the database went away")
        return b"[]"

    try:
        await cache.answer("key", read)
    except RuntimeError as exc:
        assert str(exc) == "the database went away"
    else:
        raise AssertionError("the failure was swallowed")
    assert await cache.answer("key", read) == b"[]" and attempts == 2


async def test_kept_answers_are_bounded_least_recently_used_first(store: SqliteStore) -> None:
    cache = AnswerCache(store, max_bytes=10)
    reads: list[str] = []

    def reader(key: str, size: int) -> Any:
        async def read() -> bytes:
            reads.append(key)
            return b"x" * size

        return read

    await cache.answer("a", reader("a", 4))
    await cache.answer("b", reader("b", 4))
    await cache.answer("a", reader("a", 4))  # kept; now the most recently used
    await cache.answer("c", reader("c", 4))  # 12 bytes: "b" goes
    await cache.answer("a", reader("a", 4))
    await cache.answer("b", reader("b", 4))
    await cache.answer("big", reader("big", 11))  # larger than the bound: never kept
    await cache.answer("big", reader("big", 11))
    assert reads == ["a", "b", "c", "b", "big", "big"]
