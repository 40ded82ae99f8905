"""The fast path (`storage.prepared`) against SQLAlchemy's own execution, on real files.

Each prepared statement is run on one copy of a database and its plain Core statement, through
`conn.execute`, on another copy: the rows written must be identical, value and type, and
what each reads must be equal. And a statement is compiled once per engine, not once per
call when reads (the loop's engine) and writes (the writer's) alternate.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from storage import prepared
from storage.domain import Run, Schedule
from storage.enums import NotifyOn, Overlap, PermissionMode, RunTrigger, ScheduleType, Source
from storage.prepared import Prepared
from storage.sqlite_rows import schedule_of, values_of
from storage.sqlite_store import SqliteStore
from storage.tables import RUNS, SCHEDULES

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


def rich(name: str, *, shift: timedelta = timedelta(0)) -> Schedule:
    """A schedule with a value of every kind in its columns: text, JSON, instants, enums,
    booleans both ways, integers, floats, and NULLs."""
    return Schedule(
        org_id="org-local",
        name=name,
        prompt="résumé ✓ 'quoted' \"twice\"",
        created_at=NOW + shift,
        updated_at=NOW + shift,
        owner_user_id="user-alice",
        created_by="service-admin",
        schedule_type=ScheduleType.ONE_TIME,
        scheduled_at=NOW + timedelta(hours=1) + shift,
        start_at=NOW - timedelta(days=1),
        end_at=datetime(2027, 1, 1, tzinfo=UTC),
        notify_on=NotifyOn.ALWAYS,
        tags=["a", "b ✓"],
        bypass_approval=True,
        interval_count=3,
        stateful=True,
        permission_mode=PermissionMode.BYPASS,
        chat_model_config={"model": "m", "temperature": 0.5, "nested": {"k": [1, None]}},
        source=Source.AGENT,
        overlap=Overlap.BUFFER_ONE,
        catchup_window_s=3600.0,
        jitter_s=1.5,
        consecutive_failures=2,
        last_error_message=None,
        next_run_at=NOW + timedelta(hours=1) + shift,
        from_config=False,
        version=4,
    )


def recurring(name: str) -> Schedule:
    return Schedule(
        org_id="org-local",
        name=name,
        prompt="p",
        created_at=NOW,
        updated_at=NOW,
        cron="0 9 * * 1-5",
        enabled=False,
        tags=None,
    )


class Twins:
    """Two stores on byte-identical copies of one database: `fast` and `plain`."""

    def __init__(self, fast: SqliteStore, plain: SqliteStore) -> None:
        self.fast = fast
        self.plain = plain

    def same_rows(self, table: str = "schedules") -> bool:
        rows = stored_rows(self.fast.db.path, table)
        return len(rows) > 0 and rows == stored_rows(self.plain.db.path, table)

    async def write(self, statement: Prepared, params: dict[str, Any]) -> tuple[int, int]:
        """Run `statement` prepared on `fast` and as plain Core on `plain`; both row counts."""
        fast = await self.fast.db.write(lambda conn: statement.run(conn, **params))
        plain = await self.plain.db.write(
            lambda conn: conn.execute(statement.statement, params).rowcount
        )
        return fast, plain

    async def read(self, query: Callable[[Connection], Any]) -> tuple[Any, Any]:
        return await self.fast.db.read(query), await self.plain.db.read(query)


@pytest.fixture
async def twins(tmp_path: Path) -> AsyncIterator[Twins]:
    seed = await SqliteStore.open(tmp_path / "seed.db")
    for index, schedule in enumerate([rich("r1"), recurring("c1"), rich("r2")]):
        await seed.create_schedule(schedule, now=NOW + timedelta(seconds=index))
        cron = RunTrigger.CRON
        run = Run(schedule_id=schedule.id, scheduled_for=NOW, trigger=cron, started_at=NOW)
        await seed.claim_runs([run])
    await seed.close()
    for name in ("fast.db", "plain.db"):
        shutil.copyfile(tmp_path / "seed.db", tmp_path / name)
    async with contextlib.AsyncExitStack() as stack:
        fast = await SqliteStore.open(tmp_path / "fast.db")
        stack.push_async_callback(fast.close)
        plain = await SqliteStore.open(tmp_path / "plain.db")
        stack.push_async_callback(plain.close)
        yield Twins(fast, plain)


def stored_rows(path: Path, table: str) -> list[tuple[tuple[str, Any], ...]]:
    """Every row of `table` as stored, each value with its SQLite type (1 and 1.0 differ)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    return [tuple((type(value).__name__, value) for value in row) for row in rows]


