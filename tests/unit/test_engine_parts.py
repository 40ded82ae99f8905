"""The engine's parts on their own: each keeps its invariants whatever the coordinator does."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from daemon.firing import timer_for
from daemon.horizon import Horizon
from daemon.reporting import OutcomeReporter
from daemon.slots import LaunchSlots
from daemon.timers import TimerBook
from storage.domain import FinishedRun, Run, Schedule
from storage.enums import RunStatus, RunTrigger
from tests.conftest import ORG
from tests.deadline import eventually

T0 = datetime(2030, 1, 7, 12, tzinfo=UTC)


def schedule(schedule_id: str, **changes: object) -> Schedule:
    made = Schedule(
        org_id=ORG, name=schedule_id, prompt="p", created_at=T0, updated_at=T0, cron="* * * * *"
    )
    return dataclasses.replace(made, id=schedule_id, **changes)


def _never(_: datetime) -> None:
    raise AssertionError("no instant is due in these tests")


# --- the timer book -----------------------------------------------------------------------


async def test_a_schedule_holds_one_timer_and_an_instant_keeps_its_schedules() -> None:
    book = TimerBook(_never)
    a, b = schedule("a"), schedule("b")
    book.hold(timer_for(a, T0))
    book.hold(timer_for(b, T0))
    book.hold(timer_for(a, T0 + timedelta(minutes=1)))  # re-timed: replaces its first timer
    assert len(book) == 2
    assert [t.schedule_id for t in book.take(T0)] == ["b"]
    assert [t.schedule_id for t in book.take(T0 + timedelta(minutes=1))] == ["a"]
    assert len(book) == 0 and book.take(T0) == []


async def test_a_dropped_timer_is_not_taken_and_dropping_twice_is_harmless() -> None:
    book = TimerBook(_never)
    book.hold(timer_for(schedule("a"), T0))
    book.drop("a")
    book.drop("a")
    assert book.held("a") is None and book.take(T0) == []


async def test_an_instant_reaches_the_engine_in_the_timers_own_callback() -> None:
    """No task (a turn of a busy loop) between the instant and the engine taking it."""
    due: asyncio.Future[tuple[datetime, asyncio.Task[object] | None]]
    due = asyncio.get_running_loop().create_future()

    def on_due(fire_at: datetime) -> None:
        due.set_result((fire_at, asyncio.current_task()))

    book = TimerBook(on_due)
    instant = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    book.hold(timer_for(schedule("a"), instant))
    book.start()
    try:
        fire_at, task = await asyncio.wait_for(due, timeout=10)
        assert fire_at == instant and task is None
        # The executor's count of the job's running instances settles back to none.
        executor = book._scheduler._lookup_executor("default")
        await eventually(lambda: not executor._instances, within=10)
    finally:
        book.shutdown()


# --- the horizon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("touched_during_refill", "stale"),
    [(False, False), (True, True)],
)
def test_a_refill_skips_schedules_touched_after_it_began(
    touched_during_refill: bool, stale: bool
) -> None:
    horizon = Horizon()
    horizon.touch("a")  # before the refill: the page is newer
    since = horizon.begin(T0, 300)
    if touched_during_refill:
        horizon.touch("a")
    assert horizon.stale("a", since) is stale
    horizon.end(since)
    assert horizon.stale("a", horizon.begin(T0, 300)) is False  # the next refill reads it


def test_the_horizon_holds_instants_up_to_its_end_only() -> None:
    horizon = Horizon()
    assert not horizon.within(T0)  # nothing is loaded before the first refill
    horizon.begin(T0, 300)
    assert horizon.within(T0 + timedelta(seconds=300))
    assert not horizon.within(T0 + timedelta(seconds=301))


# --- launch slots -------------------------------------------------------------------------


async def test_a_buffered_fire_comes_back_once_nothing_of_its_schedule_runs() -> None:
    slots: LaunchSlots[str] = LaunchSlots(limit=10)
    released: list[str] = []
    gates = [asyncio.Event(), asyncio.Event()]

    async def work(gate: asyncio.Event) -> None:
        await gate.wait()

    slots.start("a", "run-1", work(gates[0]), released.append)
    slots.start("a", "run-2", work(gates[1]), released.append)
    slots.buffer("a", "fire-a")
    assert (slots.in_progress("a"), slots.running("a")) == (2, ["run-1", "run-2"])
    tasks = {task.get_name(): task for task in slots.tasks()}
    gates[0].set()
    await tasks["launch-run-1"]
    assert released == [] and slots.is_buffered("a")  # run-2 still in progress
    gates[1].set()
    await tasks["launch-run-2"]
    assert released == ["fire-a"]
    assert slots.in_progress("a") == 0 and not slots.is_buffered("a")


async def test_a_closed_slot_book_hands_nothing_back() -> None:
    slots: LaunchSlots[str] = LaunchSlots(limit=1)
    released: list[str] = []

    async def fail() -> None:
        raise RuntimeError("a launch that died")

    slots.buffer("a", "fire-a")
    slots.close()
    slots.start("a", "run-1", fail(), released.append)
    (task,) = slots.tasks()
    with pytest.raises(RuntimeError):
        await task
    assert released == [] and slots.in_progress("a") == 0


async def test_at_most_limit_requests_are_in_flight() -> None:
    slots: LaunchSlots[str] = LaunchSlots(limit=2)
    inside, most = 0, 0

    async def send() -> None:
        nonlocal inside, most
        async with slots.sending():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(send() for _ in range(7)))
    assert most == 2


# --- the outcome reporter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (RunStatus.SUCCEEDED, "run_succeeded"),
        (RunStatus.FAILED, "run_failed"),
        (RunStatus.INTERRUPTED, "run_interrupted"),
        (RunStatus.MISSED, "run_missed"),
        (RunStatus.SKIPPED, "run_skipped"),
    ],
)
def test_each_outcome_is_logged_once_under_its_own_event(status: RunStatus, event: str) -> None:
    handed: list[FinishedRun] = []
    inactive: list[str] = []
    report = OutcomeReporter(handed.append, on_inactive=inactive.append)
    run = Run("a", T0, RunTrigger.CRON, T0, status=status)
    finished = FinishedRun(run, schedule("a"), auto_paused=False)
    with capture_logs() as logs:
        report([finished])
    assert [entry["event"] for entry in logs] == [event]
    assert handed == [finished] and inactive == []


def test_a_run_that_paused_its_schedule_is_reported_and_drops_its_timers() -> None:
    inactive: list[str] = []

    def broken_hook(_: FinishedRun) -> None:
        raise RuntimeError("a notifier bug")

    report = OutcomeReporter(broken_hook, on_inactive=inactive.append)
    paused = schedule("a", enabled=False, paused_reason="auto-paused after 3 failures")
    run = Run("a", T0, RunTrigger.CRON, T0, status=RunStatus.FAILED, error="boom")
    with capture_logs() as logs:
        report([FinishedRun(run, paused, auto_paused=True)])
    events = [entry["event"] for entry in logs]
    assert events == ["run_failed", "schedule_auto_paused", "on_finished_failed"]
    assert inactive == ["a"]
