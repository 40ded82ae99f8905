"""`agentcron schedules ...` against the real daemon, as an operator would run it."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    ORG,
    DaemonProcess,
    base_config,
    fired_lines,
    free_port,
    run_cli,
    wait_until,
    write_config,
)

StartDaemon = Callable[..., DaemonProcess]
FIRE_TIMEOUT = 20.0


@pytest.fixture
def daemon(tmp_path: Path, start_daemon: StartDaemon) -> Iterator[DaemonProcess]:
    yield start_daemon(write_config(tmp_path / "config.toml", base_config(free_port())))


def cli(
    daemon: DaemonProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`agentcron schedules ARGS` pointed at `daemon` with the admin token."""
    env = {"AGENTCRON_TOKEN": ADMIN_TOKEN, "AGENTCRON_URL": daemon.base_url}
    return run_cli("schedules", *args, env=env, stdin=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def fields(output: str) -> dict[str, str]:
    """The `key: value` lines of one object's output."""
    pairs = (line.partition(": ") for line in output.splitlines())
    return {key: value.strip() for key, colon, value in pairs if colon}


def create_nightly(daemon: DaemonProcess) -> dict[str, Any]:
    return ok_json(
        cli(
            daemon,
            "create",
            "--name",
            "nightly",
            "--prompt",
            "Summarise the day.",
            "--frequency",
            "0 2 * * *",
            "--timezone",
            "Europe/Paris",
            "--json",
        )
    )


def test_create_list_get_patch_delete(daemon: DaemonProcess) -> None:
    created = create_nightly(daemon)
    schedule_id = created["scheduled_session_id"]
    assert (created["frequency"], created["timezone"], created["enabled"]) == (
        "0 2 * * *",
        "Europe/Paris",
        True,
    )

    table = ok(cli(daemon, "list")).splitlines()
    assert table[0].split() == [
        "ID",
        "NAME",
        "TYPE",
        "FREQUENCY/AT",
        "TIMEZONE",
        "ENABLED",
        "NEXT",
        "RUN",
        "FAILURES",
    ]
    row = table[1]
    for cell in (schedule_id, "nightly", "recurring", "0 2 * * *", "Europe/Paris", "yes"):
        assert cell in row
    assert row.split()[-1] == "0"
    listed = ok_json(cli(daemon, "list", "--json"))
    assert [item["scheduled_session_id"] for item in listed["items"]] == [schedule_id]

    shown = ok(cli(daemon, "get", schedule_id)).splitlines()
    assert all(line.split()[0].endswith(":") for line in shown)
    assert fields("\n".join(shown))["name"] == "nightly"

    patched = ok_json(
        cli(daemon, "patch", schedule_id, "--disabled", "--name", "nightly-2", "--json")
    )
    assert (patched["name"], patched["enabled"], patched["next_run_at"]) == (
        "nightly-2",
        False,
        None,
    )
    body = ok_json(cli(daemon, "patch", schedule_id, "--json", '{"prompt": "From JSON."}'))
    assert body["prompt"] == "From JSON." and body["name"] == "nightly-2"
    piped = ok_json(cli(daemon, "patch", schedule_id, "--json", "-", stdin='{"enabled": true}'))
    assert piped["enabled"] is True

    assert ok(cli(daemon, "delete", schedule_id)).strip() == f"deleted {schedule_id} (nightly-2)"
    gone = cli(daemon, "get", schedule_id)
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_create_one_time_from_flags_prints_fields(daemon: DaemonProcess) -> None:
    output = ok(
        cli(
            daemon,
            "create",
            "--name",
            "once",
            "--prompt",
            "p",
            "--scheduled-at",
            "2099-01-01T09:00:00Z",
        )
    )

    shown = fields(output)
    assert shown["schedule_type"] == "one_time"
    assert shown["scheduled_at"].startswith("2099-01-01T09:00:00")
    assert shown["name"] == "once"


def test_json_before_the_id_prints_json_and_body_sends_one(daemon: DaemonProcess) -> None:
    schedule_id = create_nightly(daemon)["scheduled_session_id"]

    disabled = ok_json(cli(daemon, "patch", "--json", schedule_id, "--disabled"))
    enabled = ok_json(cli(daemon, "patch", "--json", schedule_id, "--enabled"))
    renamed = ok(cli(daemon, "patch", schedule_id, "--body", '{"name": "renamed"}'))

    assert (disabled["enabled"], enabled["enabled"]) == (False, True)
    assert fields(renamed)["name"] == "renamed"


def test_trigger_then_runs(daemon: DaemonProcess, tmp_path: Path) -> None:
    schedule_id = create_nightly(daemon)["scheduled_session_id"]

    run = ok_json(cli(daemon, "trigger", schedule_id, "--json"))

    assert (run["schedule_id"], run["trigger"], run["status"]) == (
        schedule_id,
        "manual",
        "launching",
    )
    wait_until(lambda: fired_lines(tmp_path), "the triggered launch", FIRE_TIMEOUT)

    def finished() -> list[str] | None:
        lines = ok(cli(daemon, "runs", schedule_id)).splitlines()
        return lines if len(lines) > 1 and "succeeded" in lines[1] else None

    lines = wait_until(finished, "the run to succeed", FIRE_TIMEOUT)
    assert lines[0].split()[:2] == ["ID", "SCHEDULED"]
    assert lines[1].split()[0] == run["id"]
    runs = ok_json(cli(daemon, "runs", schedule_id, "--json"))
    assert [item["id"] for item in runs["items"]] == [run["id"]]


def test_a_template_schedule_previewed_then_backfilled(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    created = ok_json(
        cli(
            daemon,
            "create",
            "--name",
            "hourly",
            "--prompt",
            "report for {{ scheduled_for }} by {{ schedule.name }}",
            "--prompt-format",
            "template",
            "--frequency",
            "0 * * * *",
            "--json",
        )
    )
    schedule_id = created["scheduled_session_id"]
    preview = fields(ok(cli(daemon, "preview", schedule_id)))
    next_run_at = created["next_run_at"].replace("Z", "+00:00")
    assert preview["prompt"] == f"report for {next_run_at} by hourly"

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = (now - timedelta(hours=2)).isoformat(), now.isoformat()
    answer = ok_json(cli(daemon, "backfill", schedule_id, "--start", start, "--end", end, "--json"))
    assert answer == {
        "count": 2,
        "first": (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
        "last": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }

    def two_fired() -> list[str] | None:
        found = fired_lines(tmp_path)
        return found if len(found) >= 2 else None

    lines = wait_until(two_fired, "the two backfilled launches", FIRE_TIMEOUT)
    prompts = sorted(line.split(" ", 2)[2] for line in lines)
    assert prompts == [
        f"report for {(now - timedelta(hours=h)).isoformat()} by hourly" for h in (2, 1)
    ]
    refused = cli(daemon, "backfill", schedule_id, "--start", end, "--end", start)
    assert refused.returncode == 1 and "end must be after start" in refused.stderr


def test_an_unknown_id_prints_the_servers_detail_and_exits_1(daemon: DaemonProcess) -> None:
    status, answer = daemon.call("GET", daemon.devin("/schedules/sched-unknown"))

    result = cli(daemon, "get", "sched-unknown")

    assert status == 404
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"agentcron: HTTP 404: {answer['detail']}"


def test_a_validation_error_names_the_field_and_exits_1(daemon: DaemonProcess) -> None:
    result = cli(daemon, "create", "--name", "bad", "--prompt", "p", "--frequency", "0 0 30 2 *")

    assert result.returncode == 1
    assert result.stderr.startswith("agentcron: HTTP 422: ") and "frequency" in result.stderr


def test_usage_errors_exit_2(daemon: DaemonProcess) -> None:
    no_token = run_cli("schedules", "list", "--url", daemon.base_url, env={"AGENTCRON_TOKEN": ""})
    bad_body = cli(daemon, "create", "--body", "[1, 2]")
    unknown = cli(daemon, "frobnicate")

    assert (no_token.returncode, bad_body.returncode, unknown.returncode) == (2, 2, 2)
    assert "AGENTCRON_TOKEN" in no_token.stderr and "JSON object" in bad_body.stderr


def test_an_unreachable_daemon_exits_1() -> None:
    port = free_port()
    env = {"AGENTCRON_TOKEN": ADMIN_TOKEN}

    result = run_cli("schedules", "list", "--url", f"http://127.0.0.1:{port}", env=env)

    assert result.returncode == 1 and "cannot reach" in result.stderr


def agentscope_create(daemon: DaemonProcess) -> str:
    """A schedule made through the AgentScope façade, as user-alice; its id."""
    body = {"agent_id": "agent-reporter", "name": "report", "cron_expression": "0 9 * * *"}
    request = urllib.request.Request(
        daemon.url("/schedule/"),
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-User-ID": "user-alice"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert response.status == 201
        schedule_id: str = json.loads(response.read())["schedule_id"]
    return schedule_id


def test_the_operator_sees_schedules_of_every_agent(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = base_config(free_port())
    config["agentscope"] = {"enabled": True, "org": ORG}
    daemon = start_daemon(write_config(tmp_path / "config.toml", config))
    foreign = agentscope_create(daemon)
    mine = create_nightly(daemon)["scheduled_session_id"]

    listed = ok_json(cli(daemon, "list", "--json"))
    table = ok(cli(daemon, "list"))
    shown = ok_json(cli(daemon, "get", foreign, "--json"))
    runs = ok_json(cli(daemon, "runs", foreign, "--json"))

    assert [item["scheduled_session_id"] for item in listed["items"]] == [foreign, mine]
    assert listed["total"] == 2
    assert foreign in table and mine in table
    assert (shown["scheduled_session_id"], shown["agent"]) == (foreign, "agent-reporter")
    assert runs["total"] == 0
    assert daemon.call("GET", daemon.devin(f"/schedules/{foreign}"))[0] == 404
