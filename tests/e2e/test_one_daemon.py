"""One daemon per SQLite file: a second `serve` on the same database refuses to start
before it writes anything, naming the process that holds it, and the first one goes on."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    DaemonProcess,
    base_config,
    free_port,
    run_cli,
    wait_until,
    write_config,
)
from tests.e2e.threaded_service import ThreadedSessionService, threaded_session_service
from tests.session_service import Reply

StartDaemon = Callable[..., DaemonProcess]
LAUNCH_DELAY = 5.0
"""Seconds the session service takes to answer: the run is in flight that long."""


@pytest.fixture
def service() -> Iterator[ThreadedSessionService]:
    with threaded_session_service() as started:
        yield started


def slow_launch_config(tmp_path: Path, service: ThreadedSessionService) -> Path:
    config = base_config(free_port())
    config["launcher"] = {"type": "http", "url": service.url, "timeout": "30s"}
    return write_config(tmp_path / "config.toml", config)


def trigger_a_run(daemon: DaemonProcess) -> tuple[str, str]:
    """A new schedule fired by hand: (schedule id, run id); the run is `launching`."""
    body = {"name": "in flight", "prompt": "p", "frequency": "0 0 1 1 *"}
    status, schedule = daemon.call("POST", daemon.devin("/schedules"), body=body)
    assert status == 200, schedule
    schedule_id = schedule["scheduled_session_id"]
    status, run = daemon.call("POST", daemon.devin(f"/schedules/{schedule_id}/trigger"))
    assert (status, run["status"]) == (202, "launching"), run
    return schedule_id, run["id"]


def run_status(daemon: DaemonProcess, schedule_id: str, run_id: str) -> Any:
    status, page = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}/runs"))
    assert status == 200, page
    return next(run["status"] for run in page["items"] if run["id"] == run_id)


def test_a_second_serve_on_the_same_database_refuses_and_the_first_keeps_serving(
    tmp_path: Path, start_daemon: StartDaemon, service: ThreadedSessionService
) -> None:
    service.answer(Reply(delay=LAUNCH_DELAY))
    config = slow_launch_config(tmp_path, service)
    first = start_daemon(config)
    schedule_id, run_id = trigger_a_run(first)
    wait_until(lambda: service.requests, "the launch to reach the session service")

    second = run_cli("serve", "--config", str(config))

    assert second.returncode != 0
    assert second.stdout == ""
    (line,) = second.stderr.splitlines()
    assert f"pid {first.pid}" in line, line
    assert "agentcron.db" in line, line
    assert first.call("GET", first.devin(f"/schedules/{schedule_id}"))[0] == 200
    # Not marked interrupted by the second (on a slow machine it may have finished already).
    assert run_status(first, schedule_id, run_id) in ("launching", "succeeded")
    wait_until(
        lambda: run_status(first, schedule_id, run_id) == "succeeded",
        "the run in flight to succeed",
        timeout=LAUNCH_DELAY + 15,
    )
    assert len(service.requests) == 1


def test_the_lock_file_is_private_names_the_holder_and_check_config_ignores_it(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    daemon = start_daemon(config)
    lock = tmp_path / "agentcron.db.lock"

    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    assert lock.read_text().strip() == str(daemon.pid)
    checked = run_cli("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert daemon.stop() == 0
    # The lock went with the process: a new daemon takes it at once.
    assert start_daemon(config).stop() == 0
