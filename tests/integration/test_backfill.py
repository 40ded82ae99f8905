"""Backfill over the real API and the real engine: the cron instants of a past range that
have no run get one each (trigger backfill), launched paced at the catch-up rate through a
loopback session service; an instant fired otherwise is never fired twice; bad ranges are
422s that change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import NOPERM_TOKEN, ApiHarness
from tests.engine_harness import SETTINGS, EngineHarness, clear_of_the_turn, now
from tests.session_service import SessionService

SCHEDULES = "/v3/organizations/org-local/schedules"
RATE = 10.0
"""Catch-up launches a second in these tests: slow enough to measure the pacing."""


@pytest.fixture
async def harness(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[EngineHarness]:
    settings = SETTINGS.model_copy(update={"catchup_rate": RATE})
    started = EngineHarness(store, directory, service, http, settings)
    await started.engine.start()
    yield started
    await started.engine.stop(0.5)


@pytest.fixture
async def api(api_factory: Callable[..., Any], harness: EngineHarness) -> ApiHarness:
    served: ApiHarness = await api_factory(events=harness.engine)
    return served


def lateness_observations() -> float:
    count = REGISTRY.get_sample_value("agentcron_fire_lateness_seconds_count")
    return count or 0.0


def hour_ago() -> datetime:
    """The start of the hour before the current one: a range wholly in the past."""
    return now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def backfill(
    api: ApiHarness, schedule_id: str, first: datetime, end: datetime, **extra: Any
) -> tuple[int, Any]:
    body = {"start": iso(first), "end": iso(end)} | extra
    return await api.call("POST", f"{SCHEDULES}/{schedule_id}/backfill", json=body)


async def every_ten_minutes(harness: EngineHarness, **fields: Any) -> Schedule:
    """A `*/10` schedule, made clear of its next instant (see `clear_of_the_turn`)."""
    await clear_of_the_turn(10)
    return await harness.create(cron="*/10 * * * *", **fields)


async def test_a_backfill_fires_each_instant_of_the_range_once_paced(
    api: ApiHarness, harness: EngineHarness, service: SessionService
) -> None:
    schedule = await every_ten_minutes(harness)
    start = hour_ago()
    observed = lateness_observations()
    status, answer = await backfill(api, schedule.id, start, start + timedelta(hours=1))
    assert status == 202, answer
    expected = [start + timedelta(minutes=10 * i) for i in range(6)]
    assert answer == {"count": 6, "first": iso(expected[0]), "last": iso(expected[-1])}
    runs = await harness.finished_runs(schedule.id, 6)
    assert [run.scheduled_for for run in runs] == expected
    assert {(run.trigger, run.status) for run in runs} == {
        (RunTrigger.BACKFILL, RunStatus.SUCCEEDED)
    }
    arrivals = [request.at for request in await service.wait_for(6)]
    assert len(service.requests) == 6
    # Paced: the first at once, then one every 1/RATE s (unpaced, the six arrive within a
    # few ms; the slack is for the first request's connection set-up).
    assert arrivals[-1] - arrivals[0] >= 5 / RATE - 0.1
    # Late by request: not counted as fire lateness (it would swamp the histogram).
    assert lateness_observations() == observed


async def test_a_second_backfill_over_the_same_range_fires_only_what_has_no_run(
    api: ApiHarness, harness: EngineHarness, service: SessionService
) -> None:
    schedule = await every_ten_minutes(harness)
    start = hour_ago()
    status, _ = await backfill(api, schedule.id, start, start + timedelta(minutes=30))
    assert status == 202
    await harness.finished_runs(schedule.id, 3)
    status, answer = await backfill(api, schedule.id, start, start + timedelta(minutes=60))
    assert status == 202
    assert answer == {
        "count": 3,
        "first": iso(start + timedelta(minutes=30)),
        "last": iso(start + timedelta(minutes=50)),
    }
    await harness.finished_runs(schedule.id, 6)
    status, answer = await backfill(api, schedule.id, start, start + timedelta(minutes=60))
    assert (status, answer) == (202, {"count": 0, "first": None, "last": None})
    assert len(service.requests) == 6


def latest_ten_minutes() -> datetime:
    """The latest instant of `*/10 * * * *` at or before now."""
    moment = now()
    return moment.replace(minute=moment.minute - moment.minute % 10, second=0, microsecond=0)


async def meets_as_missed(harness: EngineHarness, schedule: Schedule, instant: datetime) -> None:
    """Make `instant` the schedule's pending instant, passed: the engine catches it up."""
    store = harness.store
    (_moved,) = await store.advance_schedules([(schedule.id, schedule.next_run_at, instant)])
    await harness.engine.changed(await store.get_schedule(schedule.id))


async def test_an_instant_the_engine_fired_is_not_fired_again_by_a_backfill(
    api: ApiHarness, harness: EngineHarness, service: SessionService
) -> None:
    schedule = await every_ten_minutes(harness)
    latest = latest_ten_minutes()
    await meets_as_missed(harness, schedule, latest)
    (caught_up,) = await harness.finished_runs(schedule.id, 1)
    assert (caught_up.scheduled_for, caught_up.trigger) == (latest, RunTrigger.CATCHUP)
    start = latest - timedelta(minutes=30)
    status, answer = await backfill(api, schedule.id, start, now())
    assert status == 202
    assert answer == {"count": 3, "first": iso(start), "last": iso(latest - timedelta(minutes=10))}
    runs = await harness.finished_runs(schedule.id, 4)
    assert [run.scheduled_for for run in runs] == [
        start + timedelta(minutes=10 * i) for i in range(4)
    ]
    assert [run.trigger for run in runs].count(RunTrigger.BACKFILL) == 3
    assert len(service.requests) == 4  # one session per instant


