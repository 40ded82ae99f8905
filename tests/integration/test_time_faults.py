"""The wall clock jumps: back (an instant is never fired twice) and forward (downtime).

The engine reads "now" from its injected clock, but its timers are APScheduler's, and
APScheduler decides when a job is due from `datetime.now()` inside the scheduler module;
no clock can be handed to it. A wall-clock jump moves both at once, so here both read one
`WallClock` (real time plus an offset the test moves): the engine through injection,
APScheduler through its module's `datetime`, replaced for the test's duration. As on a real
machine, the monotonic clock (asyncio's sleeps) does not jump.

Checked against a real store and a loopback session service that records every
Idempotency-Key: whatever the clock does, no (schedule, instant) gets two runs and no
instant is launched twice; a forward jump is downtime, so each schedule gets at most one
catch-up run and one `missed` record, then carries on from the new time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import aiohttp
import prometheus_client
import pytest

from daemon.engine import Engine
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import ORG
from tests.deadline import eventually
from tests.engine_harness import SETTINGS, http_launcher
from tests.session_service import SessionService

EVERY_MINUTE = "* * * * *"
MINUTE = timedelta(minutes=1)


class WallClock:
    """The machine's wall clock, which the test can make jump: real time plus an offset.

    It can also be held still while a test sets up (`hold`), so that an instant placed a
    moment ahead is still ahead however slowly the machine runs the set-up; `release`
    lets it run on from where it stood. APScheduler, reading the held clock, finds nothing
    due and waits again.
    """

    def __init__(self) -> None:
        self.offset = timedelta()
        self.held: datetime | None = None

    def now(self) -> datetime:
        if self.held is not None:
            return self.held
        return datetime.now(UTC) + self.offset

    def jump(self, by: timedelta) -> None:
        if self.held is not None:
            self.held += by
        else:
            self.offset += by

    def set(self, moment: datetime) -> None:
        self.jump(moment - self.now())

    def hold(self) -> None:
        self.held = self.now()

    def release(self) -> None:
        moment, self.held = self.now(), None
        self.set(moment)


def scheduler_datetime(clock: WallClock) -> type[datetime]:
    """A `datetime` class whose `now()` reads `clock`, for APScheduler's modules."""

    class ClockedDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return clock.now().astimezone(tz)

    return ClockedDatetime


@dataclass
class Clocked:
    """A started engine whose wall clock jumps on demand, its store and session service."""

    engine: Engine
    clock: WallClock
    store: Store
    service: SessionService

    async def create(self, cron: str = EVERY_MINUTE) -> Schedule:
        """Store a schedule as the API does (times from the clock), then tell the engine."""
        now = self.clock.now()
        schedule = Schedule(
            org_id=ORG, name="tick", prompt="p", created_at=now, updated_at=now, cron=cron
        )
        stored = await self.store.create_schedule(schedule, now=now)
        await self.engine.changed(stored)
        return stored

    async def retime(self, schedule_id: str) -> Schedule:
        """An edit of a timing field (the same cron again): `next_run_at` is recomputed from
        the clock, as a PATCH of `frequency` does."""
        current = await self.store.get_schedule(schedule_id)
        edited = await self.store.update_schedule(
            schedule_id, {"cron": current.cron}, now=self.clock.now()
        )
        await self.engine.changed(edited)
        return edited

    async def runs(self, schedule_id: str) -> list[Run]:
        page = await self.store.list_runs(schedule_id, limit=100, offset=0)
        return sorted(page.items, key=lambda run: run.scheduled_for)

    async def moved_past(self, schedule_id: str, instant: datetime) -> list[Run]:
        """Wait until `next_run_at` is after `instant` and no run is launching; the runs."""

        async def settled() -> list[Run] | None:
            schedule = await self.store.get_schedule(schedule_id)
            runs = await self.runs(schedule_id)
            if schedule.next_run_at is None or schedule.next_run_at <= instant:
                return None
            return runs if all(run.status != RunStatus.LAUNCHING for run in runs) else None

        return await eventually(settled, within=10.0)

    def launches(self, runs: list[Run]) -> Counter[datetime]:
        """Session POSTs per instant, by Idempotency-Key (the run id)."""
        instant_of = {run.id: run.scheduled_for for run in runs}
        keys = [request.headers["Idempotency-Key"] for request in self.service.requests]
        return Counter(instant_of[key] for key in keys if key in instant_of)


@pytest.fixture
async def clocked(
    store: Store, directory: DirectoryRef, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Clocked]:
    clock = WallClock()
    monkeypatch.setattr("apscheduler.schedulers.base.datetime", scheduler_datetime(clock))
    # A 2 s horizon: the refill (every second) also wakes APScheduler up after a jump.
    settings = SETTINGS.model_copy(update={"horizon": 2.0, "catchup_rate": 100.0})
    service = await SessionService().start()
    async with aiohttp.ClientSession() as http:
        engine = Engine(
            store,
            directory=directory,
            clock=clock,
            settings=settings,
            launcher=http_launcher(service, http),
        )
        await engine.start()
        try:
            yield Clocked(engine, clock, store, service)
        finally:
            await engine.stop(1.0)
            await service.close()


