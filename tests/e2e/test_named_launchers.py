"""Named launchers in the real daemon: a schedule picks one, a fire goes through it, and a
configuration that names a missing launcher (at start, or a reload stranding schedules) is
refused with a message naming what is missing."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    DaemonProcess,
    base_config,
    fired_lines,
    free_port,
    wait_until,
    write_config,
)

StartDaemon = Callable[..., DaemonProcess]


def with_night_launcher(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with a second command launcher, `night`, appending to night.log."""
    night = {
        "type": "command",
        "command": ["sh", "-c", 'echo "$AGENTCRON_SCHEDULE_ID" >> night.log'],
        "timeout": "20s",
    }
    return {**config, "launchers": {"night": night}}


def reload(daemon: DaemonProcess, config: dict[str, Any], outcome: str) -> dict[str, Any]:
    write_config(daemon.config_path, config)
    since = daemon.mark()
    daemon.send(signal.SIGHUP)
    return daemon.wait_for_event(outcome, since=since)


def test_a_config_naming_a_missing_launcher_does_not_start(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    settings = base_config(free_port())
    settings["schedules"] = [{"name": "r", "prompt": "p", "cron": "@daily", "launcher": "night"}]
    config = write_config(tmp_path / "config.toml", settings)

    daemon = start_daemon(config, ready=False)

    assert daemon.wait_exit() == 2
    assert "schedules[0].launcher: unknown launcher 'night' (configured: default)" in (
        daemon.log_text()
    )


def test_a_schedule_runs_on_its_launcher_and_keeps_it_through_a_reload(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    plain = base_config(free_port())
    config = with_night_launcher(plain)
    daemon = start_daemon(write_config(tmp_path / "config.toml", config))
    status, refused = daemon.call(
        "POST",
        daemon.devin("/schedules"),
        body={"name": "x", "prompt": "p", "frequency": "0 9 * * *", "launcher": "nope"},
    )
    assert status == 422 and "unknown launcher 'nope'" in refused["detail"][0]["msg"]
    status, made = daemon.call(
        "POST",
        daemon.devin("/schedules"),
        body={"name": "nightly", "prompt": "p", "frequency": "0 9 * * *", "launcher": "night"},
    )
    assert (status, made["launcher"]) == (200, "night")
    schedule_id = made["scheduled_session_id"]

    status, _ = daemon.call("POST", daemon.devin(f"/schedules/{schedule_id}/trigger"))
    assert status == 202
    night_log = tmp_path / "night.log"
    wait_until(
        lambda: night_log.exists() and schedule_id in night_log.read_text(), "the night fire"
    )
    assert fired_lines(tmp_path) == []  # not through the default launcher

    failed = reload(daemon, plain, "config_reload_failed")
    assert "launchers still used by schedules cannot be removed" in failed["error"]
    assert f"'nightly' ({schedule_id}, launcher 'night')" in failed["error"]
    assert daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}"))[1]["launcher"] == "night"

    status, moved = daemon.call(
        "PATCH", daemon.devin(f"/schedules/{schedule_id}"), body={"launcher": None}
    )
    assert (status, moved["launcher"]) == (200, None)
    assert reload(daemon, plain, "config_reloaded")["event"] == ("config_reloaded")
    status, refused = daemon.call(
        "PATCH", daemon.devin(f"/schedules/{schedule_id}"), body={"launcher": "night"}
    )
    assert status == 422
