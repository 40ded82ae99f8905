"""End-to-end helpers: the real `agentcron serve` process, real HTTP, real signals.

Every wait here has a deadline and fails with the daemon's log when it passes.

Configuration files
    `base_config(port)` -> dict: a small working configuration: org `org-local`, user
        `user-alice`, the service users `service-user-admin` (token `ADMIN_TOKEN`, every
        permission) and `service-user-reader` (token `READER_TOKEN`, ManageOrgSchedules),
        JSON logs, a 5 s shutdown grace, and a command launcher that appends one line
        `<schedule id> <run id> <prompt>` per fire to `sessions.log` next to the config file.
        Change the dict, then write it.
    `write_config(path, config)` writes such a dict as TOML (sections, arrays of tables,
        inline values; datetimes as TOML datetimes), atomically (write, then rename).
    `example_config(directory, port)` copies `config.example.toml` into `directory` with
        `listen` on `port` (its relative paths then resolve inside `directory`).
    `fired_lines(directory)` -> the lines the launcher wrote to `sessions.log` so far.

The daemon
    `start_daemon` (fixture): `start_daemon(config_path, env={...})` starts
        `python -m daemon.cli serve --config PATH` in its own session, with stdout and
        stderr in `daemon.log` next to the config file, waits for `/readyz` = 200 and
        returns a `DaemonProcess`; every daemon still running is stopped at teardown.
        `nofile=(soft, hard)` starts it with that RLIMIT_NOFILE.
    `DaemonProcess`:
        `.call(method, path, token=ADMIN_TOKEN, body=None)` -> (status, parsed JSON or None);
        `.devin(path)` -> `/v3/organizations/org-local` + path;
        `.send(signal.SIGHUP)`; `.stop()` sends SIGTERM and returns the exit code;
        `.wait_exit(timeout)` -> exit code;
        `.events()` -> the JSON log lines as dicts; `.mark()` -> how many there are now;
        `.wait_for_event(name, since=mark)` -> the first event `name` after `since`;
        `.log_text()` -> the whole log, for failure messages.
    `run_cli(*args, env={...}, stdin=None)` runs `python -m daemon.cli ARGS` to completion
        (the operator CLI, `check-config`, ...) and returns the CompletedProcess.

systemd
    `notify_socket` (fixture): a `NotifyReceiver`, a unix datagram socket standing in for
        systemd. Pass `receiver.env()` to `start_daemon` (add `WATCHDOG_USEC` for pings);
        `receiver.wait_for("READY=1")` returns the next datagram holding that assignment,
        skipping others; `receiver.received` keeps every datagram seen, as dicts, and
        `receiver.drain()` reads those already queued.

Small pieces: `free_port()`, `wait_until(predicate, what, timeout)`, `http_call(url, ...)`,
`write_config`, and how the process is started, awaited and stopped come from
`tests.processes`, which the benchmarks share.
"""

from __future__ import annotations

import functools
import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from storage.identities import token_sha256
from tests.processes import (
    REPO,
    daemon_environment,
    kill,
    listen_port,
    spawn_serve,
    stop_process,
    wait_ready,
)

# The e2e tests import these from here.
from tests.processes import free_port as free_port
from tests.processes import http_call as http_call
from tests.processes import wait_until as wait_until
from tests.processes import write_config as write_config

ORG = "org-local"
ADMIN_TOKEN = "cog_e2e_admin_token"
READER_TOKEN = "cog_e2e_reader_token"
ALL_PERMISSIONS = ["ManageOrgSchedules", "ImpersonateOrgSessions", "ManageOrgPlaybooks"]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
EVENT_TIMEOUT = 10.0


# --------------------------------------------------------------------------- configuration


def base_config(port: int) -> dict[str, Any]:
    """A small working configuration listening on `port` (see the module docstring)."""
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": "agentcron.db"},
        "logging": {"level": "info", "format": "json"},
        "scheduler": {"shutdown_grace": "5s"},
        "orgs": [{"id": ORG, "name": "Local"}],
        "users": [{"id": "user-alice", "orgs": [ORG], "permissions": ["UseDevinSessions"]}],
        "service_users": [
            _service_user("service-user-admin", ADMIN_TOKEN, ALL_PERMISSIONS),
            _service_user("service-user-reader", READER_TOKEN, ["ManageOrgSchedules"]),
        ],
        "launcher": {
            "type": "command",
            "command": [
                "sh",
                "-c",
                'echo "$AGENTCRON_SCHEDULE_ID $AGENTCRON_RUN_ID $AGENTCRON_PROMPT" >> sessions.log',
            ],
            "timeout": "20s",
        },
    }


def _service_user(user_id: str, token: str, permissions: list[str]) -> dict[str, Any]:
    return {
        "id": user_id,
        "org": ORG,
        "permissions": permissions,
        "token_sha256": token_sha256(token),
    }


