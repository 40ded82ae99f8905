"""What edits and finished runs do to a schedule (`storage.rules`), as tables."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.domain import Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.rules import (
    BOOKKEEPING,
    EDIT_ALSO_CHANGES,
    RUN_RESULT,
    applies,
    created_schedule,
    deletion,
    edited_schedule,
    finished_run,
    fold_outcomes,
    schedule_after_run,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
STARTED = T0 + timedelta(minutes=1)
ENDED = T0 + timedelta(minutes=2)
NEXT_9AM = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def schedule(**changes: Any) -> Schedule:
    base = Schedule(
        id="sched-1",
        org_id="org-local",
        name="s",
        prompt="p",
        created_at=T0,
        updated_at=T0,
        cron="0 9 * * *",
        next_run_at=NEXT_9AM,
    )
    return dataclasses.replace(base, **changes)


def one_time(**changes: Any) -> Schedule:
    return schedule(
        schedule_type=ScheduleType.ONE_TIME, cron=None, scheduled_at=NEXT_9AM, **changes
    )


def run(status: RunStatus, trigger: RunTrigger = RunTrigger.CRON, **changes: Any) -> Run:
    base = Run(
        id="run-1",
        schedule_id="sched-1",
        scheduled_for=T0,
        trigger=trigger,
        started_at=STARTED,
        status=status,
        finished_at=ENDED,
        error="boom" if status.is_failure else None,
    )
    return dataclasses.replace(base, **changes)


OK, FAILED = RunStatus.SUCCEEDED, RunStatus.FAILED
LAUNCHED = {"last_executed_at": STARTED}
COUNTED = {**LAUNCHED, "last_error_at": ENDED, "last_error_message": "boom"}
DONE = {"enabled": False, "next_run_at": None, "updated_at": ENDED, "version": 2}
"""Disabling is a change a client sees: `version` and `updated_at` move with it."""


# (what, schedule, run, max_failures, fields expected to change)
AFTER_RUN: list[tuple[str, Schedule, Run, int, dict[str, Any]]] = [
    (
        "success resets the count",
        schedule(consecutive_failures=2),
        run(OK),
        0,
        {**LAUNCHED, "consecutive_failures": 0},
    ),
    ("failure counts up", schedule(), run(FAILED), 0, {**COUNTED, "consecutive_failures": 1}),
    (
        "an interrupted launch is a failure",
        schedule(consecutive_failures=1),
        run(RunStatus.INTERRUPTED),
        0,
        {**COUNTED, "consecutive_failures": 2},
    ),
    (
        "below the limit: no pause",
        schedule(consecutive_failures=1),
        run(FAILED),
        3,
        {**COUNTED, "consecutive_failures": 2},
    ),
    (
        "reaching the limit pauses",
        schedule(consecutive_failures=2),
        run(FAILED),
        3,
        {
            **COUNTED,
            **DONE,
            "consecutive_failures": 3,
            "paused_reason": "auto-paused after 3 consecutive failures: boom",
        },
    ),
    (
        "a disabled schedule is not paused again",
        schedule(consecutive_failures=5, enabled=False, next_run_at=None, paused_reason="x"),
        run(FAILED),
        3,
        {**COUNTED, "consecutive_failures": 6},
    ),
    (
        "no limit: failures only count",
        schedule(consecutive_failures=99),
        run(FAILED),
        0,
        {**COUNTED, "consecutive_failures": 100},
    ),
    ("a missed catch-up changes nothing", schedule(), run(RunStatus.MISSED), 1, {}),
    ("an overlap skip changes nothing", schedule(), run(RunStatus.SKIPPED), 1, {}),
    (
        "a one_time fire is done",
        one_time(),
        run(OK, RunTrigger.ONE_TIME),
        0,
        {**LAUNCHED, **DONE, "consecutive_failures": 0},
    ),
    (
        "a one_time catch-up is done, even failed",
        one_time(),
        run(FAILED, RunTrigger.CATCHUP),
        0,
        {**COUNTED, **DONE, "consecutive_failures": 1},
    ),
    (
        "a manual run of a one_time keeps it pending",
        one_time(),
        run(OK, RunTrigger.MANUAL),
        0,
        {**LAUNCHED, "consecutive_failures": 0},
    ),
    (
        "a recurring catch-up keeps it going",
        schedule(),
        run(OK, RunTrigger.CATCHUP),
        0,
        {**LAUNCHED, "consecutive_failures": 0},
    ),
    (
        "a stateful schedule keeps its first session",
        schedule(stateful=True),
        run(OK, session_id="devin-1"),
        0,
        {**LAUNCHED, "consecutive_failures": 0, "stateful_session_id": "devin-1"},
    ),
    (
        "a target session makes it stateful",
        schedule(target_devin_id="devin-0"),
        run(OK, session_id="devin-1"),
        0,
        {**LAUNCHED, "consecutive_failures": 0, "stateful_session_id": "devin-1"},
    ),
    (
        "a later session does not replace the first",
        schedule(stateful=True, stateful_session_id="devin-1"),
        run(OK, session_id="devin-2"),
        0,
        {**LAUNCHED, "consecutive_failures": 0},
    ),
    (
        "a stateless schedule remembers no session",
        schedule(),
        run(OK, session_id="devin-1"),
        0,
        {**LAUNCHED, "consecutive_failures": 0},
    ),
]


@pytest.mark.parametrize(
    ("before", "finished", "limit", "changed"),
    [row[1:] for row in AFTER_RUN],
    ids=[row[0] for row in AFTER_RUN],
)
def test_a_finished_run_changes_its_schedule(
    before: Schedule, finished: Run, limit: int, changed: dict[str, Any]
) -> None:
    after = schedule_after_run(before, finished, limit)
    assert after == dataclasses.replace(before, **changed)
    assert set(changed) <= set(BOOKKEEPING)


LATER = T0 + timedelta(minutes=5)

# (what, schedule, changes, fields expected besides the changes themselves)
EDITS: list[tuple[str, Schedule, dict[str, Any], dict[str, Any]]] = [
    ("an edit bumps version and updated_at", schedule(), {"name": "n"}, {}),
    ("even an empty one", schedule(), {}, {}),
    (
        "a timing change recomputes the next instant from now",
        schedule(),
        {"cron": "30 12 * * *"},
        {"next_run_at": datetime(2026, 11, 23, 12, 30, tzinfo=UTC)},
    ),
    (
        "unless the edit sets it",
        schedule(),
        {"cron": "30 12 * * *", "next_run_at": NEXT_9AM},
        {},
    ),
    ("disabling clears it", schedule(), {"enabled": False}, {"next_run_at": None}),
    (
        "re-enabling ends a pause",
        schedule(enabled=False, next_run_at=None, paused_reason="auto-paused"),
        {"enabled": True},
        {"paused_reason": None, "next_run_at": NEXT_9AM},
    ),
    (
        "unless the edit sets the reason",
        schedule(enabled=False, next_run_at=None, paused_reason="auto-paused"),
        {"enabled": True, "paused_reason": "kept"},
        {"next_run_at": NEXT_9AM},
    ),
    (
        "enabling what is enabled keeps its reason",
        schedule(paused_reason="odd"),
        {"enabled": True},
        {"next_run_at": NEXT_9AM},
    ),
    (
        "a deletion leaves no next instant",
        schedule(),
        deletion(LATER, "service-admin"),
        {},
    ),
]


@pytest.mark.parametrize(
    ("before", "changes", "also"), [row[1:] for row in EDITS], ids=[row[0] for row in EDITS]
)
def test_an_edit(before: Schedule, changes: dict[str, Any], also: dict[str, Any]) -> None:
    after = edited_schedule(before, changes, LATER)
    expected = {**changes, **also, "updated_at": LATER, "version": before.version + 1}
    assert after == dataclasses.replace(before, **expected)
    assert set(also) <= set(EDIT_ALSO_CHANGES)


def test_a_deletion() -> None:
    assert deletion(LATER, "u") == {"deleted_at": LATER, "next_run_at": None, "last_edited_by": "u"}


def test_a_new_schedule_waits_for_its_first_instant_after_now() -> None:
    assert created_schedule(schedule(next_run_at=None), T0).next_run_at == NEXT_9AM
    assert created_schedule(schedule(enabled=False), T0).next_run_at is None


@pytest.mark.parametrize(
    ("outcome_identity", "identity"), [(None, "user-alice"), ("user-bob", "user-bob")]
)
def test_a_run_takes_its_outcome(outcome_identity: str | None, identity: str) -> None:
    launching = run(RunStatus.LAUNCHING, identity="user-alice", finished_at=None)
    outcome = RunOutcome(
        "run-1", FAILED, ENDED, attempts=2, identity=outcome_identity, session_id="s", error="e"
    )
    finished = finished_run(launching, outcome)
    assert {name: getattr(finished, name) for name in RUN_RESULT} == {
        "status": FAILED,
        "finished_at": ENDED,
        "attempts": 2,
        "identity": identity,
        "session_id": "s",
        "session_url": None,
        "error": "e",
        "session_status": None,
    }


def launching(run_id: str, schedule_id: str = "sched-1") -> Run:
    return run(RunStatus.LAUNCHING, id=run_id, schedule_id=schedule_id, finished_at=None)


def failed(run_id: str) -> RunOutcome:
    return RunOutcome(run_id, FAILED, ENDED, error="boom")


def test_outcomes_fold_in_order_and_pause_once() -> None:
    runs = {r.id: r for r in (launching("run-a"), launching("run-b"), launching("run-c"))}
    before = {"sched-1": schedule(), "sched-2": schedule(id="sched-2")}
    outcomes = [failed("run-a"), failed("run-b"), failed("run-c")]

    finished, after = fold_outcomes(runs, before, outcomes, 2)

    assert [(f.run.id, f.schedule.consecutive_failures, f.auto_paused) for f in finished] == [
        ("run-a", 1, False),
        ("run-b", 2, True),
        ("run-c", 3, False),  # already paused: the pause is not news
    ]
    assert after["sched-1"] == finished[-1].schedule and not after["sched-1"].enabled
    assert after["sched-2"] == before["sched-2"]
    assert runs["run-a"].status == RunStatus.LAUNCHING  # the inputs are left as they were


def test_outcomes_of_unknown_or_finished_runs_are_ignored() -> None:
    done = run(OK, id="run-done")
    runs = {"run-a": launching("run-a"), "run-done": done}
    before = {"sched-1": schedule()}
    outcomes = [failed("run-x"), failed("run-done"), failed("run-a"), failed("run-a")]

    finished, after = fold_outcomes(runs, before, outcomes, 0)

    assert [f.run.id for f in finished] == ["run-a"]
    assert after["sched-1"].consecutive_failures == 1


# --- followed sessions: `running`, then the session's end ---------------------------------

RUNNING = RunStatus.RUNNING


def running_outcome(run_id: str, status: str = "running/working") -> RunOutcome:
    return RunOutcome(
        run_id, RUNNING, STARTED, attempts=1, session_id="devin-1", session_status=status
    )


def followed(run_id: str, schedule_id: str = "sched-1") -> Run:
    return run(
        RUNNING, id=run_id, schedule_id=schedule_id, finished_at=None, session_id="devin-1",
        session_url="https://s/1", attempts=1, session_status="running/working",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("current", "outcome", "takes"),
    [
        (RunStatus.LAUNCHING, RUNNING, True),
        (RunStatus.LAUNCHING, FAILED, True),
        (RUNNING, RUNNING, True),  # a newer session status
        (RUNNING, OK, True),
        (RUNNING, FAILED, True),
        (RUNNING, RunStatus.LAUNCHING, False),
        (OK, RUNNING, False),
        (FAILED, OK, False),
    ],
)
def test_which_outcomes_a_run_takes(current: RunStatus, outcome: RunStatus, takes: bool) -> None:
    assert applies(current, outcome) is takes


def test_a_followed_launch_records_the_fire_and_counts_nothing() -> None:
    before = {"sched-1": one_time(consecutive_failures=2)}
    one = run(RunStatus.LAUNCHING, RunTrigger.ONE_TIME, finished_at=None)

    (item,), after = fold_outcomes({one.id: one}, before, [running_outcome(one.id)], 1)

    assert (item.run.status, item.run.finished_at, item.run.session_id) == (
        RUNNING,
        None,
        "devin-1",
    )
    assert item.run.session_status == "running/working" and not item.auto_paused
    books = after["sched-1"]
    assert books.last_executed_at == STARTED and books.consecutive_failures == 2
    assert (books.enabled, books.next_run_at) == (False, None)  # a one_time fire is done


def test_a_newer_session_status_changes_only_the_run() -> None:
    current = followed("run-a")
    before = {"sched-1": schedule(consecutive_failures=3)}
    update = running_outcome("run-a", "running/waiting_for_approval")

    (item,), after = fold_outcomes({"run-a": current}, before, [update], 1)

    assert item.run == dataclasses.replace(current, session_status="running/waiting_for_approval")
    assert after == before


@pytest.mark.parametrize(
    ("status", "failures", "enabled"), [(OK, 0, True), (FAILED, 1, False)]
)  # fmt: skip
def test_a_followed_session_s_end_drives_the_books(
    status: RunStatus, failures: int, enabled: bool
) -> None:
    current = followed("run-a")
    before = {"sched-1": schedule(last_executed_at=T0)}
    end = RunOutcome("run-a", status, ENDED, attempts=1, error="x", session_status="error")

    (item,), after = fold_outcomes({"run-a": current}, before, [end], 1)

    assert (item.run.status, item.run.finished_at, item.run.session_id) == (
        status,
        ENDED,
        "devin-1",
    )
    assert (item.run.session_url, item.run.session_status) == ("https://s/1", "error")
    books = after["sched-1"]
    assert (books.consecutive_failures, books.enabled, item.auto_paused) == (
        failures,
        enabled,
        not enabled,
    )
    assert books.last_executed_at == T0  # recorded at the launch, not moved by the end
