"""Launch slots: what is in flight, and what waits for it.

Owns the launches' tasks, the limit on requests in flight at once
(`max_concurrent_launches`), the runs in progress per schedule (the overlap policies read
them) and the one fire a `buffer_one` schedule may hold until its previous run ends.

Invariants: a run is in progress from `start` until its work ended (however it ended); a
schedule has at most one buffered fire, handed back by `start`'s `on_idle` once nothing of
the schedule is in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from daemon import metrics

F = TypeVar("F")


class LaunchSlots(Generic[F]):
    """Launch tasks, the sending limit, runs in progress, buffered fires (of type F)."""

    def __init__(self, limit: int) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._running: dict[str, set[str]] = {}
        self._buffered: dict[str, F] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def resize(self, limit: int) -> None:
        """Requests sent from now on wait for the new limit; those in flight go on."""
        self._semaphore = asyncio.Semaphore(limit)

    def running(self, schedule_id: str) -> list[str]:
        """The ids of the schedule's runs in progress, sorted."""
        return sorted(self._running.get(schedule_id, ()))

    def in_progress(self, schedule_id: str) -> int:
        return len(self._running.get(schedule_id, ()))

    def is_buffered(self, schedule_id: str) -> bool:
        return schedule_id in self._buffered

    def buffer(self, schedule_id: str, fire: F) -> None:
        self._buffered[schedule_id] = fire

    def unbuffer(self, schedule_id: str) -> None:
        self._buffered.pop(schedule_id, None)

    def close(self) -> None:
        """Buffer nothing more and hand nothing back: the engine is stopping."""
        self._closed = True
        self._buffered.clear()

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Hold one of the `max_concurrent_launches` slots while a request is in flight."""
        async with self._semaphore:
            metrics.LAUNCHES_IN_FLIGHT.inc()
            try:
                yield
            finally:
                metrics.LAUNCHES_IN_FLIGHT.dec()

    def start(
        self,
        schedule_id: str,
        run_id: str,
        work: Coroutine[Any, Any, None],
        on_idle: Callable[[F], None],
    ) -> None:
        """Run `work` (the run's launch) as a task; once the schedule has nothing left in
        progress, its buffered fire, if any, goes to `on_idle`."""
        self._running.setdefault(schedule_id, set()).add(run_id)
        task = asyncio.create_task(
            self._tracked(schedule_id, run_id, work, on_idle), name=f"launch-{run_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tracked(
        self,
        schedule_id: str,
        run_id: str,
        work: Coroutine[Any, Any, None],
        on_idle: Callable[[F], None],
    ) -> None:
        try:
            await work
        finally:
            self._ended(schedule_id, run_id, on_idle)

    def _ended(self, schedule_id: str, run_id: str, on_idle: Callable[[F], None]) -> None:
        running = self._running.get(schedule_id)
        if running is not None:
            running.discard(run_id)
            if running:
                return
            del self._running[schedule_id]
        buffered = self._buffered.pop(schedule_id, None)
        if buffered is not None and not self._closed:
            on_idle(buffered)

    def tasks(self) -> set[asyncio.Task[None]]:
        return set(self._tasks)
