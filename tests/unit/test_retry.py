"""The retry policy: `Retry-After` in both forms, the backoff curve, and when retrying stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from daemon.retry import Backoff, Retrying, RetryPolicy, Stop, retry, retry_after_seconds

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("  120 ", 120.0),
        ("1.5", 1.5),
        ("Tue, 01 Jan 2030 12:00:30 GMT", 30.0),  # a date in the future
        ("Tue, 01 Jan 2030 13:00:00 GMT", 3600.0),
        ("Tue, 01 Jan 2030 11:59:00 GMT", 0.0),  # a date in the past: at once
        ("Mon, 31 Dec 2029 12:00:00 GMT", 0.0),
        ("Tue, 01 Jan 2030 12:00:10 -0000", 10.0),  # a zone that parses as naive: GMT
        ("Tue, 01 Jan 2030 13:00:10 +0100", 10.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("-1", None),
        ("soon", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("Tue, 99 Foo 2030 12:00:00 GMT", None),
        ("12:00:00", None),
    ],
)
def test_retry_after_in_both_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


@pytest.mark.parametrize(
    ("backoff", "retry", "draw", "delay"),
    [
        (Backoff(base=0.5, cap=30, jitter=0), 1, 0.9, 0.5),
        (Backoff(base=0.5, cap=30, jitter=0), 2, 0.9, 1.0),
        (Backoff(base=0.5, cap=30, jitter=0), 4, 0.9, 4.0),
        (Backoff(base=0.5, cap=30, jitter=0), 10, 0.9, 30.0),  # capped
        (Backoff(base=1, cap=8, jitter=0.5), 1, 0.0, 1.0),  # jitter only ever shortens
        (Backoff(base=1, cap=8, jitter=0.5), 1, 1.0, 0.5),
        (Backoff(base=1, cap=8, jitter=0.5), 3, 0.5, 3.0),
        (Backoff(base=1, cap=8, jitter=0.5), 20, 1.0, 4.0),  # the cap, then the jitter
    ],
)
def test_backoff_doubles_up_to_its_cap_and_jitter_shortens_it(
    backoff: Backoff, retry: int, draw: float, delay: float
) -> None:
    assert backoff.delay(retry, draw) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("policy", "retry_after", "wait"),
    [
        (RetryPolicy(backoff=Backoff(base=2, jitter=0)), None, 4.0),  # retry 2: the backoff
        (RetryPolicy(backoff=Backoff(base=2, jitter=0.5)), 600.0, 600.0),  # never jittered
        (RetryPolicy(retry_after_cap=300), 600.0, 300.0),
        (RetryPolicy(retry_after_cap=300), 0.0, 0.0),
    ],
)
def test_retry_after_wins_over_the_backoff_up_to_its_cap(
    policy: RetryPolicy, retry_after: float | None, wait: float
) -> None:
    assert policy.wait(2, retry_after, draw=1.0) == wait


@pytest.mark.parametrize(
    ("policy", "elapsed", "wait", "passes"),
    [
        (RetryPolicy(deadline=10), 0.0, 9.9, False),
        (RetryPolicy(deadline=10), 0.0, 10.0, True),  # waking at the deadline is too late
        (RetryPolicy(deadline=10), 8.0, 3.0, True),
        (RetryPolicy(deadline=None), 1e6, 1e6, False),
    ],
)
def test_a_wait_never_reaches_past_the_deadline(
    policy: RetryPolicy, elapsed: float, wait: float, passes: bool
) -> None:
    assert policy.passes_deadline(elapsed, wait) is passes


@dataclass(frozen=True)
class Outcome:
    retryable: bool
    retry_after: float | None = None
    counted: bool = True


TRANSIENT = Outcome(retryable=True)
FAST = Backoff(base=0.001, cap=0.001, jitter=0)


def scripted(*outcomes: Outcome) -> tuple[list[int], Callable[[int], Awaitable[Outcome]]]:
    """An attempt function answering `outcomes` in turn (the last one forever)."""
    calls: list[int] = []

    async def attempt(number: int) -> Outcome:
        calls.append(number)
        return outcomes[min(number, len(outcomes)) - 1]

    return calls, attempt


@pytest.mark.parametrize(
    ("policy", "outcomes", "attempts", "stop"),
    [
        (RetryPolicy(3, backoff=FAST), [Outcome(False)], 1, Stop.FINAL),
        (RetryPolicy(3, backoff=FAST), [TRANSIENT, Outcome(False)], 2, Stop.FINAL),
        (RetryPolicy(3, backoff=FAST), [TRANSIENT], 3, Stop.ATTEMPTS),
        (RetryPolicy(1, backoff=FAST), [TRANSIENT], 1, Stop.ATTEMPTS),
        # attempts that never left this host do not count against the limit
        (
            RetryPolicy(2, backoff=FAST),
            [Outcome(True, counted=False)] * 3 + [TRANSIENT],
            5,
            Stop.ATTEMPTS,
        ),
        # a Retry-After past the deadline stops at once, without sleeping
        (RetryPolicy(5, deadline=5.0, backoff=FAST), [Outcome(True, 30.0)], 1, Stop.DEADLINE),
        # no limit on attempts: waits of 0.04 s, then 0.08 s, which would pass 0.1 s
        (
            RetryPolicy(None, deadline=0.1, backoff=Backoff(base=0.04, jitter=0)),
            [TRANSIENT],
            2,
            Stop.DEADLINE,
        ),
    ],
)
async def test_retrying_stops_on_a_final_outcome_the_attempts_or_the_deadline(
    policy: RetryPolicy, outcomes: list[Outcome], attempts: int, stop: Stop
) -> None:
    calls, attempt = scripted(*outcomes)
    loop = asyncio.get_running_loop()
    started = loop.time()
    retried = await retry(policy, attempt)
    assert (retried.attempts, retried.stop) == (attempts, stop)
    assert calls == list(range(1, attempts + 1))
    assert retried.outcome == outcomes[min(attempts, len(outcomes)) - 1]
    if policy.deadline is not None:
        assert loop.time() - started < policy.deadline


async def test_each_retry_is_announced_with_its_wait_before_it_sleeps() -> None:
    heard: list[Retrying[Outcome]] = []
    _, attempt = scripted(Outcome(True, retry_after=0.01), TRANSIENT, Outcome(False))
    policy = RetryPolicy(5, backoff=Backoff(base=0.02, jitter=0.5))
    retried = await retry(policy, attempt, on_retry=heard.append, draw=lambda: 1.0)
    assert retried.stop is Stop.FINAL and retried.attempts == 3
    assert [(r.attempt, r.wait) for r in heard] == [(1, 0.01), (2, pytest.approx(0.02))]
