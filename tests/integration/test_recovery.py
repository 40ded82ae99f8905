"""Start-up recovery of runs a crash left `launching`, and catch-up pacing, on a real engine,
a real store and a loopback session service.

A run whose request never left is launched again under its own id; one whose request may
have reached the service is re-sent only to an idempotent launcher, else interrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import aiohttp

from daemon.config import LauncherConfig
from daemon.launchers import HttpLauncher
from daemon.pacer import Pacer, PendingLaunch
from daemon.retry import Backoff
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store
from tests.engine_harness import EngineHarness, now, schedule_of
from tests.session_service import SessionService


async def _left_launching(
    harness: EngineHarness, schedule: Schedule, instant: datetime, *, dispatched: bool
) -> Run:
    """A run as a killed daemon leaves it: claimed, maybe dispatched, never finished."""
    run = Run(schedule.id, instant, RunTrigger.CRON, started_at=instant)
    (claimed,) = await harness.store.claim_runs([run])
    if dispatched:
        await harness.store.mark_dispatched(claimed.id, at=instant)
    return claimed


async def _start_and_finish(harness: EngineHarness, run: Run) -> Run:
    await harness.engine.start()
    try:
        runs = await harness.finished_runs(run.schedule_id, 1)
    finally:
        await harness.engine.stop(0.5)
    (finished,) = [r for r in runs if r.id == run.id]
    return finished


def _idempotent(harness: EngineHarness) -> None:
    config = LauncherConfig(
        type="http", url=harness.service.url, timeout=5.0, max_attempts=3, idempotent=True
    )
    harness.engine.set_launcher(HttpLauncher(config, http=harness.http, backoff=Backoff(0.05)))


async def test_a_run_whose_request_never_left_is_launched_again_under_its_own_id(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    harness = EngineHarness(store, directory, service, http)
    schedule = await store.create_schedule(schedule_of(cron="0 3 * * *"), now=now())
    run = await _left_launching(harness, schedule, now() - timedelta(seconds=40), dispatched=False)
    finished = await _start_and_finish(harness, run)
    assert finished.status == RunStatus.SUCCEEDED
    assert finished.error is not None and finished.error.startswith("relaunched after a restart")
    (request,) = service.requests
    assert request.headers["Idempotency-Key"] == run.id
    assert finished.dispatched_at is not None and finished.dispatched_at > run.started_at


async def test_a_run_that_may_have_left_is_interrupted_without_a_second_request(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    harness = EngineHarness(store, directory, service, http)
    schedule = await store.create_schedule(schedule_of(), now=now())
    run = await _left_launching(harness, schedule, now() - timedelta(seconds=40), dispatched=True)
    finished = await _start_and_finish(harness, run)
    assert finished.status == RunStatus.INTERRUPTED
    assert "the session may have started" in (finished.error or "")
    assert service.requests == []
    assert (await store.get_schedule(schedule.id)).consecutive_failures == 1


async def test_an_idempotent_launcher_gets_the_request_again_with_the_same_key(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    harness = EngineHarness(store, directory, service, http)
    _idempotent(harness)
    schedule = await store.create_schedule(schedule_of(), now=now())
    run = await _left_launching(harness, schedule, now() - timedelta(hours=3), dispatched=True)
    finished = await _start_and_finish(harness, run)
    assert finished.status == RunStatus.SUCCEEDED
    assert (finished.error or "").startswith("re-sent after a restart with the same")
    assert [r.headers["Idempotency-Key"] for r in service.requests] == [run.id]


async def test_a_relaunch_whose_next_regular_fire_has_come_is_recorded_missed(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    harness = EngineHarness(store, directory, service, http)
    schedule = await store.create_schedule(schedule_of(cron="* * * * *"), now=now())
    minute = now().replace(second=0, microsecond=0)
    run = await _left_launching(harness, schedule, minute - timedelta(minutes=2), dispatched=False)
    finished = await _start_and_finish(harness, run)
    assert finished.status == RunStatus.MISSED
    assert "came first" in (finished.error or "")
    assert all(r.headers["Idempotency-Key"] != run.id for r in service.requests)
    assert (await store.get_schedule(schedule.id)).consecutive_failures == 0


def _pending(index: int) -> PendingLaunch:
    moment = now()
    run = Run(f"sched-{index}", moment, RunTrigger.CATCHUP, started_at=moment)
    return PendingLaunch(run, schedule_of(), deadline=None)


async def test_only_launches_spend_the_pacing_budget() -> None:
    """Five catch-ups the engine drops, then two launches, at one launch a second: the drops
    go at once, the second launch a second after the first."""
    released: list[tuple[str, float]] = []
    done = asyncio.Event()
    launches = {"sched-5", "sched-6"}

    async def release(batch: Sequence[PendingLaunch]) -> int:
        released.extend((item.run.schedule_id, time.monotonic()) for item in batch)
        if len(released) == 7:
            done.set()
        return sum(1 for item in batch if item.run.schedule_id in launches)

    pacer = Pacer(rate=lambda: 1.0, release=release)
    task = pacer.start()
    pacer.add(_pending(index) for index in range(7))
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    assert [schedule_id for schedule_id, _ in released] == [f"sched-{i}" for i in range(7)]
    first_launch, second_launch = released[5][1], released[6][1]
    assert second_launch - first_launch >= 0.95  # the rate holds for launches
    assert first_launch - released[0][1] < second_launch - first_launch  # drops were free
