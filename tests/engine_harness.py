"""A real engine over a real store and a loopback session service, for integration tests.

`EngineHarness` creates schedules as the API does (store write, then `engine.changed`), moves
a schedule's next instant to "in a moment" so overlap can be exercised without waiting a
cron minute, and waits on the store with deadlines. A finished run is also waited for until
the engine has reported it (`on_finished`, after its log event): the store shows it settled
a moment earlier, as soon as the writer thread commits.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from daemon.config import LauncherConfig, SchedulerConfig
from daemon.engine import Engine
from daemon.following import FollowPlan
from daemon.late_runs import SUPERSEDE_LEAD
from daemon.launcher_http import HttpLauncher
from daemon.launchers import Launcher
from daemon.org_limits import OrgLimits
from daemon.retry import Backoff
from daemon.sessions import DevinSessionPoller
from storage.clock import SystemClock
from storage.domain import FinishedRun, Run, Schedule
from storage.enums import RunStatus, ScheduleType
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import ORG
from tests.deadline import eventually
from tests.session_service import SessionService

SETTINGS = SchedulerConfig(
    catchup_window=3600.0,
    catchup_rate=50.0,
    max_concurrent_launches=20,
    max_consecutive_failures=0,
    shutdown_grace=1.0,
    horizon=300.0,
    missed_run_grace=2.0,
)


_REPORTED: Final = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED})
"""The run statuses the engine hands to `on_finished`."""


def now() -> datetime:
    return datetime.now(UTC)


async def clear_of_the_turn(
    minutes: int = 1, margin: timedelta = SUPERSEDE_LEAD + timedelta(seconds=10)
) -> None:
    """When the next turn of `*/minutes` (a divisor of 60) comes within `margin`, or the
    latest one passed within the engine's grace, wait until the turn is past that grace.

    A test that catches up a schedule of that period, started a few seconds before its next
    instant, would see the catch-up dropped for the regular fire due within `SUPERSEDE_LEAD`
    (or the instant it takes for "the latest" turn into the next one): right for the engine,
    wrong for what such a test checks.
    """
    minute = now().replace(second=0, microsecond=0)
    latest = minute.replace(minute=minute.minute - minute.minute % minutes)
    turn = latest + timedelta(minutes=minutes)
    # Past a turn by more than the engine's grace: an instant that young still fires as a
    # regular (late) fire, not as a catch-up. The extra second: timers wake early.
    behind = timedelta(seconds=SETTINGS.missed_run_grace + 1.0)
    if turn - now() < margin:
        await asyncio.sleep((turn + behind - now()).total_seconds())
    elif now() - latest < behind:  # the turn just passed: "the latest" is that young
        await asyncio.sleep((latest + behind - now()).total_seconds())


def http_launcher(service: SessionService, http: aiohttp.ClientSession) -> Launcher:
    config = LauncherConfig(type="http", url=service.url, timeout=5.0, max_attempts=3)
    return HttpLauncher(config, http=http, backoff=Backoff(base=0.05))


def follow_plan(
    service: SessionService,
    http: aiohttp.ClientSession,
    *,
    interval: float = 0.05,
    timeout: float = 10.0,
) -> FollowPlan:
    """Follow the service's sessions at its GET session URL, faster than a config allows."""
    poller = DevinSessionPoller(
        service.url + "/{session_id}", token_env="SESSION_API_TOKEN", http=http, timeout=5.0
    )
    return FollowPlan(poller, interval=interval, timeout=timeout)


def schedule_of(**fields: Any) -> Schedule:
    moment = now()
    values: dict[str, Any] = {"name": "report", "prompt": "Summarise the day", "cron": "0 3 * * *"}
    if "scheduled_at" in fields:
        values |= {"schedule_type": ScheduleType.ONE_TIME, "cron": None}
    values |= fields
    return Schedule(org_id=ORG, created_at=moment, updated_at=moment, **values)


class EngineHarness:
    def __init__(
        self,
        store: Store,
        directory: DirectoryRef,
        service: SessionService,
        http: aiohttp.ClientSession,
        settings: SchedulerConfig = SETTINGS,
        org_limits: Mapping[str, OrgLimits] | None = None,
        follow: FollowPlan | None = None,
    ) -> None:
        self.store = store
        self.org_limits = org_limits
        self.follow = follow
        self.directory = directory
        self.service = service
        self.http = http
        self.settings = settings
        self.finished: list[FinishedRun] = []
        self._reported = asyncio.Event()
        self.engine = self.new_engine()

    def new_engine(self) -> Engine:
        return Engine(
            self.store,
            directory=self.directory,
            clock=SystemClock(),
            settings=self.settings,
            launcher=http_launcher(self.service, self.http),
            follow=self.follow,
            on_finished=self._on_finished,
            org_limits=self.org_limits,
        )

    def _on_finished(self, item: FinishedRun) -> None:
        self.finished.append(item)
        self._reported.set()

    async def create(self, **fields: Any) -> Schedule:
        """Store a schedule and tell the engine, as the API does."""
        stored = await self.store.create_schedule(schedule_of(**fields), now=now())
        await self.engine.changed(stored)
        return stored

    async def update(self, schedule: Schedule, **changes: Any) -> Schedule:
        updated = await self.store.update_schedule(schedule.id, changes, now=now())
        await self.engine.changed(updated)
        return updated

    async def due_in(self, schedule_id: str, seconds: float) -> datetime:
        """Move the schedule's pending instant to `seconds` from now (as an edit would)."""
        current = await self.store.get_schedule(schedule_id)
        instant = now() + timedelta(seconds=seconds)
        (moved,) = await self.store.advance_schedules([(schedule_id, current.next_run_at, instant)])
        assert moved == schedule_id
        await self.engine.changed(dataclasses.replace(current, next_run_at=instant))
        return instant

    async def runs(self, schedule_id: str) -> list[Run]:
        """The schedule's runs, oldest first."""
        page = await self.store.list_runs(schedule_id, limit=100, offset=0)
        return list(reversed(page.items))

    async def finished_runs(self, schedule_id: str, count: int, within: float = 5.0) -> list[Run]:
        """Wait until the schedule has `count` runs that have ended (neither launching nor
        running), and the
        engine has reported each of them that it reports (skipped and missed runs are only
        recorded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within

        async def done() -> list[Run] | None:
            runs = await self.runs(schedule_id)
            settled = [run for run in runs if run.status.is_final]
            return runs if len(settled) >= count else None

        runs = await eventually(done, within=within)
        reported = {run.id for run in runs if run.status in _REPORTED}
        try:
            async with asyncio.timeout_at(deadline):
                await self._reported_all(reported)
        except TimeoutError:
            raise TimeoutError(f"runs {reported} settled but were not all reported") from None
        return runs

    async def _reported_all(self, run_ids: set[str]) -> None:
        """Return once every run in `run_ids` has been through `on_finished`."""
        while not run_ids <= {item.run.id for item in self.finished}:
            self._reported.clear()
            await self._reported.wait()

    async def run_with_status(
        self, schedule_id: str, statuses: Sequence[RunStatus], within: float = 5.0
    ) -> list[Run]:
        async def reached() -> list[Run] | None:
            runs = await self.runs(schedule_id)
            return runs if [run.status for run in runs] == list(statuses) else None

        return await eventually(reached, within=within)
