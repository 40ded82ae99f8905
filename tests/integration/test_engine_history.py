"""What the running engine writes to a schedule's edit history: a pause after consecutive
failures, a one_time schedule done after its fire or retired past its window, each by
`engine` and each moving the version; the run bookkeeping alone writes nothing. Real SQLite,
real timers, a loopback session service; every wait has a deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from daemon.engine import Engine
from storage.domain import HistoryEntry
from storage.identities import DirectoryRef
from storage.store import Store
from tests.deadline import eventually
from tests.engine_harness import SETTINGS, EngineHarness, now, schedule_of
from tests.session_service import Reply, SessionService


@pytest.fixture
async def harness_factory(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[Any]:
    started: list[Engine] = []

    async def start(**settings: Any) -> EngineHarness:
        harness = EngineHarness(
            store, directory, service, http, SETTINGS.model_copy(update=settings)
        )
        await harness.engine.start()
        started.append(harness.engine)
        return harness

    yield start
    for engine in started:
        await engine.stop(0.5)


async def entries(store: Store, schedule_id: str) -> list[HistoryEntry]:
    return (await store.schedule_history(schedule_id, limit=100, offset=0)).items


async def test_an_auto_pause_is_recorded_by_the_engine(
    harness_factory: Any, service: SessionService
) -> None:
    harness: EngineHarness = await harness_factory(max_consecutive_failures=2)
    schedule = await harness.create(cron="* * * * *")
    service.answer(Reply(400, text="quota exhausted"), Reply(400, text="quota exhausted"))
    for count in (1, 2):
        await harness.engine.trigger(schedule, by="service-admin")
        await harness.finished_runs(schedule.id, count)
    after = await harness.store.get_schedule(schedule.id)
    assert after.version == schedule.version + 1
    paused, created = await entries(harness.store, schedule.id)
    assert (paused.action, paused.by) == ("paused", "engine")
    assert paused.changes == {
        "enabled": [True, False],
        "paused_reason": [None, after.paused_reason],
    }
    assert paused.at == after.updated_at
    assert created.action == "created"


async def test_a_one_time_fire_is_recorded_as_disabled_by_the_engine(
    harness_factory: Any,
) -> None:
    harness: EngineHarness = await harness_factory()
    schedule = await harness.create(scheduled_at=now() + timedelta(seconds=1))
    await harness.finished_runs(schedule.id, 1)
    done, _ = await entries(harness.store, schedule.id)
    assert (done.action, done.by, done.changes) == (
        "disabled",
        "engine",
        {"enabled": [True, False]},
    )
    assert (await harness.store.get_schedule(schedule.id)).version == schedule.version + 1


async def test_a_one_time_missed_past_its_window_is_retired_in_the_history(
    store: Store, harness_factory: Any
) -> None:
    schedule = await store.create_schedule(
        schedule_of(scheduled_at=now() + timedelta(hours=1)), now=now()
    )
    long_ago = now() - timedelta(hours=2)
    await store.advance_schedules([(schedule.id, schedule.next_run_at, long_ago)])
    await harness_factory(catchup_window=60.0)

    async def retired() -> list[HistoryEntry] | None:
        found = await entries(store, schedule.id)
        return found if len(found) == 2 else None

    done, _ = await eventually(retired, within=5.0)
    assert (done.action, done.by, done.changes) == (
        "disabled",
        "engine",
        {"enabled": [True, False]},
    )


async def test_successful_fires_write_no_history(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(cron="* * * * *")
    for count in (1, 2):
        await harness.engine.trigger(schedule, by="service-admin")
        await harness.finished_runs(schedule.id, count)
    assert [e.action for e in await entries(harness.store, schedule.id)] == ["created"]
    assert (await harness.store.get_schedule(schedule.id)).version == schedule.version


@pytest.fixture
async def harness(harness_factory: Any) -> EngineHarness:
    started: EngineHarness = await harness_factory()
    return started