async def ids(store: SqliteStore) -> list[str]:
    query = select(SCHEDULES.c.id).order_by(SCHEDULES.c.id)
    return await store.db.read(lambda conn: list(conn.execute(query).scalars()))


def every_prepared_statement() -> set[str]:
    """The names of `storage.prepared`'s statements and of its functions that make them."""
    names = set()
    for name, value in vars(prepared).items():
        function = getattr(value, "__wrapped__", value)  # under its lru_cache
        ours = getattr(function, "__module__", None) == prepared.__name__
        makes = ours and getattr(function, "__annotations__", {}).get("return") == "Prepared"
        if isinstance(value, Prepared) or makes:
            names.add(name)
    return names


TESTED = {
    "INSERT_SCHEDULE",
    "update_schedule_columns",
    "LIVE_SCHEDULE",
    "LIVE_SCHEDULE_IN_ORG",
    "LOCKED_SCHEDULE",
    "LOCKED_SCHEDULE_IN_ORG",
    "fire_state_query",
    "MARK_DISPATCHED",
    "INSERT_HISTORY",
}


def test_every_prepared_statement_is_compared_here() -> None:
    assert every_prepared_statement() == TESTED


async def test_the_insert_writes_what_core_writes(twins: Twins, tmp_path: Path) -> None:
    for schedule in (rich("new rich"), recurring("new plain")):
        assert await twins.write(prepared.INSERT_SCHEDULE, values_of(schedule)) == (1, 1)
        assert twins.same_rows()
        for store in (twins.fast, twins.plain):
            assert await store.get_schedule(schedule.id) == schedule  # read back as given


@pytest.mark.parametrize(
    "names",
    [
        ("prompt",),
        ("enabled", "next_run_at", "paused_reason", "tags"),
        ("chat_model_config", "catchup_window_s", "consecutive_failures", "last_error_at"),
        "every column but the id",
    ],
)
async def test_an_update_writes_what_core_writes(twins: Twins, names: Any) -> None:
    if names == "every column but the id":
        names = tuple(sorted(c.name for c in SCHEDULES.columns if c.name != "id"))
    target = (await ids(twins.fast))[0]
    given = rich("changed", shift=timedelta(days=3))
    changed = {**values_of(given), "last_error_at": NOW, "paused_reason": "why", "tags": []}
    params = {"b_id": target, **{f"b_{name}": changed[name] for name in names}}
    statement = prepared.update_schedule_columns(tuple(sorted(names)))
    assert await twins.write(statement, params) == (1, 1)
    assert twins.same_rows()
    fast, plain = await twins.read(
        lambda conn: prepared.LIVE_SCHEDULE.one_or_none(conn, b_id=target)
    )
    assert fast == plain and fast is not None
    assert {name: fast[name] for name in names} == {name: changed[name] for name in names}


async def test_the_dispatch_mark_writes_what_core_writes(twins: Twins) -> None:
    run_ids = await twins.fast.db.read(
        lambda conn: list(conn.execute(select(RUNS.c.id).order_by(RUNS.c.id)).scalars())
    )
    at = NOW + timedelta(seconds=1, microseconds=7)
    params = {"b_id": run_ids[1], "b_at": at}
    assert await twins.write(prepared.MARK_DISPATCHED, params) == (1, 1)
    assert twins.same_rows("runs")
    marked = await twins.fast.get_run(run_ids[1])
    assert (marked.dispatched_at, marked.started_at) == (at, at)
    untouched = await twins.fast.get_run(run_ids[0])
    assert untouched.dispatched_at is None
    assert await twins.write(prepared.MARK_DISPATCHED, {"b_id": "run-none", "b_at": at}) == (0, 0)


