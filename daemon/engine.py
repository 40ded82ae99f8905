"""The firing engine: turns due instants into runs (DESIGN sections 3 and 4).

The database is the source of truth. Every schedule's next nominal instant is its indexed
`next_run_at`; the engine holds timers only for instants within `settings.horizon`, refilled
from the index, so neither start-up time nor memory grows with the number of schedules.

The engine coordinates parts that each own one piece of state:
- `TimerBook` (`daemon.timers`): which schedules fire at which instant, over APScheduler;
- `FireBatches` (`daemon.fire_batch`): a due batch claimed, launched and moved on;
- `Horizon` (`daemon.horizon`): how far ahead timers are held; edits a refill must not undo;
- `IndexReader` (`daemon.refill`): the `next_run_at` index read page by page into timers;
- `LaunchSlots` (`daemon.slots`): launches in flight, runs in progress, buffered fires;
- `LaunchRunner` (`daemon.launching`): one run's launch, from dispatch mark to outcome;
- `Follower` (`daemon.following`): a launched session followed to its end;
- `CatchUp` (`daemon.catchup`): missed instants, stuck runs and backfills, paced by
  `daemon.pacer`;
- `OrgUsage` (`daemon.org_limits`): each org's sessions in flight and of the last hour;
- `Finisher` (`daemon.finisher`): outcomes folded into the store in batches;
- `OutcomeReporter` (`daemon.reporting`): logs, metrics and the daemon's hook per finished run;
- `ManualFires` (`daemon.manual_fires`): manual runs and backfills an operator asks for;
- `EnabledGauge` (`daemon.enabled_gauge`): the enabled-schedules gauge, recounted after edits.

The decisions themselves are pure functions in `daemon.firing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import structlog

from daemon.catchup import CatchUp
from daemon.config import SchedulerConfig
from daemon.enabled_gauge import EnabledGauge
from daemon.finisher import Finisher
from daemon.fire_batch import BatchParts, FireBatches
from daemon.fires import Fire
from daemon.firing import is_behind, timer_for
from daemon.following import Followed, Follower, FollowPlan
from daemon.horizon import Horizon
from daemon.launcher_routes import LauncherRoutes
from daemon.launchers import Launcher
from daemon.launching import Launch, LaunchRunner
from daemon.manual_fires import ManualFires
from daemon.org_limits import OrgLimits, OrgUsage
from daemon.refill import IndexReader
from daemon.reporting import OutcomeReporter
from daemon.slots import LaunchSlots
from daemon.timers import TimerBook
from storage.clock import Clock
from storage.domain import FinishedRun, Run, Schedule
from storage.errors import StoreUnavailable
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.engine")

FINISH_CLOSE_TIMEOUT = 5.0
"""Seconds a stopping engine waits for the last outcomes to commit (the store may be down)."""


def _ignore_finished(_: FinishedRun) -> None:
    return None


def _everything(_: str) -> bool:
    return True


class _Phase(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"


def _routes(launcher: Launcher | LauncherRoutes, follow: FollowPlan | None) -> LauncherRoutes:
    """One launcher is every schedule's: the routes of a single `default` launcher."""
    if isinstance(launcher, LauncherRoutes):
        return launcher
    return LauncherRoutes.single(launcher, follow)


