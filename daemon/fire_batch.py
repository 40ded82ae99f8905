"""A fire batch: due instants claimed as runs, launched, and their schedules moved on.

A timer going off (or a buffered fire released) hands a batch of `Fire`s to `FireBatches`:
the batch's schedules are read, each fire is decided (overlap, org limits), the runs are
claimed in one transaction (unique per schedule and instant, so nothing fires twice), the
claimed ones are launched, and each schedule's `next_run_at` is advanced with a
compare-and-set from the instant that fired, so an edit made meanwhile wins. The schedules
that moved are then timed again, or caught up if their next instant is already behind.

`FireBatches` owns the bookkeeping those steps share with refills and edits: which
schedules are between their timer and their advance (`is_firing`), and which were just
advanced and are still to be timed by the batch moving them (`edited` takes one out).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog

from daemon import metrics
from daemon.catchup import CatchUp, Moved
from daemon.config import SchedulerConfig
from daemon.fires import Decision, Fire, current_schedules, run_for, skipped_over_limit, yielding
from daemon.firing import OverlapAction, Timer, fire_identity, is_behind, overlap_action, timer_for
from daemon.horizon import Horizon
from daemon.launching import Launch, log_fired
from daemon.org_limits import OrgUsage, SkipReason
from daemon.slots import LaunchSlots
from daemon.timers import TimerBook
from storage.clock import Clock
from storage.domain import Schedule
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.engine")


@dataclasses.dataclass(frozen=True, slots=True)
class BatchParts:
    """The engine's parts a batch reads and feeds (each through its public methods)."""

    slots: LaunchSlots[Fire]
    usage: OrgUsage
    timers: TimerBook
    horizon: Horizon
    catchup: CatchUp


