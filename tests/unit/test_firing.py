"""The engine's pure decisions, table-tested with time as a parameter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from daemon.firing import (
    CatchupPlan,
    MissedSpan,
    OverlapAction,
    fire_identity,
    is_behind,
    latest_at_or_before,
    missed_span,
    natural_trigger,
    next_after_fire,
    overlap_action,
    plan_catchup,
    releasable,
    seconds_until_release,
    timer_for,
)
from daemon.late_runs import (
    Recovery,
    backfill_release,
    catchup_release,
    plan_recovery,
    superseded_at,
)
from storage.domain import Run, Schedule
from storage.enums import Overlap, RunStatus, RunTrigger, ScheduleType
from tests.conftest import ORG, make_directory


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


T0 = at("2030-01-07 12:00:00")


def recurring(cron: str = "* * * * *", **changes: object) -> Schedule:
    schedule = Schedule(org_id=ORG, name="s", prompt="p", created_at=T0, updated_at=T0, cron=cron)
    return dataclasses.replace(schedule, **changes)


def one_time(scheduled_at: datetime, **changes: object) -> Schedule:
    schedule = Schedule(
        org_id=ORG,
        name="once",
        prompt="p",
        created_at=T0,
        updated_at=T0,
        schedule_type=ScheduleType.ONE_TIME,
        scheduled_at=scheduled_at,
    )
    return dataclasses.replace(schedule, **changes)


# --- timers -------------------------------------------------------------------------------


def test_a_timer_without_jitter_fires_at_the_instant_and_knows_the_next_one() -> None:
    timer = timer_for(recurring("*/5 * * * *"), T0)
    assert (timer.instant, timer.fire_at, timer.following) == (
        T0,
        T0,
        T0 + timedelta(minutes=5),
    )


def test_jitter_delays_the_timer_but_never_to_the_next_instant() -> None:
    schedule = recurring("* * * * *", jitter_s=3600.0)
    timer = timer_for(schedule, T0)
    assert timer.instant == T0
    assert T0 <= timer.fire_at < T0 + timedelta(minutes=1)
    assert timer_for(schedule, T0) == timer  # deterministic


def test_a_one_time_timer_has_nothing_after_it() -> None:
    schedule = one_time(T0)
    assert timer_for(schedule, T0).following is None
    assert next_after_fire(schedule, T0) is None
    assert natural_trigger(schedule) == RunTrigger.ONE_TIME
    assert natural_trigger(recurring()) == RunTrigger.CRON


@pytest.mark.parametrize(
    ("late_s", "grace", "behind"),
    [(0.0, 2.0, False), (2.0, 2.0, False), (2.5, 2.0, True), (-30.0, 2.0, False), (1.0, 0, True)],
)
def test_an_unheld_instant_is_behind_only_beyond_the_grace(
    late_s: float, grace: float, behind: bool
) -> None:
    assert is_behind(T0, T0 + timedelta(seconds=late_s), grace) is behind


# --- missed spans -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "first", "bound", "span"),
    [
        # every minute, down from 12:00 to 12:40:30 -> 41 instants
        (
            "* * * * *",
            "2030-01-07 12:00",
            "2030-01-07 12:40:30",
            MissedSpan(at("2030-01-07 12:00"), at("2030-01-07 12:40"), 41),
        ),
        # exactly one instant
        (
            "0 9 * * *",
            "2030-01-07 09:00",
            "2030-01-07 12:00",
            MissedSpan(at("2030-01-07 09:00"), at("2030-01-07 09:00"), 1),
        ),
        # weekdays only across a weekend: Fri 4th, Mon 7th (Sat/Sun skipped)
        (
            "0 9 * * MON-FRI",
            "2030-01-03 09:00",
            "2030-01-07 10:00",
            MissedSpan(at("2030-01-03 09:00"), at("2030-01-07 09:00"), 3),
        ),
    ],
)
def test_missed_spans_count_every_instant_up_to_the_bound(
    cron: str, first: str, bound: str, span: MissedSpan
) -> None:
    assert missed_span(recurring(cron), at(first), at(bound), cap=10_000) == span


def test_a_capped_span_says_at_least_and_still_finds_the_latest_instant() -> None:
    span = missed_span(recurring(), T0, T0 + timedelta(days=30, seconds=30), cap=100)
    assert span == MissedSpan(T0, T0 + timedelta(days=30), 100, at_least=True)
    assert span.describe().startswith("missed at least 100 fires between 2030-01-07T12:00:00")


@pytest.mark.parametrize(
    ("cron", "bound", "latest"),
    [
        ("* * * * *", "2030-01-07 13:00:59", "2030-01-07 13:00"),
        ("0 9 * * *", "2030-03-01 08:59", "2030-02-28 09:00"),
        ("* 9 * * *", "2030-01-09 15:00", "2030-01-09 09:59"),
        ("0 0 1 * *", "2030-06-15 00:00", "2030-06-01 00:00"),
    ],
)
def test_the_latest_instant_before_a_bound_is_found_by_looking_back(
    cron: str, bound: str, latest: str
) -> None:
    schedule = recurring(cron)
    floor = next_after_fire(schedule, T0 - timedelta(minutes=1))
    assert floor is not None
    assert latest_at_or_before(schedule, at(bound), floor=floor) == at(latest)


# --- catch-up plans -----------------------------------------------------------------------

WINDOW = 3600.0


@pytest.mark.parametrize(
    ("cron", "first", "now", "window", "catchup", "missed", "next_run"),
    [
        # down 40.5 minutes, minutely: catch up 12:40, 40 older ones missed
        (
            "* * * * *",
            "12:00",
            "12:40:30",
            None,
            "12:40",
            ("12:00", "12:39", 40),
            "12:41",
        ),
        # one instant missed, inside the window: just a catch-up
        ("0 * * * *", "12:00", "12:30", None, "12:00", None, "13:00"),
        # the only missed instant is older than the window: missed, no catch-up
        ("0 * * * *", "12:00", "13:30", 60.0, None, ("12:00", "13:00", 2), "14:00"),
        # the schedule's own window overrides the default
        ("*/10 * * * *", "12:00", "12:25", 0.0, None, ("12:00", "12:20", 3), "12:30"),
        # the latest is exactly as old as the window: still caught up
        ("*/10 * * * *", "12:00", "12:35", 300.0, "12:30", ("12:00", "12:20", 3), "12:40"),
    ],
)
def test_catchup_runs_the_latest_missed_instant_inside_the_window(
    cron: str,
    first: str,
    now: str,
    window: float | None,
    catchup: str | None,
    missed: tuple[str, str, int] | None,
    next_run: str,
) -> None:
    day = "2030-01-07 "
    schedule = recurring(cron, catchup_window_s=window)
    plan = plan_catchup(schedule, at(day + first), at(day + now), default_window=WINDOW)
    assert plan.catchup_at == (at(day + catchup) if catchup else None)
    if missed is None:
        assert plan.missed is None
    else:
        assert plan.missed == MissedSpan(at(day + missed[0]), at(day + missed[1]), missed[2])
    assert plan.next_run_at == at(day + next_run)


def test_missed_errors_say_how_many_and_whether_the_latest_ran() -> None:
    schedule = recurring()
    plan = plan_catchup(schedule, T0, T0 + timedelta(minutes=41, seconds=1), default_window=WINDOW)
    assert plan.missed_error() == (
        "missed 41 fires between 2030-01-07T12:00:00+00:00 and 2030-01-07T12:40:00+00:00; "
        "only the latest, 2030-01-07T12:41:00+00:00, ran"
    )
    old = plan_catchup(schedule, T0, T0 + timedelta(hours=2, seconds=30), default_window=10.0)
    assert old.catchup_at is None
    assert old.missed_error().endswith(": older than the 10s catch-up window")
    assert "missed 121 fires" in old.missed_error()


def test_a_long_outage_counts_missed_fires_with_a_cap() -> None:
    plan = plan_catchup(recurring(), T0, T0 + timedelta(days=60), default_window=WINDOW, cap=500)
    assert plan.catchup_at == T0 + timedelta(days=60)
    assert plan.missed is not None and plan.missed.at_least and plan.missed.count == 500
    assert plan.missed.last == T0 + timedelta(days=60, minutes=-1)
    assert "at least 500" in plan.missed_error()


@pytest.mark.parametrize(
    ("late", "window", "catchup", "missed"),
    [(timedelta(minutes=10), WINDOW, True, False), (timedelta(hours=3), WINDOW, False, True)],
)
def test_a_missed_one_time_is_caught_up_inside_the_window_else_recorded_missed(
    late: timedelta, window: float, catchup: bool, missed: bool
) -> None:
    schedule = one_time(T0)
    plan = plan_catchup(schedule, T0, T0 + late, default_window=window)
    assert plan == CatchupPlan(
        T0 if catchup else None,
        MissedSpan(T0, T0, 1) if missed else None,
        None,
        window,
    )


# --- overlap ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "in_flight", "buffered", "action"),
    [
        (Overlap.SKIP, 0, False, OverlapAction.FIRE),
        (Overlap.SKIP, 1, False, OverlapAction.SKIP),
        (Overlap.BUFFER_ONE, 0, False, OverlapAction.FIRE),
        (Overlap.BUFFER_ONE, 1, False, OverlapAction.BUFFER),
        (Overlap.BUFFER_ONE, 1, True, OverlapAction.SKIP),
        (Overlap.ALLOW, 3, False, OverlapAction.FIRE),
    ],
)
def test_overlap_policy(
    policy: Overlap, in_flight: int, buffered: bool, action: OverlapAction
) -> None:
    schedule = recurring(overlap=policy)
    assert overlap_action(schedule, in_flight=in_flight, buffered=buffered) == action


def test_a_one_time_instant_is_never_skipped_for_overlap() -> None:
    schedule = one_time(T0, overlap=Overlap.SKIP)
    assert overlap_action(schedule, in_flight=1, buffered=False) == OverlapAction.FIRE


# --- pacing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "rate", "released", "count", "wait"),
    [
        (0.0, 50.0, 0, 1, 0.0),  # the first goes at once
        (0.0, 50.0, 1, 0, 0.02),  # the next one 1/rate later
        (0.1, 50.0, 1, 5, 0.0),  # a late wake-up releases what is due, no more
        (3.98, 50.0, 199, 1, 0.0),  # 200 at 50/s: the last one at 3.98 s
        (0.5, 1.0, 1, 0, 0.5),
    ],
)
def test_catchups_are_released_at_most_rate_per_second(
    elapsed: float, rate: float, released: int, count: int, wait: float
) -> None:
    assert releasable(elapsed, rate, released) == count
    assert seconds_until_release(elapsed, rate, released) == pytest.approx(wait)


def test_releasing_two_hundred_at_fifty_per_second_takes_four_seconds() -> None:
    released, elapsed = 0, 0.0
    while released < 200:
        released += releasable(elapsed, 50.0, released)
        if released < 200:
            elapsed += seconds_until_release(elapsed, 50.0, released)
    assert elapsed == pytest.approx(3.98)


# --- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_as", "user", "as_user", "refusal"),
    [
        (None, "bot", False, None),
        ("user-alice", "user-alice", True, None),
        ("user-bob", "user-bob", True, "lacks the UseDevinSessions permission"),
        ("user-carol", "user-carol", True, "is not a member of organization 'org-local'"),
        ("user-gone", "user-gone", True, "is not a member"),
    ],
)
def test_the_run_as_user_is_rechecked_at_fire_time(
    run_as: str | None, user: str, as_user: bool, refusal: str | None
) -> None:
    identity = fire_identity(recurring(run_as_user_id=run_as), make_directory())
    assert (identity.user_id, identity.as_user) == (user, as_user)
    if refusal is None:
        assert identity.refusal is None
    else:
        assert identity.refusal is not None
        assert identity.refusal.startswith(f"cannot run as user '{run_as}': ")
        assert refusal in identity.refusal


# --- recovery after a crash ---------------------------------------------------------------


def left_launching(
    at_: datetime, *, dispatched: bool, trigger: RunTrigger = RunTrigger.CRON
) -> Run:
    return Run(
        schedule_id="sched-1",
        scheduled_for=at_,
        trigger=trigger,
        started_at=at_,
        dispatched_at=at_ if dispatched else None,
    )


@pytest.mark.parametrize(
    ("age_s", "dispatched", "idempotent", "action", "note"),
    [
        (40, False, False, Recovery.RELAUNCH, "relaunched after a restart"),
        (40, False, True, Recovery.RELAUNCH, "relaunched after a restart"),
        (3599, False, False, Recovery.RELAUNCH, "relaunched after a restart"),
        (3601, False, False, Recovery.INTERRUPT, "older than the 3600s catch-up window"),
        (40, True, False, Recovery.INTERRUPT, "the session may have started"),
        (40, True, True, Recovery.RESEND, "re-sent after a restart with the same"),
        (7200, True, True, Recovery.RESEND, "re-sent after a restart with the same"),
    ],
)
def test_recovery_relaunches_what_never_left_and_resends_only_to_an_idempotent_service(
    age_s: float, dispatched: bool, idempotent: bool, action: Recovery, note: str
) -> None:
    schedule = recurring("0 * * * *", id="sched-1")
    run = left_launching(T0, dispatched=dispatched)
    now = T0 + timedelta(seconds=age_s)
    plan = plan_recovery(run, schedule, now, default_window=3600, idempotent=idempotent)
    assert plan.action == action
    assert note in plan.note
    assert plan.deadline == (T0 + timedelta(hours=1) if action == Recovery.RELAUNCH else None)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, "the schedule is no longer active"),
        (recurring(enabled=False), "the schedule is no longer active"),
        (recurring(catchup_window_s=10.0), "older than the 10s catch-up window"),
    ],
)
def test_a_run_that_never_left_is_interrupted_when_its_schedule_cannot_take_it(
    schedule: Schedule | None, expected: str
) -> None:
    run = left_launching(T0, dispatched=False)
    plan = plan_recovery(
        run, schedule, T0 + timedelta(seconds=40), default_window=3600, idempotent=True
    )
    assert (plan.action, expected in plan.note) == (Recovery.INTERRUPT, True)
    assert plan.note.startswith("interrupted: agentcron stopped before sending")


@pytest.mark.parametrize(
    ("trigger", "deadline"),
    [
        (RunTrigger.CRON, T0 + timedelta(minutes=1)),
        (RunTrigger.CATCHUP, T0 + timedelta(minutes=1)),
        (RunTrigger.MANUAL, None),
        (RunTrigger.ONE_TIME, None),
    ],
)
def test_only_scheduled_runs_are_superseded_by_the_next_regular_fire(
    trigger: RunTrigger, deadline: datetime | None
) -> None:
    run = left_launching(T0, dispatched=False, trigger=trigger)
    assert superseded_at(run, recurring()) == deadline


_SOON = timedelta(seconds=4)


@pytest.mark.parametrize(
    ("now", "schedule", "in_flight", "expected"),
    [
        (T0, recurring(), 0, None),
        (T0 + timedelta(seconds=54, microseconds=999_999), recurring(), 0, None),
        (T0 + timedelta(seconds=55), recurring(), 0, RunStatus.MISSED),  # 5 s before the next
        (T0 + timedelta(minutes=1), recurring(), 0, RunStatus.MISSED),
        (T0, None, 0, RunStatus.MISSED),
        (T0, recurring(enabled=False), 0, RunStatus.MISSED),
        (T0, recurring(), 1, RunStatus.SKIPPED),
        (T0, recurring(overlap=Overlap.BUFFER_ONE), 1, RunStatus.SKIPPED),
        (T0, recurring(overlap=Overlap.ALLOW), 1, None),
    ],
)
def test_a_paced_catchup_launches_unless_superseded_inactive_or_overlapping(
    now: datetime, schedule: Schedule | None, in_flight: int, expected: RunStatus | None
) -> None:
    deadline = T0 + timedelta(minutes=1)
    dropped = catchup_release(schedule, deadline, now, in_flight=in_flight)
    assert (dropped.status if dropped else None) == expected


@pytest.mark.parametrize(
    ("before", "ending"), [(timedelta(0), "came first"), (_SOON, "is due in less than 5s")]
)
def test_a_superseded_catchup_names_the_regular_fire(before: timedelta, ending: str) -> None:
    deadline = T0 + timedelta(minutes=1)
    dropped = catchup_release(recurring(), deadline, deadline - before, in_flight=0)
    assert dropped is not None
    assert dropped.error == f"catch-up dropped: the regular fire at {deadline.isoformat()} {ending}"


@pytest.mark.parametrize(
    ("schedule", "dispatched", "action"),
    [
        (recurring(), False, Recovery.RELAUNCH),  # days old: no window applies
        (recurring(enabled=False), False, Recovery.RELAUNCH),  # paused: asked for anyway
        (recurring(deleted_at=T0), False, Recovery.INTERRUPT),
        (None, False, Recovery.INTERRUPT),
        (recurring(), True, Recovery.INTERRUPT),  # sent: never sent twice
    ],
)
def test_a_backfill_run_left_unsent_is_relaunched_while_its_schedule_exists(
    schedule: Schedule | None, dispatched: bool, action: Recovery
) -> None:
    run = left_launching(T0, dispatched=dispatched, trigger=RunTrigger.BACKFILL)
    plan = plan_recovery(run, schedule, T0 + timedelta(days=3), default_window=60, idempotent=False)
    assert plan.action == action
    if action == Recovery.RELAUNCH:
        assert (plan.note, plan.deadline) == ("backfill relaunched after a restart", None)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (recurring(), None),
        (recurring(enabled=False), None),
        (recurring(overlap=Overlap.SKIP), None),
        (recurring(deleted_at=T0), RunStatus.MISSED),
        (None, RunStatus.MISSED),
    ],
)
def test_a_paced_backfill_launches_unless_its_schedule_was_deleted(
    schedule: Schedule | None, expected: RunStatus | None
) -> None:
    dropped = backfill_release(schedule)
    assert (dropped.status if dropped else None) == expected


@pytest.mark.parametrize("idempotent", [False, True])
@pytest.mark.parametrize("age_s", [40, 7 * 86400])
@pytest.mark.parametrize(
    "schedule", [recurring("0 * * * *", id="sched-1"), recurring(enabled=False)]
)
def test_a_running_run_is_followed_again_never_interrupted(
    idempotent: bool, age_s: float, schedule: Schedule
) -> None:
    run = dataclasses.replace(
        left_launching(T0, dispatched=True), status=RunStatus.RUNNING, session_id="devin-1"
    )
    now = T0 + timedelta(seconds=age_s)
    plan = plan_recovery(run, schedule, now, default_window=3600, idempotent=idempotent)
    assert (plan.action, plan.deadline) == (Recovery.FOLLOW, None)


def test_a_running_run_whose_schedule_is_gone_is_abandoned_not_interrupted() -> None:
    run = dataclasses.replace(
        left_launching(T0, dispatched=True), status=RunStatus.RUNNING, session_id="devin-1"
    )
    plan = plan_recovery(run, None, T0, default_window=3600, idempotent=True)
    assert (plan.action, plan.note) == (
        Recovery.ABANDON,
        "no longer followed: its schedule was deleted",
    )
