"""The notifier against real loopback peers: a Slack Web API double and a webhook receiver.

Both peers are aiohttp servers on 127.0.0.1 that record every request. Tests wait for the
requests they expect with a deadline, and use `Notifier.stop()` (which delivers what is
queued before it returns) to know that nothing else is on its way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from daemon.config import NotifyConfig
from daemon.notify import Notifier
from daemon.notify_webhook import verify_webhook_signature
from daemon.retry import Backoff
from storage.clock import Clock
from storage.domain import FinishedRun, Run, Schedule
from storage.enums import NotifyOn, RunStatus, RunTrigger
from tests.conftest import RUN_KEYS

DEADLINE = 5.0
SLACK_TOKEN = "xoxb-test-token"
WEBHOOK_SECRET = "whsec-test-secret"
TOKEN_ENV = "AGENTCRON_TEST_SLACK_TOKEN"
SECRET_ENV = "AGENTCRON_TEST_WEBHOOK_SECRET"
NOMINAL = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- loopback peers


@dataclasses.dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class Peer:
    """A loopback HTTP server that records every request it is sent."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = asyncio.Condition()
        self.server: TestServer | None = None

    async def start(self, app: web.Application) -> None:
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    def url(self, path: str = "") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def record(self, request: web.Request) -> Received:
        received = Received(dict(request.headers), await request.read(), time.monotonic())
        async with self._changed:
            self.received.append(received)
            self._changed.notify_all()
        return received

    async def wait_for(self, count: int, within: float = DEADLINE) -> list[Received]:
        """The requests received once there are at least `count` (TimeoutError after `within`)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


class SlackDouble(Peer):
    """Speaks Slack's `chat.postMessage` wire format.

    `script` holds the answers to give to the next requests, in order; when it is empty the
    message is accepted. Answers: "429" (HTTP 429, Retry-After: 1), "500", "hang" (wait
    for `release`), or a Slack error code answered as `{"ok": false, "error": code}`.
    """

    def __init__(self, token: str = SLACK_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.script: list[str] = []
        self.release = asyncio.Event()

    async def start_slack(self) -> None:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self.post_message)
        await self.start(app)

    @property
    def api_url(self) -> str:
        return self.url("/api")

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        received = await self.record(request)
        answer = self.script.pop(0) if self.script else "ok"
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if answer == "429":
            error = {"ok": False, "error": "ratelimited"}
            return web.json_response(error, status=429, headers={"Retry-After": "1"})
        if answer == "500":
            return web.Response(status=500, text="internal error")
        if answer == "hang":
            await self.release.wait()
        elif answer != "ok":
            return web.json_response({"ok": False, "error": answer})
        channel = received.json()["channel"]
        return web.json_response({"ok": True, "channel": channel, "ts": "1893574800.000100"})


class WebhookReceiver(Peer):
    """Accepts every webhook with 204, unless told to answer `status` to the next ones
    (with `retry_after` as their Retry-After header, when set)."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[int] = []
        self.retry_after: str | None = None

    async def start_receiver(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/agentcron", self.receive)
        await self.start(app)

    @property
    def hook_url(self) -> str:
        return self.url("/hooks/agentcron")

    async def receive(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        if not self.script:
            return web.Response(status=204)
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.Response(status=self.script.pop(0), headers=headers)

    def events(self) -> list[dict[str, Any]]:
        return [received.json() for received in self.received]


@pytest.fixture
async def slack() -> AsyncIterator[SlackDouble]:
    double = SlackDouble()
    await double.start_slack()
    yield double
    double.release.set()
    assert double.server is not None
    await double.server.close()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start_receiver()
    yield receiver
    assert receiver.server is not None
    await receiver.server.close()


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv(TOKEN_ENV, SLACK_TOKEN)
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)


NotifierFactory = Callable[..., Any]


@pytest.fixture(autouse=True)
def default_logging() -> None:
    """Log events at every level reach `capture_logs`, whatever earlier tests configured."""
    structlog.reset_defaults()


@pytest.fixture
async def make_notifier(
    http: aiohttp.ClientSession,
    slack: SlackDouble,
    webhook: WebhookReceiver,
    secrets_set: None,
) -> AsyncIterator[NotifierFactory]:
    """`await make_notifier(start=True, webhook=True, concurrency=4, clock=None,
    **NotifyConfig fields)`."""
    made: list[Notifier] = []

    async def make(
        *,
        start: bool = True,
        webhook_on: bool = True,
        concurrency: int = 4,
        clock: Clock | None = None,
        **fields: Any,
    ) -> Notifier:
        settings: dict[str, Any] = {
            "slack_api_url": slack.api_url,
            "slack_token_env": TOKEN_ENV,
            "webhook_url": webhook.hook_url if webhook_on else "",
            "webhook_secret_env": SECRET_ENV,
            "max_attempts": 4,
            **fields,
        }
        notifier = Notifier(
            NotifyConfig(**settings),
            http=http,
            clock=clock,
            backoff=Backoff(base=0.01),
            concurrency=concurrency,
        )
        made.append(notifier)
        if start:
            await notifier.start()
        return notifier

    yield make
    for notifier in made:
        await notifier.stop(grace=0.5)


# --------------------------------------------------------------------------- finished runs


def finished_run(
    *,
    status: RunStatus = RunStatus.FAILED,
    notify_on: NotifyOn = NotifyOn.FAILURE,
    auto_paused: bool = False,
    channel: str | None = "C0123CHAN",
    team: str | None = None,
    error: str | None = "session service answered HTTP 503: busy",
    consecutive_failures: int = 3,
    name: str = "nightly report",
    session_url: str | None = None,
    trigger: RunTrigger = RunTrigger.CRON,
) -> FinishedRun:
    """A run as `Store.finish_runs` hands it out, with its schedule after the same change."""
    failed = status.is_failure
    schedule = Schedule(
        org_id="org-local",
        name=name,
        prompt="summarise the night",
        created_at=NOMINAL - timedelta(days=30),
        updated_at=NOMINAL,
        cron="0 9 * * *",
        notify_on=notify_on,
        slack_channel_id=channel,
        slack_team_id=team,
        enabled=not auto_paused,
        consecutive_failures=consecutive_failures if failed else 0,
        last_error_message=error if failed else None,
        paused_reason="5 consecutive failures" if auto_paused else None,
    )
    run = Run(
        schedule_id=schedule.id,
        scheduled_for=NOMINAL,
        trigger=trigger,
        started_at=NOMINAL + timedelta(seconds=2),
        finished_at=NOMINAL + timedelta(seconds=4),
        status=status,
        identity="user-alice",
        session_id=None if failed else "devin-abc",
        session_url=session_url,
        attempts=3 if failed else 1,
        error=error if failed else None,
    )
    return FinishedRun(run=run, schedule=schedule, auto_paused=auto_paused)


def metric(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


def dropped(kind: str) -> float:
    return metric("agentcron_notifications_dropped_total", kind)


def sent(kind: str) -> float:
    return metric("agentcron_notifications_sent_total", kind)


def all_text(message: dict[str, Any]) -> str:
    """Every string in a Slack message body, blocks included, joined."""
    return json.dumps(message, ensure_ascii=False)


def events_named(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --------------------------------------------------------------------------- Slack: content


async def test_failed_run_posts_one_slack_message(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    finished = finished_run(team="T0TEAM", session_url="https://app.example/sessions/devin-1")
    notifier.run_finished(finished)

    (request,) = await slack.wait_for(1)
    assert request.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    message = request.json()
    assert message["channel"] == "C0123CHAN"
    assert message["team_id"] == "T0TEAM"
    assert "nightly report" in message["text"]
    assert "failed" in message["text"]
    assert "session service answered HTTP 503: busy" in message["text"]
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert "nightly report failed" in header["text"]["text"]
    rendered = all_text(message["blocks"])
    assert "*Consecutive failures*\\n3" in rendered
    assert "user-alice" in rendered
    assert "2030-01-02 09:00:00 UTC" in rendered  # nominal time
    assert "2030-01-02 09:00:02 UTC" in rendered  # actual start
    assert "https://app.example/sessions/devin-1" in rendered
    assert "auto-paused" not in rendered
    await notifier.stop()
    assert len(slack.received) == 1


async def test_team_id_is_sent_only_when_the_schedule_has_one(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    notifier.run_finished(finished_run(team=None))
    (request,) = await slack.wait_for(1)
    assert "team_id" not in request.json()


async def test_auto_paused_run_says_so_in_slack_and_sends_both_webhook_events(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    finished = finished_run(auto_paused=True, consecutive_failures=5)
    notifier.run_finished(finished)

    (request,) = await slack.wait_for(1)
    message = request.json()
    assert "auto-paused" in message["text"]
    rendered = all_text(message["blocks"])
    assert "*Schedule auto-paused*: 5 consecutive failures" in rendered
    assert "*Consecutive failures*\\n5" in rendered
    await webhook.wait_for(2)
    await notifier.stop()
    types = sorted(event["type"] for event in webhook.events())
    assert types == ["run.failed", "schedule.auto_paused"]
    for event in webhook.events():
        assert event["run"]["id"] == finished.run.id
        assert event["schedule"]["paused_reason"] == "5 consecutive failures"
        assert event["schedule"]["enabled"] is False


async def test_slack_text_is_escaped_for_mrkdwn(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    notifier.run_finished(finished_run(error="exit 1: <stderr> & more"))
    (request,) = await slack.wait_for(1)
    rendered = all_text(request.json()["blocks"])
    assert "exit 1: &lt;stderr&gt; &amp; more" in rendered
    assert "<stderr>" not in rendered


# --------------------------------------------------------------------------- who is told

NOTIFY_TABLE = [
    # notify_on, status, auto_paused, notified
    (NotifyOn.ALWAYS, RunStatus.SUCCEEDED, False, True),
    (NotifyOn.ALWAYS, RunStatus.FAILED, False, True),
    (NotifyOn.ALWAYS, RunStatus.INTERRUPTED, False, True),
    (NotifyOn.FAILURE, RunStatus.SUCCEEDED, False, False),
    (NotifyOn.FAILURE, RunStatus.FAILED, False, True),
    (NotifyOn.FAILURE, RunStatus.INTERRUPTED, False, True),
    (NotifyOn.FAILURE, RunStatus.FAILED, True, True),
    (NotifyOn.NEVER, RunStatus.SUCCEEDED, False, False),
    (NotifyOn.NEVER, RunStatus.FAILED, False, False),
    (NotifyOn.NEVER, RunStatus.FAILED, True, False),
    (NotifyOn.ALWAYS, RunStatus.SKIPPED, False, False),
    (NotifyOn.ALWAYS, RunStatus.MISSED, False, False),
]


@pytest.mark.parametrize(("notify_on", "status", "auto_paused", "notified"), NOTIFY_TABLE)
async def test_notify_on_decides_who_is_told(
    make_notifier: NotifierFactory,
    slack: SlackDouble,
    webhook: WebhookReceiver,
    notify_on: NotifyOn,
    status: RunStatus,
    auto_paused: bool,
    notified: bool,
) -> None:
    notifier = await make_notifier()
    candidate = finished_run(notify_on=notify_on, status=status, auto_paused=auto_paused)
    notifier.run_finished(candidate)
    notifier.run_finished(finished_run(notify_on=NotifyOn.ALWAYS, name="marker"))
    await notifier.stop()  # delivers everything queued before returning

    told = [r.json()["blocks"][-1]["elements"][0]["text"] for r in slack.received]
    assert sum(candidate.run.id in text for text in told) == (1 if notified else 0)
    assert len(slack.received) == (2 if notified else 1)
    webhook_runs = [event["run"]["id"] for event in webhook.events()]
    expected_events = (2 if auto_paused else 1) if notified else 0
    assert webhook_runs.count(candidate.run.id) == expected_events


async def test_success_under_always_is_told_as_succeeded(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    finished = finished_run(notify_on=NotifyOn.ALWAYS, status=RunStatus.SUCCEEDED)
    notifier.run_finished(finished)
    (request,) = await slack.wait_for(1)
    message = request.json()
    assert "nightly report succeeded" in message["text"]
    assert "Consecutive failures" not in all_text(message["blocks"])
    (delivery,) = await webhook.wait_for(1)
    event = delivery.json()
    assert event["type"] == "run.succeeded"
    assert event["run"]["status"] == "succeeded"


async def test_interrupted_run_is_told_as_a_failure(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    notifier.run_finished(finished_run(status=RunStatus.INTERRUPTED, error="daemon restarted"))
    (request,) = await slack.wait_for(1)
    assert "nightly report was interrupted" in request.json()["text"]
    (delivery,) = await webhook.wait_for(1)
    assert delivery.json()["type"] == "run.failed"
    assert delivery.json()["run"]["status"] == "interrupted"


async def test_manual_trigger_follows_the_same_rule(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    notifier.run_finished(finished_run(trigger=RunTrigger.MANUAL, status=RunStatus.SUCCEEDED))
    notifier.run_finished(finished_run(trigger=RunTrigger.MANUAL, status=RunStatus.FAILED))
    await notifier.stop()
    assert len(slack.received) == 1
    assert "failed" in slack.received[0].json()["text"]


async def test_schedule_without_a_channel_skips_slack_but_not_the_webhook(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    notifier.run_finished(finished_run(channel=None))
    await webhook.wait_for(1)
    await notifier.stop()
    assert slack.received == []


async def test_missing_slack_token_skips_slack_and_is_logged_once(
    make_notifier: NotifierFactory,
    slack: SlackDouble,
    webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    notifier = await make_notifier()
    with capture_logs() as logs:
        notifier.run_finished(finished_run())
        notifier.run_finished(finished_run())
    await webhook.wait_for(2)
    await notifier.stop()
    assert slack.received == []
    (missing,) = events_named(logs, "slack_token_missing")
    assert missing["secret"] == TOKEN_ENV


# --------------------------------------------------------------------------- Slack: retries


async def test_429_and_500_are_retried_until_delivered(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    slack.script = ["429", "500"]
    sent_before = sent("slack")
    with capture_logs() as logs:
        notifier.run_finished(finished_run())
        requests = await slack.wait_for(3)
        await notifier.stop()
    assert len(requests) == 3
    assert requests[1].at - requests[0].at >= 0.9  # Retry-After: 1 was honoured
    assert [r.json() for r in requests[1:]] == [requests[0].json()] * 2
    retries = events_named(logs, "notification_retry")
    assert [entry["reason"] for entry in retries] == [
        "Slack answered HTTP 429",
        "Slack answered HTTP 500",
    ]
    assert retries[0]["delay_s"] == 1.0
    assert events_named(logs, "notification_sent")[0]["attempts"] == 3
    assert sent("slack") == sent_before + 1


async def test_slack_ratelimited_error_is_retried(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False)
    slack.script = ["ratelimited"]
    notifier.run_finished(finished_run())
    await slack.wait_for(2)
    await notifier.stop()
    assert len(slack.received) == 2


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
async def test_permanent_slack_error_is_dropped_at_once(
    make_notifier: NotifierFactory, slack: SlackDouble, error: str
) -> None:
    notifier = await make_notifier(webhook_on=False)
    slack.script = [error]
    dropped_before, sent_before = dropped("slack"), sent("slack")
    finished = finished_run()
    with capture_logs() as logs:
        notifier.run_finished(finished)
        await notifier.stop()
    assert len(slack.received) == 1
    (drop,) = events_named(logs, "notification_dropped")
    assert drop["reason"] == f"Slack error: {error}"
    assert drop["kind"] == "slack"
    assert drop["channel"] == "C0123CHAN"
    assert (drop["schedule_id"], drop["run_id"]) == (finished.schedule.id, finished.run.id)
    assert dropped("slack") == dropped_before + 1
    assert sent("slack") == sent_before


async def test_wrong_token_is_refused_by_slack_and_dropped(
    make_notifier: NotifierFactory, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "xoxb-wrong")
    notifier = await make_notifier(webhook_on=False)
    with capture_logs() as logs:
        notifier.run_finished(finished_run())
        await notifier.stop()
    assert len(slack.received) == 1
    assert events_named(logs, "notification_dropped")[0]["reason"] == "Slack error: invalid_auth"


async def test_attempts_are_bounded_by_max_attempts(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False, max_attempts=3)
    slack.script = ["500"] * 10
    dropped_before = dropped("slack")
    with capture_logs() as logs:
        notifier.run_finished(finished_run())
        await notifier.stop()
    assert len(slack.received) == 3
    (drop,) = events_named(logs, "notification_dropped")
    assert drop["reason"] == "Slack answered HTTP 500"
    assert drop["attempts"] == 3
    assert dropped("slack") == dropped_before + 1


async def test_unreachable_peer_is_retried_then_dropped(
    make_notifier: NotifierFactory,
) -> None:
    notifier = await make_notifier(webhook_url=unused_loopback_url(), max_attempts=2)
    finished = finished_run(channel=None)
    with capture_logs() as logs:
        notifier.run_finished(finished)
        await notifier.stop()
    (drop,) = events_named(logs, "notification_dropped")
    assert drop["run_id"] == finished.run.id
    assert drop["reason"].startswith("network error")
    assert drop["attempts"] == 2


async def test_the_worker_keeps_going_after_a_failed_delivery(
    make_notifier: NotifierFactory, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier(concurrency=1)
    webhook.script = [404]
    first, second = finished_run(channel=None), finished_run(channel=None)
    notifier.run_finished(first)
    notifier.run_finished(second)
    deliveries = await webhook.wait_for(2)
    assert [d.json()["run"]["id"] for d in deliveries] == [first.run.id, second.run.id]
    assert notifier.worker is not None
    assert not notifier.worker.done()


def unused_loopback_url() -> str:
    """A loopback URL on which nothing listens (its port was just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --------------------------------------------------------------------------- queueing


async def test_a_full_queue_drops_and_logs(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(start=False, webhook_on=False, queue_size=2)
    dropped_before = dropped("slack")
    runs = [finished_run(name=f"run {i}") for i in range(3)]
    with capture_logs() as logs:
        for finished in runs:
            notifier.run_finished(finished)  # returns at once, even with the queue full
    (drop,) = events_named(logs, "notification_dropped")
    assert drop["reason"] == "queue full"
    assert drop["run_id"] == runs[2].run.id
    assert dropped("slack") == dropped_before + 1

    await notifier.start()
    await slack.wait_for(2)
    await notifier.stop()
    names = sorted(r.json()["text"].split(" failed")[0] for r in slack.received)
    assert names == ["Schedule run 0", "Schedule run 1"]


async def test_a_stuck_slack_does_not_hold_the_webhook(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier(concurrency=1)
    slack.script = ["hang"]
    notifier.run_finished(finished_run())
    notifier.run_finished(finished_run())
    await slack.wait_for(1)
    await webhook.wait_for(2)  # while Slack still holds the first message
    assert len(slack.received) == 1
    slack.release.set()
    await slack.wait_for(2)


async def test_stop_delivers_what_is_queued(
    make_notifier: NotifierFactory, slack: SlackDouble, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier(start=False)
    for _ in range(5):
        notifier.run_finished(finished_run())
    await notifier.start()
    await notifier.stop(grace=DEADLINE)
    assert len(slack.received) == 5
    assert len(webhook.received) == 5
    with capture_logs() as logs:
        notifier.run_finished(finished_run())
    assert {entry["reason"] for entry in events_named(logs, "notification_dropped")} == {
        "notifier stopped"
    }


async def test_stop_gives_up_after_the_grace_period(
    make_notifier: NotifierFactory, slack: SlackDouble
) -> None:
    notifier = await make_notifier(webhook_on=False, concurrency=1)
    slack.script = ["hang"]
    notifier.run_finished(finished_run())
    notifier.run_finished(finished_run())
    await slack.wait_for(1)
    with capture_logs() as logs:
        await notifier.stop(grace=0.2)
    reasons = [entry["reason"] for entry in events_named(logs, "notification_dropped")]
    assert reasons == ["shutdown", "shutdown"]  # the one in flight and the one queued
    assert notifier.worker is not None
    assert notifier.worker.done()


async def test_update_applies_to_later_deliveries(
    make_notifier: NotifierFactory,
    webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = WebhookReceiver()
    await other.start_receiver()
    try:
        notifier = await make_notifier()
        notifier.run_finished(finished_run(channel=None))
        await webhook.wait_for(1)
        monkeypatch.setenv("AGENTCRON_TEST_OTHER_SECRET", "rotated")
        notifier.update(
            NotifyConfig(
                webhook_url=other.hook_url, webhook_secret_env="AGENTCRON_TEST_OTHER_SECRET"
            )
        )
        notifier.run_finished(finished_run(channel=None))
        (delivery,) = await other.wait_for(1)
        headers = delivery.headers
        assert verify_webhook_signature(
            "rotated",
            headers["X-Agentcron-Timestamp"],
            delivery.body,
            headers["X-Agentcron-Signature"],
            now=time.time(),
        )
        assert len(webhook.received) == 1
    finally:
        assert other.server is not None
        await other.server.close()


# --------------------------------------------------------------------------- webhooks


def recompute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The documented recipe, written out as a receiver would."""
    signed = timestamp.encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


async def test_webhook_event_is_signed_and_shaped(
    make_notifier: NotifierFactory, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    finished = finished_run(session_url="https://app.example/sessions/devin-1")
    before = time.time()
    notifier.run_finished(finished)
    (delivery,) = await webhook.wait_for(1)

    headers = delivery.headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Agentcron-Event"] == "run.failed"
    timestamp = headers["X-Agentcron-Timestamp"]
    assert int(before) - 1 <= int(timestamp) <= time.time() + 1
    signature = headers["X-Agentcron-Signature"]
    assert signature == recompute_signature(WEBHOOK_SECRET, timestamp, delivery.body)
    assert verify_webhook_signature(
        WEBHOOK_SECRET, timestamp, delivery.body, signature, now=time.time()
    )

    event = delivery.json()
    assert event["type"] == "run.failed"
    assert event["id"] == headers["X-Agentcron-Delivery"]
    assert datetime.fromisoformat(event["created_at"]).tzinfo is not None
    assert set(event["run"]) == RUN_KEYS
    assert event["run"]["id"] == finished.run.id
    assert event["run"]["scheduled_for"] == "2030-01-02T09:00:00+00:00"
    assert event["run"]["error"] == "session service answered HTTP 503: busy"
    assert event["schedule"]["id"] == finished.schedule.id
    assert event["schedule"]["org_id"] == "org-local"
    assert event["schedule"]["name"] == "nightly report"
    assert event["schedule"]["consecutive_failures"] == 3


async def test_signature_fails_for_a_tampered_body_or_an_old_timestamp(
    make_notifier: NotifierFactory, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    notifier.run_finished(finished_run())
    (delivery,) = await webhook.wait_for(1)
    timestamp = delivery.headers["X-Agentcron-Timestamp"]
    signature = delivery.headers["X-Agentcron-Signature"]
    now = float(timestamp)

    assert verify_webhook_signature(WEBHOOK_SECRET, timestamp, delivery.body, signature, now=now)
    tampered = delivery.body.replace(b"nightly report", b"nightly rep0rt")
    assert tampered != delivery.body
    assert not verify_webhook_signature(WEBHOOK_SECRET, timestamp, tampered, signature, now=now)
    assert not verify_webhook_signature("other", timestamp, delivery.body, signature, now=now)
    assert not verify_webhook_signature(
        WEBHOOK_SECRET, timestamp, delivery.body, signature, now=now + 301
    )
    assert verify_webhook_signature(
        WEBHOOK_SECRET, timestamp, delivery.body, signature, now=now + 299
    )
    assert not verify_webhook_signature(
        WEBHOOK_SECRET, "not-a-number", delivery.body, signature, now=now
    )
    rotated = f"v1={'0' * 64}, {signature}"
    assert verify_webhook_signature(WEBHOOK_SECRET, timestamp, delivery.body, rotated, now=now)


async def test_each_event_has_its_own_delivery_id_kept_across_retries(
    make_notifier: NotifierFactory, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    webhook.script = [503]
    notifier.run_finished(finished_run(channel=None, auto_paused=True))
    await webhook.wait_for(3)
    await notifier.stop()
    by_id: dict[str, list[Received]] = {}
    for delivery in webhook.received:
        by_id.setdefault(delivery.headers["X-Agentcron-Delivery"], []).append(delivery)
    assert len(by_id) == 2
    retried = [deliveries for deliveries in by_id.values() if len(deliveries) == 2]
    (first, second) = retried[0]
    assert first.body == second.body


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.mark.parametrize(
    ("clock_offset", "wait"),
    [
        (timedelta(milliseconds=-600), 0.6),  # the date is 0.6 s after the notifier's now
        (timedelta(seconds=5), 0.0),  # the date has passed: retry at once
    ],
)
async def test_a_retry_after_date_is_honoured(
    make_notifier: NotifierFactory, webhook: WebhookReceiver, clock_offset: timedelta, wait: float
) -> None:
    date = datetime.now(UTC).replace(microsecond=0)
    notifier = await make_notifier(clock=FixedClock(date + clock_offset))
    webhook.script = [503]
    webhook.retry_after = format_datetime(date, usegmt=True)
    with capture_logs() as logs:
        notifier.run_finished(finished_run(channel=None))
        first, second = await webhook.wait_for(2)
        await notifier.stop()
    (retry,) = events_named(logs, "notification_retry")
    assert retry["delay_s"] == pytest.approx(wait)
    assert second.at - first.at >= wait - 0.05
    assert events_named(logs, "notification_sent")[0]["attempts"] == 2


async def test_webhook_client_error_is_permanent(
    make_notifier: NotifierFactory, webhook: WebhookReceiver
) -> None:
    notifier = await make_notifier()
    webhook.script = [404]
    dropped_before = dropped("webhook")
    with capture_logs() as logs:
        notifier.run_finished(finished_run(channel=None))
        await notifier.stop()
    assert len(webhook.received) == 1
    (drop,) = events_named(logs, "notification_dropped")
    assert drop["reason"] == "the webhook answered HTTP 404"
    assert drop["event_type"] == "run.failed"
    assert dropped("webhook") == dropped_before + 1


async def test_webhook_without_a_secret_is_sent_unsigned_and_logged_once(
    make_notifier: NotifierFactory, webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    notifier = await make_notifier()
    with capture_logs() as logs:
        notifier.run_finished(finished_run(channel=None))
        notifier.run_finished(finished_run(channel=None))
        await webhook.wait_for(2)
        await notifier.stop()
    assert all("X-Agentcron-Signature" not in r.headers for r in webhook.received)
    assert all("X-Agentcron-Timestamp" in r.headers for r in webhook.received)
    (missing,) = events_named(logs, "webhook_secret_missing")
    assert missing["secret"] == SECRET_ENV