class Engine:
    """Fires schedules; implements `api.ports.ScheduleEvents` for the HTTP layer."""

    def __init__(
        self,
        store: Store,
        *,
        directory: DirectoryRef,
        clock: Clock,
        settings: SchedulerConfig,
        launcher: Launcher | LauncherRoutes,
        follow: FollowPlan | None = None,
        on_finished: Callable[[FinishedRun], None] = _ignore_finished,
        org_limits: Mapping[str, OrgLimits] | None = None,
        owns: Callable[[str], bool] = _everything,
        recovery_age: float | None = None,
    ) -> None:
        self.store = store
        # A fleet member fires only the schedules it owns (`daemon.fleet`); alone, all of them.
        self._owns = owns
        self._refill_again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[Any]] = []
        self._fatal: asyncio.Future[None] | None = None
        self._phase = _Phase.NEW
        self.directory = directory
        self.clock = clock
        self.settings = settings
        self._timers = TimerBook(self._on_timer)
        self._horizon = Horizon()
        self._slots: LaunchSlots[Fire] = LaunchSlots(settings.max_concurrent_launches)
        self._usage = OrgUsage(org_limits)
        self._on_finished = on_finished
        self._report = OutcomeReporter(self._settled, on_inactive=self._on_inactive)
        self._finisher = Finisher(
            store, max_failures=lambda: self.settings.max_consecutive_failures, report=self._report
        )
        self._follower = Follower(
            clock, finisher=self._finisher, limit=lambda: self.settings.max_concurrent_follows
        )
        self._launches = LaunchRunner(
            store,
            clock,
            slots=self._slots,
            finisher=self._finisher,
            launchers=_routes(launcher, follow),
            follower=self._follower,
        )
        self._catchup = CatchUp(
            store,
            clock,
            directory=directory,
            settings=lambda: self.settings,
            finisher=self._finisher,
            report=self._report,
            launch=self._start_launch,
            follow=self._start_follow,
            in_progress=self._slots.in_progress,
            admit=self._usage.admit_run,
            owns=owns,
            mine=self._slots.running,
            recovery_age=recovery_age,
        )
        self._batches = FireBatches(
            store,
            clock,
            directory=directory,
            settings=lambda: self.settings,
            parts=BatchParts(self._slots, self._usage, self._timers, self._horizon, self._catchup),
            launch=self._start_launch,
            owns=owns,
            active=self._running,
        )
        self._reader = IndexReader(
            store,
            clock,
            settings=lambda: self.settings,
            timers=self._timers,
            horizon=self._horizon,
            batches=self._batches,
            owns=owns,
        )
        self._gauge = EnabledGauge(store, self._guarded)
        self._manual = ManualFires(
            store,
            clock,
            directory=directory,
            catchup=self._catchup,
            launch=self._start_launch,
            active=self._running,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._phase == _Phase.RUNNING

    async def start(self) -> None:
        """Follow runs left `running` again, recover runs a crash left `launching`, catch up
        missed instants, start the timer."""
        self._fatal = asyncio.get_running_loop().create_future()
        now = self.clock.now()
        await self._usage.restore_from(self.store, now)
        idempotent = self._launches.launchers.idempotent
        recovered = await self._catchup.recover(now, idempotent=idempotent)
        self._background = [
            self._finisher.start(),
            self._catchup.pacer.start(),
            asyncio.create_task(self._supervise(), name="engine-timer"),
        ]
        self._phase = _Phase.RUNNING
        behind, catchups = await self._reader.catch_up_missed(now)
        self._timers.start()
        await self._reader.refill()
        self._background.append(asyncio.create_task(self._refill_loop(), name="engine-refill"))
        # Not awaited: a count reads the whole index, the start reads only the horizon.
        self._spawn(self._guarded("count", self._gauge.count()), "count")
        log.info(
            "engine_started",
            interrupted=recovered.ended,
            relaunched=sum(1 for item in recovered.pending if not item.resend),
            resent=sum(1 for item in recovered.pending if item.resend),
            followed=recovered.followed,
            catchups=catchups,
            missed_schedules=behind,
            timers=len(self._timers),
            horizon_s=self.settings.horizon,
        )

    def stop_claiming(self) -> None:
        """Fire nothing new (timers, catch-ups, buffered runs); launches in flight go on.

        The daemon calls this as soon as it is told to stop, before it drains the HTTP server.
        """
        if self._phase != _Phase.RUNNING:
            return
        self._phase = _Phase.STOPPING
        self._timers.shutdown()
        self._slots.close()

    async def stop(self, grace: float) -> None:
        """Stop claiming and following; wait up to `grace` s for launches in flight, then
        cancel them.

        A cancelled launch's run stays `launching`, a followed one `running`: the next start
        deals with them (see `daemon.firing.plan_recovery`), as with catch-ups still queued.
        """
        if not self._background:
            return
        self.stop_claiming()
        self._gauge.close()
        left = await self._catchup.close()
        self._follower.close()
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
        while (pending := self._pending()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(pending, timeout=left)
        pending = self._pending()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    def _pending(self) -> set[asyncio.Task[Any]]:
        return self._tasks | self._slots.tasks()

    def background_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks whose end means the engine is broken (the daemon then exits non-zero)."""
        return list(self._background)

    def healthy(self) -> bool:
        """The timer runs and the horizon was refilled recently."""
        if self._phase != _Phase.RUNNING or self._fatal is None or self._fatal.done():
            return False
        overdue = 3 * self._refill_interval + 30.0
        fresh = time.monotonic() - self._horizon.last_refill < overdue
        return self._timers.running and fresh

    def set_launcher(
        self, launcher: Launcher | LauncherRoutes, follow: FollowPlan | None = None
    ) -> None:
        """New fires use `launcher` (or the routes' launchers, and follow their sessions as
        their plans say); launches and follows in flight finish on the ones they started with."""
        self._launches.launchers = _routes(launcher, follow)

    def set_org_limits(self, limits: Mapping[str, OrgLimits]) -> None:
        """Org limits applied from the next fire on; the counts so far are kept."""
        self._usage.set_limits(limits)

    def _settled(self, item: FinishedRun) -> None:
        """A run finished: it may free one of its org's sessions; then the daemon's hook."""
        self._usage.settled_run(item)
        self._on_finished(item)

    def update_settings(self, settings: SchedulerConfig) -> None:
        """Apply new scheduler settings without dropping a timer."""
        previous, self.settings = self.settings, settings
        if settings.max_concurrent_launches != previous.max_concurrent_launches:
            self._slots.resize(settings.max_concurrent_launches)
        if settings.max_concurrent_follows != previous.max_concurrent_follows:
            self._follower.resize(settings.max_concurrent_follows)
        if settings.horizon != previous.horizon and self._phase == _Phase.RUNNING:
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
        if self._phase != _Phase.RUNNING:
            return  # start() reads every schedule's state from the store
        self._horizon.touch(schedule.id)
        self._gauge.soon()
        self._batches.edited(schedule.id)
        self._timers.drop(schedule.id)
        if not schedule.is_active:
            self._slots.unbuffer(schedule.id)
        if not self._owns(schedule.id):
            return  # its owner re-times it (told by the database's notification)
        instant = schedule.next_run_at
        if not schedule.is_active or instant is None:
            return
        if self._batches.is_firing(schedule.id, instant):
            return
        now = self.clock.now()
        if is_behind(instant, now, self.settings.missed_run_grace):
            await self._batches.catch_up([schedule], now)
        elif self._horizon.within(instant):
            self._timers.hold(timer_for(schedule, instant))

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        """Fire `schedule` now (trigger `manual`, overlap not applied); the run is `launching`."""
        return await self._manual.trigger(schedule, by=by)

    async def backfill(
        self, schedule: Schedule, instants: Sequence[datetime], *, by: str
    ) -> list[Run]:
        """Claim a `backfill` run for each of `instants` that has none yet and queue them at
        the catch-up rate; answers the runs claimed (an instant with a run is skipped)."""
        return await self._manual.backfill(schedule, instants, by=by)

    # -- timers ----------------------------------------------------------------------------

    def _on_timer(self, fire_at: datetime) -> None:
        """An instant's timer went off: fire every schedule still in its batch.

        A timer that goes off late (the wall clock jumped forward, or the loop stalled) is a
        missed instant: it goes through the catch-up rules, as one a refill finds, so a jump
        never launches both the held instant and a catch-up.
        """
        fires, late = [], []
        now = self.clock.now()
        for timer in self._timers.take(fire_at):
            if is_behind(timer.fire_at, now, self.settings.missed_run_grace):
                late.append(dataclasses.replace(timer.schedule, next_run_at=timer.instant))
                continue
            fires.append(self._batches.begin(timer))
        if late:
            self._spawn(self._guarded("catchup", self._batches.catch_up(late, now)), "catchup-late")
        if fires:
            self._spawn(self._guarded("fire", self._batches.fire(fires)), "fire")

    def _on_inactive(self, schedule_id: str) -> None:
        """A finished run disabled its schedule (auto-pause, one_time): drop what it holds."""
        if self._phase == _Phase.RUNNING:
            self._timers.drop(schedule_id)
            self._slots.unbuffer(schedule_id)

    async def _on_refill(self) -> None:
        if self._phase != _Phase.RUNNING:
            return
        if self._horizon.refilling:
            self._refill_again = True  # the share changed while reading: read again after
            return
        self._horizon.refilling = True
        try:
            self._refill_again = True
            while self._refill_again and self._phase == _Phase.RUNNING:
                self._refill_again = False
                await self._guarded("refill", self._reader.refill())
            await self._guarded("refill", self._gauge.count())
            if self._catchup.recovery_age is not None:  # in a fleet: members that stopped
                await self._guarded("recover", self._recover_abandoned())
        finally:
            self._horizon.refilling = False
        if self._refill_again:  # the share changed after the last read
            self._spawn(self._on_refill(), "refill-again")

    # -- the fleet (`daemon.fleet.FleetEngine`) ----------------------------------------------

    @property
    def timers_held(self) -> int:
        return len(self._timers)

    async def reshare(self) -> None:
        """The owned share changed: drop the timers of schedules owned no more, then refill
        (in the background), which times those owned now and catches up their misses."""
        if self._phase != _Phase.RUNNING:
            return
        for schedule_id in self._timers.schedule_ids():
            if not self._owns(schedule_id):
                self._timers.drop(schedule_id)
        self._spawn(self._on_refill(), "reshare")

    async def retime(self, schedule_id: str) -> None:
        """Another member changed the schedule: re-time it as stored now."""
        if self._phase != _Phase.RUNNING:
            return
        found = await self.store.get_schedules([schedule_id])
        schedule = found.get(schedule_id)
        if schedule is not None:
            await self.changed(schedule)
            return
        self._horizon.touch(schedule_id)  # deleted: nothing to fire
        self._timers.drop(schedule_id)
        self._slots.unbuffer(schedule_id)

    async def _recover_abandoned(self) -> None:
        """In a fleet: recover the runs a member that stopped left unfinished."""
        idempotent = self._launches.launchers.idempotent
        await self._catchup.recover(self.clock.now(), idempotent=idempotent)

    # -- launching -------------------------------------------------------------------------

    def _start_launch(self, launch: Launch) -> None:
        # Counted whatever the limits: a manual run, or one admitted before (idempotent).
        self._usage.record(launch.schedule.org_id, launch.run.id, self.clock.now())
        work = self._launches.run(launch)
        self._slots.start(launch.schedule.id, launch.run.id, work, self._fire_buffered)

    def _start_follow(self, item: Followed) -> None:
        """A run left `running`: in progress (for overlap) until its session ends."""
        work = self._launches.resume(item)
        self._slots.start(item.run.schedule_id, item.run.id, work, self._fire_buffered)

    def _fire_buffered(self, fire: Fire) -> None:
        """Overlap: a buffered fire starts once its schedule has nothing in progress."""
        if self._phase == _Phase.RUNNING:
            self._spawn(self._guarded("fire", self._batches.fire([fire])), "fire-buffered")

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
