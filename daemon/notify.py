"""Notifications of finished runs: Slack `chat.postMessage` and a signed JSON webhook.

The engine hands every finished run to `Notifier.run_finished`, which decides from the
schedule's `notify_on` whether anyone is told, builds the messages and puts them on a
bounded queue; it never blocks and never raises, so a notification can neither delay nor
change a run. Worker coroutines deliver the queue, retrying transient failures (network
errors, HTTP 429 honouring `Retry-After`, 5xx, Slack's `ratelimited`) with exponential
backoff; what cannot be delivered is logged as `notification_dropped` and counted.

Webhook bodies are signed so a receiver can check they come from this daemon:
`X-Agentcron-Signature: v1=<hex HMAC-SHA256(secret, "<X-Agentcron-Timestamp>.<raw body>")>`;
`verify_webhook_signature` is the receiver's side of that recipe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import aiohttp
import structlog
from prometheus_client import Counter

from api.wire import run_fields
from daemon.config import NotifyConfig
from daemon.secrets import read_secret
from storage.catalogue import WEBHOOK_FIELDS
from storage.clock import Clock, SystemClock
from storage.domain import FinishedRun, JSONObject, Run, Schedule
from storage.enums import NotifyOn, RunStatus

log = structlog.get_logger("agentcron.notify")

NOTIFICATIONS_SENT = Counter(
    "agentcron_notifications_sent",
    "Notifications delivered, by kind (slack, webhook).",
    ["kind"],
)
NOTIFICATIONS_DROPPED = Counter(
    "agentcron_notifications_dropped",
    "Notifications given up (queue full, permanent error, attempts exhausted), by kind.",
    ["kind"],
)

SIGNATURE_VERSION = "v1"
USER_AGENT = "agentcron-notify/1"

# Slack errors worth another attempt; every other `"ok": false` answer is permanent
# (channel_not_found, invalid_auth, not_in_channel, ...): retrying cannot fix it.
SLACK_TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)

# Runs that reach `finish_runs`; skipped and missed runs are recorded, never notified.
FINISHED_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED})


# --------------------------------------------------------------------------- who is told


def should_notify(notify_on: NotifyOn, status: RunStatus, *, auto_paused: bool) -> bool:
    """Whether a run that ended with `status` is notified under the schedule's `notify_on`.

    `always`: every finished run; `failure`: failed and interrupted runs, and any run that
    auto-paused its schedule; `never`: nothing. Statuses that are not a finish are ignored.
    """
    if status not in FINISHED_STATUSES:
        return False
    if notify_on == NotifyOn.ALWAYS:
        return True
    if notify_on == NotifyOn.FAILURE:
        return status.is_failure or auto_paused
    return False


def webhook_event_types(finished: FinishedRun) -> list[str]:
    """The webhook events a finished run sends: its outcome, then the pause if it paused."""
    outcome = "run.failed" if finished.run.status.is_failure else "run.succeeded"
    return [outcome, "schedule.auto_paused"] if finished.auto_paused else [outcome]


# --------------------------------------------------------------------------- what is sent


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One `chat.postMessage` call: `body` is the JSON body (channel, team_id, text, blocks)."""

    kind: ClassVar[str] = "slack"
    schedule_id: str
    run_id: str
    channel: str
    body: JSONObject


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One webhook POST; `body` is the exact bytes sent and signed, the same on every retry."""

    kind: ClassVar[str] = "webhook"
    schedule_id: str
    run_id: str
    type: str
    id: str
    body: bytes


Notification = SlackMessage | WebhookEvent


def new_event_id() -> str:
    return "evt-" + secrets.token_hex(16)


def _json_value(value: Any) -> Any:
    """A field's value as JSON holds it: instants in ISO 8601, enumerations as their value."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if isinstance(value, StrEnum) else value


def run_json(run: Run) -> JSONObject:
    """A run as the API shows it (`api.wire.RunJson`), instants with their offset."""
    return {key: _json_value(value) for key, value in run_fields(run).items()}


