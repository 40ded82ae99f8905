"""File descriptors against a real `agentcron serve` started with a low RLIMIT_NOFILE.

Idle clients beyond `server.max_connections` are closed at once instead of taking the
descriptors the store and the launcher need; when accepts fail anyway (the limit is below
what `max_connections` needs), the log gets one `accept_failed` event per interval, not a
traceback per failed accept.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    DaemonProcess,
    base_config,
    free_port,
    wait_until,
    write_config,
)

StartDaemon = Callable[..., DaemonProcess]
DAEMON_FDS = 1024
"""The daemon's hard (and, once raised, soft) descriptor limit in these tests."""
IDLE_CLIENTS = 1100
"""More connections than DAEMON_FDS: without a bound the daemon runs out of descriptors."""
MAX_CONNECTIONS = 800
LOG_BUDGET = 32 * 1024
"""Bytes of log the whole test may produce."""
ASYNCIO_ACCEPT_MESSAGE = "out of system resource"
SHORTAGE = 2.5
"""Seconds the descriptor shortage is kept on once accepts have started failing."""


@pytest.fixture(autouse=True)
def enough_descriptors_here() -> None:
    """This process holds the idle clients: its own soft limit must allow them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * IDLE_CLIENTS
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs a hard RLIMIT_NOFILE of {wanted}, have {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@contextlib.contextmanager
def idle_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send nothing, fewer if one takes over 5 s to connect (a
    full accept queue: the daemon stopped accepting); closed afterwards."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=5.0))
            except OSError:
                break  # a daemon that stopped accepting: the assertions will tell
        yield opened
    finally:
        for sock in opened:
            sock.close()


@contextlib.contextmanager
def connecting_clients(port: int, count: int) -> Iterator[None]:
    """`count` connections started without waiting for them to be accepted; the kernel
    keeps retrying those that do not fit in the accept queue. Closed afterwards."""
    started: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            started.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        yield
    finally:
        for sock in started:
            sock.close()


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class KeptConnection:
    """One HTTP/1.1 connection to the daemon, opened before the idle clients and reused."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def kept() -> Iterator[Callable[[int], KeptConnection]]:
    """`kept(port)` -> a KeptConnection, closed at teardown."""
    made: list[KeptConnection] = []

    def connect(port: int) -> KeptConnection:
        made.append(KeptConnection(port))
        return made[-1]

    yield connect
    for connection in made:
        connection.close()


def one_time_in(api: KeptConnection, seconds: float) -> str:
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    body = {"name": "while flooded", "prompt": "p", "schedule_type": "one_time"}
    status, made = api.call("POST", DaemonProcess.devin("/schedules"), body | {"scheduled_at": at})
    assert status == 200, made
    return str(made["scheduled_session_id"])


def finished_run(api: KeptConnection, schedule_id: str) -> str | None:
    """The status of the schedule's run once it has finished, else None."""
    status, page = api.call("GET", DaemonProcess.devin(f"/schedules/{schedule_id}/runs"))
    assert status == 200, page  # never a 503: the store still has its descriptors
    runs = [run["status"] for run in page["items"] if run["status"] != "launching"]
    return runs[0] if runs else None


def config_with(tmp_path: Path, **server: Any) -> Path:
    config = base_config(free_port())
    config["server"] |= server
    return write_config(tmp_path / "config.toml", config)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_limit(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(config_with(tmp_path), nofile=(256, DAEMON_FDS))

    raised = daemon.wait_for_event("fd_limit_raised")
    assert (raised["previous"], raised["soft"]) == (256, DAEMON_FDS)
    assert daemon.wait_for_event("daemon_ready")["fd_limit"] == DAEMON_FDS
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(DAEMON_FDS), str(DAEMON_FDS)]


def test_idle_clients_beyond_max_connections_are_refused_and_fires_still_succeed(
    tmp_path: Path, start_daemon: StartDaemon, kept: Callable[[int], KeptConnection]
) -> None:
    config = config_with(tmp_path, max_connections=MAX_CONNECTIONS, request_timeout="60s")
    daemon = start_daemon(config, nofile=(256, DAEMON_FDS))
    port = int(daemon.base_url.rsplit(":", 1)[1])
    api = kept(port)
    assert api.call("GET", "/readyz")[0] == 200

    with idle_clients(port, IDLE_CLIENTS) as clients:
        assert len(clients) == IDLE_CLIENTS, "connecting stalled: the daemon stopped accepting"
        # Beyond the bound (the kept connection is one of the MAX_CONNECTIONS), closed at once.
        excess = IDLE_CLIENTS - (MAX_CONNECTIONS - 1)
        wait_until(
            lambda: sum(map(closed_by_peer, clients)) >= excess,
            f"{excess} connections beyond max_connections to be closed",
        )
        schedule_id = one_time_in(api, 2.0)
        status = wait_until(
            lambda: finished_run(api, schedule_id), "the one_time schedule to fire", timeout=20
        )
        assert status == "succeeded", daemon.log_text()[-2000:]
        assert api.call("GET", DaemonProcess.devin("/schedules"))[0] == 200
        still_open = len(clients) - sum(map(closed_by_peer, clients))
        assert still_open >= MAX_CONNECTIONS - 10  # the bound, not a lower one

    log = daemon.log_text()
    assert ASYNCIO_ACCEPT_MESSAGE not in log
    assert len(log.encode()) < LOG_BUDGET
    refused = daemon.wait_for_event("connections_refused")
    assert refused["max_connections"] == MAX_CONNECTIONS
    assert daemon.stop() == 0


def test_failed_accepts_are_one_rate_limited_event(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    # max_connections (the default 4096) is above the limit: accepts fail with EMFILE.
    low = 256
    daemon = start_daemon(config_with(tmp_path), nofile=(low, low))
    port = int(daemon.base_url.rsplit(":", 1)[1])

    with connecting_clients(port, low + 200):
        first = daemon.wait_for_event("accept_failed")
        # Keep the shortage on through at least two more of asyncio's retries (one a second),
        # each of which fails again.
        time.sleep(SHORTAGE)
    daemon.wait_ready()  # the clients are gone: accepting again
    assert daemon.stop() == 0

    assert first["error"].startswith("EMFILE") and first["suppressed"] == 0
    failed = [event for event in daemon.events() if event["event"] == "accept_failed"]
    # Failures within the 10 s after a logged one are only counted; their count is logged
    # when the interval ends, or at shutdown: here after the first interval at most.
    assert 2 <= len(failed) <= 3, failed
    assert sum(event["suppressed"] for event in failed) >= 2
    log = daemon.log_text()
    assert ASYNCIO_ACCEPT_MESSAGE not in log and "Traceback" not in log
    assert len(log.encode()) < LOG_BUDGET
    assert daemon.wait_for_event("fd_limit_low")["max_connections"] == 4096
