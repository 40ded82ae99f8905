"""Org limits over the real engine, store and a loopback session service that holds each
request open and counts those in flight: a burst over `max_concurrent_sessions` never has
more in flight than the limit and skips the rest naming it; `max_sessions_per_hour` counts
launches across a restart; a reload changes a limit for the next fire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from daemon.config import load_config
from daemon.notify import Notifier
from daemon.org_limits import OrgLimits
from daemon.reload import Reloader
from daemon.sdnotify import SystemdNotifier
from storage.clock import SystemClock
from storage.domain import Run, Schedule
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import ORG
from tests.deadline import eventually
from tests.engine_harness import SETTINGS, EngineHarness, now, schedule_of
from tests.session_service import Reply, SessionService

HOLD = 0.5
"""Seconds the session service holds each request open."""


def skipped_count(reason: str) -> float:
    value = REGISTRY.get_sample_value("agentcron_runs_skipped_total", {"reason": reason})
    return value or 0.0


async def due_together(store: Store, count: int, at: datetime) -> list[Schedule]:
    """`count` schedules of the org whose next instant is `at`."""
    created = await asyncio.gather(
        *(store.create_schedule(schedule_of(name=f"s{i:04}"), now=now()) for i in range(count))
    )
    moves = [(schedule.id, schedule.next_run_at, at) for schedule in created]
    assert len(await store.advance_schedules(moves)) == count
    return list(created)


async def org_runs(store: Store, count: int, within: float = 30.0) -> list[Run]:
    """Wait until the org has `count` runs, none launching; return them."""

    async def settled() -> list[Run] | None:
        named, _ = await store.list_org_runs(ORG, limit=count + 10, offset=0)
        runs = [item.run for item in named]
        done = [run for run in runs if run.status != RunStatus.LAUNCHING]
        return runs if len(done) >= count else None

    return await eventually(settled, within=within, every=0.1)


def by_status(runs: Sequence[Run]) -> dict[RunStatus, list[Run]]:
    grouped: dict[RunStatus, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.status, []).append(run)
    return grouped


@pytest.fixture
async def limited(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[Any]:
    started: list[EngineHarness] = []

    def make(limits: OrgLimits) -> EngineHarness:
        harness = EngineHarness(store, directory, service, http, SETTINGS, {ORG: limits})
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.engine.stop(0.5)


async def test_a_burst_over_the_concurrency_limit_launches_the_limit_and_skips_the_rest(
    limited: Any, store: Store, service: SessionService
) -> None:
    limit, burst = 5, 1000
    service.answer(*[Reply(delay=HOLD)] * burst)
    skipped_before = skipped_count("org_concurrency")
    instant = now() + timedelta(seconds=3)
    await due_together(store, burst, instant)
    harness = limited(OrgLimits(max_concurrent_sessions=limit))
    await harness.engine.start()  # its refill holds the 1,000 timers of the instant

    runs = await org_runs(store, burst)
    grouped = by_status(runs)
    assert len(grouped[RunStatus.SUCCEEDED]) == limit
    assert len(grouped[RunStatus.SKIPPED]) == burst - limit
    assert {run.error for run in grouped[RunStatus.SKIPPED]} == {
        f"org limit max_concurrent_sessions={limit} reached"
    }
    assert {run.scheduled_for for run in runs} == {instant}
    assert len(service.requests) == limit
    assert service.max_in_progress == limit  # never more in flight than the limit
    assert skipped_count("org_concurrency") - skipped_before == burst - limit
    # Skipped is not a failure: no schedule counts one.
    schedules = await store.get_schedules({run.schedule_id for run in runs})
    assert {schedule.consecutive_failures for schedule in schedules.values()} == {0}
    reported = {item.run.status for item in harness.finished}
    assert reported == {RunStatus.SUCCEEDED}  # the daemon's hook (notifications) sees no skip


async def test_sessions_free_up_once_launches_finish(
    limited: Any, store: Store, service: SessionService
) -> None:
    service.answer(*[Reply(delay=HOLD)] * 4)
    harness = limited(OrgLimits(max_concurrent_sessions=2))
    await harness.engine.start()
    first = await due_together(store, 3, now() + timedelta(seconds=1))
    for schedule in first:
        await harness.engine.changed(await store.get_schedule(schedule.id))
    runs = await org_runs(store, 3)
    assert sorted(run.status for run in runs) == [
        RunStatus.SKIPPED,
        RunStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
    ]
    # Both launches ended: the next fire of the skipped schedule goes ahead.
    (skipped,) = [run for run in runs if run.status == RunStatus.SKIPPED]
    await harness.due_in(skipped.schedule_id, 0.3)
    runs = await org_runs(store, 4)
    assert [run.status for run in runs if run.schedule_id == skipped.schedule_id] == [
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
    ]


async def test_the_hourly_limit_counts_launches_across_a_restart(
    limited: Any, store: Store, service: SessionService
) -> None:
    skipped_before = skipped_count("org_hourly")
    schedules = await due_together(store, 5, now() + timedelta(seconds=2))
    harness = limited(OrgLimits(max_sessions_per_hour=3))
    await harness.engine.start()
    runs = await org_runs(store, 5)
    assert sorted(run.status for run in runs) == [RunStatus.SKIPPED] * 2 + [RunStatus.SUCCEEDED] * 3
    assert {run.error for run in runs if run.status == RunStatus.SKIPPED} == {
        "org limit max_sessions_per_hour=3 reached"
    }
    # A restart reads the launches of the last hour back: still no room.
    await harness.engine.stop(0.5)
    harness.engine = harness.new_engine()
    await harness.engine.start()
    await harness.due_in(schedules[0].id, 0.3)
    runs = await org_runs(store, 6)
    assert sum(run.status == RunStatus.SKIPPED for run in runs) == 3
    assert len(service.requests) == 3
    assert skipped_count("org_hourly") - skipped_before == 3


async def test_a_manual_run_is_never_refused_but_counts(
    limited: Any, store: Store, service: SessionService
) -> None:
    harness = limited(OrgLimits(max_sessions_per_hour=1))
    await harness.engine.start()
    schedule = await store.create_schedule(schedule_of(), now=now())
    await harness.engine.trigger(schedule, by="operator")
    await harness.engine.trigger(schedule, by="operator")
    runs = await org_runs(store, 2)
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    await harness.due_in(schedule.id, 0.3)
    runs = await org_runs(store, 3)
    (cron,) = [run for run in runs if run.trigger.value == "cron"]
    assert (cron.status, cron.error) == (
        RunStatus.SKIPPED,
        "org limit max_sessions_per_hour=1 reached",
    )


async def test_a_backfill_over_the_limit_skips_what_does_not_fit(
    limited: Any, store: Store, service: SessionService
) -> None:
    harness = limited(OrgLimits(max_sessions_per_hour=2))
    await harness.engine.start()
    schedule = await store.create_schedule(schedule_of(cron="*/10 * * * *"), now=now())
    start = now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    instants = [start + timedelta(minutes=10 * i) for i in range(4)]
    claimed = await harness.engine.backfill(schedule, instants, by="operator")
    assert len(claimed) == 4
    runs = await org_runs(store, 4)
    assert [run.status for run in sorted(runs, key=lambda run: run.scheduled_for)] == [
        RunStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
        RunStatus.SKIPPED,
    ]


def config_text(service: SessionService, limit: int) -> str:
    return f"""
