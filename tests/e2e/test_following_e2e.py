"""`agentcron serve` following launched sessions to their end, across restarts.

The real daemon runs with `[launcher] follow = true` against a loopback session service that
answers Devin v3's GET session, its sessions moving through states the test scripts; a
loopback Slack Web API records the messages. Schedules are made and triggered through the
Devin API, as a user would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DaemonProcess, base_config, free_port, wait_until, write_config
from tests.e2e.threaded_service import ThreadedSessionService, threaded_session_service

StartDaemon = Callable[..., DaemonProcess]
SESSION_TOKEN = "session-e2e-follow-token"
SLACK_TOKEN = "xoxb-e2e-follow"
CHANNEL = "C0FOLLOW"
ENV = {"AGENTCRON_E2E_SESSION_TOKEN": SESSION_TOKEN, "AGENTCRON_E2E_SLACK_TOKEN": SLACK_TOKEN}
SESSIONS = 100
SCHEDULES = 10
FOLLOW_DEADLINE = 60.0
"""Seconds a hundred sessions may take to be seen ended on a loaded machine."""


class SlackRecorder:
    """A loopback Slack Web API: records each `chat.postMessage` body, answers ok."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                recorder.messages.append(json.loads(self.rfile.read(length)))
                body = json.dumps({"ok": True, "channel": CHANNEL, "ts": "1.0001"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"


@pytest.fixture
def slack() -> Iterator[SlackRecorder]:
    recorder = SlackRecorder()
    recorder.thread.start()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


@pytest.fixture
def service() -> Iterator[ThreadedSessionService]:
    with threaded_session_service() as started:
        yield started


def follow_config(tmp_path: Path, service: ThreadedSessionService, slack: SlackRecorder) -> Path:
    config = base_config(free_port())
    config["launcher"] = {
        "type": "http",
        "url": service.url,
        "token_env": "AGENTCRON_E2E_SESSION_TOKEN",
        "timeout": "20s",
        "follow": True,
        "follow_interval": "1s",
        "follow_timeout": "1h",
    }
    config["scheduler"] = {"shutdown_grace": "5s", "max_consecutive_failures": 3}
    config["notify"] = {"slack_api_url": slack.url, "slack_token_env": "AGENTCRON_E2E_SLACK_TOKEN"}
    return write_config(tmp_path / "config.toml", config)


def create_schedule(daemon: DaemonProcess, name: str) -> str:
    body = {
        "name": name,
        "prompt": f"the {name} job",
        "frequency": "0 3 * * *",
        "notify_on": "failure",
        "slack_channel_id": CHANNEL,
    }
    status, schedule = daemon.call("POST", daemon.devin("/schedules"), body=body)
    assert status == 200, schedule
    schedule_id: str = schedule["scheduled_session_id"]
    return schedule_id


def trigger(daemon: DaemonProcess, schedule_id: str) -> str:
    status, run = daemon.call("POST", daemon.devin(f"/schedules/{schedule_id}/trigger"))
    assert status == 202, run
    run_id: str = run["id"]
    return run_id


def runs_of(daemon: DaemonProcess, schedule_id: str) -> list[dict[str, Any]]:
    status, page = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}/runs?limit=100"))
    assert status == 200, page
    items: list[dict[str, Any]] = page["items"]
    return items


def schedule_of(daemon: DaemonProcess, schedule_id: str) -> dict[str, Any]:
    status, schedule = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}"))
    assert status == 200, schedule
    return dict(schedule)


