"""Reading the `next_run_at` index: a refill of the horizon, the start-up catch-up.

Both read the index a page at a time (`PAGE` rows, keyed on (`next_run_at`, id)), so
neither memory nor a query grows with the number of schedules. A refill holds a timer for
every owned schedule due within the horizon and hands those already behind to the
catch-up rules; the start-up catch-up hands every owned schedule due by now to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from daemon.config import SchedulerConfig
from daemon.fire_batch import FireBatches
from daemon.firing import is_behind, timer_for
from daemon.horizon import Horizon
from daemon.timers import TimerBook
from storage.clock import Clock
from storage.domain import Schedule
from storage.store import Store

PAGE = 1000
"""Schedules read from the `next_run_at` index per query."""


class IndexReader:
    """Times the schedules the index says are due; knows nothing of when it is asked to."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        settings: Callable[[], SchedulerConfig],
        timers: TimerBook,
        horizon: Horizon,
        batches: FireBatches,
        owns: Callable[[str], bool],
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._timers = timers
        self._horizon = horizon
        self._batches = batches
        self._owns = owns

    async def refill(self) -> None:
        """Hold a timer for every schedule due within the horizon; catch up those behind."""
        now = self._clock.now()
        since = self._horizon.begin(now, self._settings().horizon)
        assert self._horizon.loaded_until is not None
        behind: list[Schedule] = []
        async for page in self._due_pages(self._horizon.loaded_until):
            behind.extend(self._hold_page(page, now, since))
        self._horizon.end(since)
        if behind:
            await self._batches.catch_up(behind, now)

    async def catch_up_missed(self, now: datetime) -> tuple[int, int]:
        """At start-up: apply the catch-up rules to every schedule due at or before `now`.
        Answers how many schedules were behind and how many catch-ups were queued."""
        behind = queued = 0
        async for page in self._due_pages(now):
            page = [schedule for schedule in page if self._owns(schedule.id)]
            queued += await self._batches.catch_up(page, now)
            behind += len(page)
            await asyncio.sleep(0)  # long backlogs: let the writer and launches breathe
        return behind, queued

    def _hold_page(self, page: Sequence[Schedule], now: datetime, since: int) -> list[Schedule]:
        """Hold timers for the page's schedules that need one; return those that are behind."""
        behind = []
        grace = self._settings().missed_run_grace
        for schedule in page:
            instant = schedule.next_run_at
            if not self._owns(schedule.id):
                self._timers.drop(schedule.id)  # another member's share
                continue
            if instant is None or self._horizon.stale(schedule.id, since):
                continue  # changed since the page was read: memory is newer than the row
            if self._batches.is_firing(schedule.id, instant):
                continue
            held = self._timers.held(schedule.id)
            if held is not None and (held.instant, held.version) == (instant, schedule.version):
                continue
            if is_behind(instant, now, grace):
                self._timers.drop(schedule.id)
                behind.append(schedule)
            else:
                self._timers.hold(timer_for(schedule, instant))
        return behind

    async def _due_pages(self, until: datetime) -> AsyncIterator[list[Schedule]]:
        after: tuple[datetime, str] | None = None
        while True:
            page = await self._store.due_schedules(until, limit=PAGE, after=after)
            if page:
                yield page
            if len(page) < PAGE:
                return
            last = page[-1]
            assert last.next_run_at is not None
            after = (last.next_run_at, last.id)
