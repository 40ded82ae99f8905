"""One retry policy for every outbound call: session launches and notifications.

A transient failure is retried after an exponential backoff (with jitter, at most a cap), or
after what the peer's `Retry-After` asks, until an attempt is final, the attempts run out or
the next wait would pass the deadline: a retry never sleeps past it.

Jitter only shortens a wait (by up to `jitter` of it), so `cap` stays a cap and a deadline
check made on the jittered wait stays true; it spreads the retries of many runs that failed
together (one cron instant, one outage) so they do not come back in lockstep. A wait that
`Retry-After` asks for is never shortened: the peer said when it can take the request.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""`Retry-After` as delay-seconds; a decimal fraction is tolerated, a sign is not."""


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (delay-seconds or an HTTP-date) in seconds from `now`.

    A date already past is 0; an absent, empty or unreadable header is None (the caller
    falls back to its backoff).
    """
    text = (value or "").strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a `-0000` zone parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait before retry n (1-based): base * 2**(n-1), at most `cap` seconds, shortened by
    up to `jitter` (a share, 0..1) of itself."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, retry: int, draw: float = 0.0) -> float:
        """The wait before retry `retry`; `draw` (0..1) picks where in the jitter band."""
        full = min(self.cap, self.base * 2.0 ** (retry - 1))
        return full * (1.0 - self.jitter * draw)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry.

    `attempts`: attempts that count (None: no limit but the deadline). `deadline`: seconds
    from the first attempt after which no retry starts (None: none). `retry_after_cap`: the
    longest `Retry-After` obeyed (None: any).
    """

    attempts: int | None = 3
    deadline: float | None = None
    backoff: Backoff = Backoff()
    retry_after_cap: float | None = None

    def wait(self, retry: int, retry_after: float | None, draw: float = 0.0) -> float:
        """Seconds to wait before retry `retry`: what the peer asked, else the backoff."""
        if retry_after is None:
            return self.backoff.delay(retry, draw)
        if self.retry_after_cap is None:
            return retry_after
        return min(retry_after, self.retry_after_cap)

    def exhausted(self, counted: int) -> bool:
        return self.attempts is not None and counted >= self.attempts

    def passes_deadline(self, elapsed: float, wait: float) -> bool:
        """Whether waiting `wait` more seconds, `elapsed` after the start, reaches the deadline."""
        return self.deadline is not None and elapsed + wait >= self.deadline


class Attempted(Protocol):
    """What the policy needs to know of one attempt's outcome."""

    @property
    def retryable(self) -> bool:
        """Another attempt may succeed (a transient failure)."""
        ...

    @property
    def retry_after(self) -> float | None:
        """Seconds the peer asked to wait (`Retry-After`), if it did."""
        ...

    @property
    def counted(self) -> bool:
        """The attempt counts against `attempts` (one that never left this host may not)."""
        ...


OutcomeT = TypeVar("OutcomeT", bound=Attempted)


class Stop(StrEnum):
    """Why retrying stopped."""

    FINAL = "final"
    """The last outcome is not retryable: a success or a permanent failure."""
    ATTEMPTS = "attempts"
    """The attempts ran out on a transient failure."""
    DEADLINE = "deadline"
    """The next wait would have passed the deadline."""


@dataclass(frozen=True, slots=True)
class Retried(Generic[OutcomeT]):
    """The last outcome, how many attempts were made in all, and why they stopped."""

    outcome: OutcomeT
    attempts: int
    stop: Stop


@dataclass(frozen=True, slots=True)
class Retrying(Generic[OutcomeT]):
    """A transient outcome about to be retried, after `wait` seconds (for logs)."""

    outcome: OutcomeT
    attempt: int
    wait: float


async def retry(
    policy: RetryPolicy,
    attempt: Callable[[int], Awaitable[OutcomeT]],
    *,
    on_retry: Callable[[Retrying[OutcomeT]], None] | None = None,
    draw: Callable[[], float] = random.random,
) -> Retried[OutcomeT]:
    """Run `attempt(n)` (n = 1, 2, ...) under `policy` until it stops; the last outcome.

    `on_retry` hears of every retry before its wait; `draw` is the jitter's source.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    counted = 0
    number = 0
    while True:
        number += 1
        outcome = await attempt(number)
        counted += 1 if outcome.counted else 0
        if not outcome.retryable:
            return Retried(outcome, number, Stop.FINAL)
        if policy.exhausted(counted):
            return Retried(outcome, number, Stop.ATTEMPTS)
        wait = policy.wait(number, outcome.retry_after, draw())
        if policy.passes_deadline(loop.time() - started, wait):
            return Retried(outcome, number, Stop.DEADLINE)
        if on_retry is not None:
            on_retry(Retrying(outcome, number, wait))
        await asyncio.sleep(wait)
