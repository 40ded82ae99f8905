"""Pure decisions about runs that launch late: after a crash, and when paced.

A run an earlier process left unfinished is followed again, relaunched, re-sent or
interrupted (`plan_recovery`); a queued catch-up or backfill is launched or dropped when the
pacer releases it (`catchup_release`, `backfill_release`). Time is a parameter, as in
`daemon.firing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from daemon.firing import OverlapAction, catchup_window, next_after_fire, overlap_action
from daemon.org_limits import SkipReason
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger

# --- recovery after a crash ----------------------------------------------------------------


class Recovery(StrEnum):
    """What start-up does with a run an earlier process left `launching` or `running`."""

    RELAUNCH = "relaunch"
    """The request was never sent: launch it again, with the same run id."""
    RESEND = "resend"
    """It may have been sent, and the launcher is idempotent: send it again, same key."""
    INTERRUPT = "interrupt"
    """It may have been sent (or is too old to launch now): mark it `interrupted`."""
    FOLLOW = "follow"
    """Its session was launched and is followed: follow it again (never interrupted)."""
    ABANDON = "abandon"
    """Its session was followed, but its schedule is gone: mark it `failed`, unfollowed."""


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """`note` is the run's error: why it was relaunched, re-sent or interrupted.

    `deadline` is when a relaunch stops being worth it: the schedule's next regular instant,
    which supersedes it (None: never superseded).
    """

    action: Recovery
    note: str
    deadline: datetime | None = None


def plan_recovery(
    run: Run,
    schedule: Schedule | None,
    now: datetime,
    *,
    default_window: float,
    idempotent: bool,
) -> RecoveryPlan:
    """Follow a `running` run's session again; relaunch a run whose request never left,
    re-send one an idempotent service may have seen, interrupt the rest: nothing that may
    have started a session starts a second."""
    if run.status == RunStatus.RUNNING:
        if schedule is None or run.session_id is None:
            return RecoveryPlan(Recovery.ABANDON, "no longer followed: its schedule was deleted")
        return RecoveryPlan(Recovery.FOLLOW, "followed again after a restart")
    if run.dispatched_at is not None:
        if idempotent:
            note = "re-sent after a restart with the same Idempotency-Key"
            return RecoveryPlan(Recovery.RESEND, f"{note} (the launcher is idempotent)")
        return RecoveryPlan(
            Recovery.INTERRUPT,
            "interrupted: agentcron stopped after sending the launch request, so the session "
            "may have started; it was not sent again (the launcher is not idempotent)",
        )
    unsent = "interrupted: agentcron stopped before sending the launch request"
    if run.trigger == RunTrigger.BACKFILL and schedule is not None and schedule.deleted_at is None:
        # Asked for explicitly, for instants long past: neither the window nor a pause applies.
        return RecoveryPlan(Recovery.RELAUNCH, "backfill relaunched after a restart")
    if schedule is None or not schedule.is_active:
        return RecoveryPlan(Recovery.INTERRUPT, f"{unsent}, and the schedule is no longer active")
    window = catchup_window(schedule, default_window)
    if (now - run.scheduled_for).total_seconds() > window:
        too_old = f"{run.scheduled_for.isoformat()} is older than the {window:g}s catch-up window"
        return RecoveryPlan(Recovery.INTERRUPT, f"{unsent}, and {too_old}")
    note = "relaunched after a restart: agentcron stopped before sending the launch request"
    return RecoveryPlan(Recovery.RELAUNCH, note, superseded_at(run, schedule))


def superseded_at(run: Run, schedule: Schedule) -> datetime | None:
    """When a not yet launched catch-up (or relaunch) of `run` gives way to the schedule's
    next regular fire; None for a manual or one_time run, which nothing supersedes."""
    if run.trigger not in (RunTrigger.CRON, RunTrigger.CATCHUP):
        return None
    return next_after_fire(schedule, run.scheduled_for)


SUPERSEDE_LEAD = timedelta(seconds=5)
"""A catch-up not yet launched this close to its schedule's next regular instant gives way
to it: launched now, it would still be in progress when the regular fire comes (which
`overlap = "skip"` would then skip), and it would do the same work a moment earlier."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """A queued catch-up that will not launch: the status and error its run ends with."""

    status: RunStatus
    error: str
    reason: SkipReason | None = None
    """Why a `skipped` one was skipped (the metric's label)."""


def catchup_release(
    schedule: Schedule | None, deadline: datetime | None, now: datetime, *, in_flight: int
) -> Dropped | None:
    """Whether a paced catch-up due for release now launches (None) or is dropped.

    Dropped when its schedule's next regular instant has come or is less than
    `SUPERSEDE_LEAD` away (the regular fire supersedes it), when the schedule was disabled or
    deleted meanwhile, or, under `overlap = "skip"`, while another run of the schedule is
    still in progress.
    """
    if deadline is not None and now >= deadline - SUPERSEDE_LEAD:
        regular = f"catch-up dropped: the regular fire at {deadline.isoformat()}"
        if now >= deadline:
            return Dropped(RunStatus.MISSED, f"{regular} came first")
        lead = SUPERSEDE_LEAD.total_seconds()
        return Dropped(RunStatus.MISSED, f"{regular} is due in less than {lead:g}s")
    if schedule is None or not schedule.is_active:
        return Dropped(RunStatus.MISSED, "catch-up dropped: the schedule is no longer active")
    if overlap_action(schedule, in_flight=in_flight, buffered=True) == OverlapAction.SKIP:
        error = "catch-up skipped: the previous run is still in progress"
        return Dropped(RunStatus.SKIPPED, error, SkipReason.OVERLAP)
    return None


def backfill_release(schedule: Schedule | None) -> Dropped | None:
    """Whether a paced backfill run due for release now launches (None) or is dropped.

    A backfill was asked for explicitly: it launches while its schedule is paused and
    whatever its overlap policy says; only a deleted schedule drops it.
    """
    if schedule is None or schedule.deleted_at is not None:
        return Dropped(RunStatus.MISSED, "backfill dropped: the schedule was deleted")
    return None
