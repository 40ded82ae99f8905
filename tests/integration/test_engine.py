"""The firing engine end to end: real SQLite, real APScheduler timers, a loopback session
service over real HTTP. Schedules are due a second or two ahead; every wait has a deadline."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from daemon import metrics
from daemon.engine import Engine
from daemon.fires import STEP
from storage.domain import Run
from storage.enums import Overlap, RunStatus, RunTrigger
from storage.identities import DirectoryRef, User
from storage.store import Store
from storage.timing import jitter_offset
from tests.deadline import eventually
from tests.engine_harness import SETTINGS, EngineHarness, clear_of_the_turn, now
from tests.session_service import Reply, SessionService

S = RunStatus


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


@pytest.fixture
async def harness(harness_factory: Any) -> EngineHarness:
    started: EngineHarness = await harness_factory()
    return started


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- a fire -------------------------------------------------------------------------------


async def test_a_one_time_schedule_fires_once_as_the_bot_and_is_then_disabled(
    harness: EngineHarness, service: SessionService
) -> None:
    with capture_logs() as logs:
        at = now() + timedelta(seconds=1)
        schedule = await harness.create(scheduled_at=at)
        (run,) = await harness.finished_runs(schedule.id, 1)
    assert (run.status, run.trigger, run.scheduled_for) == (S.SUCCEEDED, RunTrigger.ONE_TIME, at)
    assert run.started_at >= at
    assert (run.identity, run.session_id, run.attempts) == ("bot", "devin-1", 1)
    (request,) = service.requests
    assert request.headers["Idempotency-Key"] == run.id
    assert "create_as_user_id" not in request.body
    assert request.body["title"] == "report" and request.body["prompt"] == "Summarise the day"
    after = await harness.store.get_schedule(schedule.id)
    assert (after.enabled, after.next_run_at, after.consecutive_failures) == (False, None, 0)
    assert after.last_executed_at == run.started_at
    assert [finished.run.id for finished in harness.finished] == [run.id]
    (fired,) = events(logs, "schedule_fired")
    assert (fired["schedule_id"], fired["run_id"], fired["trigger"]) == (
        schedule.id,
        run.id,
        "one_time",
    )
    assert events(logs, "run_succeeded")[0]["run_id"] == run.id


async def test_a_run_as_user_creates_the_session_for_that_user(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(run_as_user_id="user-alice")
    run = await harness.engine.trigger(schedule, by="service-admin")
    assert (run.status, run.trigger, run.identity) == (S.LAUNCHING, RunTrigger.MANUAL, "user-alice")
    (finished,) = await harness.finished_runs(schedule.id, 1)
    assert finished.status == S.SUCCEEDED and finished.identity == "user-alice"
    assert service.requests[0].body["create_as_user_id"] == "user-alice"


async def test_a_run_as_user_refused_at_fire_time_fails_without_a_launch(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(
        scheduled_at=now() + timedelta(seconds=1), run_as_user_id="user-alice"
    )
    # Between the edit and the fire, alice loses UseDevinSessions (a config reload).
    current = harness.directory.current
    alice = User("user-alice", frozenset({"org-local"}), frozenset())
    harness.directory.current = dataclasses.replace(
        current, users={**current.users, alice.id: alice}
    )
    with capture_logs() as logs:
        (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.status == S.FAILED and run.attempts == 0
    assert run.error == (
        "cannot run as user 'user-alice': user 'user-alice' lacks the UseDevinSessions permission"
    )
    assert service.requests == []
    after = await harness.store.get_schedule(schedule.id)
    assert after.consecutive_failures == 1 and after.last_error_message == run.error
    assert not after.enabled  # a one_time schedule is disabled after its fire, failed or not
    assert events(logs, "run_failed")[0]["error"] == run.error


async def test_failures_count_up_and_a_success_resets_the_count(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create()
    service.answer(Reply(400, text="no such playbook"), Reply(422, text="bad tags"))
    expected = [
        (1, "session service answered HTTP 400: no such playbook"),
        (2, "session service answered HTTP 422: bad tags"),
        (0, "session service answered HTTP 422: bad tags"),
    ]
    for count, (failures, error) in enumerate(expected, start=1):
        await harness.engine.trigger(schedule, by="service-admin")
        await harness.finished_runs(schedule.id, count)
        after = await harness.store.get_schedule(schedule.id)
        assert (after.consecutive_failures, after.last_error_message) == (failures, error)
        assert after.last_error_at is not None and after.enabled
    statuses = [run.status for run in await harness.runs(schedule.id)]
    assert sorted(statuses) == [S.FAILED, S.FAILED, S.SUCCEEDED]


async def test_a_schedule_is_auto_paused_at_the_failure_threshold(
    harness_factory: Any, service: SessionService
) -> None:
    harness: EngineHarness = await harness_factory(max_consecutive_failures=2)
    schedule = await harness.create(cron="* * * * *")
    service.answer(Reply(500), Reply(500), Reply(500), Reply(400, text="quota exhausted"))
    with capture_logs() as logs:
        for count in (1, 2):
            await harness.engine.trigger(schedule, by="service-admin")
            await harness.finished_runs(schedule.id, count)
    after = await harness.store.get_schedule(schedule.id)
    assert not after.enabled and after.next_run_at is None
    assert after.paused_reason == (
        "auto-paused after 2 consecutive failures: "
        "session service answered HTTP 400: quota exhausted"
    )
    assert [finished.auto_paused for finished in harness.finished] == [False, True]
    (paused,) = events(logs, "schedule_auto_paused")
    assert paused["schedule_id"] == schedule.id


async def test_a_failed_one_time_fire_disables_the_schedule_too(
    harness: EngineHarness, service: SessionService
) -> None:
    service.answer(Reply(403, text="forbidden"))
    schedule = await harness.create(scheduled_at=now() + timedelta(seconds=1))
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.status == S.FAILED
    after = await harness.store.get_schedule(schedule.id)
    assert (after.enabled, after.next_run_at, after.consecutive_failures) == (False, None, 1)


async def test_schedules_due_at_the_same_instant_fire_together(
    harness: EngineHarness, service: SessionService
) -> None:
    at = now() + timedelta(seconds=1)
    schedules = [await harness.create(name=f"s{i}", scheduled_at=at) for i in range(20)]
    for schedule in schedules:
        (run,) = await harness.finished_runs(schedule.id, 1)
        assert run.status == S.SUCCEEDED and run.scheduled_for == at
    assert len(service.requests) == 20


async def test_jitter_delays_the_fire_but_not_the_nominal_instant(
    harness: EngineHarness,
) -> None:
    at = now() + timedelta(seconds=0.5)
    schedule = await harness.create(scheduled_at=at, jitter_s=1.0)
    delay = jitter_offset(schedule, at, None)
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.scheduled_for == at
    assert run.started_at >= at + delay


# --- edits take effect at once ------------------------------------------------------------


async def test_moving_a_one_time_schedule_fires_it_at_the_new_time_only(
    harness: EngineHarness,
) -> None:
    first = now() + timedelta(seconds=0.8)
    schedule = await harness.create(scheduled_at=first)
    moved = first + timedelta(seconds=1)
    await harness.update(schedule, scheduled_at=moved)
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.scheduled_for == moved and run.started_at >= moved
    assert len(await harness.runs(schedule.id)) == 1


async def test_an_edit_landing_while_a_large_batch_is_re_timed_keeps_its_own_timer(
    harness: EngineHarness,
) -> None:
    """After a batch fires, its schedules get timers for their next instants a few hundred
    at a time, the loop running in between. An edit landing in between has re-timed its
    schedule already; the batch must not put back the instant it computed before."""
    schedules = [await harness.create(name=f"s{i}") for i in range(STEP + 50)]
    following = now() + timedelta(seconds=60)
    last = schedules[-1]
    edited_at = now() + timedelta(seconds=1)
    await harness.store.advance_schedules([(last.id, last.next_run_at, edited_at)])

    moved = [(s, following) for s in schedules]
    follow = asyncio.create_task(harness.engine._batches.follow(moved, now()))
    await asyncio.sleep(0)  # the batch sets its first STEP timers, then lets the loop run
    await harness.engine.changed(dataclasses.replace(last, next_run_at=edited_at))
    await follow

    (run,) = await harness.finished_runs(last.id, 1)
    assert run.scheduled_for == edited_at and run.status == S.SUCCEEDED


async def test_a_deleted_schedule_never_fires(harness: EngineHarness) -> None:
    at = now() + timedelta(seconds=0.8)
    doomed = await harness.create(name="doomed", scheduled_at=at)
    marker = await harness.create(name="marker", scheduled_at=at + timedelta(seconds=0.3))
    deleted = await harness.store.delete_schedule(doomed.id, now=now())
    await harness.engine.changed(deleted)
    await harness.finished_runs(marker.id, 1)  # the doomed instant has passed by now
    assert await harness.runs(doomed.id) == []


async def test_a_schedule_beyond_the_horizon_is_picked_up_by_a_refill(
    harness_factory: Any,
) -> None:
    harness: EngineHarness = await harness_factory(horizon=1.0)
    at = now() + timedelta(seconds=2.5)
    schedule = await harness.create(scheduled_at=at)  # not held yet: due after the horizon
    (run,) = await harness.finished_runs(schedule.id, 1, within=6.0)
    assert run.scheduled_for == at and run.status == S.SUCCEEDED


async def test_an_instant_found_missed_while_running_is_caught_up_once(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(cron="0 0 1 1 *")  # no cron instant in the last 30 s
    missed_at = await harness.due_in(schedule.id, -30.0)  # as if the loop had stalled
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert (run.trigger, run.status, run.scheduled_for) == (
        RunTrigger.CATCHUP,
        S.SUCCEEDED,
        missed_at,
    )
    after = await harness.store.get_schedule(schedule.id)
    assert after.next_run_at is not None and after.next_run_at > now()
    assert len(service.requests) == 1


# --- overlap ------------------------------------------------------------------------------


async def test_overlap_skip_records_a_skipped_run(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(overlap=Overlap.SKIP)
    service.answer(Reply(delay=1.5))
    manual = await harness.engine.trigger(schedule, by="service-admin")
    with capture_logs() as logs:
        instant = await harness.due_in(schedule.id, 0.3)
        runs = await harness.finished_runs(schedule.id, 2)
    skipped = next(run for run in runs if run.status == S.SKIPPED)
    assert skipped.scheduled_for == instant and skipped.trigger == RunTrigger.CRON
    assert skipped.error == f"skipped: the previous run ({manual.id}) was still in progress"
    assert events(logs, "run_skipped")[0]["run_id"] == skipped.id
    await harness.run_with_status(schedule.id, [S.SUCCEEDED, S.SKIPPED])
    assert len(service.requests) == 1


async def test_overlap_buffer_one_runs_one_fire_after_the_previous_ends(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(overlap=Overlap.BUFFER_ONE)
    service.answer(Reply(delay=1.2))
    await harness.engine.trigger(schedule, by="service-admin")
    buffered_instant = await harness.due_in(schedule.id, 0.2)
    await eventually(lambda: _advanced_past(harness, schedule.id, buffered_instant))
    dropped_instant = await harness.due_in(schedule.id, 0.1)  # one is already buffered
    runs = await harness.finished_runs(schedule.id, 3)
    by_instant = {run.scheduled_for: run for run in runs}
    assert by_instant[dropped_instant].status == S.SKIPPED
    buffered = by_instant[buffered_instant]
    assert (buffered.status, buffered.trigger) == (S.SUCCEEDED, RunTrigger.CRON)
    manual = next(run for run in runs if run.trigger == RunTrigger.MANUAL)
    assert manual.finished_at is not None and buffered.started_at >= manual.finished_at
    assert len(service.requests) == 2 and service.max_in_progress == 1


async def _advanced_past(harness: EngineHarness, schedule_id: str, instant: Any) -> bool:
    current = await harness.store.get_schedule(schedule_id)
    return current.next_run_at is not None and current.next_run_at > instant


async def test_overlap_allow_runs_in_parallel(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(overlap=Overlap.ALLOW)
    service.answer(Reply(delay=1.0), Reply(delay=0.5))
    await harness.engine.trigger(schedule, by="service-admin")
    await harness.due_in(schedule.id, 0.2)
    await harness.run_with_status(schedule.id, [S.SUCCEEDED, S.SUCCEEDED])
    assert service.max_in_progress == 2


# --- stateful -----------------------------------------------------------------------------


async def test_a_stateful_schedule_creates_one_session_then_messages_it(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(stateful=True)
    await harness.engine.trigger(schedule, by="service-admin")
    await harness.finished_runs(schedule.id, 1)
    remembered = await harness.store.get_schedule(schedule.id)
    assert remembered.stateful_session_id == "devin-1"
    await harness.engine.trigger(remembered, by="service-admin")
    runs = await harness.finished_runs(schedule.id, 2)
    create, follow_up = service.requests
    assert create.path.endswith("/sessions")
    assert follow_up.path == "/v3/organizations/org-local/sessions/devin-1/messages"
    assert follow_up.body == {"message": "Summarise the day"}
    assert {run.session_id for run in runs} == {"devin-1"}


async def test_a_target_session_gets_the_prompt_from_the_first_fire(
    harness: EngineHarness, service: SessionService
) -> None:
    schedule = await harness.create(target_devin_id="devin-42")
    await harness.engine.trigger(schedule, by="service-admin")
    (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.session_id == "devin-42"
    assert service.requests[0].path.endswith("/sessions/devin-42/messages")


# --- start-up and shutdown ----------------------------------------------------------------


async def test_start_up_catches_up_once_records_older_misses_and_interrupts_stuck_runs(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    harness = EngineHarness(store, directory, service, http)
    await clear_of_the_turn()
    minute = now().replace(second=0, microsecond=0)
    recurring = await harness.create(cron="* * * * *")
    await store.advance_schedules(
        [(recurring.id, recurring.next_run_at, minute - timedelta(minutes=40))]
    )
    recent = await harness.create(name="recent", scheduled_at=now() - timedelta(minutes=10))
    stale = await harness.create(name="stale", scheduled_at=now() - timedelta(hours=2))
    stuck = Run(recurring.id, minute - timedelta(hours=3), RunTrigger.CRON, now())
    await store.claim_runs([stuck])
    with capture_logs() as logs:
        await harness.engine.start()
        try:
            missed, caught_up = await _catchup_runs(harness, recurring.id)
            (recent_run,) = await harness.finished_runs(recent.id, 1)
            (stale_run,) = await harness.finished_runs(stale.id, 1)
        finally:
            await harness.engine.stop(0.5)
    assert missed.status == S.MISSED
    assert missed.scheduled_for == minute - timedelta(minutes=40)
    assert (caught_up.status, caught_up.trigger) == (S.SUCCEEDED, RunTrigger.CATCHUP)
    assert caught_up.scheduled_for >= minute  # the latest minute when the engine started
    older = (caught_up.scheduled_for - missed.scheduled_for) // timedelta(minutes=1)
    assert missed.error is not None and missed.error.startswith(f"missed {older} fires between ")
    after = await store.get_schedule(recurring.id)
    assert after.next_run_at == caught_up.scheduled_for + timedelta(minutes=1)
    assert (recent_run.trigger, recent_run.status) == (RunTrigger.CATCHUP, S.SUCCEEDED)
    assert stale_run.status == S.MISSED and "older than the 3600s catch-up window" in (
        stale_run.error or ""
    )
    assert not (await store.get_schedule(stale.id)).enabled
    assert not (await store.get_schedule(recent.id)).enabled
    interrupted = await store.get_run(stuck.id)
    assert interrupted.status == S.INTERRUPTED
    assert harness.finished[0].run.id == stuck.id  # recovery is reported like any finish
    assert len(service.requests) == 2
    names = {entry["event"] for entry in logs}
    assert {"run_interrupted", "run_missed", "catchup_scheduled", "engine_started"} <= names
    (started,) = events(logs, "engine_started")  # counted when planned, not after the pacer
    assert (started["interrupted"], started["catchups"], started["missed_schedules"]) == (1, 2, 3)


async def _catchup_runs(harness: EngineHarness, schedule_id: str) -> tuple[Run, Run]:
    interrupted, missed, caught_up = await harness.finished_runs(schedule_id, 3)
    assert interrupted.status == S.INTERRUPTED
    return missed, caught_up


async def test_stop_leaves_an_unfinished_launch_for_the_next_start_to_interrupt(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> None:
    first = EngineHarness(store, directory, service, http)
    await first.engine.start()
    schedule = await first.create()
    service.answer(Reply(delay=5.0))
    run = await first.engine.trigger(schedule, by="service-admin")
    await service.wait_for(1)
    with capture_logs() as logs:
        await first.engine.stop(0.2)
    assert events(logs, "engine_stopped")[0]["cancelled_launches"] == 1
    assert (await store.get_run(run.id)).status == S.LAUNCHING
    second = EngineHarness(store, directory, service, http)
    await second.engine.start()
    try:
        interrupted = await store.get_run(run.id)
        assert interrupted.status == S.INTERRUPTED
        assert [finished.run.id for finished in second.finished] == [run.id]
        assert (await store.get_schedule(schedule.id)).consecutive_failures == 1
    finally:
        await second.engine.stop(0.5)


async def test_the_engine_reports_healthy_while_its_timer_runs(harness: EngineHarness) -> None:
    assert harness.engine.healthy()
    assert all(not task.done() for task in harness.engine.background_tasks())
    await harness.engine.stop(0.1)
    assert not harness.engine.healthy()


async def test_the_enabled_schedules_gauge_follows_edits_within_seconds(
    harness: EngineHarness,
) -> None:
    def gauge() -> float:
        return float(metrics.SCHEDULES_ENABLED._value.get())

    made = [await harness.create(name=f"s{i}") for i in range(3)]
    await eventually(lambda: gauge() == 3.0, within=10)
    await harness.update(made[0], enabled=False)
    await eventually(lambda: gauge() == 2.0, within=10)
