"""Pacing catch-up launches: at most `catchup_rate` a second, beside the regular fires.

A catch-up (or a run relaunched after a crash) is claimed in the database before it is
queued here, and its schedule has already moved on to its next regular instant, which the
engine times as usual: the pacer only ever delays catch-up launches, never a regular fire.
What it queues survives a crash as a `launching` run that was never dispatched, which the
next start relaunches.

The pacer decides when; `release` (the engine) decides what: it launches or drops each
item of a batch and answers how many it launched. Only launches spend the budget, so a
backlog of catch-ups that their regular fires superseded drains at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from daemon.firing import releasable, seconds_until_release
from storage.domain import Run, Schedule
from storage.errors import StoreUnavailable

log = structlog.get_logger("agentcron.engine")

RETRY_DELAY = 1.0
"""Seconds before a batch the store could not take is offered again."""


@dataclass(frozen=True, slots=True)
class PendingLaunch:
    """A claimed run waiting for its turn to launch.

    `schedule` is the schedule as known when it was queued (the engine reads it afresh at
    release). `deadline`: once the schedule's next regular instant is due, the catch-up is
    dropped (None: never). `note` goes into the run's error; `resend` is set when the
    request was sent before (an idempotent launcher gets it again under the same key).
    """

    run: Run
    schedule: Schedule
    deadline: datetime | None
    note: str | None = None
    resend: bool = False


Release = Callable[[Sequence[PendingLaunch]], Awaitable[int]]


class Pacer:
    """Releases queued launches, oldest first, at most `rate()` launches a second."""

    def __init__(self, *, rate: Callable[[], float], release: Release) -> None:
        self._rate = rate
        self._release = release
        self._queue: deque[PendingLaunch] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, items: Iterable[PendingLaunch]) -> None:
        self._queue.extend(items)
        if self._queue:
            self._wake.set()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name="engine-catchup")
        return self._task

    async def close(self) -> int:
        """Stop releasing; answer how many were still queued. Their runs stay `launching`,
        never dispatched, so the next start relaunches them (within their window)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = len(self._queue)
        self._queue.clear()
        return left

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        started, spent = time.monotonic(), 0
        while self._queue:
            rate = self._rate()
            elapsed = time.monotonic() - started
            count = releasable(elapsed, rate, spent)
            if count == 0:
                await asyncio.sleep(seconds_until_release(elapsed, rate, spent))
                continue
            batch = [self._queue.popleft() for _ in range(min(count, len(self._queue)))]
            try:
                spent += await self._release(batch)
            except StoreUnavailable as exc:
                log.error("catchup_failed", error=str(exc), retry_in_s=RETRY_DELAY)
                self._queue.extendleft(reversed(batch))
                await asyncio.sleep(RETRY_DELAY)