def schedule_json(schedule: Schedule) -> JSONObject:
    """The fields of a schedule a webhook receiver needs to tell what happened to it (the
    catalogue's `webhook` fields, `storage.catalogue.WEBHOOK_FIELDS`)."""
    return {name: _json_value(getattr(schedule, name)) for name in WEBHOOK_FIELDS}


def webhook_events(finished: FinishedRun, *, now: datetime) -> list[WebhookEvent]:
    """The webhook events of one finished run, each with a fresh id, created at `now`."""
    return [_webhook_event(finished, kind, now) for kind in webhook_event_types(finished)]


def _webhook_event(finished: FinishedRun, event_type: str, now: datetime) -> WebhookEvent:
    event_id = new_event_id()
    payload = {
        "type": event_type,
        "id": event_id,
        "created_at": now.isoformat(),
        "schedule": schedule_json(finished.schedule),
        "run": run_json(finished.run),
    }
    return WebhookEvent(
        schedule_id=finished.schedule.id,
        run_id=finished.run.id,
        type=event_type,
        id=event_id,
        body=_json_bytes(payload),
    )


def _json_bytes(value: JSONObject) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- Slack Block Kit

_OUTCOMES = {
    RunStatus.SUCCEEDED: (":white_check_mark:", "succeeded"),
    RunStatus.FAILED: (":x:", "failed"),
    RunStatus.INTERRUPTED: (":warning:", "was interrupted"),
}
# Block Kit limits: a header's text, a section's text, one field's text.
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000
_FALLBACK_ERROR_MAX = 500


def slack_message(finished: FinishedRun) -> SlackMessage:
    """The `chat.postMessage` of a finished run; the schedule must have a Slack channel."""
    schedule, run = finished.schedule, finished.run
    channel = schedule.slack_channel_id or ""
    body: JSONObject = {"channel": channel}
    if schedule.slack_team_id:
        body["team_id"] = schedule.slack_team_id
    body["text"] = slack_text(finished)
    body["blocks"] = list(slack_blocks(finished))
    return SlackMessage(schedule_id=schedule.id, run_id=run.id, channel=channel, body=body)


def outcome_words(status: RunStatus) -> str:
    return _OUTCOMES.get(status, ("", str(status)))[1]


def slack_text(finished: FinishedRun) -> str:
    """The plain-text fallback shown in notifications and by clients without blocks."""
    run, schedule = finished.run, finished.schedule
    text = f"Schedule {schedule.name} {outcome_words(run.status)}"
    if run.status.is_failure and run.error:
        text += f": {_truncate(run.error, _FALLBACK_ERROR_MAX)}"
    if finished.auto_paused:
        text += f" (schedule auto-paused: {schedule.paused_reason or 'too many failures'})"
    return text


def slack_blocks(finished: FinishedRun) -> Iterator[JSONObject]:
    run, schedule = finished.run, finished.schedule
    emoji, words = _OUTCOMES.get(run.status, ("", str(run.status)))
    header = f"{emoji} {schedule.name} {words}".strip()
    yield {"type": "header", "text": _plain(_truncate(header, _HEADER_MAX))}
    yield {"type": "section", "fields": [_mrkdwn(text) for text in _fact_fields(finished)]}
    if run.session_url:
        link = f"<{_escape(run.session_url)}|Open the session>"
        yield {"type": "section", "text": _mrkdwn(link)}
    if run.status.is_failure and run.error:
        yield {"type": "section", "text": _mrkdwn(_code_block("Error", run.error))}
    if finished.auto_paused:
        reason = _escape(schedule.paused_reason or "too many consecutive failures")
        yield {
            "type": "section",
            "text": _mrkdwn(f":pause_button: *Schedule auto-paused*: {reason}"),
        }
    context = f"Schedule `{schedule.id}` in `{_escape(schedule.org_id)}` · run `{run.id}`"
    yield {"type": "context", "elements": [_mrkdwn(context)]}


