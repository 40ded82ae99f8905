"""The loopback session service (`tests.session_service`) on its own thread and event loop,
for tests that drive `agentcron serve` with blocking calls from the main thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tests.session_service import Recorded, Reply, SessionService, Step


class ThreadedSessionService:
    """`url` is the create-session URL template; `requests` grows as POSTs arrive."""

    def __init__(self) -> None:
        self.service = SessionService()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ThreadedSessionService:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self._loop).result(10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the server, then end the answers still waiting out their delay."""
        await self.service.close()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def requests(self) -> list[Recorded]:
        return list(self.service.requests)

    def answer(self, *replies: Reply) -> None:
        """Answer the next requests with `replies` (see SessionService.answer)."""
        self._loop.call_soon_threadsafe(self.service.answer, *replies)

    @property
    def polls(self) -> list[Recorded]:
        return list(self.service.polls)

    def set_lifecycle(self, lifecycle: Callable[[Any], Sequence[Step]]) -> None:
        """New sessions follow `lifecycle(create body)` (see SessionService.lifecycle)."""
        self._call(setattr, self.service, "lifecycle", lifecycle)

    def set_status(self, session_id: str, status: str, detail: str | None = None) -> None:
        """`session_id` is in this state from the next read on (applied on return)."""
        self._call(self.service.set_status, session_id, status, detail)

    def _call(self, function: Callable[..., object], *args: Any) -> None:
        async def call() -> None:
            function(*args)

        asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def idempotency_keys(self) -> list[str]:
        return [request.headers.get("Idempotency-Key", "") for request in self.requests]


@contextmanager
def threaded_session_service() -> Iterator[ThreadedSessionService]:
    service = ThreadedSessionService().start()
    try:
        yield service
    finally:
        service.close()
