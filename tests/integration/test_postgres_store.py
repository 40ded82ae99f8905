"""What only the PostgreSQL store has: a schema version row, several processes on one database.

The behaviour every store shares is `test_store.py`, run on PostgreSQL too; here two stores
opened on one database stand for two daemons of a fleet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storage.errors import SchemaError
from storage.postgres_store import PostgresStore
from storage.schema_steps import SCHEMA_VERSION
from storage.schema_versions import revision_of
from tests.integration.test_store import NOW, launching, recurring
from tests.postgres_cluster import cluster


@pytest.fixture
def url() -> str:
    return cluster().new_database()


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    first, second = await asyncio.gather(PostgresStore.connect(url), PostgresStore.connect(url))
    yield first, second
    await first.close()
    await second.close()


async def test_a_new_database_records_the_schema_version(url: str) -> None:
    store = await PostgresStore.connect(url)
    await store.close()
    with psycopg.connect(url) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    assert revision == revision_of(SCHEMA_VERSION)


async def test_a_new_database_keeps_the_list_indexes_to_live_schedules(url: str) -> None:
    store = await PostgresStore.connect(url)
    await store.close()
    with psycopg.connect(url) as conn:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'ix_%_live_%'"
        found = dict(conn.execute(query).fetchall())
    assert set(found) == {"ix_schedules_live_owner_created", "ix_schedules_live_org_created"}
    assert all(definition.endswith("WHERE (deleted_at IS NULL)") for definition in found.values())


async def test_a_newer_schema_is_refused_and_left_alone(url: str) -> None:
    newer = revision_of(SCHEMA_VERSION + 1)
    store = await PostgresStore.connect(url)
    await store.close()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (newer,))
    with pytest.raises(SchemaError, match="newer than this agentcron"):
        await PostgresStore.connect(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (newer,)


async def test_foreign_tables_without_a_version_are_refused(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
    with pytest.raises(SchemaError, match="no agentcron schema version"):
        await PostgresStore.connect(url)


async def test_an_unreachable_server_is_a_schema_error_naming_it_without_password() -> None:
    url = "postgresql://someone:secret@/nowhere?host=/nonexistent&port=1"
    with pytest.raises(SchemaError, match="cannot open") as caught:
        await PostgresStore.connect(url)
    assert "secret" not in str(caught.value)


async def test_data_outlives_the_process_that_wrote_it(url: str) -> None:
    first = await PostgresStore.connect(url)
    created = await first.create_schedule(recurring(), now=NOW)
    await first.close()
    again = await PostgresStore.connect(url)
    try:
        assert await again.get_schedule(created.id) == created
    finally:
        await again.close()


async def test_two_processes_claim_each_instant_once(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    schedule = await first.create_schedule(recurring(), now=NOW)
    instants = [NOW + timedelta(minutes=i) for i in range(20)]
    claims = [
        store.claim_runs([launching(schedule, at)])
        for at in instants
        for store in (first, second, first)
    ]
    claimed = [run for runs in await asyncio.gather(*claims) for run in runs]
    assert sorted(run.scheduled_for for run in claimed) == instants


async def test_edits_from_two_processes_never_lose_one(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    created = await first.create_schedule(recurring(), now=NOW)
    edits = [
        (first if i % 2 else second).update_schedule(created.id, {"name": f"n{i}"}, now=NOW)
        for i in range(20)
    ]
    versions = sorted(schedule.version for schedule in await asyncio.gather(*edits))
    assert versions == list(range(2, 22))  # each edit read the one before it: none lost
    assert (await second.get_schedule(created.id)).version == 21


async def test_advance_from_two_processes_moves_once(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    created = await first.create_schedule(recurring(), now=NOW)
    expected, later = created.next_run_at, datetime(2030, 1, 1, tzinfo=UTC)
    moves = [(created.id, expected, later)]
    results = await asyncio.gather(
        *(store.advance_schedules(moves) for store in (first, second) * 5)
    )
    assert sum(len(moved) for moved in results) == 1


async def test_one_at_a_time_makes_two_processes_take_turns(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    order: list[str] = []
    held = asyncio.Event()

    async def holder() -> None:
        async with first.one_at_a_time("bootstrap"):
            order.append("first in")
            held.set()
            await asyncio.sleep(0.3)  # the other must wait out this whole body
            order.append("first out")

    async def waiter() -> None:
        await held.wait()
        async with second.one_at_a_time("bootstrap"):
            order.append("second in")
        async with second.one_at_a_time("another topic"):
            order.append("another topic")

    await asyncio.gather(holder(), waiter())
    assert order == ["first in", "first out", "second in", "another topic"]
