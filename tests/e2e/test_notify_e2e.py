"""`agentcron serve` telling Slack and a webhook about failed runs, end to end.

The real daemon process runs on a temporary config with the http launcher pointed at a
loopback session service that refuses every session of the "failing" schedule (HTTP 500)
and accepts those of the "healthy" one, a loopback Slack Web API and a webhook receiver.
Schedules are created and triggered through the Devin API, as a user would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.notify_webhook import verify_webhook_signature

DEADLINE = 20.0
ORG = "org-local"
API_TOKEN = "cog_e2e_notify_admin"
SLACK_TOKEN = "xoxb-e2e-token"
WEBHOOK_SECRET = "whsec-e2e-secret"
SESSION_TOKEN = "session-e2e-token"
CHANNEL = "C0E2ENOTIFY"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Recorder:
    """Requests one loopback peer received, with a condition to wait on them."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, request: web.Request) -> bytes:
        body = await request.read()
        async with self.changed:
            self.requests.append((dict(request.headers), body))
            self.changed.notify_all()
        return body

    async def wait_for(self, count: int, within: float = DEADLINE) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: len(self.requests) >= count)

    def bodies(self) -> list[Any]:
        return [json.loads(body) for _, body in self.requests]


@dataclass
class Peers:
    """The daemon's outside world: session service, Slack, webhook receiver."""

    sessions: Recorder
    slack: Recorder
    webhook: Recorder
    servers: list[TestServer]

    def url(self, index: int, path: str) -> str:
        """`path` on peer `index`, verbatim (a `{org_id}` placeholder stays as written)."""
        return f"http://127.0.0.1:{self.servers[index].port}{path}"


async def session_service(recorder: Recorder, request: web.Request) -> web.Response:
    body = json.loads(await recorder.add(request))
    if str(body.get("title", "")).startswith("failing"):
        return web.json_response({"detail": "sessions are down"}, status=500)
    return web.json_response({"session_id": "devin-e2e", "url": "https://app.example/devin-e2e"})


async def slack_post_message(recorder: Recorder, request: web.Request) -> web.Response:
    body = json.loads(await recorder.add(request))
    if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
        return web.json_response({"ok": False, "error": "invalid_auth"})
    return web.json_response({"ok": True, "channel": body["channel"], "ts": "1.000100"})


async def webhook_receiver(recorder: Recorder, request: web.Request) -> web.Response:
    await recorder.add(request)
    return web.Response(status=204)


def single_route(path: str, recorder: Recorder, handler: Any) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        response: web.Response = await handler(recorder, request)
        return response

    app = web.Application()
    app.router.add_post(path, handle)
    return app


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    sessions, slack, webhook = Recorder(), Recorder(), Recorder()
    apps = [
        single_route("/v3/organizations/{org_id}/sessions", sessions, session_service),
        single_route("/api/chat.postMessage", slack, slack_post_message),
        single_route("/hook", webhook, webhook_receiver),
    ]
    servers = [TestServer(app, host="127.0.0.1") for app in apps]
    for server in servers:
        await server.start_server()
    yield Peers(sessions, slack, webhook, servers)
    for server in servers:
        await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(tmp_path: Path, peers: Peers, port: int) -> Path:
    token_hash = hashlib.sha256(API_TOKEN.encode()).hexdigest()
    config = tmp_path / "agentcron.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "agentcron.db"