def example_config(directory: Path, port: int) -> Path:
    """`config.example.toml` copied into `directory`, listening on `port`."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    default_listen = 'listen = "127.0.0.1:8787"'
    assert default_listen in text, "config.example.toml no longer listens on 127.0.0.1:8787"
    path = directory / "config.toml"
    path.write_text(text.replace(default_listen, f'listen = "127.0.0.1:{port}"'), "utf-8")
    return path


def fired_lines(directory: Path) -> list[str]:
    """The lines the `base_config` launcher appended to `sessions.log` in `directory`."""
    log = directory / "sessions.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


# --------------------------------------------------------------------------- processes


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `agentcron ARGS` (as `python -m daemon.cli`) to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        env=daemon_environment(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class DaemonProcess:
    """A running `agentcron serve` and the means to talk to it (see the module docstring)."""

    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.config_path = config_path
        self.log_path = config_path.parent / "daemon.log"
        self.base_url = f"http://127.0.0.1:{listen_port(config_path)}"
        self.process = spawn_serve(
            config_path,
            self.log_path,
            env=daemon_environment(env),
            start_new_session=True,
            preexec_fn=None if nofile is None else functools.partial(_limit_fds, nofile),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def devin(path: str = "") -> str:
        """The Devin v3 path of `org-local`: `devin('/schedules')`."""
        return f"/v3/organizations/{ORG}{path}"

    def call(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, body: Any = None
    ) -> tuple[int, Any]:
        return http_call(self.url(path), method, token=token, body=body)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until `/readyz` answers 200; fail (with the log) if the process exits first."""
        wait_ready(self.process, self.base_url, self.log_path, timeout=timeout)

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, once the process has exited; fail after `timeout`."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"agentcron still running after {timeout} s:\n{self.log_text()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL the daemon's session (it and whatever it started), if still there."""
        kill(self.process, group=True)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines, in order (other lines are skipped)."""
        events = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
        return events

    def mark(self) -> int:
        """How many events are logged so far: pass as `since` to wait for later ones."""
        return len(self.events())

    def wait_for_event(
        self, name: str, *, since: int = 0, timeout: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """The first event called `name` logged after the first `since` events."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events()[since:] if e["event"] == name), None)

        event: dict[str, Any] = wait_until(found, f"log event {name!r}", timeout)
        return event


def _limit_fds(nofile: tuple[int, int]) -> None:
    """In the child, before exec: set RLIMIT_NOFILE to (soft, hard)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, nofile)


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """`start_daemon(config_path, env=None, ready=True, nofile=None)` -> a DaemonProcess
    (ready by default; `nofile=(soft, hard)` starts it with that RLIMIT_NOFILE).

    Daemons still running at teardown get SIGTERM, then SIGKILL if they do not exit.
    """
    started: list[DaemonProcess] = []

    def start(
        config_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        ready: bool = True,
        nofile: tuple[int, int] | None = None,
    ) -> DaemonProcess:
        daemon = DaemonProcess(config_path, env, nofile=nofile)
        started.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        stop_process(daemon.process, STOP_TIMEOUT, group=True)


# --------------------------------------------------------------------------- systemd


class NotifyReceiver:
    """A unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[dict[str, str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the daemon: `NOTIFY_SOCKET` and `extra` (e.g. WATCHDOG_USEC)."""
        return {"NOTIFY_SOCKET": str(self.path), **extra}

    def wait_for(self, assignment: str, timeout: float = EVENT_TIMEOUT) -> dict[str, str]:
        """The next datagram holding `assignment` (`"READY=1"`); those before it are kept
        in `received` but skipped. Fails after `timeout`."""
        key, _, value = assignment.partition("=")
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                pytest.fail(f"no {assignment} within {timeout} s; received {self.received}")
            if message.get(key) == value:
                return message

    def drain(self) -> list[dict[str, str]]:
        """Read every datagram already queued, without waiting; return `received`."""
        while self._receive(0.001) is not None:
            pass
        return self.received

    def _receive(self, remaining: float) -> dict[str, str] | None:
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            raw = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = dict(
            line.partition("=")[::2] for line in raw.decode().splitlines() if "=" in line
        )
        self.received.append(message)
        return message

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyReceiver]:
    """A NotifyReceiver bound in tmp_path (or a short temporary directory when tmp_path is
    too long for a unix socket address)."""
    directory = tmp_path
    short = None
    if len(str(tmp_path / "notify.sock").encode()) > 100:
        short = Path(tempfile.mkdtemp(prefix="agentcron-"))
        directory = short
    receiver = NotifyReceiver(directory / "notify.sock")
    yield receiver
    receiver.close()
    if short is not None:
        shutil.rmtree(short, ignore_errors=True)
