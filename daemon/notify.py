"""Notifications of finished runs: the notifier that decides, queues, retries and counts.

The engine hands every finished run to `Notifier.run_finished`, which decides from the
schedule's `notify_on` whether anyone is told, builds the messages (`daemon.notify_slack`,
`daemon.notify_webhook`) and puts them on a bounded queue; it never blocks and never raises,
so a notification can neither delay nor change a run. Worker coroutines deliver the queue
under one `daemon.retry.RetryPolicy`, retrying transient failures (network errors, HTTP 408,
429 honouring `Retry-After`, 5xx, Slack's `ratelimited`); what cannot be delivered is logged
as `notification_dropped` and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter

from daemon.config import NotifyConfig
from daemon.notify_delivery import DeliveryError, Transport
from daemon.notify_messages import (
    Notification,
    SlackMessage,
    WebhookEvent,
    log_fields,
    should_notify,
)
from daemon.retry import Backoff, Retrying, RetryPolicy, retry
from daemon.secrets import read_secret
from storage.clock import Clock, SystemClock
from storage.domain import FinishedRun

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

NOTIFY_BACKOFF = Backoff(base=0.5, cap=60.0)
"""Waits between delivery attempts when the peer does not say (`Retry-After`)."""


@dataclass
class _Lane:
    """The queue of one kind of notification; Slack and webhooks never wait on each other."""

    kind: str
    queue: asyncio.Queue[Notification]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One delivery attempt's outcome, as the retry policy reads it."""

    error: DeliveryError | None

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    @property
    def retry_after(self) -> float | None:
        return None if self.error is None else self.error.retry_after

    @property
    def counted(self) -> bool:
        return True


class Notifier:
    """Tells Slack and a webhook about finished runs, off the engine's path.

    Each kind (Slack, webhook) has its own queue of at most `config.queue_size` waiting
    notifications and `concurrency` worker coroutines, so a slow Slack never holds up the
    webhook. A transient failure waits `backoff`, or what `Retry-After` asks (at most
    `retry_after_cap`), up to `config.max_attempts` attempts in all; each request is
    bounded by `request_timeout`.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        http: aiohttp.ClientSession,
        clock: Clock | None = None,
        backoff: Backoff = NOTIFY_BACKOFF,
        retry_after_cap: float = 300.0,
        request_timeout: float = 10.0,
        concurrency: int = 4,
    ) -> None:
        self._config = config
        self._clock: Clock = clock or SystemClock()
        self._transport = Transport(http, self._clock, request_timeout)
        self._backoff = backoff
        self._retry_after_cap = retry_after_cap
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
        # Each client's module is imported at its first message, not at start-up.
        if schedule.slack_channel_id and self._slack_token() is not None:
            from daemon.notify_slack import slack_message

            yield slack_message(finished)
        if self._config.webhook_url:
            from daemon.notify_webhook import webhook_events

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
                log.exception("notification_failed", **log_fields(notification), error=repr(error))
                self._dropped(notification, f"internal error: {error!r}")
            finally:
                lane.queue.task_done()

    async def _deliver(self, notification: Notification) -> None:
        """Send `notification`, retrying transient failures; log and count how it ended."""

        async def attempt(number: int) -> _Attempt:
            try:
                await self._send(notification)
            except DeliveryError as error:
                return _Attempt(error)
            return _Attempt(None)

        def announce(retrying: Retrying[_Attempt]) -> None:
            assert retrying.outcome.error is not None  # only a failure is retried
            log.info(
                "notification_retry",
                **log_fields(notification),
                attempt=retrying.attempt,
                delay_s=retrying.wait,
                reason=retrying.outcome.error.reason,
            )

        retried = await retry(self._policy(), attempt, on_retry=announce)
        self._delivered(notification, retried.outcome.error, retried.attempts)

    def _policy(self) -> RetryPolicy:
        """The policy for a delivery starting now (max_attempts may have been reloaded)."""
        return RetryPolicy(
            self._config.max_attempts, backoff=self._backoff, retry_after_cap=self._retry_after_cap
        )

    def _delivered(
        self, notification: Notification, error: DeliveryError | None, attempts: int
    ) -> None:
        if error is None:
            NOTIFICATIONS_SENT.labels(notification.kind).inc()
            log.info("notification_sent", **log_fields(notification), attempts=attempts)
        else:
            self._dropped(notification, error.reason, attempts=attempts)

    async def _send(self, notification: Notification) -> None:
        if isinstance(notification, SlackMessage):
            await self._send_slack(notification)
        else:
            await self._send_webhook(notification)

    async def _send_slack(self, message: SlackMessage) -> None:
        token = self._secret(self._config.slack_token_env)
        if token is None:
            raise DeliveryError("no Slack token", retryable=False)
        api_url = self._config.slack_api_url
        from daemon.notify_slack import post_slack_message

        await post_slack_message(self._transport, message, api_url=api_url, token=token)

    async def _send_webhook(self, event: WebhookEvent) -> None:
        url = self._config.webhook_url
        if not url:
            raise DeliveryError("webhook_url is no longer set", retryable=False)
        timestamp = str(int(self._clock.now().timestamp()))
        secret = self._secret(self._config.webhook_secret_env)
        if secret is None:
            self._warn_once("webhook_secret_missing", secret=self._config.webhook_secret_env)
        from daemon.notify_webhook import post_webhook_event

        await post_webhook_event(
            self._transport, event, url=url, timestamp=timestamp, secret=secret
        )

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
        log.warning("notification_dropped", **log_fields(notification), reason=reason, **extra)
