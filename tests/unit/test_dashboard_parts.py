"""The dashboard's pure parts: cron in words, the run chart, sessions and their expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.ui.chart import HEIGHT, SLOTS, run_chart
from api.ui.describe import cron_in_words
from api.ui.sessions import SessionTable
from storage.domain import Run
from storage.enums import RunStatus, RunTrigger
from tests.conftest import FakeClock

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("0 9 * * MON-FRI", "At 09:00, Monday through Friday"),
        ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("30 2 * * *", "At 02:30"),
        ("0 9 * * 7", "At 09:00, only on Sunday"),  # 7 is Sunday, as 0 is
        ("@hourly", "Every hour"),
        ("@weekly", "At 00:00, only on Sunday"),
        # Both day fields restricted: either matches (cronie) ...
        ("0 0 1 * 1-5", "At 00:00, on day 1 of the month, or Monday through Friday"),
        ("0 0 1,15 * MON", "At 00:00, on day 1 and 15 of the month, or on Monday"),
        # ... unless one starts with `*`: then both must.
        ("0 0 */2 * MON", "At 00:00, every 2 days, and only on Monday"),
    ],
)
def test_cron_in_words(expr: str, words: str) -> None:
    assert cron_in_words(expr) == words


def run(minute: int, status: RunStatus, seconds: float | None) -> Run:
    at = T0 + timedelta(minutes=minute)
    finished = None if seconds is None else at + timedelta(seconds=seconds)
    return Run(
        schedule_id="sched-x",
        scheduled_for=at,
        trigger=RunTrigger.CRON,
        started_at=at,
        status=status,
        finished_at=finished,
    )


def test_the_chart_draws_the_latest_runs_oldest_first_scaled_to_the_longest() -> None:
    newest_first = [
        run(2, RunStatus.LAUNCHING, None),  # running for 30 s at `now`
        run(1, RunStatus.FAILED, 0.0),
        run(0, RunStatus.SUCCEEDED, 60.0),
    ]
    chart = run_chart(newest_first, now=T0 + timedelta(minutes=2, seconds=30))
    assert [bar.status for bar in chart.bars] == ["succeeded", "failed", "launching"]
    assert [bar.height for bar in chart.bars] == [HEIGHT, 4.0, HEIGHT / 2]  # a failure shows
    assert [bar.failed for bar in chart.bars] == [False, True, False]
    assert all(bar.y + bar.height == HEIGHT for bar in chart.bars)
    assert chart.longest == 60.0
    assert chart.summary == "3 runs: 1 failed, 1 launching, 1 succeeded"


def test_the_chart_keeps_the_last_thirty_runs() -> None:
    runs = [run(minute, RunStatus.SUCCEEDED, 1.0) for minute in range(40, 0, -1)]
    chart = run_chart(runs, now=T0)
    assert len(chart.bars) == SLOTS
    assert chart.bars[-1].label.startswith("2030-01-01 00:40:00 UTC")
    assert run_chart([], now=T0).summary == "No runs yet"


def test_a_session_lives_while_used_and_ends_after_its_idle_time() -> None:
    clock = FakeClock(T0)
    table = SessionTable(clock, timedelta(hours=12))
    session = table.open("hash")
    assert session.id != session.csrf_token and len(session.id) >= 40
    clock.advance(11 * 3600)
    assert table.find(session.id) is session
    clock.advance(11 * 3600)  # 22 h after opening, 11 h after the last use
    assert table.find(session.id) is session
    clock.advance(12 * 3600 + 1)
    assert table.find(session.id) is None
    assert table.find(None) is None and table.find("") is None


def test_sessions_are_closed_and_swept() -> None:
    clock = FakeClock(T0)
    table = SessionTable(clock, timedelta(minutes=5))
    first, second = table.open("a"), table.open("b")
    table.close(first.id)
    assert table.find(first.id) is None and table.find(second.id) is second
    clock.advance(301)
    table.open("c")  # a sign-in forgets the expired ones
    assert len(table) == 1