async def fired_once_at_a_minute(clocked: Clocked) -> tuple[Schedule, Run]:
    """An every-minute schedule that has just fired, on its timer, at a whole minute."""
    minute = clocked.clock.now().replace(second=0, microsecond=0) + 2 * MINUTE
    clocked.clock.set(minute - timedelta(seconds=1.5))
    clocked.clock.hold()  # the minute stays ahead until the schedule exists
    schedule = await clocked.create()
    clocked.clock.release()
    assert schedule.next_run_at == minute
    (run,) = await clocked.moved_past(schedule.id, minute)
    assert (run.scheduled_for, run.trigger, run.status) == (minute, "cron", "succeeded")
    return schedule, run


def assert_each_instant_once(clocked: Clocked, runs: list[Run]) -> None:
    instants = Counter(run.scheduled_for for run in runs)
    assert max(instants.values()) == 1, f"an instant has two runs: {instants}"
    launches = clocked.launches(runs)
    assert max(launches.values()) == 1, f"an instant was launched twice: {launches}"


# -- backward -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "back", [timedelta(seconds=5), timedelta(hours=1), timedelta(days=1)], ids=["5s", "1h", "1d"]
)
async def test_the_clock_going_back_never_fires_an_instant_twice(
    clocked: Clocked, back: timedelta
) -> None:
    schedule, first = await fired_once_at_a_minute(clocked)
    fired = first.scheduled_for

    clocked.clock.jump(-back)
    # An edit now computes `next_run_at` from the earlier time: for a 5 s jump that is the
    # instant that already ran; for longer jumps, instants before it.
    edited = await clocked.retime(schedule.id)
    assert edited.next_run_at is not None and edited.next_run_at <= fired
    if back > timedelta(seconds=5):  # the clock is put right again (a faulty NTP step)
        clocked.clock.jump(back)
    # Either way the clock passes `fired` again; the engine fires or catches up what the
    # edit made due, and `next_run_at` moves on past `fired`.
    runs = await clocked.moved_past(schedule.id, fired)

    assert_each_instant_once(clocked, runs)
    assert [run for run in runs if run.scheduled_for == fired] == [first]
    assert clocked.launches(runs)[fired] == 1


async def test_while_the_clock_is_back_an_unedited_schedule_fires_nothing(
    clocked: Clocked,
) -> None:
    schedule, _ = await fired_once_at_a_minute(clocked)
    launched = len(clocked.service.requests)
    clocked.clock.jump(-timedelta(hours=1))
    await refills_seen(clocked.engine, 3)
    assert len(clocked.service.requests) == launched
    assert len(await clocked.runs(schedule.id)) == 1


async def refills_seen(engine: Engine, count: int) -> None:
    """Wait for `count` horizon refills (read from the engine's health bookkeeping)."""
    for _ in range(count):
        last = engine._horizon.last_refill
        await eventually(lambda last=last: engine._horizon.last_refill != last, within=5.0)


# -- forward ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "missed"),
    [
        (timedelta(0), 0),  # only the pending instant passed unseen: caught up, none missed
        (timedelta(hours=1), 60),
        (timedelta(days=1), 1440),
        (timedelta(days=3), 4320),
    ],
    ids=["0", "1h", "1d", "3d"],
)
@pytest.mark.parametrize("ahead", [1.5, 50.0], ids=["timer-held", "beyond-horizon"])
async def test_a_forward_jump_is_downtime_one_catch_up_and_one_missed_record(
    clocked: Clocked, gap: timedelta, missed: int, ahead: float
) -> None:
    """The pending instant is `ahead` s away when the clock jumps to `gap` + 30 s past it:
    within the horizon its timer is already held (and goes off late), beyond it only the
    refill sees it. The clock stands still until the jump, so the instant is still `ahead`
    s away then, however long the set-up took."""
    pending = clocked.clock.now().replace(second=0, microsecond=0) + 2 * MINUTE
    clocked.clock.set(pending - timedelta(seconds=ahead))
    clocked.clock.hold()
    await refills_seen(clocked.engine, 1)  # the horizon now reaches `pending` or not
    schedules = [await clocked.create() for _ in range(5)]
    assert {schedule.next_run_at for schedule in schedules} == {pending}
    held = prometheus_client.REGISTRY.get_sample_value("agentcron_timers_held")
    assert held == (len(schedules) if ahead < 2 else 0)

    clocked.clock.release()
    clocked.clock.set(pending + gap + timedelta(seconds=30))
    latest = pending + gap

    for schedule in schedules:
        runs = await clocked.moved_past(schedule.id, latest)
        assert_each_instant_once(clocked, runs)
        launched = [run for run in runs if run.status != RunStatus.MISSED]
        assert [(run.scheduled_for, run.trigger) for run in launched] == [
            (latest, RunTrigger.CATCHUP)
        ], "not exactly one catch-up, of the latest instant"
        records = [run for run in runs if run.status == RunStatus.MISSED]
        if missed:
            (record,) = records
            assert record.scheduled_for == pending
            assert f"missed {missed} fires" in (record.error or "")
        else:
            assert records == []
        assert (await clocked.store.get_schedule(schedule.id)).next_run_at == latest + MINUTE
    assert len(clocked.service.requests) == len(schedules)  # one launch each, no burst