class FireBatches:
    """Fires batches of due instants; times the schedules they move on."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        directory: DirectoryRef,
        settings: Callable[[], SchedulerConfig],
        parts: BatchParts,
        launch: Callable[[Launch], None],
        owns: Callable[[str], bool],
        active: Callable[[], bool],
    ) -> None:
        self._store = store
        self._clock = clock
        self._directory = directory
        self._settings = settings
        self._parts = parts
        self._launch = launch
        self._owns = owns
        self._active = active
        # Schedules between a timer firing and their advance, with the instant fired from:
        # refills and edits leave those alone.
        self._firing: dict[str, datetime] = {}
        # Schedules just advanced whose timers are still to be set, by the batch setting them.
        self._following: dict[str, int] = {}
        self._batch_numbers = itertools.count()

    # -- what refills and edits ask --------------------------------------------------------

    def begin(self, timer: Timer) -> Fire:
        """The timer went off: its schedule is firing from its instant until advanced."""
        self._firing[timer.schedule_id] = timer.instant
        return Fire.of_timer(timer)

    def is_firing(self, schedule_id: str, instant: datetime) -> bool:
        """Whether the schedule is firing from `instant` (its advance is still to come)."""
        return self._firing.get(schedule_id) == instant

    def edited(self, schedule_id: str) -> None:
        """An edit re-times the schedule itself: a batch moving it must leave it alone."""
        self._following.pop(schedule_id, None)

    # -- the batch -------------------------------------------------------------------------

    async def fire(self, fires: Sequence[Fire]) -> None:
        """Claim the batch in one transaction, launch it, then advance its schedules."""
        try:
            if not self._active():
                return
            schedules = await current_schedules(self._store, fires)
            now = self._clock.now()
            decisions = []
            async for fire in yielding(fires):
                if decision := self._decide(fire, schedules.get(fire.schedule_id), now):
                    decisions.append(decision)
            runs = [decision.run for decision in decisions if decision.run is not None]
            claimed = {run.id for run in await self._store.claim_runs(runs)}
            if log.is_enabled_for(logging.DEBUG):  # one event a batch; its ids only at debug
                committed_at = time.time()  # the claim's commit was just handed back
                log.debug("fire_batch_claimed", committed_at=committed_at, run_ids=list(claimed))
            async for decision in yielding(decisions):
                self._carry_out(decision, claimed, now)
            await self._advance(decisions, now)
        finally:
            for fire in fires:
                if fire.expected is not None and self.is_firing(fire.schedule_id, fire.expected):
                    del self._firing[fire.schedule_id]

    def _decide(self, fire: Fire, schedule: Schedule | None, now: datetime) -> Decision | None:
        if schedule is None or not schedule.is_active:
            return None  # deleted or disabled since the timer was set
        if fire.expected is not None and schedule.next_run_at != fire.expected:
            return None  # edited since: the edit re-timed it
        slots = self._parts.slots
        identity = fire_identity(schedule, self._directory.current)
        action = OverlapAction.FIRE
        if fire.expected is not None:
            in_progress = slots.in_progress(schedule.id)
            buffered = slots.is_buffered(schedule.id)
            action = overlap_action(schedule, in_flight=in_progress, buffered=buffered)
        running = slots.running(schedule.id) if action == OverlapAction.SKIP else ()
        run = run_for(fire, schedule, identity, action, now, running=running)
        refusal = None
        if run is not None and action == OverlapAction.FIRE:
            refusal = self._parts.usage.admit_run(schedule, run, now)
            if refusal is not None:
                run = skipped_over_limit(run, refusal, now)
        return Decision(fire, schedule, identity, action, run, refusal)

    def _carry_out(self, decision: Decision, claimed: set[str], now: datetime) -> None:
        schedule, fire, run = decision.schedule, decision.fire, decision.run
        # Keyword arguments rather than a bound logger: binding costs as much as logging.
        about = {"schedule_id": schedule.id, "scheduled_for": fire.instant.isoformat()}
        if decision.action == OverlapAction.BUFFER:
            self._parts.slots.buffer(schedule.id, fire.buffered(schedule))
            log.info("run_buffered", **about, reason="the previous run is still in progress")
            return
        if run is None or run.id not in claimed:
            if run is not None and decision.action == OverlapAction.FIRE:
                self._parts.usage.forget(schedule.org_id, run.id)
            return  # this instant was claimed before (a restart, or another process)
        if run.status == RunStatus.SKIPPED:
            reason = decision.refusal.reason if decision.refusal else SkipReason.OVERLAP
            metrics.RUNS.labels(RunStatus.SKIPPED.value).inc()
            metrics.RUNS_SKIPPED.labels(reason.value).inc()
            log.info("run_skipped", **about, run_id=run.id, reason=reason.value, error=run.error)
            return
        log_fired(run, decision.identity, now)
        self._launch(Launch(schedule, run, decision.identity))

    async def _advance(self, decisions: Sequence[Decision], now: datetime) -> None:
        """Move each fired schedule's `next_run_at` on, unless it was edited meanwhile."""
        moves = {
            decision.schedule.id: (decision.schedule, decision.fire.next_run_at(decision.schedule))
            for decision in decisions
            if decision.fire.expected is not None
        }
        if not moves:
            return
        moved = await self._store.advance_schedules(
            [(sid, schedule.next_run_at, following) for sid, (schedule, following) in moves.items()]
        )
        await self.follow([moves[schedule_id] for schedule_id in moved], now)

    # -- after a move ----------------------------------------------------------------------

    async def follow(self, advanced: Sequence[Moved], now: datetime) -> None:
        """After schedules moved to their next instant: hold timers, catch up those behind.

        Lets the loop run every `STEP` schedules. An edit arriving meanwhile re-times its
        schedule itself (`edited` takes it out of `_following`), and is left alone here.
        """
        batch = next(self._batch_numbers)
        for schedule, _ in advanced:
            self._parts.horizon.touch(schedule.id)
            self._following[schedule.id] = batch
        behind = []
        try:
            async for schedule, following in yielding(advanced):
                if self._following.get(schedule.id) != batch:
                    continue
                del self._following[schedule.id]
                if following is None or not self._owns(schedule.id):
                    continue
                if is_behind(following, now, self._settings().missed_run_grace):
                    behind.append(dataclasses.replace(schedule, next_run_at=following))
                elif self._parts.horizon.within(following):
                    moved = dataclasses.replace(schedule, next_run_at=following)
                    self._parts.timers.hold(timer_for(moved, following))
        finally:
            for schedule, _ in advanced:
                if self._following.get(schedule.id) == batch:
                    del self._following[schedule.id]
        if behind:
            await self.catch_up(behind, now)

    async def catch_up(self, schedules: Iterable[Schedule], now: datetime) -> int:
        """Settle missed instants (see `CatchUp.settle`) and time what moved on; answers
        how many catch-ups were queued."""
        settled = await self._parts.catchup.settle(schedules, now)
        for schedule_id in settled.retired:
            self._parts.horizon.touch(schedule_id)
        await self.follow(settled.moved, now)
        return settled.queued
