"""GET `/schedules/{schedule_id}/prompt-preview`: the prompt the schedule's next fire sends.

A template is rendered as it would be for the next instant (with the schedule's latest run
and last success as they are now, and `run_id` "preview"); a text prompt is answered as is.
A template that fails to render answers 422 naming the problem, as the fire would fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authorize
from api.devin_models import AgentsQuery
from api.errors import unprocessable
from api.keys import CLOCK, STORE
from api.openapi import operation
from api.schedules import visible_agents
from api.views import respond
from storage.domain import Schedule
from storage.enums import Permission
from storage.prompts import PromptError, PromptFacts, render_prompt
from storage.store import Store
from storage.timing import next_run_after

PREVIEW_RUN_ID = "preview"
"""The `run_id` a preview renders with: the run does not exist yet."""


class PromptPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The prompt as the next fire would send it.")
    scheduled_for: datetime | None = Field(
        description="The instant it was rendered for: the next one (null when the schedule "
        "has none; it is then rendered for now)."
    )


@operation(
    "The schedule's prompt as its next fire would send it (a template rendered)",
    query=AgentsQuery,
    response=PromptPreview,
    errors=(404,),
    tags=("schedules",),
)
async def prompt_preview(request: web.Request) -> web.Response:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    authorize(request, org_id, Permission.MANAGE_ORG_SCHEDULES)
    agents = visible_agents(request)
    store = request.app[STORE]
    schedule = await store.get_schedule(schedule_id, org_id=org_id, agents=agents)
    now = request.app[CLOCK].now()
    instant = next_instant(schedule, now)
    try:
        facts = await _facts(store, schedule, instant or now)
        prompt = await asyncio.to_thread(render_prompt, schedule, facts)  # up to a second
    except PromptError as error:
        raise unprocessable(("path", "schedule_id"), f"prompt: {error}") from None
    return respond(PromptPreview(prompt=prompt, scheduled_for=instant))


def next_instant(schedule: Schedule, now: datetime) -> datetime | None:
    """The instant the schedule fires next; for a paused one, the next it would fire at."""
    if schedule.is_active and schedule.next_run_at is not None:
        return schedule.next_run_at
    return next_run_after(dataclasses.replace(schedule, enabled=True), now)


async def _facts(store: Store, schedule: Schedule, instant: datetime) -> PromptFacts:
    return PromptFacts(
        scheduled_for=instant,
        run_id=PREVIEW_RUN_ID,
        last_run=await store.previous_run(schedule.id, instant),
        last_success_at=await store.last_success_at(schedule.id),
    )


def add_routes(app: web.Application, base: str) -> None:
    app.router.add_get(f"{base}/schedules/{{schedule_id}}/prompt-preview", prompt_preview)