[logging]
level = "info"
format = "json"
[scheduler]
max_consecutive_failures = 1
shutdown_grace = "5s"
[[orgs]]
id = "{ORG}"
name = "Local"
[[service_users]]
id = "service-admin"
org = "{ORG}"
permissions = ["ManageOrgSchedules", "ImpersonateOrgSessions", "ManageOrgPlaybooks"]
token_sha256 = "{token_hash}"
[launcher]
type = "http"
url = "{peers.url(0, "/v3/organizations/{org_id}/sessions")}"
token_env = "AGENTCRON_E2E_SESSION_TOKEN"
timeout = "10s"
max_attempts = 2
[notify]
slack_api_url = "{peers.url(1, "/api")}"
slack_token_env = "AGENTCRON_E2E_SLACK_TOKEN"
webhook_url = "{peers.url(2, "/hook")}"
webhook_secret_env = "AGENTCRON_E2E_WEBHOOK_SECRET"
""",
        encoding="utf-8",
    )
    return config


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    base: str
    http: aiohttp.ClientSession
    log_path: Path

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        url = f"{self.base}/v3/organizations/{ORG}{path}"
        async with self.http.request(method, url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    async def terminate(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            return await self.process.wait()


async def wait_ready(http: aiohttp.ClientSession, base: str, process: Any) -> None:
    """Poll /readyz until it answers 200 (the process must stay alive meanwhile)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            assert process.returncode is None, "agentcron serve exited during start-up"
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def daemon(tmp_path: Path, peers: Peers) -> AsyncIterator[Daemon]:
    port = free_port()
    config = write_config(tmp_path, peers, port)
    env: Mapping[str, str] = {
        **os.environ,
        "AGENTCRON_E2E_SESSION_TOKEN": SESSION_TOKEN,
        "AGENTCRON_E2E_SLACK_TOKEN": SLACK_TOKEN,
        "AGENTCRON_E2E_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PYTHONPATH": str(REPO),
    }
    log_path = tmp_path / "agentcron.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.cli",
            "serve",
            "--config",
            str(config),
            cwd=tmp_path,
            env=dict(env),
            stdout=log_file,
            stderr=log_file,
        )
    async with aiohttp.ClientSession() as http:
        running = Daemon(process, f"http://127.0.0.1:{port}", http, log_path)
        try:
            await wait_ready(http, running.base, process)
            yield running
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def create_one_time(daemon: Daemon, name: str, due: datetime) -> str:
    """A one_time schedule through the Devin API, due at `due`, telling Slack on failure."""
    status, schedule = await daemon.call(
        "POST",
        "/schedules",
        {
            "name": name,
            "prompt": f"the {name} job",
            "schedule_type": "one_time",
            "scheduled_at": due.isoformat(),
            "notify_on": "failure",
            "slack_channel_id": CHANNEL,
        },
    )
    assert status == 200, schedule
    schedule_id: str = schedule["scheduled_session_id"]
    return schedule_id


async def test_one_slack_message_per_failed_fire(daemon: Daemon, peers: Peers) -> None:
    due = datetime.now(UTC) + timedelta(seconds=3)
    failing = [await create_one_time(daemon, f"failing {i}", due) for i in (1, 2)]
    healthy = await create_one_time(daemon, "healthy", due)

    await peers.slack.wait_for(2)
    await peers.webhook.wait_for(4)
    # The healthy run's session was asked for; its success is told to nobody.
    await peers.sessions.wait_for(1 + 2 * 2)  # failing runs: two attempts each
    for schedule_id in [*failing, healthy]:
        await wait_for_fire(daemon, schedule_id)
    assert await daemon.terminate() == 0  # delivers what is queued before exiting

    messages = peers.slack.bodies()
    assert len(messages) == 2
    assert sorted(message["text"].split(" failed")[0] for message in messages) == [
        "Schedule failing 1",
        "Schedule failing 2",
    ]
    assert all(message["channel"] == CHANNEL for message in messages)
    assert all("500" in message["text"] for message in messages)
    # max_consecutive_failures = 1: each failure also paused its schedule, in the same message.
    assert all("auto-paused" in message["text"] for message in messages)
    assert all(
        headers["Authorization"] == f"Bearer {SLACK_TOKEN}" for headers, _ in peers.slack.requests
    )

    events = peers.webhook.bodies()
    assert sorted(event["type"] for event in events) == [
        "run.failed",
        "run.failed",
        "schedule.auto_paused",
        "schedule.auto_paused",
    ]
    assert sorted(event["schedule"]["id"] for event in events) == sorted(failing * 2)
    for headers, body in peers.webhook.requests:
        assert verify_webhook_signature(
            WEBHOOK_SECRET,
            headers["X-Agentcron-Timestamp"],
            body,
            headers["X-Agentcron-Signature"],
            now=time.time(),
        )
    sent = [event for event in daemon.log_events() if event.get("event") == "notification_sent"]
    assert len(sent) == 6  # two Slack messages, four webhook events


async def wait_for_fire(daemon: Daemon, schedule_id: str) -> dict[str, Any]:
    """The schedule once its one_time fire is recorded (last_executed_at set)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            status, schedule = await daemon.call("GET", f"/schedules/{schedule_id}")
            assert status == 200, schedule
            if schedule["last_executed_at"] is not None:
                return dict(schedule)
            await asyncio.sleep(0.1)
