"""Recovery under load with the real `agentcron serve`: hundreds of every-minute schedules,
`kill -9`, restart. Catch-ups run beside the regular fires, never in front of them.

Each scenario reads the runs from the database file (read-only) and the launches from a
loopback session service that records when each request arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DaemonProcess, base_config, free_port, write_config
from tests.e2e.test_catchup import SessionRecorder, seed_schedules

CATCHUP_RATE = 5.0


@pytest.fixture
def sessions() -> Iterator[SessionRecorder]:
    server = SessionRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _config(tmp_path: Path, sessions: SessionRecorder) -> Path:
    config = base_config(free_port())
    config["launcher"] = {"type": "http", "url": sessions.url, "timeout": "20s"}
    config["scheduler"] = {"shutdown_grace": "2s", "catchup_rate": CATCHUP_RATE}
    return write_config(tmp_path / "config.toml", config)


async def _seed(db_path: Path, count: int) -> list[str]:
    now = datetime.now(UTC)
    return await seed_schedules(db_path, count, name="minutely", cron="* * * * *", created=now)


def _next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _sleep_until(instant: datetime) -> None:
    """Wait for a wall-clock instant (the scenario is about minute boundaries)."""
    left = (instant - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)


@dataclass(frozen=True)
class RunRow:
    id: str
    schedule_id: str
    scheduled_for: datetime
    trigger: str
    status: str
    error: str | None


def _runs(db_path: Path) -> list[RunRow]:
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute(
            "SELECT id, schedule_id, scheduled_for, trigger, status, error FROM runs"
        ).fetchall()
    return [
        RunRow(r[0], r[1], datetime.fromisoformat(r[2]).replace(tzinfo=UTC), *r[3:]) for r in rows
    ]


def _received(sessions: SessionRecorder) -> dict[str, float]:
    """Arrival time of each launch by Idempotency-Key (the run id); no key arrives twice."""
    keys = [request["headers"]["Idempotency-Key"] for request in sessions.recorded()]
    duplicates = [key for key, seen in Counter(keys).items() if seen > 1]
    assert duplicates == [], f"launched twice: {duplicates[:5]}"
    return {r["headers"]["Idempotency-Key"]: r["at"] for r in sessions.recorded()}


def _wait_for(probe: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return value


def _check_boundary(
    db_path: Path,
    sessions: SessionRecorder,
    ids: list[str],
    boundary: datetime,
    *,
    p99_bound: float,
) -> None:
    """Every schedule fired its regular instant `boundary`, on time, launched once."""

    def regular() -> list[RunRow] | None:
        runs = [r for r in _runs(db_path) if r.scheduled_for == boundary and r.trigger == "cron"]
        received = _received(sessions)
        return runs if len(runs) == len(ids) and all(r.id in received for r in runs) else None

    patience = (boundary - datetime.now(UTC)).total_seconds() + 30
    runs = _wait_for(regular, f"{len(ids)} launches of {boundary}", timeout=patience)
    received = _received(sessions)
    lateness = sorted(received[r.id] - boundary.timestamp() for r in runs)
    p99 = statistics.quantiles(lateness, n=100)[98]
    assert p99 <= p99_bound, f"lateness p99 {p99:.2f}s, max {lateness[-1]:.2f}s"
    assert {r.schedule_id for r in runs} == set(ids)


def _check_catchups(db_path: Path, sessions: SessionRecorder, killed_at: datetime) -> None:
    """At most one catch-up per schedule after the kill; none left waiting; each launched at
    most once.

    Only the restart's catch-ups (of instants after the kill) are counted: on a loaded
    machine the first life's own start may outlast a minute's turn, and the instant that
    passed meanwhile is rightly caught up by that life.
    """
    runs = _runs(db_path)
    catchups = Counter(
        r.schedule_id for r in runs if r.trigger == "catchup" and r.scheduled_for >= killed_at
    )
    assert max(catchups.values(), default=0) <= 1
    waiting = [r for r in runs if r.status == "launching" and r.trigger == "catchup"]
    assert waiting == [], f"{len(waiting)} catch-ups still waiting"
    _received(sessions)  # no Idempotency-Key twice


def _scenario_kill_mid_minute(
    tmp_path: Path,
    sessions: SessionRecorder,
    start_daemon: Callable[..., DaemonProcess],
    *,
    count: int,
    down_after_boundary: float,
    p99_bound: float,
) -> None:
    db_path = tmp_path / "agentcron.db"
    ids = asyncio.run(_seed(db_path, count))
    config = _config(tmp_path, sessions)
    daemon = start_daemon(config)
    if (_next_minute(datetime.now(UTC)) - datetime.now(UTC)).total_seconds() < 5:
        _sleep_until(_next_minute(datetime.now(UTC)) + timedelta(seconds=3))
    killed_at = datetime.now(UTC)
    daemon.kill()  # kill -9 mid-minute: the next boundary passes while it is down
    missed = _next_minute(datetime.now(UTC))
    _sleep_until(missed + timedelta(seconds=down_after_boundary))

    since = daemon.mark()  # both lives log to the same file
    restarted = start_daemon(config)
    started_at = time.monotonic()
    queued = restarted.wait_for_event("engine_started", since=since)["catchups"]
    assert 0 < queued <= count
    following = _next_minute(datetime.now(UTC))
    backlog_gone = started_at + queued / CATCHUP_RATE + 2.0
    assert (following - datetime.now(UTC)).total_seconds() < queued / CATCHUP_RATE, (
        "the scenario needs a backlog that outlasts the time to the next boundary"
    )
    _check_boundary(db_path, sessions, ids, following, p99_bound=p99_bound)
    time.sleep(max(0.0, backlog_gone - time.monotonic()))
    _check_catchups(db_path, sessions, killed_at)
    dropped = [r for r in _runs(db_path) if r.error and "regular fire at" in r.error]
    assert all(r.status == "missed" and r.trigger == "catchup" for r in dropped)
    assert restarted.stop() == 0


@pytest.mark.timeout(300)
def test_after_a_kill_mid_minute_every_schedule_fires_its_next_instant_on_time(
    tmp_path: Path, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    """300 schedules: the 300 catch-ups need 60 s at 5/s, the next boundary comes sooner."""
    _scenario_kill_mid_minute(
        tmp_path, sessions, start_daemon, count=300, down_after_boundary=10, p99_bound=2.0
    )


@pytest.mark.long
@pytest.mark.timeout(400)
def test_after_a_forty_second_crash_a_thousand_schedules_fire_on_time(
    tmp_path: Path, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    _scenario_kill_mid_minute(
        tmp_path, sessions, start_daemon, count=1000, down_after_boundary=10, p99_bound=5.0
    )


@pytest.mark.long
@pytest.mark.timeout(400)
def test_a_crash_during_a_burst_relaunches_what_never_left_and_fires_on_time(
    tmp_path: Path, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    """Killed 0.3 s into a burst of 1,000, back 2.8 s later: runs whose request never left
    are launched again with the same id, the others are interrupted, none twice."""
    db_path = tmp_path / "agentcron.db"
    ids = asyncio.run(_seed(db_path, 1000))
    config = _config(tmp_path, sessions)
    daemon = start_daemon(config)
    burst = _next_minute(datetime.now(UTC))
    _sleep_until(burst + timedelta(seconds=0.3))
    killed_at = datetime.now(UTC)
    daemon.kill()
    time.sleep(2.8)
    since = daemon.mark()  # both lives log to the same file
    restarted = start_daemon(config)
    started = restarted.wait_for_event("engine_started", since=since)
    _check_boundary(db_path, sessions, ids, burst + timedelta(minutes=1), p99_bound=5.0)
    runs = [r for r in _runs(db_path) if r.scheduled_for == burst]
    assert len(runs) == len(ids)
    relaunched = [r for r in runs if r.error and r.error.startswith("relaunched after a restart")]
    interrupted = [r for r in runs if r.status == "interrupted"]
    assert started["relaunched"] == len(relaunched) + sum(
        1 for r in runs if r.error and "regular fire at" in r.error
    )
    assert len(interrupted) == started["interrupted"]
    assert all(r.status in ("succeeded", "interrupted", "missed") for r in runs)
    _check_catchups(db_path, sessions, killed_at)
    assert restarted.stop() == 0
