"""Domain values as the Devin v3 façade answers them, and the JSON response that carries them.

Every datetime goes out timezone-aware (UTC, written with a `Z`); playbook times are integer
Unix seconds, as Devin's playbook API has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from aiohttp import web
from pydantic import BaseModel

from api.devin_models import DevinPlaybook, DevinSchedule, PlaybookInfo
from storage.domain import Playbook, Schedule
from storage.store import Store

CONFIG_WARNING: Final = (
    '299 - "managed by the configuration file: the next reload reverts this change"'
)
"""The `Warning` header of an answer to an edit or delete of a schedule the file manages."""
EDIT_HEADERS: Final = {
    "Warning": f"Only on a schedule the configuration file manages: `{CONFIG_WARNING}`."
}
"""The headers an edit or delete may answer with, as the OpenAPI document describes them."""

ECHOED_FIELDS = ("overlap", "catchup_window_s", "jitter_s", "start_at", "end_at")
"""Schedule fields a client sets that are answered as they are, under their own name: a new
one is answered by naming it here (and declaring it in `DevinSchedule`)."""


def schedule_json(schedule: Schedule, playbook_titles: Mapping[str, str]) -> DevinSchedule:
    """`schedule` on the wire; `playbook` is null unless its playbook is in `playbook_titles`."""
    return DevinSchedule(
        scheduled_session_id=schedule.id,
        org_id=schedule.org_id,
        name=schedule.name,
        prompt=schedule.prompt,
        agent=schedule.agent,
        schedule_type=schedule.schedule_type,
        frequency=schedule.cron,
        scheduled_at=schedule.scheduled_at,
        enabled=schedule.enabled,
        notify_on=schedule.notify_on,
        playbook=_playbook_info(schedule.playbook_id, playbook_titles),
        slack_channel_id=schedule.slack_channel_id,
        slack_team_id=schedule.slack_team_id,
        consecutive_failures=schedule.consecutive_failures,
        last_error_at=schedule.last_error_at,
        last_error_message=schedule.last_error_message,
        last_executed_at=schedule.last_executed_at,
        created_at=schedule.created_at,
        created_by=schedule.created_by,
        updated_at=schedule.updated_at,
        tags=schedule.tags,
        bypass_approval=schedule.bypass_approval,
        interval_count=schedule.interval_count,
        target_devin_id=schedule.target_devin_id,
        platform=schedule.platform,
        last_edited_by=schedule.last_edited_by,
        run_as_user_id=schedule.run_as_user_id,
        timezone=schedule.timezone,
        next_run_at=schedule.next_run_at if schedule.is_active else None,
        paused_reason=schedule.paused_reason,
        **{name: getattr(schedule, name) for name in ECHOED_FIELDS},
        managed_by="config" if schedule.from_config else None,
    )


def edit_headers(schedule: Schedule) -> dict[str, str]:
    """The headers of an answer to an edit or delete of `schedule`: a `Warning` when the
    configuration file manages it, since the next reload (or restart) undoes the change."""
    return {"Warning": CONFIG_WARNING} if schedule.from_config else {}


def _playbook_info(playbook_id: str | None, titles: Mapping[str, str]) -> PlaybookInfo | None:
    if playbook_id is None or playbook_id not in titles:
        return None
    return PlaybookInfo(playbook_id=playbook_id, title=titles[playbook_id])


async def schedules_json(store: Store, schedules: Sequence[Schedule]) -> list[DevinSchedule]:
    """Several schedules on the wire, their playbook titles read in one query."""
    titles = await store.playbook_titles(s.playbook_id for s in schedules if s.playbook_id)
    return [schedule_json(schedule, titles) for schedule in schedules]


async def one_schedule_json(store: Store, schedule: Schedule) -> DevinSchedule:
    (answer,) = await schedules_json(store, [schedule])
    return answer


def playbook_json(playbook: Playbook) -> DevinPlaybook:
    return DevinPlaybook(
        playbook_id=playbook.id,
        title=playbook.title,
        body=playbook.body,
        macro=playbook.macro,
        access_type="org",
        org_id=playbook.org_id,
        created_by=playbook.created_by,
        updated_by=playbook.updated_by,
        created_at=_epoch_seconds(playbook.created_at),
        updated_at=_epoch_seconds(playbook.updated_at),
    )


def _epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def respond(
    answer: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`answer` as a JSON response, encoded by pydantic in one step (no intermediate dict)."""
    return web.Response(
        body=answer.model_dump_json().encode(),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )
