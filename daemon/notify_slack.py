"""Slack: a finished run as a `chat.postMessage` in Block Kit, and its delivery.

The message has a plain-text fallback (`text`, shown in notifications and by clients without
blocks) and blocks: a header with the outcome, the run's facts, a link to the session, the
error in a code block, the auto-pause, and a context line with the ids. User text is
escaped for mrkdwn and every text is cut to Block Kit's limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

from daemon.notify_delivery import Answer, DeliveryError, Transport, check_http_answer
from daemon.notify_messages import SlackMessage, json_bytes
from storage.domain import FinishedRun, JSONObject
from storage.enums import RunStatus

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


# --------------------------------------------------------------------------- delivery


async def post_slack_message(
    transport: Transport, message: SlackMessage, *, api_url: str, token: str
) -> None:
    """Send `message` with `chat.postMessage`; raise DeliveryError unless Slack took it."""
    url = api_url.rstrip("/") + "/chat.postMessage"
    headers = {"Authorization": f"Bearer {token}"}
    check_slack_answer(await transport.post(url, json_bytes(message.body), headers))


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
    retry_after = answer.retry_after if retryable else None
    raise DeliveryError(f"Slack error: {error}", retryable=retryable, retry_after=retry_after)


# --------------------------------------------------------------------------- Block Kit


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
