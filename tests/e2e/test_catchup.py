"""Catch-up with the real `agentcron serve`: kill -9 before a fire, restart after it, and a
burst of missed schedules released at the configured rate. The session service is a real
loopback HTTP server (in a thread: the e2e helpers block)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage.domain import Schedule
from storage.sqlite_store import SqliteStore
from tests.e2e.conftest import ORG, DaemonProcess, base_config, free_port, wait_until, write_config


class SessionRecorder(ThreadingHTTPServer):
    """Answers every POST as a created session and records it (path, headers, body, time)."""

    daemon_threads = True
    request_queue_size = 1024  # a burst of connections must not overflow the listen backlog

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SessionHandler)
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v3/organizations/{{org_id}}/sessions"

    def recorded(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)


class _SessionHandler(BaseHTTPRequestHandler):
    server: SessionRecorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            session_id = f"devin-{next(self.server.ids)}"
            self.server.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
            )
        answer = json.dumps({"session_id": session_id, "url": f"https://x/{session_id}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sessions() -> Iterator[SessionRecorder]:
    server = SessionRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def catchup_config(tmp_path: Path, sessions: SessionRecorder, **scheduler: Any) -> Path:
    config = base_config(free_port())
    config["launcher"] = {"type": "http", "url": sessions.url, "timeout": "10s"}
    config["scheduler"] = {"shutdown_grace": "2s", **scheduler}
    return write_config(tmp_path / "config.toml", config)


def runs_of(daemon: DaemonProcess, schedule_id: str) -> list[dict[str, Any]]:
    status, page = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}/runs"))
    assert status == 200, page
    items: list[dict[str, Any]] = page["items"]
    return items


def test_a_one_time_missed_while_killed_runs_once_as_a_catchup(
    tmp_path: Path, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config = catchup_config(tmp_path, sessions)
    daemon = start_daemon(config)
    due = datetime.now(UTC) + timedelta(seconds=3)
    status, schedule = daemon.call(
        "POST",
        daemon.devin("/schedules"),
        body={
            "name": "once",
            "prompt": "Fire exactly once",
            "schedule_type": "one_time",
            "scheduled_at": due.isoformat(),
        },
    )
    assert status == 200, schedule
    daemon.kill()  # kill -9, well before the instant
    assert datetime.now(UTC) < due, "the daemon must be gone before the schedule is due"
    wait_until(lambda: datetime.now(UTC) > due + timedelta(seconds=0.5), "the instant to pass")

    restarted = start_daemon(config)
    schedule_id = schedule["scheduled_session_id"]
    (run,) = wait_until(
        lambda: [r for r in runs_of(restarted, schedule_id) if r["status"] == "succeeded"],
        "the catch-up run",
    )
    assert run["trigger"] == "catchup"
    assert datetime.fromisoformat(run["scheduled_for"]) == due
    (request,) = sessions.recorded()
    assert request["headers"]["Idempotency-Key"] == run["id"]
    assert request["body"]["prompt"] == "Fire exactly once"
    status, after = restarted.call("GET", restarted.devin(f"/schedules/{schedule_id}"))
    assert (after["enabled"], after["next_run_at"]) == (False, None)
    assert restarted.stop() == 0

    again = start_daemon(config)
    started = again.wait_for_event("engine_started")
    assert started["catchups"] == 0
    assert len(runs_of(again, schedule_id)) == 1
    assert len(sessions.recorded()) == 1


async def seed_schedules(
    db_path: Path, count: int, *, name: str, cron: str, created: datetime
) -> list[str]:
    """`count` schedules `name-0000`… on `cron`, written to the database before a daemon
    opens it, as made at `created`; answers their ids."""
    store = await SqliteStore.open(db_path)
    try:
        ids = []
        for i in range(count):
            schedule = Schedule(
                org_id=ORG,
                name=f"{name}-{i:04}",
                prompt=f"{name} {i}",
                created_at=created,
                updated_at=created,
                cron=cron,
            )
            ids.append((await store.create_schedule(schedule, now=created)).id)
        return ids
    finally:
        await store.close()


async def _seed_missed(db_path: Path, count: int) -> list[str]:
    """`count` daily schedules created three days ago: each missed three days of fires and
    today's, 30 minutes ago (inside the default one-hour catch-up window)."""
    now = datetime.now(UTC)
    latest = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    cron = f"{latest.minute} {latest.hour} * * *"
    created = now - timedelta(days=3, minutes=31)
    return await seed_schedules(db_path, count, name="daily", cron=cron, created=created)


def test_a_burst_of_missed_schedules_catches_up_at_the_configured_rate(
    tmp_path: Path, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config = catchup_config(tmp_path, sessions, catchup_rate=50.0)
    ids = asyncio.run(_seed_missed(tmp_path / "agentcron.db", 200))
    daemon = start_daemon(config)
    wait_until(lambda: len(sessions.recorded()) >= 200, "200 catch-up sessions", timeout=30)
    requests = sessions.recorded()
    assert len(requests) == 200
    titles = sorted(request["body"]["title"] for request in requests)
    assert titles == [f"daily-{i:04}" for i in range(200)]  # each schedule exactly once
    times = sorted(request["at"] for request in requests)
    assert times[-1] - times[0] >= 3.5  # 200 at 50 per second: the last one ~4 s after the first
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 55
    sample = runs_of(daemon, ids[0])
    assert sorted(run["status"] for run in sample) == ["missed", "succeeded"]
    missed = next(run for run in sample if run["status"] == "missed")
    assert missed["error"].startswith("missed 3 fires between ")
    assert daemon.stop() == 0
    assert len(sessions.recorded()) == 200
