"""The lists read along an index: SQLite's plan for every statement of a list (the org's
schedules, an owner's, a schedule's runs) neither scans a table nor sorts."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api import json_rows
from storage.db import READERS
from storage.sqlite_store import SqliteStore

ORG = "org-local"
DEVIN = frozenset({"devin"})


@pytest.fixture
def statements() -> Iterator[list[tuple[str, Any]]]:
    """Every SELECT any engine runs meanwhile, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


LISTS: dict[str, Callable[[SqliteStore], Awaitable[Any]]] = {
    "agentscope schedules": lambda store: store.encode_schedules(
        ORG,
        json_rows.AGENTSCOPE_SCHEDULE_FIELDS,
        json_rows.agentscope_schedule_list,
        limit=None,
        owner_user_id="user-alice",
    ),
    "an owner's page and count": lambda store: store.list_schedules(
        ORG, limit=1, offset=5, owner_user_id="user-alice"
    ),
    "devin schedules, page and count": lambda store: store.encode_schedules(
        ORG, json_rows.DEVIN_SCHEDULE_FIELDS, json_rows.devin_schedule_page(5), limit=5, offset=5
    ),
    "devin agents' schedules": lambda store: store.encode_schedules(
        ORG,
        json_rows.DEVIN_SCHEDULE_FIELDS,
        json_rows.devin_schedule_page(5),
        limit=5,
        offset=5,
        agents=DEVIN,
    ),
    "runs, page and count": lambda store: store.encode_runs(
        "sched-1", json_rows.RUN_FIELDS, json_rows.run_page(5), limit=5, offset=5
    ),
}


@pytest.mark.parametrize("name", sorted(LISTS))
async def test_a_list_neither_scans_nor_sorts(
    db_path: Path, statements: list[tuple[str, Any]], name: str
) -> None:
    store = await SqliteStore.open(db_path)
    try:
        statements.clear()
        await LISTS[name](store)
    finally:
        await store.close()
    assert statements
    with sqlite3.connect(db_path) as conn:
        for statement, params in statements:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            assert plan[0].startswith("SEARCH "), (statement, plan)
            assert not [step for step in plan if "SCAN" in step or "TEMP B-TREE" in step], plan


async def test_the_lists_follow_their_indexes(db_path: Path, statements: list[Any]) -> None:
    store = await SqliteStore.open(db_path)
    try:
        await LISTS["agentscope schedules"](store)
        await LISTS["devin schedules, page and count"](store)
    finally:
        await store.close()
    with sqlite3.connect(db_path) as conn:
        plans = " ".join(
            row[3]
            for statement, params in statements
            for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)
        )
    assert "ix_schedules_live_owner_created (org_id=? AND owner_user_id=?)" in plans
    assert "ix_schedules_live_org_created (org_id=?)" in plans


async def test_an_unpaged_list_never_holds_up_the_other_reads(db_path: Path) -> None:
    """Unpaged lists, however many and however long, wait for each other, not the engine's
    reads; while one is read and encoded the GIL changes hands every millisecond and the
    cyclic garbage collector pauses, and afterwards both are as before."""
    store = await SqliteStore.open(db_path)
    started, release = threading.Event(), threading.Event()
    intervals: list[float] = []
    collecting: list[bool] = []

    def slow_encoder(rows: list[tuple[Any, ...]], total: int) -> int:
        intervals.append(sys.getswitchinterval())
        collecting.append(gc.isenabled())
        started.set()
        assert release.wait(timeout=10)
        return total

    before = sys.getswitchinterval()
    try:
        listings = [
            asyncio.create_task(store.encode_schedules(ORG, ("id",), slow_encoder, limit=None))
            for _ in range(READERS + 1)  # more than there are reader threads
        ]
        assert await asyncio.to_thread(started.wait, 10)
        async with asyncio.timeout(5):
            assert await store.count_active_schedules() == 0
            assert await store.get_schedules(["sched-missing"]) == {}
        assert len(intervals) == 1  # the others wait for the one being encoded
        release.set()
        assert await asyncio.gather(*listings) == [0] * len(listings)
    finally:
        release.set()
        await store.close()
    assert intervals == [min(before, 0.001)] * len(listings)
    assert collecting == [False] * len(listings)
    assert sys.getswitchinterval() == before
    assert gc.isenabled()
