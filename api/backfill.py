"""Backfill: fire a schedule's past cron instants that have no run yet, paced.

POST `/schedules/{schedule_id}/backfill` with `{"start", "end", "max_runs"}`: the schedule's
cron instants in [start, end) each get a run with trigger `backfill` unless they have one
(the runs' unique key per schedule and instant decides), launched at the catch-up rate.
Same permission as running a schedule now (ManageOrgSchedules).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authorize
from api.body import parse_body
from api.devin_models import AgentsQuery
from api.errors import unprocessable
from api.keys import CLOCK, EVENTS, STORE
from api.openapi import operation
from api.schedules import visible_agents
from api.views import respond
from storage.domain import Schedule
from storage.enums import Permission, ScheduleType
from storage.timing import cron_instants_between
from storage.values import UTCDatetime

MAX_RUNS: Final = 1000
"""The most instants one backfill may cover."""


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: UTCDatetime = Field(description="First instant of the range (included).")
    end: UTCDatetime = Field(description="End of the range (excluded); not after now.")
    max_runs: int = Field(
        default=100,
        ge=1,
        le=MAX_RUNS,
        description="Refuse (422) a range holding more cron instants than this.",
    )


class BackfillAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(description="Runs created (instants that had a run are left alone).")
    first: datetime | None = Field(description="The earliest instant given a run, or null.")
    last: datetime | None = Field(description="The latest instant given a run, or null.")


@operation(
    "Fire the schedule's past cron instants in [start, end) that have no run yet (trigger "
    "backfill), paced at the catch-up rate",
    request=BackfillRequest,
    response=BackfillAnswer,
    status=202,
    query=AgentsQuery,
    errors=(404,),
    tags=("runs",),
)
async def backfill_schedule(request: web.Request) -> web.Response:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    caller = authorize(request, org_id, Permission.MANAGE_ORG_SCHEDULES)
    agents = visible_agents(request)
    # The schedule first: another org's id is unknown (404) whatever the body says.
    schedule = await request.app[STORE].get_schedule(schedule_id, org_id=org_id, agents=agents)
    body = await parse_body(request, BackfillRequest)
    check_range(body, now=request.app[CLOCK].now())
    instants = backfill_instants(schedule, body)
    runs = await request.app[EVENTS].backfill(schedule, instants, by=caller.id)
    fired = sorted(run.scheduled_for for run in runs)
    answer = BackfillAnswer(
        count=len(fired), first=fired[0] if fired else None, last=fired[-1] if fired else None
    )
    return respond(answer, status=202)


def check_range(body: BackfillRequest, *, now: datetime) -> None:
    """Refuse (422) a range that is empty or reaches into the future."""
    if body.end <= body.start:
        raise unprocessable(("body", "end"), "end must be after start")
    if body.end > now:
        raise unprocessable(
            ("body", "end"), "the range reaches into the future: end must not be after now"
        )


def backfill_instants(schedule: Schedule, body: BackfillRequest) -> list[datetime]:
    """The schedule's cron instants in the range; 422 for a one_time schedule or more
    instants than `max_runs`."""
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        raise unprocessable(
            ("path", "schedule_id"), "a one_time schedule has no cron instants to backfill"
        )
    limit = body.max_runs
    instants = cron_instants_between(schedule, body.start, body.end, limit=limit + 1)
    if len(instants) > limit:
        raise unprocessable(
            ("body", "max_runs"),
            f"the range holds more than max_runs={limit} cron instants: narrow it or raise "
            f"max_runs (at most {MAX_RUNS})",
        )
    return instants


def add_routes(app: web.Application, base: str) -> None:
    app.router.add_post(f"{base}/schedules/{{schedule_id}}/backfill", backfill_schedule)
