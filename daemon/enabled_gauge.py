"""The enabled-schedules gauge (`agentcron_schedules_enabled`), recounted from the store.

A count reads the whole `next_run_at` index, so it is not taken per edit: an edit asks for
one `soon`, and any number of edits within `RECOUNT_DELAY` share it. Refills count too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from daemon import metrics
from storage.store import Store

RECOUNT_DELAY = 1.0
"""Seconds after an edit before the enabled-schedules gauge is recounted."""

Guard = Callable[[str, Awaitable[object]], Awaitable[None]]
"""Runs a piece of background work under a name, dealing with its failure."""


class EnabledGauge:
    def __init__(self, store: Store, guard: Guard) -> None:
        self._store = store
        self._guard = guard
        self._recount: asyncio.Task[None] | None = None

    async def count(self) -> None:
        """Set the gauge from the store now (raising what the store raises)."""
        metrics.SCHEDULES_ENABLED.set(await self._store.count_active_schedules())

    def soon(self) -> None:
        """Let the gauge follow an edit within `RECOUNT_DELAY` (one count, which reads the
        whole index, for any number of edits meanwhile)."""
        if self._recount is None or self._recount.done():
            self._recount = asyncio.create_task(self._later(), name="count")

    def close(self) -> None:
        """Drop a recount still waiting (the engine is stopping)."""
        if self._recount is not None:
            self._recount.cancel()

    async def _later(self) -> None:
        await asyncio.sleep(RECOUNT_DELAY)
        await self._guard("count", self.count())