async def test_the_history_insert_writes_what_core_writes(twins: Twins) -> None:
    target = (await ids(twins.fast))[0]
    entry = {
        "schedule_id": target,
        "org_id": "org-local",
        "at": NOW + timedelta(minutes=1, microseconds=3),
        "by": "user-é",
        "action": "updated",
        "changes": {"prompt": {"from": "a", "to": "b"}, "tags": {"from": None, "to": ["x"]}},
    }
    assert await twins.write(prepared.INSERT_HISTORY, entry) == (1, 1)
    assert twins.same_rows("schedule_history")
    (latest, *_) = (await twins.fast.schedule_history(target, limit=1, offset=0)).items
    assert (latest.by, latest.changes) == (entry["by"], entry["changes"])


async def test_an_update_of_no_row_changes_nothing(twins: Twins) -> None:
    statement = prepared.update_schedule_columns(("prompt",))
    assert await twins.write(statement, {"b_id": "sched-none", "b_prompt": "x"}) == (0, 0)
    assert twins.same_rows()


READS = {
    (False, False): prepared.LIVE_SCHEDULE,
    (True, False): prepared.LIVE_SCHEDULE_IN_ORG,
    (False, True): prepared.LOCKED_SCHEDULE,
    (True, True): prepared.LOCKED_SCHEDULE_IN_ORG,
}


@pytest.mark.parametrize(("in_org", "locked"), sorted(READS))
async def test_the_schedule_reads_read_what_core_reads(
    twins: Twins, in_org: bool, locked: bool
) -> None:
    statement = READS[in_org, locked]
    extra = {"b_org": "org-local"} if in_org else {}
    for schedule_id in [*await ids(twins.fast), "sched-none"]:
        params = {"b_id": schedule_id, **extra}
        fast, plain = await twins.fast.db.read(lambda conn, p=params: read_both(conn, statement, p))
        assert fast == plain
        if fast is not None:
            assert schedule_of(dict(fast)) == await twins.fast.get_schedule(schedule_id)


def read_both(conn: Connection, statement: Prepared, params: dict[str, Any]) -> tuple[Any, Any]:
    """The row as the fast path reads it, and as `conn.execute` does."""
    row = conn.execute(statement.statement, params).one_or_none()
    return statement.one_or_none(conn, **params), None if row is None else row._asdict()


@pytest.mark.parametrize("size", [1, 3, 5])
async def test_the_fire_state_reads_read_what_core_reads(twins: Twins, size: int) -> None:
    wanted = [*await ids(twins.fast), "sched-none", "sched-other"][:size]
    statement = prepared.fire_state_query(size)
    params = {f"b_{index}": value for index, value in enumerate(wanted)}

    def both(conn: Connection) -> tuple[Any, Any]:
        plain = [list(row) for row in conn.execute(statement.statement, params)]
        return sorted(statement.all(conn, **params)), sorted(plain)

    fast, plain = await twins.fast.db.read(both)
    assert fast == plain and len(fast) == len(set(wanted) - {"sched-none", "sched-other"})


# -- compiling ---------------------------------------------------------------------------------


async def test_a_statement_alternating_between_engines_compiles_once_per_engine(
    store: SqliteStore,
) -> None:
    created = await store.create_schedule(recurring("c"), now=NOW)
    fresh = Prepared(select(SCHEDULES.c.name).where(SCHEDULES.c.id == bindparam("b_id")))

    def read(conn: Connection) -> Any:
        return fresh.one_or_none(conn, b_id=created.id)

    for _ in range(50):  # the loop's engine, then the writer's
        assert await store.db.lookup(read) == {"name": "c"}
        assert await store.db.write(read) == {"name": "c"}
    assert fresh.compilations == 2


async def test_alternating_gets_and_patches_compile_nothing_after_the_first(
    store: SqliteStore,
) -> None:
    created = await store.create_schedule(recurring("c"), now=NOW)
    read = prepared.LIVE_SCHEDULE_IN_ORG
    write = prepared.update_schedule_columns(("prompt", "updated_at", "version"))

    async def get_then_patch(index: int) -> None:
        await store.get_schedule(created.id, org_id="org-local")
        later = NOW + timedelta(seconds=index + 1)
        await store.update_schedule(
            created.id, {"prompt": f"p{index}"}, now=later, org_id="org-local"
        )

    for index in range(2):  # the statements meet this store's engines
        await get_then_patch(index)
    before = (read.compilations, write.compilations)
    for index in range(2, 52):
        await get_then_patch(index)
    assert (read.compilations, write.compilations) == before
