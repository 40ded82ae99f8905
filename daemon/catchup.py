"""Catch-up: missed instants, and runs a crash left `launching` (DESIGN section 3).

`settle` deals with schedules whose pending instant passed with nobody holding a timer (the
daemon was down, or the loop fell behind): in one transaction each moves on to its next
regular instant — which the engine then times as usual — while its older misses are
recorded as one `missed` run and its latest miss, if within the catch-up window, is claimed
as a `launching` catch-up run. `recover` plans what to do with the runs an earlier process
left `launching` or `running` (see `daemon.firing.plan_recovery`): a `running` run's
session is followed again at once, outside the pacer. Both queue their launches behind the
pacer (`daemon.pacer`), which only ever delays catch-ups; `_release` launches them, or drops
those the regular fire superseded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from daemon import metrics
from daemon.config import SchedulerConfig
from daemon.finisher import Finisher
from daemon.firing import CatchupPlan, fire_identity, natural_trigger, plan_catchup
from daemon.following import Followed
from daemon.late_runs import (
    Dropped,
    Recovery,
    backfill_release,
    catchup_release,
    plan_recovery,
)
from daemon.launching import Launch, log_fired
from daemon.org_limits import LimitRefusal
from daemon.pacer import Pacer, PendingLaunch
from storage.clock import Clock
from storage.domain import FinishedRun, Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.engine")

Moved = tuple[Schedule, datetime | None]
"""A schedule whose `next_run_at` was moved, and where to."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What `settle` did: schedules moved on to their next instant (for the engine to time),
    one_time schedules retired (disabled), and how many catch-ups it queued."""

    moved: list[Moved]
    retired: list[str]
    queued: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """What `recover` did: runs ended (interrupted), launches queued, sessions followed."""

    ended: int
    """Runs interrupted, or failed unfollowed."""
    pending: list[PendingLaunch]
    followed: int


class CatchUp:
    """Settles missed instants and recovers stuck runs; paces the launches they need.

    `launch(item)` starts a launch; `follow(item)` follows a running run's session;
    `in_progress(schedule_id)` counts the schedule's runs in progress (for overlap);
    `admit(schedule, run, now)` refuses a launch over an org limit (or counts it); `report`
    gets the runs recovery interrupts.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        directory: DirectoryRef,
        settings: Callable[[], SchedulerConfig],
        finisher: Finisher,
        report: Callable[[Sequence[FinishedRun]], None],
        launch: Callable[[Launch], None],
        follow: Callable[[Followed], None],
        in_progress: Callable[[str], int],
        admit: Callable[[Schedule, Run, datetime], LimitRefusal | None],
        owns: Callable[[str], bool] = lambda _: True,
        mine: Callable[[str], list[str]] = lambda _: [],
        recovery_age: float | None = None,
    ) -> None:
        self.store = store
        # In a fleet (`daemon.fleet`), recovery takes only runs of schedules this member
        # owns that it is not launching or following itself (`mine`), and only once they
        # are `recovery_age` seconds old: younger, one may be a live member's launch in
        # flight. None: a lone daemon recovers all, at start-up.
        self._owns = owns
        self._mine = mine
        self.recovery_age = recovery_age
        self._recovered: set[str] = set()
        self.clock = clock
        self._directory = directory
        self._settings = settings
        self._finisher = finisher
        self._report = report
        self._launch = launch
        self._follow = follow
        self._in_progress = in_progress
        self._admit = admit
        self.pacer = Pacer(rate=lambda: settings().catchup_rate, release=self._release)
        self._closing = False

    async def close(self) -> int:
        """Launch nothing more; answer how many were left queued (the next start relaunches
        them: their runs stay `launching`, never dispatched)."""
        self._closing = True
        return await self.pacer.close()

    # -- recovery --------------------------------------------------------------------------

    async def recover(self, now: datetime, *, idempotent: Callable[[Schedule], bool]) -> Recovered:
        """Follow the runs left `running` again (fail those whose schedule is gone);
        interrupt the stuck `launching` runs that may have reached the session service;
        queue the others (relaunch, re-send).

        A fleet member calls it again from time to time: a member that stopped may have
        left runs unfinished at any moment.
        """
        runs = [run for run in await self.store.unfinished_runs() if self._recoverable(run, now)]
        schedules = await self.store.get_schedules({run.schedule_id for run in runs})
        window = self._settings().catchup_window
        ended, pending, followed = [], [], []
        for run in runs:
            schedule = schedules.get(run.schedule_id)
            resendable = schedule is not None and idempotent(schedule)
            plan = plan_recovery(run, schedule, now, default_window=window, idempotent=resendable)
            about = {"schedule_id": run.schedule_id, "run_id": run.id, "note": plan.note}
            if plan.action == Recovery.FOLLOW and schedule is not None and run.session_id:
                followed.append(Followed(run, run.session_id, schedule, at_once=True))
                log.info("run_recovered", **about)
            elif plan.action == Recovery.ABANDON:
                failed = RunStatus.FAILED
                ended.append(RunOutcome(run.id, failed, now, run.attempts, error=plan.note))
            elif plan.action == Recovery.INTERRUPT or schedule is None:
                status = RunStatus.INTERRUPTED
                ended.append(RunOutcome(run.id, status, finished_at=now, error=plan.note))
            else:
                resend = plan.action == Recovery.RESEND
                pending.append(PendingLaunch(run, schedule, plan.deadline, plan.note, resend))
                log.info("run_recovered", **about)
        max_failures = self._settings().max_consecutive_failures
        finished = await self.store.finish_runs(ended, max_consecutive_failures=max_failures)
        self._report(finished)
        for item in followed:
            self._follow(item)
        self._recovered.update(run.id for run in runs)  # each once, not at every sweep
        self.pacer.add(pending)
        return Recovered(len(ended), pending, len(followed))

    def _recoverable(self, run: Run, now: datetime) -> bool:
        if self.recovery_age is None:
            return True
        if run.id in self._recovered or not self._owns(run.schedule_id):
            return False
        if run.id in self._mine(run.schedule_id):
            return False
        return run.started_at <= now - timedelta(seconds=self.recovery_age)

    # -- missed instants -------------------------------------------------------------------

    async def settle(self, schedules: Iterable[Schedule], now: datetime) -> Settled:
        """Apply the catch-up rules to schedules whose `next_run_at` passed unfired.

        An instant an earlier process claimed costs no pacing budget.
        """
        window = self._settings().catchup_window
        plans = {}
        for schedule in schedules:
            if schedule.next_run_at is not None:
                plan = plan_catchup(schedule, schedule.next_run_at, now, default_window=window)
                plans[schedule.id] = (schedule, plan)
        moves, runs, retired = [], [], []
        for schedule, plan in plans.values():
            if plan.catchup_at is None and schedule.schedule_type == ScheduleType.ONE_TIME:
                retired.append(schedule)
                continue
            moves.append((schedule.id, schedule.next_run_at, plan.next_run_at))
            runs.extend(_settling_runs(schedule, plan, now))
        moved, claimed = await self.store.claim_catchups(moves, runs)
        queued = self._queue(claimed, plans)
        await self._retire(retired, plans, now)
        return Settled(
            moved=[(plans[sid][0], plans[sid][1].next_run_at) for sid in moved],
            retired=[schedule.id for schedule in retired],
            queued=queued,
        )

    async def _retire(
        self,
        retired: Sequence[Schedule],
        plans: dict[str, tuple[Schedule, CatchupPlan]],
        now: datetime,
    ) -> None:
        """One_time schedules whose instant is past its window: record it missed, disable."""
        missed = [run for s in retired for run in _settling_runs(s, plans[s.id][1], now)]
        self._queue(await self.store.claim_runs(missed), plans)
        for schedule in retired:
            assert schedule.next_run_at is not None
            await self.store.disable_if_due(schedule.id, schedule.next_run_at, now=now)

    def _queue(self, claimed: Sequence[Run], plans: dict[str, tuple[Schedule, CatchupPlan]]) -> int:
        """Log the missed runs; queue the catch-ups, each to be dropped once its schedule's
        next regular instant is due (a one_time schedule has none)."""
        pending = []
        for run in claimed:
            schedule, plan = plans[run.schedule_id]
            about = {"schedule_id": run.schedule_id, "run_id": run.id}
            scheduled_for = run.scheduled_for.isoformat()
            if run.status == RunStatus.MISSED:
                metrics.RUNS.labels(RunStatus.MISSED.value).inc()
                metrics.MISSED_RUNS.inc()
                log.warning("run_missed", **about, scheduled_for=scheduled_for, error=run.error)
                continue
            one_time = schedule.schedule_type == ScheduleType.ONE_TIME
            pending.append(PendingLaunch(run, schedule, None if one_time else plan.next_run_at))
            log.info(
                "catchup_scheduled", **about, scheduled_for=scheduled_for, window_s=plan.window
            )
        self.pacer.add(pending)
        return len(pending)

    # -- release ---------------------------------------------------------------------------

    async def _release(self, batch: Sequence[PendingLaunch]) -> int:
        """The pacer's turn: launch each queued run, or end it as `catchup_release` says.
        Answers how many launched (only those spend the pacing budget)."""
        if self._closing:
            return 0
        current = await self.store.get_schedules({item.run.schedule_id for item in batch})
        now, launched, dropped = self.clock.now(), 0, []
        for item in batch:
            schedule = current.get(item.run.schedule_id)
            verdict = self._verdict(item, schedule, now)
            if verdict is not None and verdict.reason is not None:
                metrics.RUNS_SKIPPED.labels(verdict.reason.value).inc()
            if verdict is not None or schedule is None:
                error = verdict.error if verdict else "catch-up dropped: the schedule is gone"
                status = verdict.status if verdict else RunStatus.MISSED
                dropped.append(RunOutcome(item.run.id, status, finished_at=now, error=error))
                continue
            identity = fire_identity(schedule, self._directory.current)
            log_fired(item.run, identity, now)
            self._launch(Launch(schedule, item.run, identity, item.note, item.resend))
            launched += 1
        if dropped:
            await asyncio.gather(*(self._finisher.finish(outcome) for outcome in dropped))
        return launched

    def _verdict(
        self, item: PendingLaunch, schedule: Schedule | None, now: datetime
    ) -> Dropped | None:
        """Whether the queued run is dropped; if it launches, it is admitted (org limits)."""
        if item.run.trigger == RunTrigger.BACKFILL:
            dropped = backfill_release(schedule)
        else:
            in_progress = self._in_progress(item.run.schedule_id)
            dropped = catchup_release(schedule, item.deadline, now, in_flight=in_progress)
        if dropped is not None or schedule is None:
            return dropped
        refusal = self._admit(schedule, item.run, now)
        if refusal is None:
            return None
        return Dropped(RunStatus.SKIPPED, refusal.error, refusal.reason)

    def queue_backfill(self, schedule: Schedule, runs: Sequence[Run]) -> None:
        """Launch claimed backfill runs at the catch-up rate, behind what is queued already."""
        self.pacer.add(PendingLaunch(run, schedule, deadline=None) for run in runs)


def _settling_runs(schedule: Schedule, plan: CatchupPlan, now: datetime) -> list[Run]:
    """The `missed` run of a plan's older instants and the `launching` catch-up run."""
    runs = []
    if plan.missed is not None:
        runs.append(
            Run(
                schedule_id=schedule.id,
                scheduled_for=plan.missed.first,
                trigger=natural_trigger(schedule),
                started_at=now,
                status=RunStatus.MISSED,
                finished_at=now,
                error=plan.missed_error(),
            )
        )
    if plan.catchup_at is not None:
        runs.append(
            Run(
                schedule_id=schedule.id,
                scheduled_for=plan.catchup_at,
                trigger=RunTrigger.CATCHUP,
                started_at=now,
            )
        )
    return runs
