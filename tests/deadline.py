"""Waiting on a condition with a deadline, for tests: never a bare sleep to let things settle."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]], *, within: float = 5.0, every: float = 0.02
) -> T:
    """Poll `probe` (sync or async) until it returns something truthy; return that.

    Raises TimeoutError (naming the probe) if it is still falsy after `within` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise TimeoutError(f"{getattr(probe, '__name__', probe)!r} still false after {within}s")
        await asyncio.sleep(every)
