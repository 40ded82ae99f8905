"""The run chart of a schedule's page: one bar per run, its height the run's duration, its
colour and label its outcome. Pure geometry; the template draws it as inline SVG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.domain import Run

WIDTH, HEIGHT = 600, 120
"""The chart's coordinate space (it scales to the page's width)."""
SLOTS = 30
"""Bars the chart has room for: the last 30 runs."""
_LOWEST = 4.0
"""A bar never shrinks below this, so a run of no duration (skipped, missed) still shows."""


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    label: str
    failed: bool
    """A failed or interrupted run: drawn over a full-height band, so a quick failure shows."""


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    longest: float
    """The longest duration shown, in seconds: the height of a full bar."""
    summary: str
    """The chart in words, for screen readers: "30 runs: 28 succeeded, 2 failed"."""


def run_seconds(run: Run, now: datetime) -> float:
    """How long the run took, or has taken so far while still launching or running."""
    end = run.finished_at or now
    return max((end - run.started_at).total_seconds(), 0.0)


def run_chart(newest_first: Sequence[Run], now: datetime) -> Chart:
    """The chart of the latest `SLOTS` runs, drawn oldest on the left."""
    runs = list(reversed(newest_first[:SLOTS]))
    seconds = [run_seconds(run, now) for run in runs]
    longest = max(seconds, default=0.0)
    slot = WIDTH / SLOTS
    bars = []
    for index, (run, duration) in enumerate(zip(runs, seconds, strict=True)):
        height = max(HEIGHT * duration / longest if longest else 0.0, _LOWEST)
        label = f"{run.scheduled_for:%Y-%m-%d %H:%M:%S} UTC: {run.status}, {duration:.2f} s"
        failed = run.status.is_failure
        bars.append(
            Bar(index * slot + 1, HEIGHT - height, slot - 2, height, run.status, label, failed)
        )
    return Chart(bars, longest, _summary(runs))


def _summary(runs: Sequence[Run]) -> str:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"{len(runs)} runs: {parts}" if runs else "No runs yet"