def _fact_fields(finished: FinishedRun) -> Iterator[str]:
    run, schedule = finished.run, finished.schedule
    yield f"*Schedule*\n{_escape(schedule.name)}"
    yield f"*Outcome*\n{outcome_words(run.status)}"
    yield f"*Run as*\n{_escape(run.identity or 'unknown')}"
    yield f"*Trigger*\n{run.trigger}"
    yield f"*Scheduled for*\n{_when(run.scheduled_for)}"
    yield f"*Started*\n{_when(run.started_at)}"
    yield f"*Finished*\n{_when(run.finished_at)}"
    if run.status.is_failure:
        yield f"*Consecutive failures*\n{schedule.consecutive_failures}"


def _when(instant: datetime | None) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S %Z") if instant is not None else "—"


def _code_block(title: str, text: str) -> str:
    fence = "```"
    room = _SECTION_MAX - len(title) - 2 * len(fence) - 4
    return f"*{title}*\n{fence}{_truncate(_escape(text), room)}{fence}"


def _plain(text: str) -> JSONObject:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> JSONObject:
    return {"type": "mrkdwn", "text": _truncate(text, _FIELD_MAX)}


def _escape(text: str) -> str:
    """Slack mrkdwn treats `&`, `<`, `>` as control characters; user text must not."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- webhook signatures


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, the X-Agentcron-Signature value."""
    message = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_webhook_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """True if `signature` (X-Agentcron-Signature) signs `body` at `timestamp` with `secret`.

    `timestamp` is the X-Agentcron-Timestamp header (Unix seconds) and `body` the raw
    request body, byte for byte. A timestamp more than `tolerance` seconds away from `now`
    is refused, so a captured request cannot be replayed later. The header may carry
    several comma-separated `v1=` values (one per secret during a rotation); one match is
    enough. Comparison is constant-time; malformed input is simply False.
    """
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = webhook_signature(secret, timestamp, body)
    offered = (part.strip() for part in signature.split(","))
    return any(hmac.compare_digest(expected.encode(), part.encode()) for part in offered)


# --------------------------------------------------------------------------- delivery