def test_a_run_fails_when_its_session_ends_in_error_not_when_it_launches(
    tmp_path: Path, start_daemon: StartDaemon, service: ThreadedSessionService, slack: SlackRecorder
) -> None:
    daemon = start_daemon(follow_config(tmp_path, service, slack), env=ENV)
    schedule_id = create_schedule(daemon, "nightly")
    run_id = trigger(daemon, schedule_id)

    (running,) = wait_until(
        lambda: [r for r in runs_of(daemon, schedule_id) if r["status"] == "running"],
        "the launched run to be running",
    )
    assert (running["id"], running["session_id"], running["finished_at"]) == (
        run_id,
        "devin-1",
        None,
    )
    assert "session_status" in running
    launched = schedule_of(daemon, schedule_id)
    assert launched["last_executed_at"] is not None and launched["consecutive_failures"] == 0
    wait_until(lambda: len(service.polls) >= 2, "two reads of the running session")
    assert schedule_of(daemon, schedule_id)["consecutive_failures"] == 0
    assert slack.messages == []  # a launch is no news
    service.set_status("devin-1", "error")

    (failed,) = wait_until(
        lambda: [r for r in runs_of(daemon, schedule_id) if r["status"] == "failed"],
        "the session's error to fail the run",
        timeout=30.0,
    )
    assert failed["id"] == run_id and failed["session_status"] == "error"
    assert failed["error"] == "session ended error: the session ended in error"
    ended = schedule_of(daemon, schedule_id)
    assert ended["consecutive_failures"] == 1
    assert ended["last_error_message"] == failed["error"]
    wait_until(lambda: slack.messages, "the Slack message about the failed run")
    assert daemon.stop() == 0
    (message,) = slack.messages
    assert message["channel"] == CHANNEL and "session ended error" in message["text"]
    polls = service.polls
    assert len(polls) >= 3 and polls[0].headers["Authorization"] == f"Bearer {SESSION_TOKEN}"


def outcome_of(session_id: str) -> tuple[str, str | None, str]:
    """The end a session is given while the daemon is down, and the run status it means."""
    number = int(session_id.removeprefix("devin-"))
    if number % 3 == 0:
        return "error", None, "failed"
    if number % 3 == 1:
        return "exit", None, "succeeded"
    return "running", "finished", "succeeded"


@pytest.mark.parametrize("stop", ["sigterm", "kill"])
def test_a_restart_follows_a_hundred_running_sessions_to_their_real_ends(
    tmp_path: Path,
    start_daemon: StartDaemon,
    service: ThreadedSessionService,
    slack: SlackRecorder,
    stop: str,
) -> None:
    config = follow_config(tmp_path, service, slack)
    daemon = start_daemon(config, env=ENV)
    schedules = [create_schedule(daemon, f"job {i}") for i in range(SCHEDULES)]
    for index in range(SESSIONS):
        trigger(daemon, schedules[index % SCHEDULES])

    def all_running() -> list[dict[str, Any]] | None:
        runs = [run for schedule_id in schedules for run in runs_of(daemon, schedule_id)]
        return runs if sum(run["status"] == "running" for run in runs) == SESSIONS else None

    before = wait_until(all_running, f"{SESSIONS} runs running", timeout=FOLLOW_DEADLINE)
    if stop == "sigterm":
        assert daemon.stop() == 0
    else:
        daemon.kill()
    for run in before:
        status, detail, _ = outcome_of(run["session_id"])
        service.set_status(run["session_id"], status, detail)

    restarted = start_daemon(config, env=ENV)

    def all_ended() -> list[dict[str, Any]] | None:
        runs = [run for schedule_id in schedules for run in runs_of(restarted, schedule_id)]
        ended = [run for run in runs if run["status"] not in ("launching", "running")]
        return runs if len(ended) == SESSIONS else None

    after = wait_until(all_ended, f"{SESSIONS} runs ended", timeout=FOLLOW_DEADLINE)
    assert {run["id"] for run in after} == {run["id"] for run in before}
    assert [run for run in after if run["status"] == "interrupted"] == []
    for run in after:
        status, detail, expected = outcome_of(run["session_id"])
        assert (run["status"], run["session_status"]) == (
            expected,
            f"{status}/{detail}" if detail else status,
        ), run
    failures = sum(outcome_of(run["session_id"])[2] == "failed" for run in after)
    assert 0 < failures < SESSIONS
    started = next(
        e for e in restarted.events() if e["event"] == "engine_started" and e.get("followed")
    )
    assert (started["followed"], started["interrupted"]) == (SESSIONS, 0)
    assert len(service.requests) == SESSIONS  # no session launched twice
