"""The lists read along an index: SQLite's plan for every statement of a list (the org's
schedules, an owner's, a schedule's runs) neither scans a table nor sorts."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api import json_rows
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
