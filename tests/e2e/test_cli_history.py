"""`agentcron schedules ... --if-match`, `schedules history`, and the history a SIGHUP reload
writes, against the real daemon."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonProcess, base_config, free_port, write_config
from tests.e2e.test_operator_cli import StartDaemon, cli, create_nightly, fields, ok, ok_json


@pytest.fixture
def daemon(tmp_path: Path, start_daemon: StartDaemon) -> Iterator[DaemonProcess]:
    yield start_daemon(write_config(tmp_path / "config.toml", base_config(free_port())))


def test_an_edit_with_a_stale_version_is_refused_and_the_history_shows_what_was_made(
    daemon: DaemonProcess,
) -> None:
    schedule_id = create_nightly(daemon)["scheduled_session_id"]
    assert fields(ok(cli(daemon, "get", schedule_id)))["version"] == "1"
    edited = ok(cli(daemon, "patch", schedule_id, "--name", "nightly-2", "--if-match", "1"))
    assert fields(edited)["version"] == "2"

    stale = cli(daemon, "patch", schedule_id, "--name", "lost", "--if-match", "1")
    assert stale.returncode == 1
    assert "HTTP 412" in stale.stderr and '"2"' in stale.stderr
    refused = cli(daemon, "delete", schedule_id, "--if-match", "1")
    assert refused.returncode == 1 and "HTTP 412" in refused.stderr
    assert fields(ok(cli(daemon, "get", schedule_id)))["name"] == "nightly-2"

    table = ok(cli(daemon, "history", schedule_id)).splitlines()
    assert table[0].split() == ["AT", "BY", "ACTION", "CHANGES"]
    assert table[1].split()[1:4] == ["service-user-admin", "updated", "name:"]
    assert "name: nightly -> nightly-2" in table[1]
    assert table[2].split()[2] == "created" and len(table) == 3

    assert ok(cli(daemon, "delete", schedule_id, "--if-match", "*")).startswith("deleted")
    after = ok(cli(daemon, "history", schedule_id, "--limit", "1")).splitlines()
    assert after[1].split()[2] == "deleted" and after[-1] == "(1 shown of 3)"


def test_a_version_that_is_not_a_number_is_a_usage_error(daemon: DaemonProcess) -> None:
    result = cli(daemon, "delete", "sched-x", "--if-match", "latest")
    assert result.returncode == 2 and "--if-match" in result.stderr


def test_a_reload_that_changes_a_declared_schedule_is_history_by_config(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = base_config(free_port())
    declared = {"org": "org-local", "name": "declared", "prompt": "v1", "cron": "0 0 1 1 *"}
    daemon = start_daemon(
        write_config(tmp_path / "config.toml", config | {"schedules": [declared]})
    )
    (schedule,) = ok_json(cli(daemon, "list", "--json"))["items"]
    before = fields(ok(cli(daemon, "get", schedule["scheduled_session_id"])))["version"]

    write_config(daemon.config_path, config | {"schedules": [declared | {"prompt": "v2"}]})
    since = daemon.mark()
    daemon.send(signal.SIGHUP)
    daemon.wait_for_event("config_reloaded", since=since)

    answer = ok_json(cli(daemon, "history", schedule["scheduled_session_id"], "--json"))
    edited, created = answer["items"]
    assert (created["by"], created["action"]) == ("config", "created")
    assert (edited["by"], edited["action"]) == ("config", "updated")
    assert edited["changes"] == {"prompt": ["v1", "v2"]}
    after = fields(ok(cli(daemon, "get", schedule["scheduled_session_id"])))["version"]
    assert int(after) == int(before) + 1
