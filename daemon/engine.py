"""The firing engine: turns due instants into runs (DESIGN sections 3 and 4).

The database is the source of truth. Every schedule's next nominal instant is its indexed
`next_run_at`; the engine holds timers only for instants within `settings.horizon`. An
APScheduler (3.x, memory job store) instance is the timer and nothing else: one date job per
distinct due instant (jitter included) carrying the ids due then, and one interval job that
refills the horizon from the index. Start-up reads the missed instants and the horizon, never
the whole table, so neither its time nor the memory grows with the number of schedules.

A due batch is claimed in one transaction (a Run per instant, unique per schedule and
instant, so nothing fires twice), launched concurrently over the shared launcher (at most
`max_concurrent_launches` at once), and each schedule's `next_run_at` is then advanced with a
compare-and-set from the instant that fired, so an edit made meanwhile wins. Outcomes are
folded into the store in batched transactions (`daemon.finisher`) and reported to
`on_finished`.

Instants nobody held a timer for (the daemon was down, or the loop fell behind) go through
the catch-up rules of `daemon.firing`: at most one catch-up run per schedule, the rest
recorded as one `missed` run, catch-up launches paced at `catchup_rate` per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from daemon import metrics
from daemon.config import SchedulerConfig
from daemon.finisher import Finisher
from daemon.firing import (
    CatchupPlan,
    FireIdentity,
    OverlapAction,
    Recovery,
    Timer,
    catchup_release,
    fire_identity,
    is_behind,
    natural_trigger,
    next_after_fire,
    overlap_action,
    plan_catchup,
    plan_recovery,
    timer_for,
)
from daemon.launchers import Launcher, LaunchRequest, LaunchResult
from daemon.pacer import Pacer, PendingLaunch
from storage.clock import Clock
from storage.domain import FinishedRun, Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.errors import StoreUnavailable
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.engine")
T = TypeVar("T")

PAGE = 1000
"""Schedules read from the `next_run_at` index per query."""
STEP = 200
"""Fires handled between two turns of the event loop (see `_yielding`)."""
RECOUNT_DELAY = 1.0
"""Seconds after an edit before the enabled-schedules gauge is recounted."""
FINISH_CLOSE_TIMEOUT = 5.0
"""Seconds a stopping engine waits for the last outcomes to commit (the store may be down)."""
_UTC_TICK = timedelta(microseconds=1)


def _ignore_finished(_: FinishedRun) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Fire:
    """A due instant on its way to a run.

    `expected` is the `next_run_at` the store must still hold for the fire to go ahead (and
    the compare-and-set value of the advance); None for a buffered fire, which no longer
    advances anything. `following` is where `next_run_at` goes afterwards, computed as
    `next_after_fire(schedule, following_after)` for schedule `version`. `known` is the
    schedule as read when the fire was planned (see `Engine._current`).
    """

    schedule_id: str
    instant: datetime
    expected: datetime | None
    trigger: RunTrigger | None
    following: datetime | None
    following_after: datetime
    version: int
    known: Schedule | None = None

    @classmethod
    def of_timer(cls, timer: Timer) -> _Fire:
        return cls(
            timer.schedule_id,
            timer.instant,
            timer.instant,
            None,
            timer.following,
            timer.instant,
            timer.version,
            timer.schedule,
        )

    def next_run_at(self, schedule: Schedule) -> datetime | None:
        if schedule.version == self.version:
            return self.following
        return next_after_fire(schedule, self.following_after)


@dataclass(frozen=True, slots=True)
class _Decision:
    """What one fire of a batch does: its schedule as read now, the run, and the action."""

    fire: _Fire
    schedule: Schedule
    identity: FireIdentity
    action: OverlapAction
    run: Run | None


class Engine:
    """Fires schedules; implements `api.ports.ScheduleEvents` for the HTTP layer."""

    def __init__(
        self,
        store: Store,
        *,
        directory: DirectoryRef,
        clock: Clock,
        settings: SchedulerConfig,
        launcher: Launcher,
        on_finished: Callable[[FinishedRun], None] = _ignore_finished,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.settings = settings
        self._launcher = launcher
        self._on_finished = on_finished
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._semaphore = asyncio.Semaphore(settings.max_concurrent_launches)
        self._finisher = Finisher(
            store, max_failures=lambda: self.settings.max_consecutive_failures, report=self._report
        )
        self._pacer = Pacer(rate=lambda: self.settings.catchup_rate, release=self._release_catchups)
        # Timers within the horizon: by schedule, and the schedule ids of each fire instant.
        self._timers: dict[str, Timer] = {}
        self._batches: dict[datetime, set[str]] = {}
        self._loaded_until: datetime | None = None
        # Schedules between a timer firing (or a queued catch-up) and their advance, with the
        # `next_run_at` they are being fired from: refills and edits leave those alone.
        self._busy: dict[str, datetime] = {}
        # Schedules just advanced whose timers are still to be set, by the batch setting them.
        self._following: dict[str, object] = {}
        # Schedules touched since a refill began reading: its (older) rows must not win.
        self._epoch = 0
        self._touched: dict[str, int] = {}
        # Runs this process launched and has not finished, by schedule (for overlap).
        self._in_flight: dict[str, set[str]] = {}
        self._buffered: dict[str, _Fire] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launches: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[Any]] = []
        self._fatal: asyncio.Future[None] | None = None
        self._running = False
        self._stopping = False
        self._refilling = False
        self._last_refill = 0.0
        self._recount: asyncio.Task[Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover runs a crash left `launching`, catch up missed instants, start the timer."""
        self._fatal = asyncio.get_running_loop().create_future()
        now = self.clock.now()
        interrupted, relaunches = await self._recover(now)
        self._background = [
            self._finisher.start(),
            self._pacer.start(),
            asyncio.create_task(self._supervise(), name="engine-timer"),
        ]
        self._running = True
        self._pacer.add(relaunches)
        missed, catchups = await self._catch_up_missed(now)
        self._scheduler.start()
        await self._refill()
        self._background.append(asyncio.create_task(self._refill_loop(), name="engine-refill"))
        self._spawn(self._guarded("count", self._count_enabled()), "count")
        log.info(
            "engine_started",
            interrupted=interrupted,
            relaunched=sum(1 for item in relaunches if not item.resend),
            resent=sum(1 for item in relaunches if item.resend),
            catchups=catchups,
            missed_schedules=missed,
            timers=len(self._timers),
            horizon_s=self.settings.horizon,
        )

    def stop_claiming(self) -> None:
        """Fire nothing new (timers, catch-ups, buffered runs); launches in flight go on.

        The daemon calls this as soon as it is told to stop, before it drains the HTTP server.
        """
        if not self._running:
            return
        self._running, self._stopping = False, True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._buffered.clear()

    async def stop(self, grace: float) -> None:
        """Stop claiming; wait up to `grace` s for launches in flight, then cancel them.

        A cancelled launch's run stays `launching`: the next start marks it `interrupted`.
        """
        if not self._background:
            return
        self.stop_claiming()
        if self._recount is not None:
            self._recount.cancel()
        left = await self._pacer.close()
        cancelled = await self._wait_for_launches(grace)
        await self._finisher.close(FINISH_CLOSE_TIMEOUT)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        log.info("engine_stopped", cancelled_launches=cancelled, catchups_left=left)

    async def _wait_for_launches(self, grace: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (pending := self._tasks | self._launches) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(pending, timeout=left)
        pending = self._tasks | self._launches
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    def background_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks whose end means the engine is broken (the daemon then exits non-zero)."""
        return list(self._background)

    def healthy(self) -> bool:
        """The timer runs and the horizon was refilled recently."""
        if not self._running or self._fatal is None or self._fatal.done():
            return False
        overdue = 3 * self._refill_interval + 30.0
        return self._scheduler.running and time.monotonic() - self._last_refill < overdue

    def set_launcher(self, launcher: Launcher) -> None:
        """New fires use `launcher`; launches in flight finish on the old one."""
        self._launcher = launcher

    def update_settings(self, settings: SchedulerConfig) -> None:
        """Apply new scheduler settings without dropping a timer."""
        previous, self.settings = self.settings, settings
        if settings.max_concurrent_launches != previous.max_concurrent_launches:
            self._semaphore = asyncio.Semaphore(settings.max_concurrent_launches)
        if settings.horizon != previous.horizon and self._running:
            self._spawn(self._on_refill(), "refill")  # the loop takes the new interval next

    @property
    def _refill_interval(self) -> float:
        return self.settings.horizon / 2

    async def _refill_loop(self) -> None:
        """Refill the horizon every half horizon, on the monotonic clock: an interval job of
        APScheduler runs on the wall clock, and would stall for as long as the wall clock
        was set back."""
        while True:
            await asyncio.sleep(self._refill_interval)
            await self._on_refill()

    async def _supervise(self) -> None:
        """Ends (raising) when the engine hits an error it cannot carry on from."""
        assert self._fatal is not None
        await self._fatal

    def _fail(self, error: BaseException) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_exception(error)

    # -- ScheduleEvents --------------------------------------------------------------------

    async def changed(self, schedule: Schedule) -> None:
        """Re-time `schedule` as stored now; returns once the timers reflect it."""
        if not self._running:
            return  # start() reads every schedule's state from the store
        self._touch(schedule.id)
        self._recount_soon()
        self._following.pop(schedule.id, None)
        self._drop_timer(schedule.id)
        if not schedule.is_active:
            self._buffered.pop(schedule.id, None)
        instant = schedule.next_run_at
        if not schedule.is_active or instant is None or self._busy.get(schedule.id) == instant:
            return
        now = self.clock.now()
        if is_behind(instant, now, self.settings.missed_run_grace):
            await self._catch_up([schedule], now)
        elif self._within_horizon(instant):
            self._hold(timer_for(schedule, instant))

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        """Fire `schedule` now (trigger `manual`, overlap not applied); the run is `launching`."""
        identity = fire_identity(schedule, self.directory.current)
        now = self.clock.now()
        for nudge in range(3):  # two manual runs in the same microsecond: take the next one
            instant = now + nudge * _UTC_TICK
            run = Run(
                schedule_id=schedule.id,
                scheduled_for=instant,
                trigger=RunTrigger.MANUAL,
                started_at=now,
                identity=identity.user_id,
            )
            if await self.store.claim_runs([run]):
                log.info(
                    "schedule_fired",
                    schedule_id=schedule.id,
                    run_id=run.id,
                    trigger=RunTrigger.MANUAL.value,
                    scheduled_for=instant.isoformat(),
                    identity=identity.user_id,
                    triggered_by=by,
                )
                self._start_launch(schedule, run, identity)
                return run
        raise RuntimeError(f"could not claim a manual run of {schedule.id}")

    # -- timers ----------------------------------------------------------------------------

    def _within_horizon(self, instant: datetime) -> bool:
        return self._loaded_until is not None and instant <= self._loaded_until

    def _hold(self, timer: Timer) -> None:
        """Hold `timer` (replacing the schedule's previous one) in its instant's batch."""
        self._drop_timer(timer.schedule_id)
        self._timers[timer.schedule_id] = timer
        batch = self._batches.get(timer.fire_at)
        if batch is None:
            batch = self._batches[timer.fire_at] = set()
            self._scheduler.add_job(
                self._on_timer,
                DateTrigger(run_date=timer.fire_at),
                args=[timer.fire_at],
                id=_job_id(timer.fire_at),
                misfire_grace_time=None,
                replace_existing=True,
            )
        batch.add(timer.schedule_id)
        metrics.TIMERS_HELD.set(len(self._timers))

    def _drop_timer(self, schedule_id: str) -> None:
        timer = self._timers.pop(schedule_id, None)
        if timer is None:
            return
        metrics.TIMERS_HELD.set(len(self._timers))
        batch = self._batches.get(timer.fire_at)
        if batch is None:
            return
        batch.discard(schedule_id)
        if not batch:
            del self._batches[timer.fire_at]
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(_job_id(timer.fire_at))

    async def _on_timer(self, fire_at: datetime) -> None:
        """An instant's timer went off: fire every schedule still in its batch.

        A timer that goes off late (the wall clock jumped forward, or the loop stalled) is a
        missed instant: it goes through the catch-up rules, as one a refill finds, so a jump
        never launches both the held instant and a catch-up.
        """
        fires, late = [], []
        now = self.clock.now()
        for schedule_id in self._batches.pop(fire_at, set()):
            timer = self._timers.pop(schedule_id, None)
            if timer is None or timer.fire_at != fire_at:
                continue
            if is_behind(timer.fire_at, now, self.settings.missed_run_grace):
                late.append(dataclasses.replace(timer.schedule, next_run_at=timer.instant))
                continue
            self._busy[schedule_id] = timer.instant
            fires.append(_Fire.of_timer(timer))
        metrics.TIMERS_HELD.set(len(self._timers))
        if late:
            self._spawn(self._guarded("catchup", self._catch_up(late, now)), "catchup-late")
        if fires:
            self._spawn(self._guarded("fire", self._fire(fires)), "fire")

    def _touch(self, schedule_id: str) -> None:
        self._epoch += 1
        self._touched[schedule_id] = self._epoch

    async def _on_refill(self) -> None:
        if self._refilling or not self._running:
            return
        self._refilling = True
        try:
            await self._guarded("refill", self._refill())
            await self._guarded("refill", self._count_enabled())
        finally:
            self._refilling = False

    def _recount_soon(self) -> None:
        """Let the enabled-schedules gauge follow an edit within `RECOUNT_DELAY` (one count,
        which reads the whole index, for any number of edits meanwhile)."""
        if self._recount is None or self._recount.done():
            self._recount = asyncio.create_task(self._recount_later(), name="count")

    async def _recount_later(self) -> None:
        await asyncio.sleep(RECOUNT_DELAY)
        await self._guarded("count", self._count_enabled())

    async def _count_enabled(self) -> None:
        # Not at start-up: a count reads the whole table, the start reads only the horizon.
        metrics.SCHEDULES_ENABLED.set(await self.store.count_active_schedules())

    async def _refill(self) -> None:
        """Hold a timer for every schedule due within the horizon; catch up those behind."""
        now = self.clock.now()
        self._loaded_until = now + timedelta(seconds=self.settings.horizon)
        since = self._epoch
        behind: list[Schedule] = []
        async for page in self._due_pages(self._loaded_until):
            behind.extend(self._hold_page(page, now, since))
        self._touched = {k: epoch for k, epoch in self._touched.items() if epoch > since}
        if behind:
            await self._catch_up(behind, now)
        self._last_refill = time.monotonic()

    def _hold_page(self, page: Sequence[Schedule], now: datetime, since: int) -> list[Schedule]:
        """Hold timers for the page's schedules that need one; return those that are behind."""
        behind = []
        for schedule in page:
            instant = schedule.next_run_at
            if instant is None or self._touched.get(schedule.id, 0) > since:
                continue  # changed since the page was read: memory is newer than the row
            if self._busy.get(schedule.id) == instant:
                continue
            held = self._timers.get(schedule.id)
            if held is not None and (held.instant, held.version) == (instant, schedule.version):
                continue
            if is_behind(instant, now, self.settings.missed_run_grace):
                self._drop_timer(schedule.id)
                behind.append(schedule)
            else:
                self._hold(timer_for(schedule, instant))
        return behind

    async def _due_pages(self, until: datetime) -> AsyncIterator[list[Schedule]]:
        after: tuple[datetime, str] | None = None
        while True:
            page = await self.store.due_schedules(until, limit=PAGE, after=after)
            if page:
                yield page
            if len(page) < PAGE:
                return
            last = page[-1]
            assert last.next_run_at is not None
            after = (last.next_run_at, last.id)

    # -- firing ----------------------------------------------------------------------------

    async def _fire(self, fires: Sequence[_Fire]) -> None:
        """Claim the batch in one transaction, launch it, then advance its schedules."""
        try:
            if self._stopping:
                return
            schedules = await self._current(fires)
            now = self.clock.now()
            decisions = []
            async for fire in _yielding(fires):
                if decision := self._decide(fire, schedules.get(fire.schedule_id), now):
                    decisions.append(decision)
            runs = [decision.run for decision in decisions if decision.run is not None]
            claimed = {run.id for run in await self.store.claim_runs(runs)}
            async for decision in _yielding(decisions):
                self._carry_out(decision, claimed, now)
            await self._advance(decisions, now)
        finally:
            for fire in fires:
                if fire.expected is not None and self._busy.get(fire.schedule_id) == fire.expected:
                    del self._busy[fire.schedule_id]

    async def _current(self, fires: Sequence[_Fire]) -> dict[str, Schedule]:
        """The schedules of `fires` as stored now (deleted ones may be present, marked so).

        A fire's `known` schedule stands for the stored one while its `version` is unchanged,
        with the few fields that change without a version bump read afresh: for a large
        batch that is a small fraction of reading every schedule whole.
        """
        states = await self.store.fire_states(fire.schedule_id for fire in fires)
        current, unknown = {}, []
        for fire in fires:
            state, known = states.get(fire.schedule_id), fire.known
            if state is None:
                continue
            if known is None or known.version != state.version:
                unknown.append(fire.schedule_id)
            else:
                current[fire.schedule_id] = state.applied_to(known)
        if unknown:
            current.update(await self.store.get_schedules(unknown))
        return current

    def _decide(self, fire: _Fire, schedule: Schedule | None, now: datetime) -> _Decision | None:
        if schedule is None or not schedule.is_active:
            return None  # deleted or disabled since the timer was set
        if fire.expected is not None and schedule.next_run_at != fire.expected:
            return None  # edited since: the edit re-timed it
        identity = fire_identity(schedule, self.directory.current)
        action = OverlapAction.FIRE
        if fire.expected is not None:
            running = len(self._in_flight.get(schedule.id, ()))
            buffered = schedule.id in self._buffered
            action = overlap_action(schedule, in_flight=running, buffered=buffered)
        run = self._run_for(fire, schedule, identity, action, now)
        return _Decision(fire, schedule, identity, action, run)

    def _run_for(
        self,
        fire: _Fire,
        schedule: Schedule,
        identity: FireIdentity,
        action: OverlapAction,
        now: datetime,
    ) -> Run | None:
        run = Run(
            schedule_id=schedule.id,
            scheduled_for=fire.instant,
            trigger=fire.trigger or natural_trigger(schedule),
            started_at=now,
            identity=identity.user_id,
        )
        if action == OverlapAction.FIRE:
            return run
        if action == OverlapAction.BUFFER:
            return None
        previous = ", ".join(sorted(self._in_flight.get(schedule.id, ())))
        return dataclasses.replace(
            run,
            status=RunStatus.SKIPPED,
            finished_at=now,
            error=f"skipped: the previous run ({previous}) was still in progress",
        )

    def _carry_out(self, decision: _Decision, claimed: set[str], now: datetime) -> None:
        schedule, fire, run = decision.schedule, decision.fire, decision.run
        # Keyword arguments rather than a bound logger: binding costs as much as logging.
        about = {"schedule_id": schedule.id, "scheduled_for": fire.instant.isoformat()}
        if decision.action == OverlapAction.BUFFER:
            self._buffered[schedule.id] = dataclasses.replace(
                fire, expected=None, trigger=fire.trigger or natural_trigger(schedule)
            )
            log.info("run_buffered", **about, reason="the previous run is still in progress")
            return
        if run is None or run.id not in claimed:
            return  # this instant was claimed before (a restart, or another process)
        if run.status == RunStatus.SKIPPED:
            metrics.RUNS.labels(RunStatus.SKIPPED.value).inc()
            log.info("run_skipped", **about, run_id=run.id, error=run.error)
            return
        self._log_fired(schedule, run, decision.identity, now)
        self._start_launch(schedule, run, decision.identity)

    @staticmethod
    def _log_fired(schedule: Schedule, run: Run, identity: FireIdentity, now: datetime) -> None:
        lateness = (now - run.scheduled_for).total_seconds()
        metrics.FIRE_LATENESS.observe(max(lateness, 0.0))
        if run.trigger == RunTrigger.CATCHUP:
            metrics.CATCHUP_RUNS.inc()
        log.info(
            "schedule_fired",
            schedule_id=schedule.id,
            run_id=run.id,
            trigger=run.trigger.value,
            identity=identity.user_id,
            lateness_s=round(lateness, 3),
        )

    async def _advance(self, decisions: Sequence[_Decision], now: datetime) -> None:
        """Move each fired schedule's `next_run_at` on, unless it was edited meanwhile."""
        moves = {
            decision.schedule.id: (decision.schedule, decision.fire.next_run_at(decision.schedule))
            for decision in decisions
            if decision.fire.expected is not None
        }
        if not moves:
            return
        moved = await self.store.advance_schedules(
            [(sid, schedule.next_run_at, following) for sid, (schedule, following) in moves.items()]
        )
        await self._follow([moves[schedule_id] for schedule_id in moved], now)

    async def _follow(
        self, advanced: Sequence[tuple[Schedule, datetime | None]], now: datetime
    ) -> None:
        """After schedules moved to their next instant: hold timers, catch up those behind.

        Lets the loop run every `STEP` schedules. An edit arriving meanwhile re-times its
        schedule itself (`changed` takes it out of `_following`), and is left alone here.
        """
        token = object()
        for schedule, _ in advanced:
            self._touch(schedule.id)
            self._following[schedule.id] = token
        behind = []
        try:
            async for schedule, following in _yielding(advanced):
                if self._following.get(schedule.id) is not token:
                    continue
                del self._following[schedule.id]
                if following is None:
                    continue
                if is_behind(following, now, self.settings.missed_run_grace):
                    behind.append(dataclasses.replace(schedule, next_run_at=following))
                elif self._within_horizon(following):
                    moved = dataclasses.replace(schedule, next_run_at=following)
                    self._hold(timer_for(moved, following))
        finally:
            for schedule, _ in advanced:
                if self._following.get(schedule.id) is token:
                    del self._following[schedule.id]
        if behind:
            await self._catch_up(behind, now)

    # -- catch-up --------------------------------------------------------------------------

    async def _recover(self, now: datetime) -> tuple[int, list[PendingLaunch]]:
        """Deal with the runs an earlier process left `launching` (see `plan_recovery`):
        interrupt those that may have reached the session service; answer how many, and the
        relaunches and re-sends to queue behind the pacer."""
        runs = await self.store.launching_runs()
        schedules = await self.store.get_schedules({run.schedule_id for run in runs})
        idempotent = self._launcher.idempotent
        interrupted, pending = [], []
        for run in runs:
            schedule = schedules.get(run.schedule_id)
            plan = plan_recovery(
                run,
                schedule,
                now,
                default_window=self.settings.catchup_window,
                idempotent=idempotent,
            )
            if plan.action == Recovery.INTERRUPT or schedule is None:
                interrupted.append(
                    RunOutcome(run.id, RunStatus.INTERRUPTED, finished_at=now, error=plan.note)
                )
                continue
            resend = plan.action == Recovery.RESEND
            pending.append(PendingLaunch(run, schedule, plan.deadline, plan.note, resend))
            log.info("run_recovered", schedule_id=run.schedule_id, run_id=run.id, note=plan.note)
        self._report(
            await self.store.finish_runs(
                interrupted, max_consecutive_failures=self.settings.max_consecutive_failures
            )
        )
        return len(interrupted), pending

    async def _catch_up_missed(self, now: datetime) -> tuple[int, int]:
        """At start-up: apply the catch-up rules to every schedule due at or before `now`.
        Answers how many schedules were behind and how many catch-ups were queued."""
        behind = queued = 0
        async for page in self._due_pages(now):
            queued += await self._catch_up(page, now)
            behind += len(page)
            await asyncio.sleep(0)  # long backlogs: let the writer and launches breathe
        return behind, queued

    async def _catch_up(self, schedules: Iterable[Schedule], now: datetime) -> int:
        """Settle missed instants: move each schedule on to its next regular instant (timed
        as usual) while recording its missed run and claiming its one catch-up, which waits
        for the pacer beside the regular fires. Answers how many catch-ups were queued."""
        planned = [
            (schedule, self._plan(schedule, now))
            for schedule in schedules
            if schedule.next_run_at is not None
        ]
        moves, runs, retired = [], [], []
        for schedule, plan in planned:
            if plan.catchup_at is None and schedule.schedule_type == ScheduleType.ONE_TIME:
                retired.append(schedule)
                continue
            moves.append((schedule.id, schedule.next_run_at, plan.next_run_at))
            runs.extend(self._settling_runs(schedule, plan, now))
        moved, claimed = await self.store.claim_catchups(moves, runs)
        by_id = {schedule.id: (schedule, plan) for schedule, plan in planned}
        pending = self._queue_claimed(claimed, by_id)
        advanced = {sid: (schedule, plan.next_run_at) for sid, (schedule, plan) in by_id.items()}
        await self._follow([advanced[schedule_id] for schedule_id in moved], now)
        await self._retire(retired, by_id, now)
        return pending

    async def _retire(
        self,
        retired: Sequence[Schedule],
        by_id: dict[str, tuple[Schedule, CatchupPlan]],
        now: datetime,
    ) -> None:
        """One_time schedules whose instant is past its window: record it missed, disable."""
        missed = [run for s in retired for run in self._settling_runs(s, by_id[s.id][1], now)]
        self._queue_claimed(await self.store.claim_runs(missed), by_id)
        for schedule in retired:
            assert schedule.next_run_at is not None
            await self.store.disable_if_due(schedule.id, schedule.next_run_at, now=now)
            self._touch(schedule.id)

    def _plan(self, schedule: Schedule, now: datetime) -> CatchupPlan:
        assert schedule.next_run_at is not None
        return plan_catchup(
            schedule, schedule.next_run_at, now, default_window=self.settings.catchup_window
        )

    @staticmethod
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

    def _queue_claimed(
        self, claimed: Sequence[Run], by_id: dict[str, tuple[Schedule, CatchupPlan]]
    ) -> int:
        """Log the missed runs and queue the catch-ups that were claimed now: an instant an
        earlier life of the process claimed costs no pacing budget."""
        pending = []
        for run in claimed:
            schedule, plan = by_id[run.schedule_id]
            about = {"schedule_id": run.schedule_id, "run_id": run.id}
            scheduled_for = run.scheduled_for.isoformat()
            if run.status == RunStatus.MISSED:
                metrics.RUNS.labels(RunStatus.MISSED.value).inc()
                metrics.MISSED_RUNS.inc()
                log.warning("run_missed", **about, scheduled_for=scheduled_for, error=run.error)
                continue
            deadline = plan.next_run_at if schedule.schedule_type != ScheduleType.ONE_TIME else None
            pending.append(PendingLaunch(run, schedule, deadline))
            log.info(
                "catchup_scheduled", **about, scheduled_for=scheduled_for, window_s=plan.window
            )
        self._pacer.add(pending)
        return len(pending)

    async def _release_catchups(self, batch: Sequence[PendingLaunch]) -> int:
        """The pacer's turn: launch each queued run, or end it as `catchup_release` says.
        Answers how many launched (only those spend the pacing budget)."""
        if self._stopping:
            return 0  # left `launching`, never dispatched: the next start relaunches them
        current = await self.store.get_schedules({item.run.schedule_id for item in batch})
        now, launched, dropped = self.clock.now(), 0, []
        for item in batch:
            schedule = current.get(item.run.schedule_id)
            in_flight = len(self._in_flight.get(item.run.schedule_id, ()))
            verdict = catchup_release(schedule, item.deadline, now, in_flight=in_flight)
            if verdict is not None or schedule is None:
                error = verdict.error if verdict else "catch-up dropped: the schedule is gone"
                status = verdict.status if verdict else RunStatus.MISSED
                dropped.append(RunOutcome(item.run.id, status, finished_at=now, error=error))
                continue
            identity = fire_identity(schedule, self.directory.current)
            self._log_fired(schedule, item.run, identity, now)
            self._start_launch(schedule, item.run, identity, item)
            launched += 1
        if dropped:
            await asyncio.gather(*(self._finisher.finish(outcome) for outcome in dropped))
        return launched

    # -- launching -------------------------------------------------------------------------

    def _start_launch(
        self,
        schedule: Schedule,
        run: Run,
        identity: FireIdentity,
        pending: PendingLaunch | None = None,
    ) -> None:
        self._in_flight.setdefault(schedule.id, set()).add(run.id)
        work = self._launch(schedule, run, identity, pending)
        task = asyncio.create_task(work, name=f"launch-{run.id}")
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    async def _launch(
        self,
        schedule: Schedule,
        run: Run,
        identity: FireIdentity,
        pending: PendingLaunch | None,
    ) -> None:
        try:
            outcome = await self._launch_outcome(schedule, run, identity, pending)
            await self._finisher.finish(outcome)
        finally:
            self._launch_ended(schedule.id, run.id)

    async def _launch_outcome(
        self,
        schedule: Schedule,
        run: Run,
        identity: FireIdentity,
        pending: PendingLaunch | None,
    ) -> RunOutcome:
        note = pending.note if pending is not None else None
        if identity.refusal is not None:
            result = LaunchResult(attempts=0, error=identity.refusal)
            return self._outcome(run, identity, result, note)
        session_id = None
        if schedule.is_stateful:
            session_id = schedule.target_devin_id or schedule.stateful_session_id
        request = LaunchRequest(run.id, schedule, identity.user_id, identity.as_user, session_id)
        launcher, resend = self._launcher, pending is not None and pending.resend
        async with self._semaphore:
            metrics.LAUNCHES_IN_FLIGHT.inc()
            started = time.monotonic()
            try:
                result = await self._dispatch(launcher, request, resend=resend)
            except Exception as exc:  # a launcher bug must not leave the run launching
                log.exception("launcher_crashed", schedule_id=schedule.id, run_id=run.id)
                result = LaunchResult(attempts=1, error=f"launcher error: {exc!r}")
            finally:
                metrics.LAUNCHES_IN_FLIGHT.dec()
                metrics.LAUNCH_DURATION.observe(time.monotonic() - started)
        return self._outcome(run, identity, result, note)

    async def _dispatch(
        self, launcher: Launcher, request: LaunchRequest, *, resend: bool
    ) -> LaunchResult:
        """Send the launch request, once its run is durably marked as dispatched (a crash
        before that leaves a run the next start may safely launch again)."""
        if not resend:
            try:
                await self.store.mark_dispatched(request.run_id, at=self.clock.now())
            except StoreUnavailable as exc:
                return LaunchResult(attempts=0, error=f"not launched: {exc}")
        return await launcher.launch(request)

    def _outcome(
        self, run: Run, identity: FireIdentity, result: LaunchResult, note: str | None = None
    ) -> RunOutcome:
        error = result.error
        if note is not None:
            error = note if error is None else f"{note}; {error}"
        return RunOutcome(
            run_id=run.id,
            status=RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED,
            finished_at=self.clock.now(),
            attempts=result.attempts,
            identity=identity.user_id,
            session_id=result.session_id,
            session_url=result.session_url,
            error=error,
        )

    def _launch_ended(self, schedule_id: str, run_id: str) -> None:
        """Overlap bookkeeping: a buffered fire starts once the schedule has nothing running."""
        running = self._in_flight.get(schedule_id)
        if running is not None:
            running.discard(run_id)
            if running:
                return
            del self._in_flight[schedule_id]
        buffered = self._buffered.pop(schedule_id, None)
        if buffered is not None and not self._stopping:
            self._spawn(self._guarded("fire", self._fire([buffered])), "fire-buffered")

    def _report(self, finished: Iterable[FinishedRun]) -> None:
        """Log, count and hand on every finished run; drop timers of schedules it disabled."""
        for item in finished:
            run = item.run
            about = {"schedule_id": run.schedule_id, "run_id": run.id}
            metrics.RUNS.labels(run.status.value).inc()
            if run.status == RunStatus.SUCCEEDED:
                log.info(
                    "run_succeeded",
                    **about,
                    session_id=run.session_id,
                    session_url=run.session_url,
                    attempts=run.attempts,
                )
            elif run.status == RunStatus.INTERRUPTED:
                log.warning("run_interrupted", **about, error=run.error)
            elif run.status == RunStatus.MISSED:
                metrics.MISSED_RUNS.inc()
                log.warning("run_missed", **about, error=run.error)
            elif run.status == RunStatus.SKIPPED:
                log.info("run_skipped", **about, error=run.error)
            else:
                log.warning("run_failed", **about, error=run.error, attempts=run.attempts)
            if item.auto_paused:
                log.warning(
                    "schedule_auto_paused", **about, paused_reason=item.schedule.paused_reason
                )
            if not item.schedule.is_active and self._running:
                self._drop_timer(run.schedule_id)
                self._buffered.pop(run.schedule_id, None)
            try:
                self._on_finished(item)
            except Exception:
                log.exception("on_finished_failed", **about)

    # -- plumbing --------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, what: str, work: Awaitable[object]) -> None:
        """Run a timer's work: a store outage is logged (the next refill retries from the
        index); anything else is a bug that stops the engine, and with it the daemon."""
        try:
            await work
        except StoreUnavailable as exc:
            log.error(f"{what}_failed", error=str(exc))
        except Exception as exc:
            log.exception("engine_failed", during=what)
            self._fail(exc)


async def _yielding(items: Sequence[T]) -> AsyncIterator[T]:
    """`items`, letting the loop run other callbacks every `STEP` of them: a batch of
    thousands of fires must not hold the loop (and the HTTP API) for its whole length."""
    for start in range(0, len(items), STEP):
        if start:
            await asyncio.sleep(0)
        for item in items[start : start + STEP]:
            yield item


def _job_id(fire_at: datetime) -> str:
    return f"fire@{fire_at.isoformat()}"
