"""Folding launch outcomes into the store in batched transactions.

Each launch ends in one outcome (a session started, or the error that stopped it); writing
each in its own transaction would cost a commit (and an fsync) per run when a burst of
launches returns together. The finisher collects the outcomes arriving within
`FINISH_WINDOW` of each other and finishes them together, at most `FINISH_BATCH` a
transaction; each caller is answered once its outcome is committed and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from storage.domain import FinishedRun, RunOutcome
from storage.errors import StoreUnavailable
from storage.store import Store

log = structlog.get_logger("agentcron.engine")

FINISH_WINDOW = 0.005
"""Seconds outcomes are collected before they are finished in one transaction."""
FINISH_BATCH = 500
"""Outcomes finished in one transaction at most (and reported in one turn of the loop)."""
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
"""Seconds before retrying a batch the store could not take, doubling up to the maximum."""

_Item = tuple[RunOutcome, asyncio.Future[None]]


class Finisher:
    """Finishes outcomes in batches; a store outage is retried (the runs stay `launching`
    meanwhile) rather than losing an outcome.

    `max_failures` is read at each batch (it follows a config reload); `report` is handed
    every batch's finished runs, in order, once committed.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_failures: Callable[[], int],
        report: Callable[[Sequence[FinishedRun]], None],
    ) -> None:
        self.store = store
        self._max_failures = max_failures
        self._report = report
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def finish(self, outcome: RunOutcome) -> None:
        """Queue `outcome`; return once it is committed (and reported)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((outcome, done))
        await done

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="engine-finisher")
        return self._task

    async def close(self, patience: float) -> None:
        """Commit what is queued, then stop; give up after `patience` s (runs not committed
        stay `launching`, and the next start marks them interrupted)."""
        if self._task is None or self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        # A finisher that died has already been reported as a dead background task.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, patience)

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            await asyncio.sleep(FINISH_WINDOW)
            batch, last = [first], False
            while not self._queue.empty() and len(batch) < FINISH_BATCH:
                item = self._queue.get_nowait()
                if item is None:
                    last = True
                    break
                batch.append(item)
            await self._commit(batch)
            if last:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        outcomes = [outcome for outcome, _ in batch]
        delay = RETRY_FIRST
        while True:
            try:
                finished = await self.store.finish_runs(
                    outcomes, max_consecutive_failures=self._max_failures()
                )
                break
            except StoreUnavailable as exc:
                log.error("finish_failed", error=str(exc), runs=len(outcomes), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
        self._report(finished)
        for _, done in batch:
            if not done.done():
                done.set_result(None)
