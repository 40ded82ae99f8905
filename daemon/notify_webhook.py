"""The webhook: a finished run as signed JSON events, and their delivery.

A finished run sends `run.succeeded` or `run.failed`, then `schedule.auto_paused` if it
paused its schedule. Bodies are signed so a receiver can check they come from this daemon:
`X-Agentcron-Signature: v1=<hex HMAC-SHA256(secret, "<X-Agentcron-Timestamp>.<raw body>")>`;
`verify_webhook_signature` is the receiver's side of that recipe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from daemon.notify_delivery import Transport, check_http_answer
from daemon.notify_messages import WebhookEvent, json_bytes, run_json, schedule_json
from storage.domain import FinishedRun

SIGNATURE_VERSION = "v1"


# --------------------------------------------------------------------------- events


def webhook_event_types(finished: FinishedRun) -> list[str]:
    """The webhook events a finished run sends: its outcome, then the pause if it paused."""
    outcome = "run.failed" if finished.run.status.is_failure else "run.succeeded"
    return [outcome, "schedule.auto_paused"] if finished.auto_paused else [outcome]


def new_event_id() -> str:
    return "evt-" + secrets.token_hex(16)


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
        body=json_bytes(payload),
    )


# --------------------------------------------------------------------------- delivery


async def post_webhook_event(
    transport: Transport, event: WebhookEvent, *, url: str, timestamp: str, secret: str | None
) -> None:
    """POST `event` to `url`, signed with `secret` at `timestamp` (Unix seconds) when there
    is a secret; raise DeliveryError unless the receiver answered 2xx."""
    headers = {
        "X-Agentcron-Event": event.type,
        "X-Agentcron-Delivery": event.id,
        "X-Agentcron-Timestamp": timestamp,
    }
    if secret is not None:
        headers["X-Agentcron-Signature"] = webhook_signature(secret, timestamp, event.body)
    check_http_answer(await transport.post(url, event.body, headers), "the webhook")


# --------------------------------------------------------------------------- signatures


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
