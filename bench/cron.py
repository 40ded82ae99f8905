"""How long one next-fire computation takes: storage.cron.next_fire against croniter.

Run: python bench/cron.py

Both sides compute the first fire after the same aware start instants (spread over a
year, so DST periods are included): next_fire through the wrapper, and croniter at its
best: the expression parsed once, then re-based on each start in the schedule's zone
(`set_current`) followed by get_next. The wrapper caches its parse too, so this compares
the per-computation work. Prints p50/p99 in microseconds per call and the ratio of the p50s.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from storage.cron import next_fire

ZONE = "America/New_York"
EXPRESSIONS = ["*/5 * * * *", "0 9 * * 1-5", "30 2 * * *", "0 0 1 * *", "15 10 * * SUN"]
OURS_CALLS = 5000
CRONITER_CALLS = 1000


def start_instants(count: int) -> list[datetime]:
    """Aware instants spread over 2026, the same sequence every run."""
    rng = random.Random(20260101)
    first = datetime(2026, 1, 1, tzinfo=UTC)
    return [first + timedelta(seconds=rng.randrange(365 * 24 * 3600)) for _ in range(count)]


def per_call_us(compute: Callable[[datetime], object], starts: list[datetime]) -> list[float]:
    for start in starts[:100]:  # warm caches and code paths
        compute(start)
    timings = []
    for start in starts:
        began = time.perf_counter_ns()
        compute(start)
        timings.append((time.perf_counter_ns() - began) / 1000)
    return timings


def percentile(timings: list[float], share: float) -> float:
    return statistics.quantiles(timings, n=100)[round(share * 100) - 1]


def main() -> None:
    zone = ZoneInfo(ZONE)
    starts = start_instants(OURS_CALLS)
    print(f"next fire after one start instant, {ZONE}, µs per call")
    header = ("expression", "ours p50", "p99", "croniter p50", "p99", "ratio")
    print("{:<16} {:>9} {:>7} {:>13} {:>7} {:>6}".format(*header))
    for expr in EXPRESSIONS:

        def through_wrapper(start: datetime, expr: str = expr) -> object:
            return next_fire(expr, ZONE, start)

        parsed = croniter(expr, datetime.now(zone))

        def croniter_directly(start: datetime, parsed: croniter = parsed) -> object:
            parsed.set_current(start.astimezone(zone))
            return parsed.get_next(datetime)

        ours = per_call_us(through_wrapper, starts)
        theirs = per_call_us(croniter_directly, starts[:CRONITER_CALLS])
        ours_p50, theirs_p50 = percentile(ours, 0.5), percentile(theirs, 0.5)
        print(
            f"{expr:<16} {ours_p50:>9.1f} {percentile(ours, 0.99):>7.1f}"
            f" {theirs_p50:>13.1f} {percentile(theirs, 0.99):>7.1f} {theirs_p50 / ours_p50:>5.1f}x"
        )


if __name__ == "__main__":
    main()
