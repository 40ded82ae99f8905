"""SIGHUP reloads the configuration file into the running daemon, or keeps the old one."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    READER_TOKEN,
    DaemonProcess,
    NotifyReceiver,
    base_config,
    fired_lines,
    free_port,
    wait_until,
    write_config,
)

StartDaemon = Callable[..., DaemonProcess]
FIRE_TIMEOUT = 20.0


def reload(daemon: DaemonProcess, config: dict[str, Any], outcome: str) -> dict[str, Any]:
    """Rewrite the config file, SIGHUP, and return the `outcome` event it leads to."""
    write_config(daemon.config_path, config)
    since = daemon.mark()
    daemon.send(signal.SIGHUP)
    return daemon.wait_for_event(outcome, since=since)


def schedules_by_name(daemon: DaemonProcess, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    status, page = daemon.call("GET", daemon.devin("/schedules?limit=100"), token=token)
    assert status == 200, page
    return {schedule["name"]: schedule for schedule in page["items"]}


def entry(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "prompt": f"{name} prompt", "cron": "0 0 1 1 *", **fields}


def one_time_entry(name: str, seconds_ahead: float) -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(seconds=seconds_ahead)).replace(microsecond=0)
    return {
        "name": name,
        "prompt": f"{name} prompt",
        "schedule_type": "one_time",
        "scheduled_at": at,
    }


def started(start_daemon: StartDaemon, tmp_path: Path, config: dict[str, Any]) -> DaemonProcess:
    return start_daemon(write_config(tmp_path / "config.toml", config))


def test_an_invalid_file_keeps_the_running_configuration(
    tmp_path: Path, start_daemon: StartDaemon, notify_socket: NotifyReceiver
) -> None:
    config = base_config(free_port())
    daemon = start_daemon(write_config(tmp_path / "config.toml", config), notify_socket.env())
    notify_socket.wait_for("READY=1")
    broken = {**config, "service_users": [], "scheduler": {"catchup_rate": "fast"}}

    failed = reload(daemon, broken, "config_reload_failed")

    assert f"{daemon.config_path}:" in failed["error"]
    assert "scheduler.catchup_rate" in failed["error"]
    notify_socket.wait_for("RELOADING=1")
    notify_socket.wait_for("READY=1")
    assert daemon.call("GET", daemon.devin("/schedules"), token=READER_TOKEN)[0] == 200
    assert reload(daemon, config, "config_reloaded")["event"] == "config_reloaded"
    assert daemon.process.poll() is None


def test_a_file_that_is_not_toml_keeps_the_running_configuration(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = started(start_daemon, tmp_path, base_config(free_port()))
    daemon.config_path.write_text("[server\nlisten = ", encoding="utf-8")
    since = daemon.mark()

    daemon.send(signal.SIGHUP)

    failed = daemon.wait_for_event("config_reload_failed", since=since)
    assert "invalid TOML" in failed["error"]
    assert daemon.call("GET", daemon.devin("/schedules"))[0] == 200


def test_a_new_schedule_entry_is_created_and_a_removed_one_disabled(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = base_config(free_port())
    config["schedules"] = [entry("weekly-report")]
    daemon = started(start_daemon, tmp_path, config)
    status, made = daemon.call(
        "POST",
        daemon.devin("/schedules"),
        body={"name": "api-made", "prompt": "p", "frequency": "0 9 * * *"},
    )
    assert status == 200, made

    reload(
        daemon,
        {**config, "schedules": [entry("monthly-report", cron="0 6 1 * *")]},
        "config_reloaded",
    )

    schedules = schedules_by_name(daemon)
    created = schedules["monthly-report"]
    assert (created["created_by"], created["frequency"], created["enabled"]) == (
        "config",
        "0 6 1 * *",
        True,
    )
    assert created["next_run_at"] is not None
    removed = schedules["weekly-report"]
    assert (removed["enabled"], removed["paused_reason"]) == (
        False,
        "removed from the configuration file",
    )
    assert removed["next_run_at"] is None
    assert schedules["api-made"] == made


def test_a_removed_service_user_token_is_refused_at_once(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = base_config(free_port())
    daemon = started(start_daemon, tmp_path, config)
    assert daemon.call("GET", daemon.devin("/schedules"), token=READER_TOKEN)[0] == 200

    reload(daemon, {**config, "service_users": config["service_users"][:1]}, "config_reloaded")

    assert daemon.call("GET", daemon.devin("/schedules"), token=READER_TOKEN)[0] == 401
    assert daemon.call("GET", daemon.devin("/schedules"), token=ADMIN_TOKEN)[0] == 200


def test_a_config_schedule_fires(tmp_path: Path, start_daemon: StartDaemon) -> None:
    config = base_config(free_port())
    config["schedules"] = [one_time_entry("soon", seconds_ahead=4)]
    daemon = started(start_daemon, tmp_path, config)
    schedule_id = schedules_by_name(daemon)["soon"]["scheduled_session_id"]

    lines = wait_until(lambda: fired_lines(tmp_path), "the launcher's line", FIRE_TIMEOUT)

    assert lines[0].startswith(f"{schedule_id} run-") and lines[0].endswith("soon prompt")
    fired = wait_until(
        lambda: (s := schedules_by_name(daemon)["soon"])["last_executed_at"] and s,
        "last_executed_at",
    )
    assert (fired["enabled"], fired["next_run_at"], fired["consecutive_failures"]) == (
        False,
        None,
        0,
    )


def test_a_schedule_added_by_reload_fires(tmp_path: Path, start_daemon: StartDaemon) -> None:
    config = base_config(free_port())
    daemon = started(start_daemon, tmp_path, config)

    reload(
        daemon,
        {**config, "schedules": [one_time_entry("added", seconds_ahead=4)]},
        "config_reloaded",
    )

    lines = wait_until(lambda: fired_lines(tmp_path), "the launcher's line", FIRE_TIMEOUT)
    assert lines[0].endswith("added prompt")


def test_the_logging_level_follows_the_file(
    tmp_path: Path, start_daemon: StartDaemon, notify_socket: NotifyReceiver
) -> None:
    config = base_config(free_port())
    daemon = start_daemon(write_config(tmp_path / "config.toml", config), notify_socket.env())
    notify_socket.wait_for("READY=1")
    quiet = {**config, "logging": {"level": "warning", "format": "json"}}
    write_config(daemon.config_path, quiet)
    since = daemon.mark()
    daemon.send(signal.SIGHUP)
    notify_socket.wait_for("RELOADING=1")
    notify_socket.wait_for("READY=1")

    failed = reload(
        daemon, {**quiet, "scheduler": {"catchup_rate": "fast"}}, "config_reload_failed"
    )

    later = [event["event"] for event in daemon.events()[since:]]
    assert failed["level"] == "error"
    # Only the first reload's start is logged: it came before the level changed.
    assert later.count("config_reload_started") == 1 and "config_reloaded" not in later


def test_a_new_listen_address_waits_for_a_restart_and_the_rest_applies(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = base_config(free_port())
    daemon = started(start_daemon, tmp_path, config)
    since = daemon.mark()
    moved = {
        **config,
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "schedules": [entry("kept")],
    }

    reload(daemon, moved, "config_reloaded")

    refused = daemon.wait_for_event("config_reload_refused", since=since)
    assert refused["key"] == "server.listen" and "restart" in refused["reason"]
    assert "kept" in schedules_by_name(daemon)
