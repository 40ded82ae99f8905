"""The real `agentcron serve`: start-up, health, systemd notifications, graceful stop."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import (
    DaemonProcess,
    NotifyReceiver,
    base_config,
    example_config,
    free_port,
    run_cli,
    write_config,
)

DEMO_TOKEN = "cog_demo_token_change_me"  # the token whose hash config.example.toml ships with
EXAMPLE_GRACE_S = 20.0

StartDaemon = Callable[..., DaemonProcess]


def test_the_example_config_serves_and_stops_within_the_grace(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = example_config(tmp_path, free_port())
    assert run_cli("check-config", "--config", str(config)).returncode == 0

    daemon = start_daemon(config)

    assert daemon.call("GET", "/healthz", token=None)[0] == 200
    assert daemon.call("GET", "/readyz", token=None) == (200, {"status": "serving"})
    status, page = daemon.call("GET", daemon.devin("/schedules"), token=DEMO_TOKEN)
    assert status == 200
    assert [s["name"] for s in page["items"]] == ["heartbeat"]
    assert daemon.stop(timeout=EXAMPLE_GRACE_S) == 0
    names = [event["event"] for event in daemon.events()]
    assert names.index("daemon_ready") < names.index("daemon_stopping")
    assert names[-1] == "daemon_stopped"
    assert (tmp_path / "agentcron.db").exists()


def test_systemd_hears_ready_watchdog_reloading_and_stopping(
    tmp_path: Path, start_daemon: StartDaemon, notify_socket: NotifyReceiver
) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    # A 2 s watchdog: the daemon must ping every second, well within the timeout.
    daemon = start_daemon(config, notify_socket.env(WATCHDOG_USEC="2000000"))

    ready = notify_socket.wait_for("READY=1")
    pings = [notify_socket.wait_for("WATCHDOG=1", timeout=2.0) for _ in range(3)]
    daemon.send(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING=1")
    ready_again = notify_socket.wait_for("READY=1")
    daemon.send(signal.SIGTERM)
    stopping = notify_socket.wait_for("STOPPING=1")

    assert ready["STATUS"] and len(pings) == 3
    assert int(reloading["MONOTONIC_USEC"]) > 0 and ready_again["READY"] == "1"
    assert stopping["STOPPING"] == "1"
    assert daemon.wait_exit() == 0


def test_no_watchdog_pings_unless_asked(
    tmp_path: Path, start_daemon: StartDaemon, notify_socket: NotifyReceiver
) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    daemon = start_daemon(config, notify_socket.env())

    notify_socket.wait_for("READY=1")
    assert daemon.stop() == 0
    notify_socket.wait_for("STOPPING=1")
    assert not any("WATCHDOG" in message for message in notify_socket.drain())


def test_an_invalid_config_stops_start_up_naming_the_key_and_line(
    tmp_path: Path, start_daemon: StartDaemon, notify_socket: NotifyReceiver
) -> None:
    settings = base_config(free_port())
    settings["scheduler"]["catchup_rate"] = "fast"
    config = write_config(tmp_path / "config.toml", settings)

    daemon = start_daemon(config, notify_socket.env(), ready=False)

    assert daemon.wait_exit() == 2
    assert f"{config}:" in daemon.log_text() and "scheduler.catchup_rate" in daemon.log_text()
    assert not any("READY" in message for message in notify_socket.drain())


def test_an_http_launcher_without_its_token_is_a_warning_at_start_up(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    settings = base_config(free_port())
    unset = "AGENTCRON_E2E_UNSET_TOKEN"
    settings["launcher"] = {"type": "http", "url": "http://127.0.0.1:9/s", "token_env": unset}
    config = write_config(tmp_path / "config.toml", settings)

    daemon = start_daemon(config, {unset: "", "CREDENTIALS_DIRECTORY": ""})

    daemon.wait_for_event("daemon_ready")
    names = [event["event"] for event in daemon.events()]
    assert names.index("launcher_token_missing") < names.index("daemon_ready")
    warning = daemon.wait_for_event("launcher_token_missing")
    assert (warning["level"], warning["token_env"]) == ("warning", unset)
    assert "without an Authorization header" in warning["reason"]


def test_sigint_stops_like_sigterm(tmp_path: Path, start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    daemon = start_daemon(config)

    daemon.send(signal.SIGINT)

    assert daemon.wait_exit() == 0


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "config.toml", base_config(port))
        result = run_cli("serve", "--config", str(config))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_background_task_that_dies_stops_the_daemon_with_a_failure(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    """The finisher meets an error it cannot retry (a trigger another program put on the
    runs table refuses every update): the daemon says which task died and exits 1, so that
    systemd restarts it, instead of serving on with runs that never finish."""
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    daemon = start_daemon(config)
    body = {"name": "n", "prompt": "p", "frequency": "@yearly"}
    status, schedule = daemon.call("POST", daemon.devin("/schedules"), body=body)
    assert status == 200
    with contextlib.closing(sqlite3.connect(tmp_path / "agentcron.db")) as db:
        db.execute(
            "CREATE TRIGGER refuse_run_updates BEFORE UPDATE ON runs "
            "BEGIN SELECT RAISE(ABORT, 'runs are frozen'); END"
        )
        db.commit()
    since = daemon.mark()

    status, run = daemon.call(
        "POST", daemon.devin(f"/schedules/{schedule['scheduled_session_id']}/trigger")
    )

    assert status == 202 and run["status"] == "launching"
    died = daemon.wait_for_event("background_task_died", since=since)
    assert died["task"] == "engine-finisher" and "runs are frozen" in died["error"]
    assert daemon.wait_exit() == 1
