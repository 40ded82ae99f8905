"""What a finished run notifies: who is told, and the values queued for delivery.

`should_notify` decides from the schedule's `notify_on`; a notification is a `SlackMessage`
(built in `daemon.notify_slack`) or a `WebhookEvent` (built in `daemon.notify_webhook`),
each naming the run it tells of, so the notifier can route, log and count it by `kind`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from api.wire import run_fields
from storage.catalogue import WEBHOOK_FIELDS
from storage.domain import JSONObject, Run, Schedule
from storage.enums import NotifyOn, RunStatus

# Runs that reach `finish_runs`; skipped and missed runs are recorded, never notified.
FINISHED_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED})


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


@dataclass(frozen=True, slots=True)
class AboutRun:
    """The run a notification tells of."""

    schedule_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class SlackMessage(AboutRun):
    """One `chat.postMessage` call: `body` is the JSON body (channel, team_id, text, blocks)."""

    kind: ClassVar[str] = "slack"
    channel: str
    body: JSONObject


@dataclass(frozen=True, slots=True)
class WebhookEvent(AboutRun):
    """One webhook POST; `body` is the exact bytes sent and signed, the same on every retry."""

    kind: ClassVar[str] = "webhook"
    type: str
    id: str
    body: bytes


Notification = SlackMessage | WebhookEvent


def log_fields(notification: Notification) -> dict[str, str]:
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


def json_bytes(value: JSONObject) -> bytes:
    """Compact UTF-8 JSON, the bytes a body is sent (and a webhook signed) as."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
