"""What an edit, a deletion and a finished run do to a schedule: pure functions of values.

Every store backend applies these and writes what they return, so the rules hold the same
whatever the database; `tests/unit/test_rules.py` states them as tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from storage.domain import FinishedRun, Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.timing import TIMING_FIELDS, next_run_after

EDIT_ALSO_CHANGES = ("updated_at", "version", "paused_reason", "next_run_at")
"""Fields `edited_schedule` may set besides those it is asked to change."""

RUN_RESULT = (
    "status",
    "finished_at",
    "attempts",
    "identity",
    "session_id",
    "session_url",
    "error",
    "session_status",
)
"""Every field of a run `finished_run` may change."""

BOOKKEEPING = (
    "last_executed_at",
    "consecutive_failures",
    "last_error_at",
    "last_error_message",
    "enabled",
    "next_run_at",
    "paused_reason",
    "stateful_session_id",
    "updated_at",
    "version",
)
"""Every schedule field `schedule_after_run` may change."""


def created_schedule(schedule: Schedule, now: datetime) -> Schedule:
    """`schedule` as stored when created at `now`: its first instant after `now` is pending."""
    return dataclasses.replace(schedule, next_run_at=next_run_after(schedule, now))


def edited_schedule(current: Schedule, changes: Mapping[str, Any], now: datetime) -> Schedule:
    """`current` after `changes` (field name -> value), edited at `now`.

    `updated_at` and `version` always move. Re-enabling ends a pause unless the edit sets
    `paused_reason` itself. A change of a timing field recomputes `next_run_at` from `now`
    unless the edit sets it.
    """
    updates = dict(changes)
    if changes.get("enabled") is True and not current.enabled and "paused_reason" not in changes:
        updates["paused_reason"] = None
    if TIMING_FIELDS.intersection(changes) and "next_run_at" not in changes:
        updates["next_run_at"] = next_run_after(dataclasses.replace(current, **updates), now)
    updates |= {"updated_at": now, "version": current.version + 1}
    return dataclasses.replace(current, **updates)


def deletion(now: datetime, by: str | None) -> dict[str, Any]:
    """The edit that soft-deletes a schedule: hidden from reads, never fires again."""
    return {"deleted_at": now, "next_run_at": None, "last_edited_by": by}


def disabled_when_missed(schedule: Schedule, now: datetime) -> Schedule:
    """A one_time schedule whose instant was missed beyond its catch-up window: done."""
    return _disabled(dataclasses.replace(schedule, next_run_at=None), now)


def _disabled(schedule: Schedule, now: datetime) -> Schedule:
    """`schedule` disabled by the engine at `now`: a change a client sees, so `version` and
    `updated_at` move, as an edit moves them (bookkeeping alone moves neither)."""
    return dataclasses.replace(
        schedule, enabled=False, updated_at=now, version=schedule.version + 1
    )


def finished_run(run: Run, outcome: RunOutcome) -> Run:
    """`run` as `outcome` says; unset identity and session fields keep the run's (a followed
    session's end does not repeat what its launch recorded)."""
    return dataclasses.replace(
        run,
        status=outcome.status,
        finished_at=outcome.finished_at if outcome.status.is_final else None,
        attempts=outcome.attempts,
        identity=outcome.identity or run.identity,
        session_id=outcome.session_id or run.session_id,
        session_url=outcome.session_url or run.session_url,
        error=outcome.error,
        session_status=outcome.session_status or run.session_status,
    )


def applies(current: RunStatus, outcome: RunStatus) -> bool:
    """Whether an outcome of status `outcome` may change a run now `current`: a launching run
    takes any; a running (followed) run takes a newer session status or its end; a final
    run takes nothing."""
    if current == RunStatus.LAUNCHING:
        return True
    return current == RunStatus.RUNNING and outcome != RunStatus.LAUNCHING


def schedule_after_run(
    schedule: Schedule, run: Run, max_failures: int, *, followed: bool = False
) -> Schedule:
    """The schedule after its `run` changed status.

    A run that ended without a launch (a catch-up dropped as `missed`, an overlap `skipped`)
    changes nothing: it neither ran nor failed. Otherwise the launch is recorded (unless
    `followed`: the run was `running`, and its launch was recorded then); a `running` run
    counts nothing yet. Success resets the failure count, failure counts up and records the
    error, and reaching `max_failures` (when > 0) pauses an enabled schedule. A one_time
    schedule is done after its fire, scheduled or caught up. A stateful schedule keeps its
    first session.
    """
    if run.status in (RunStatus.MISSED, RunStatus.SKIPPED):
        return schedule
    changes = {} if followed else _launch_changes(schedule, run)
    if run.status == RunStatus.SUCCEEDED:
        changes["consecutive_failures"] = 0
    elif run.status.is_failure:
        changes |= _failure(schedule, run, max_failures)
    after = dataclasses.replace(schedule, **changes)
    if schedule.enabled and not after.enabled:
        return _disabled(after, run.finished_at or run.started_at)
    return after


def _launch_changes(schedule: Schedule, run: Run) -> dict[str, Any]:
    changes: dict[str, Any] = {"last_executed_at": run.started_at}
    fired_one_time = run.trigger in (RunTrigger.ONE_TIME, RunTrigger.CATCHUP)
    if schedule.schedule_type == ScheduleType.ONE_TIME and fired_one_time:
        changes |= {"enabled": False, "next_run_at": None}
    if schedule.is_stateful and run.session_id and schedule.stateful_session_id is None:
        changes["stateful_session_id"] = run.session_id
    return changes


def _failure(schedule: Schedule, run: Run, max_failures: int) -> dict[str, Any]:
    failures = schedule.consecutive_failures + 1
    changes: dict[str, Any] = {
        "consecutive_failures": failures,
        "last_error_at": run.finished_at,
        "last_error_message": run.error,
    }
    if max_failures > 0 and failures >= max_failures and schedule.enabled:
        changes |= {
            "enabled": False,
            "next_run_at": None,
            "paused_reason": f"auto-paused after {failures} consecutive failures: {run.error}",
        }
    return changes


def fold_outcomes(
    runs: Mapping[str, Run],
    schedules: Mapping[str, Schedule],
    outcomes: Sequence[RunOutcome],
    max_failures: int,
) -> tuple[list[FinishedRun], dict[str, Schedule]]:
    """Fold `outcomes` in order into `runs` (by id) and their `schedules` (by id).

    Returns the runs finished, in the order of `outcomes`, each with its schedule as it
    stood right after, and every schedule as the whole batch leaves it. An outcome of an
    unknown run, or one `applies` refuses (a run already final, also finished earlier in
    this batch), is ignored. `auto_paused` is true for the run whose failure paused its
    schedule.
    """
    current_runs = dict(runs)
    after = dict(schedules)
    finished = []
    for outcome in outcomes:
        current = current_runs.get(outcome.run_id)
        if current is None or not applies(current.status, outcome.status):
            continue
        run = current_runs[current.id] = finished_run(current, outcome)
        previous = after[run.schedule_id]
        followed = current.status == RunStatus.RUNNING
        schedule = schedule_after_run(previous, run, max_failures, followed=followed)
        after[run.schedule_id] = schedule
        paused = (
            schedule.paused_reason is not None and previous.paused_reason != schedule.paused_reason
        )
        finished.append(FinishedRun(run=run, schedule=schedule, auto_paused=paused))
    return finished, after