[[orgs]]
id = "{ORG}"
name = "Local"
max_concurrent_sessions = {limit}

[launcher]
type = "http"
url = "{service.url}"
max_attempts = 1
"""


class _Daemon:
    """What a reload reads of the daemon: its configuration, systemd, its clock."""

    def __init__(self, path: Path) -> None:
        self.config = load_config(path)
        self.systemd = SystemdNotifier(None)
        self.clock = SystemClock()


async def test_a_reload_changes_a_limit_for_the_next_fire(
    limited: Any,
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    path = tmp_path / "agentcron.toml"
    path.write_text(config_text(service, 1), encoding="utf-8")
    daemon = _Daemon(path)
    harness = limited(OrgLimits(max_concurrent_sessions=1))
    await harness.engine.start()
    notifier = Notifier(daemon.config.notify, http=http)
    reloader = Reloader(
        daemon,
        store=store,
        engine=harness.engine,
        notifier=notifier,
        directory=directory,
        http=http,
    )
    service.answer(*[Reply(delay=HOLD)] * 10)
    first = await due_together(store, 3, now() + timedelta(seconds=1))
    for schedule in first:
        await harness.engine.changed(await store.get_schedule(schedule.id))
    runs = await org_runs(store, 3)
    assert sorted(run.status for run in runs).count(RunStatus.SUCCEEDED) == 1

    path.write_text(config_text(service, 3), encoding="utf-8")
    await reloader.reload()
    assert daemon.config.orgs[0].max_concurrent_sessions == 3
    for schedule in first:
        await harness.due_in(schedule.id, 0.5)
    runs = await org_runs(store, 6)
    second = sorted(runs, key=lambda run: run.scheduled_for)[3:]
    assert [run.status for run in second] == [RunStatus.SUCCEEDED] * 3
    assert service.max_in_progress >= 2  # they were in flight together: the old limit is gone
