"""SIGTERM during a burst of launches against a slow session service.

The daemon tells systemd STOPPING=1, claims nothing new after the signal (schedules due
after it get no run), lets launches in flight finish within `scheduler.shutdown_grace`
(those that cannot are left `launching`, and the next start marks them `interrupted`),
and exits 0 before the grace plus a margin.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    DaemonProcess,
    NotifyReceiver,
    base_config,
    free_port,
    wait_until,
    write_config,
)
from tests.e2e.threaded_service import ThreadedSessionService, threaded_session_service
from tests.session_service import Reply

BURST = 20
EXIT_MARGIN = 5.0
"""Seconds past the grace an exit may take: closing the HTTP server and the store."""

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def service() -> Iterator[ThreadedSessionService]:
    with threaded_session_service() as started:
        yield started


def config_for(tmp_path: Path, service: ThreadedSessionService, grace: float) -> Path:
    config = base_config(free_port())
    config["launcher"] = {
        "type": "http",
        "url": service.url,
        "token_env": "SESSION_API_TOKEN",
        "timeout": "60s",
    }
    config["scheduler"] = {"shutdown_grace": f"{grace:g}s"}
    return write_config(tmp_path / "config.toml", config)


def burst(daemon: DaemonProcess, service: ThreadedSessionService) -> list[str]:
    """Trigger BURST schedules at once; return when every launch has reached the service."""
    triggered = []
    for n in range(BURST):
        body = {"name": f"burst-{n}", "prompt": "p", "frequency": "0 0 1 1 *"}
        status, made = daemon.call("POST", daemon.devin("/schedules"), body=body)
        assert status == 200, made
        path = daemon.devin(f"/schedules/{made['scheduled_session_id']}/trigger")
        status, run = daemon.call("POST", path)
        assert status == 202, run
        triggered.append(run["id"])
    wait_until(lambda: len(service.requests) >= BURST, "the burst to reach the session service")
    return triggered


def due_after_the_signal(daemon: DaemonProcess, seconds: float) -> str:
    """A one_time schedule due `seconds` from now: sent SIGTERM before then, the daemon
    must not fire it even though it is still finishing launches when it comes due."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    body = {"name": "late", "prompt": "p", "schedule_type": "one_time"}
    status, made = daemon.call(
        "POST", daemon.devin("/schedules"), body=body | {"scheduled_at": at.isoformat()}
    )
    assert status == 200, made
    return str(made["scheduled_session_id"])


def runs(database: Path) -> dict[str, tuple[str, str, str | None]]:
    """Every run: id -> (schedule id, status, error)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT id, schedule_id, status, error FROM runs").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def stop_and_time(daemon: DaemonProcess, notify: NotifyReceiver, grace: float) -> float:
    """SIGTERM; check STOPPING=1 and exit code 0; return how long the exit took."""
    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    notify.wait_for("STOPPING=1", timeout=2.0)
    assert daemon.wait_exit(timeout=grace + EXIT_MARGIN) == 0
    return time.monotonic() - started


def test_sigterm_finishes_launches_in_flight_and_claims_nothing_new(
    tmp_path: Path,
    start_daemon: StartDaemon,
    notify_socket: NotifyReceiver,
    service: ThreadedSessionService,
) -> None:
    grace = 8.0
    service.answer(*[Reply(delay=3.0)] * BURST)  # each launch takes 3 s: within the grace
    daemon = start_daemon(config_for(tmp_path, service, grace), notify_socket.env())
    notify_socket.wait_for("READY=1")
    triggered = burst(daemon, service)
    late = due_after_the_signal(daemon, 1.0)  # comes due while the burst is finishing

    took = stop_and_time(daemon, notify_socket, grace)

    stored = runs(tmp_path / "agentcron.db")
    assert {stored[run_id][1] for run_id in triggered} == {"succeeded"}
    assert [run for run in stored.values() if run[0] == late] == [], "claimed after SIGTERM"
    assert len(service.requests) == BURST
    assert took < grace + EXIT_MARGIN


def test_launches_outlasting_the_grace_are_left_launching_then_interrupted(
    tmp_path: Path,
    start_daemon: StartDaemon,
    notify_socket: NotifyReceiver,
    service: ThreadedSessionService,
) -> None:
    grace = 1.0
    service.answer(*[Reply(delay=30.0)] * BURST)  # far longer than the grace
    config = config_for(tmp_path, service, grace)
    daemon = start_daemon(config, notify_socket.env())
    notify_socket.wait_for("READY=1")
    triggered = burst(daemon, service)

    stop_and_time(daemon, notify_socket, grace)

    database = tmp_path / "agentcron.db"
    assert {runs(database)[run_id][1] for run_id in triggered} == {"launching"}
    restarted = start_daemon(config)
    after: dict[str, Any] = runs(database)
    assert {after[run_id][1] for run_id in triggered} == {"interrupted"}
    assert all("interrupted" in (after[run_id][2] or "") for run_id in triggered)
    assert restarted.stop() == 0