class DeliveryError(Exception):
    """One attempt failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """What a peer answered: status, the Retry-After header, and the body."""

    status: int
    retry_after: str | None
    body: bytes


def check_http_answer(answer: Answer, peer: str) -> None:
    """Raise DeliveryError unless `answer` is a 2xx; 408, 429 and 5xx are retryable."""
    if 200 <= answer.status < 300:
        return
    reason = f"{peer} answered HTTP {answer.status}"
    retryable = answer.status in (408, 429) or answer.status >= 500
    retry_after = parse_retry_after(answer.retry_after) if retryable else None
    raise DeliveryError(reason, retryable=retryable, retry_after=retry_after)


def check_slack_answer(answer: Answer) -> None:
    """Raise DeliveryError unless Slack accepted the message (`{"ok": true, ...}`)."""
    check_http_answer(answer, "Slack")
    try:
        reply = json.loads(answer.body)
    except ValueError:
        raise DeliveryError("Slack answered with a body that is not JSON", retryable=True) from None
    if isinstance(reply, dict) and reply.get("ok") is True:
        return
    error = str(reply.get("error", "unknown_error")) if isinstance(reply, dict) else "unknown_error"
    retryable = error in SLACK_TRANSIENT_ERRORS
    retry_after = parse_retry_after(answer.retry_after) if retryable else None
    raise DeliveryError(f"Slack error: {error}", retryable=retryable, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay-seconds form; None if absent or odd."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass
class _Lane:
    """The queue of one kind of notification; Slack and webhooks never wait on each other."""

    kind: str
    queue: asyncio.Queue[Notification]


class Notifier:
    """Tells Slack and a webhook about finished runs, off the engine's path.

    Each kind (Slack, webhook) has its own queue of at most `config.queue_size` waiting
    notifications and `concurrency` worker coroutines, so a slow Slack never holds up the
    webhook. Attempt `n` failing transiently waits `retry_base * 2**(n-1)` seconds (at most
    `retry_cap`), or what `Retry-After` asks (at most `retry_after_cap`), up to
    `config.max_attempts` attempts in all; each request is bounded by `request_timeout`.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        http: aiohttp.ClientSession,
        clock: Clock | None = None,
        retry_base: float = 0.5,
        retry_cap: float = 60.0,
        retry_after_cap: float = 300.0,
        request_timeout: float = 10.0,
        concurrency: int = 4,
    ) -> None:
        self._config = config
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._retry_after_cap = retry_after_cap
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._concurrency = concurrency
        self._lanes = {
            kind: _Lane(kind, asyncio.Queue(config.queue_size)) for kind in ("slack", "webhook")
        }
        self._warned: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def worker(self) -> asyncio.Task[None] | None:
        """The task running every delivery coroutine; None before `start`."""
        return self._worker

    async def start(self) -> None:
        """Start delivering. Notifications queued before this are delivered now."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run_workers(), name="notify-worker")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking notifications, deliver what is queued within `grace` seconds, then stop.

        What is still queued or in flight when the grace period ends is dropped and logged.
        """
        self._closed = True
        worker = self._worker
        if worker is not None:
            await self._drain_within(worker, grace)
            worker.cancel()
            await asyncio.wait([worker])
            if not worker.cancelled() and (error := worker.exception()) is not None:
                log.error("notify_worker_died", error=repr(error))
        for lane in self._lanes.values():
            self._drop_queued(lane, "shutdown")

    def update(self, config: NotifyConfig) -> None:
        """Use `config` from now on: URLs, secret names and max_attempts apply to later
        deliveries, including those already queued. The queue size stays as it was."""
        self._config = config
        self._warned.clear()

    def run_finished(self, finished: FinishedRun) -> None:
        """Queue the notifications `finished` calls for; never blocks, never raises."""
        try:
            for notification in self._notifications(finished):
                self._enqueue(notification)
        except Exception as error:
            log.exception(
                "notification_failed",
                schedule_id=finished.schedule.id,
                run_id=finished.run.id,
                error=repr(error),
            )

    # ------------------------------------------------------------------ deciding and queueing

    def _notifications(self, finished: FinishedRun) -> Iterator[Notification]:
        schedule, run = finished.schedule, finished.run
        if not should_notify(schedule.notify_on, run.status, auto_paused=finished.auto_paused):
            return
        if schedule.slack_channel_id and self._slack_token() is not None:
            yield slack_message(finished)
        if self._config.webhook_url:
            yield from webhook_events(finished, now=self._clock.now())

    def _enqueue(self, notification: Notification) -> None:
        if self._closed:
            self._dropped(notification, "notifier stopped")
            return
        try:
            self._lanes[notification.kind].queue.put_nowait(notification)
        except asyncio.QueueFull:
            self._dropped(notification, "queue full")

    def _slack_token(self) -> str | None:
        name = self._config.slack_token_env
        token = self._secret(name)
        if token is None:
            self._warn_once("slack_token_missing", secret=name)
        return token

    def _secret(self, name: str) -> str | None:
        try:
            return read_secret(name)
        except (OSError, ValueError) as error:
            self._warn_once("secret_unreadable", secret=name, error=str(error))
            return None

    def _warn_once(self, event: str, **fields: Any) -> None:
        """Log `event` the first time only (until the next `update`): it repeats per run."""
        if event not in self._warned:
            self._warned.add(event)
            log.warning(event, **fields)

    # ------------------------------------------------------------------ the workers

    async def _run_workers(self) -> None:
        async with asyncio.TaskGroup() as group:
            for lane in self._lanes.values():
                for number in range(self._concurrency):
                    group.create_task(self._work(lane), name=f"notify-{lane.kind}-{number}")

    async def _work(self, lane: _Lane) -> None:
        while True:
            notification = await lane.queue.get()
            try:
                await self._deliver(notification)
            except asyncio.CancelledError:
                self._dropped(notification, "shutdown")
                raise
            except Exception as error:
                # A bug in one delivery must not end the worker: log it and go on.
                log.exception("notification_failed", **_fields(notification), error=repr(error))
                self._dropped(notification, f"internal error: {error!r}")
            finally:
                lane.queue.task_done()

    async def _deliver(self, notification: Notification) -> None:
        """Send `notification`, retrying transient failures; log and count how it ended."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._send(notification)
            except DeliveryError as error:
                if not error.retryable or attempt >= self._config.max_attempts:
                    self._dropped(notification, error.reason, attempts=attempt)
                    return
                delay = self._retry_delay(attempt, error.retry_after)
                log.info(
                    "notification_retry",
                    **_fields(notification),
                    attempt=attempt,
                    delay_s=delay,
                    reason=error.reason,
                )
                await asyncio.sleep(delay)
            else:
                NOTIFICATIONS_SENT.labels(notification.kind).inc()
                log.info("notification_sent", **_fields(notification), attempts=attempt)
                return

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._retry_after_cap)
        return float(min(self._retry_base * 2 ** (attempt - 1), self._retry_cap))

    async def _send(self, notification: Notification) -> None:
        if isinstance(notification, SlackMessage):
            await self._send_slack(notification)
        else:
            await self._send_webhook(notification)

    async def _send_slack(self, message: SlackMessage) -> None:
        token = self._secret(self._config.slack_token_env)
        if token is None:
            raise DeliveryError("no Slack token", retryable=False)
        url = self._config.slack_api_url.rstrip("/") + "/chat.postMessage"
        headers = {"Authorization": f"Bearer {token}"}
        check_slack_answer(await self._post(url, _json_bytes(message.body), headers))

    async def _send_webhook(self, event: WebhookEvent) -> None:
        url = self._config.webhook_url
        if not url:
            raise DeliveryError("webhook_url is no longer set", retryable=False)
        headers = {"X-Agentcron-Event": event.type, "X-Agentcron-Delivery": event.id}
        headers.update(self._signature_headers(event.body))
        check_http_answer(await self._post(url, event.body, headers), "the webhook")

    def _signature_headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock.now().timestamp()))
        headers = {"X-Agentcron-Timestamp": timestamp}
        secret = self._secret(self._config.webhook_secret_env)
        if secret is None:
            self._warn_once("webhook_secret_missing", secret=self._config.webhook_secret_env)
        else:
            headers["X-Agentcron-Signature"] = webhook_signature(secret, timestamp, body)
        return headers

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST JSON `body`; network errors and timeouts become retryable DeliveryErrors."""
        all_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            **headers,
        }
        try:
            async with self._http.post(
                url, data=body, headers=all_headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                payload = await response.read()
                return Answer(response.status, response.headers.get("Retry-After"), payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = f"network error: {str(error) or type(error).__name__}"
            raise DeliveryError(reason, retryable=True) from error

    # ------------------------------------------------------------------ shutting down

    async def _drain_within(self, worker: asyncio.Task[None], grace: float) -> None:
        """Wait until every queue is delivered, the worker has died, or `grace` is over."""
        joins = [lane.queue.join() for lane in self._lanes.values()]
        drained = asyncio.ensure_future(asyncio.gather(*joins))
        either: list[asyncio.Future[Any]] = [drained, worker]
        await asyncio.wait(either, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()

    def _drop_queued(self, lane: _Lane, reason: str) -> None:
        while not lane.queue.empty():
            self._dropped(lane.queue.get_nowait(), reason)
            lane.queue.task_done()

    def _dropped(self, notification: Notification, reason: str, **extra: Any) -> None:
        NOTIFICATIONS_DROPPED.labels(notification.kind).inc()
        log.warning("notification_dropped", **_fields(notification), reason=reason, **extra)


def _fields(notification: Notification) -> dict[str, str]:
    """What logs say about a notification: kind, schedule_id, run_id, and its channel (Slack)
    or its event type and delivery id (webhook)."""
    fields = {
        "kind": notification.kind,
        "schedule_id": notification.schedule_id,
        "run_id": notification.run_id,
    }
    if isinstance(notification, SlackMessage):
        fields["channel"] = notification.channel
    else:
        fields["event_type"] = notification.type
        fields["delivery_id"] = notification.id
    return fields