async def test_an_instant_a_backfill_claimed_is_not_fired_again_by_the_engine(
    api: ApiHarness, harness: EngineHarness, service: SessionService, store: Store
) -> None:
    schedule = await every_ten_minutes(harness)
    latest = latest_ten_minutes()
    status, answer = await backfill(api, schedule.id, latest, now())
    assert (status, answer["count"]) == (202, 1)
    (backfilled,) = await harness.finished_runs(schedule.id, 1)
    await meets_as_missed(harness, schedule, latest)
    after = await store.get_schedule(schedule.id)
    assert after.next_run_at == latest + timedelta(minutes=10)  # settled, moved on
    runs = await harness.runs(schedule.id)
    assert [(run.id, run.scheduled_for) for run in runs] == [(backfilled.id, latest)]
    assert len(service.requests) == 1


async def test_a_paused_schedule_is_backfilled(
    api: ApiHarness, harness: EngineHarness, service: SessionService
) -> None:
    schedule = await every_ten_minutes(harness, enabled=False)
    start = hour_ago()
    status, answer = await backfill(api, schedule.id, start, start + timedelta(minutes=20))
    assert (status, answer["count"]) == (202, 2)
    runs = await harness.finished_runs(schedule.id, 2)
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}


async def test_a_backfill_within_max_runs_exactly_is_accepted(
    api: ApiHarness, harness: EngineHarness
) -> None:
    schedule = await every_ten_minutes(harness)
    start = hour_ago()
    status, answer = await backfill(api, schedule.id, start, start + timedelta(hours=1), max_runs=6)
    assert (status, answer["count"]) == (202, 6)
    await harness.finished_runs(schedule.id, 6)


@pytest.mark.parametrize(
    ("shift_start", "shift_end", "extra", "loc", "words"),
    [
        (0, 0, {}, ["body", "end"], "end must be after start"),
        (0, -10, {}, ["body", "end"], "end must be after start"),
        (0, 120, {}, ["body", "end"], "reaches into the future"),
        (0, 60, {"max_runs": 5}, ["body", "max_runs"], "more than max_runs=5"),
        (-1200, 0, {}, ["body", "max_runs"], "more than max_runs=100"),
        (0, 60, {"max_runs": 0}, ["body", "max_runs"], "greater than or equal to 1"),
        (0, 60, {"max_runs": 1001}, ["body", "max_runs"], "less than or equal to 1000"),
        (0, 60, {"start": "yesterday"}, ["body", "start"], "datetime"),
        (0, 60, {"step": 5}, ["body", "step"], "Extra inputs"),
    ],
)
async def test_a_bad_range_is_a_422_naming_it_and_fires_nothing(
    api: ApiHarness,
    harness: EngineHarness,
    service: SessionService,
    shift_start: int,
    shift_end: int,
    extra: dict[str, Any],
    loc: list[str],
    words: str,
) -> None:
    schedule = await every_ten_minutes(harness)
    start = hour_ago()
    end = start + timedelta(minutes=shift_end)
    status, answer = await backfill(
        api, schedule.id, start + timedelta(minutes=shift_start), end, **extra
    )
    assert status == 422, answer
    (item,) = answer["detail"]
    assert item["loc"] == loc and words in item["msg"], item
    assert await harness.runs(schedule.id) == [] and service.requests == []


async def test_a_one_time_schedule_cannot_be_backfilled(
    api: ApiHarness, harness: EngineHarness
) -> None:
    schedule = await harness.create(scheduled_at=now() + timedelta(days=1))
    start = hour_ago()
    status, answer = await backfill(api, schedule.id, start, start + timedelta(minutes=30))
    assert status == 422
    assert "one_time" in answer["detail"][0]["msg"]


async def test_a_backfill_needs_the_permission_to_run_schedules(
    api: ApiHarness, harness: EngineHarness
) -> None:
    schedule = await every_ten_minutes(harness)
    start = hour_ago()
    body = {"start": iso(start), "end": iso(start + timedelta(minutes=30))}
    path = f"{SCHEDULES}/{schedule.id}/backfill"
    status, _ = await api.call("POST", path, json=body, token=NOPERM_TOKEN)
    assert status == 403
    status, _ = await api.call("POST", f"{SCHEDULES}/sched-nope/backfill", json=body)
    assert status == 404
    assert await harness.runs(schedule.id) == []


async def test_a_backfill_run_the_daemon_stopped_before_sending_is_sent_after_a_restart(
    harness: EngineHarness, service: SessionService, store: Store
) -> None:
    schedule = await every_ten_minutes(harness, enabled=False)
    start = hour_ago()
    left = Run(
        schedule_id=schedule.id,
        scheduled_for=start,
        trigger=RunTrigger.BACKFILL,
        started_at=start,
    )
    await store.claim_runs([left])  # claimed, never dispatched: as a stop leaves it
    await harness.engine.stop(0.5)
    harness.engine = harness.new_engine()
    await harness.engine.start()
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert (run.id, run.status) == (left.id, RunStatus.SUCCEEDED)
    assert run.error == "backfill relaunched after a restart"
