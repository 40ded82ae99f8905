"""Encoded answers kept until the next write (`Store.generation`).

AgentScope's schedule list has no paging and its web UI asks for it on every page load: the
same megabytes, read and encoded again, for an owner whose schedules did not change. An
answer is kept under its key with the store's generation read just before it was read, and
answered again while the generation has not moved; any committed write moves it, so nothing
stale is ever answered. Callers asking for the same key at once share one read. Kept
answers are bounded in total size, the least recently used dropped first. A store whose
writes this process cannot all see (a fleet) answers no generation: nothing is kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Final

from storage.store import Store

MAX_BYTES: Final = 64 * 1024 * 1024
"""Total size of the answers kept: a few owners' lists of tens of thousands of schedules."""


class AnswerCache:
    def __init__(self, store: Store, *, max_bytes: int = MAX_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._kept: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._size = 0
        self._reading: dict[tuple[Hashable, int], asyncio.Future[bytes]] = {}

    async def answer(self, key: Hashable, read: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer kept for `key` while no write happened since it was read; else
        `read()`'s, kept (or the one a concurrent caller with the same key is reading)."""
        generation = self.store.generation()
        if generation is None:
            return await read()
        kept = self._kept.get(key)
        if kept is not None and kept[0] == generation:
            self._kept.move_to_end(key)
            return kept[1]
        reading = self._reading.get((key, generation))
        if reading is None:
            return await self._read(key, generation, read)
        try:
            return await asyncio.shield(reading)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not reading.cancelled() or (task is not None and task.cancelling()):
                raise  # this caller is cancelled, not only the read it was sharing
            return await self.answer(key, read)  # that caller went away: read again

    async def _read(
        self, key: Hashable, generation: int, read: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        shared: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._reading[key, generation] = shared
        try:
            body = await read()
        except Exception as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: a failure with no one else waiting is not logged
            raise
        except BaseException:
            shared.cancel()  # the callers sharing it read again
            raise
        finally:
            del self._reading[key, generation]
        shared.set_result(body)
        self._keep(key, generation, body)
        return body

    def _keep(self, key: Hashable, generation: int, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        previous = self._kept.pop(key, None)
        if previous is not None:
            self._size -= len(previous[1])
        self._kept[key] = (generation, body)
        self._size += len(body)
        while self._size > self.max_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._size -= len(dropped)
