"""A fleet member's engine on a real PostgreSQL store: it fires and recovers only its share.

Two engines stand for two members (`daemon.fleet.owner` over fixed member names); the
processes, heartbeats and notifications are exercised end to end in `e2e/test_fleet.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from daemon.engine import Engine
from daemon.fleet import owner
from storage.clock import SystemClock
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.postgres_store import PostgresStore
from tests.deadline import eventually
from tests.engine_harness import SETTINGS, http_launcher, now, schedule_of
from tests.postgres_cluster import cluster
from tests.session_service import SessionService

MEMBERS = ("member-a", "member-b")
AGE = 60.0


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect(cluster().new_database())
    yield store
    await store.close()


def member_engine(
    store: PostgresStore,
    member: str,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
) -> Engine:
    return Engine(
        store,
        directory=directory,
        clock=SystemClock(),
        settings=SETTINGS,
        launcher=http_launcher(service, http),
        owns=lambda schedule_id: owner(schedule_id, MEMBERS) == member,
        recovery_age=AGE,
    )


async def schedules_owned_by(
    store: PostgresStore, member: str, count: int, cron: str = "0 3 * * *"
) -> list[Schedule]:
    """`count` schedules that `member` owns (made until enough hash its way)."""
    owned: list[Schedule] = []
    while len(owned) < count:
        fields = {"name": f"{member}-{len(owned)}", "cron": cron}
        made = await store.create_schedule(schedule_of(**fields), now=now())
        if owner(made.id, MEMBERS) == member:
            owned.append(made)
    return owned


async def left_launching(store: PostgresStore, schedule: Schedule, age: float) -> Run:
    """A run as a member that stopped leaves it: claimed `age` seconds ago, never sent."""
    instant = now() - timedelta(seconds=age)
    (run,) = await store.claim_runs([Run(schedule.id, instant, RunTrigger.CRON, instant)])
    return run


async def test_a_member_recovers_only_old_runs_of_its_own_share(
    pg_store: PostgresStore,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
) -> None:
    mine_old, mine_young = await schedules_owned_by(pg_store, "member-a", 2)
    (theirs,) = await schedules_owned_by(pg_store, "member-b", 1)
    abandoned = await left_launching(pg_store, mine_old, AGE + 30)
    in_flight = await left_launching(pg_store, mine_young, 5)  # may be a live launch
    not_ours = await left_launching(pg_store, theirs, AGE + 30)

    engine = member_engine(pg_store, "member-a", directory, service, http)
    await engine.start()
    try:
        relaunched = await _settled(pg_store, abandoned.id)
        assert relaunched.status == RunStatus.SUCCEEDED
        assert (await pg_store.get_run(in_flight.id)).status == RunStatus.LAUNCHING
        assert (await pg_store.get_run(not_ours.id)).status == RunStatus.LAUNCHING
        assert [request.body["title"] for request in service.requests] == [mine_old.name]
    finally:
        await engine.stop(0.5)


async def test_each_member_holds_timers_only_for_its_share(
    pg_store: PostgresStore,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
) -> None:
    every_minute = "* * * * *"  # due within the horizon: each is held by a timer
    await schedules_owned_by(pg_store, "member-a", 3, every_minute)
    await schedules_owned_by(pg_store, "member-b", 2, every_minute)
    first = member_engine(pg_store, "member-a", directory, service, http)
    second = member_engine(pg_store, "member-b", directory, service, http)
    await first.start()
    await second.start()
    try:
        every = await pg_store.due_schedules(now() + timedelta(minutes=2), limit=100)
        owners = Counter(owner(schedule.id, MEMBERS) for schedule in every)
        assert owners["member-a"] >= 3 and owners["member-b"] >= 2
        assert (first.timers_held, second.timers_held) == (owners["member-a"], owners["member-b"])
    finally:
        await first.stop(0.5)
        await second.stop(0.5)


async def _settled(store: PostgresStore, run_id: str) -> Run:
    async def finished() -> Run | None:
        run = await store.get_run(run_id)
        return run if run.status != RunStatus.LAUNCHING else None

    return await eventually(finished, within=10.0)
