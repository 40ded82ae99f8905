"""The sd_notify client against real unix datagram sockets standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.sdnotify import SystemdNotifier, run_watchdog

DEADLINE_SECONDS = 5.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket playing systemd, and its ``NOTIFY_SOCKET`` value."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(DEADLINE_SECONDS)
        yield sock, path


def receive(sock: socket.socket) -> list[str]:
    """The assignments in the next datagram (waits up to the socket's deadline)."""
    return sock.recv(4096).decode().split("\n")


def drain(sock: socket.socket) -> list[list[str]]:
    """Every datagram already queued on ``sock``, without waiting for more."""
    sock.setblocking(False)
    datagrams = []
    try:
        while True:
            datagrams.append(sock.recv(4096).decode().split("\n"))
    except BlockingIOError:
        return datagrams


def notifier_for(address: str, **environ: str) -> SystemdNotifier:
    return SystemdNotifier.from_environ({"NOTIFY_SOCKET": address, **environ})


def test_ready_sends_ready_and_status(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier_for(address).ready("serving on 127.0.0.1:8787")
    assert receive(sock) == ["READY=1", "STATUS=serving on 127.0.0.1:8787"]


def test_stopping_sends_stopping(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier_for(address).stopping()
    assert receive(sock)[0] == "STOPPING=1"


def test_watchdog_sends_one_ping(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier_for(address).watchdog()
    assert receive(sock) == ["WATCHDOG=1"]


def test_notify_joins_states_into_one_datagram(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier_for(address).notify("STATUS=catching up", "EXTEND_TIMEOUT_USEC=5000000")
    assert receive(sock) == ["STATUS=catching up", "EXTEND_TIMEOUT_USEC=5000000"]
    assert drain(sock) == []


def test_reloading_sends_monotonic_time(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier_for(address).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    states = receive(sock)
    assert states[0] == "RELOADING=1"
    [monotonic] = [s.removeprefix("MONOTONIC_USEC=") for s in states if "MONOTONIC" in s]
    assert before <= int(monotonic) <= after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux")
def test_abstract_socket_written_with_at_sign() -> None:
    name = f"agentcron-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(DEADLINE_SECONDS)
        notifier_for("@" + name).ready()
        assert receive(sock) == ["READY=1", "STATUS=serving"]


@pytest.mark.parametrize(
    ("watchdog_environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{own}"}, 15.0),
        ({"WATCHDOG_USEC": "3000"}, 0.0015),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(watchdog_environ: dict[str, str], interval: float | None) -> None:
    pids = {"own": os.getpid(), "other": os.getpid() + 1}
    environ = {key: value.format(**pids) for key, value in watchdog_environ.items()}
    assert notifier_for("/run/systemd/notify", **environ).watchdog_interval == interval


def test_without_notify_socket_nothing_is_enabled() -> None:
    notifier = SystemdNotifier.from_environ({"WATCHDOG_USEC": "30000000"})
    with capture_logs() as logs:
        notifier.ready()
        notifier.reloading()
        notifier.watchdog()
        notifier.stopping()
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert logs == []


def test_from_environ_reads_the_process_environment(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    notifier = SystemdNotifier.from_environ()
    notifier.watchdog()

    assert notifier.enabled
    assert notifier.watchdog_interval == 10.0
    assert receive(sock) == ["WATCHDOG=1"]


def test_socket_path_that_does_not_exist_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = notifier_for(str(tmp_path / "absent.sock"))
    with capture_logs() as logs:
        notifier.ready()
    assert notifier.enabled
    assert [(log["event"], log["log_level"], log["states"]) for log in logs] == [
        ("sd_notify_failed", "warning", ["READY=1", "STATUS=serving"])
    ]


class ScriptedHealth:
    """An ``is_healthy`` callable answering from a script; ``finished`` is set when it
    gives its last scripted answer, after which it answers False."""

    def __init__(self, *answers: bool) -> None:
        self._answers = list(answers)
        self.finished = asyncio.Event()

    def __call__(self) -> bool:
        if len(self._answers) == 1:
            self.finished.set()
        return self._answers.pop(0) if self._answers else False


async def test_run_watchdog_pings_only_while_healthy(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, address = receiver
    notifier = notifier_for(address, WATCHDOG_USEC="2000")
    health = ScriptedHealth(True, True, False, False, True)

    with capture_logs() as logs:
        task = asyncio.create_task(run_watchdog(notifier, health))
        await asyncio.wait_for(health.finished.wait(), DEADLINE_SECONDS)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert drain(sock) == [["WATCHDOG=1"]] * 3
    assert [log["event"] for log in logs] == ["watchdog_ping_withheld"]


async def test_run_watchdog_returns_at_once_without_watchdog(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, address = receiver
    other_pid = str(os.getpid() + 1)
    for notifier in (
        notifier_for(address),
        notifier_for(address, WATCHDOG_USEC="2000", WATCHDOG_PID=other_pid),
    ):
        await asyncio.wait_for(run_watchdog(notifier, lambda: True), DEADLINE_SECONDS)
    assert drain(sock) == []
