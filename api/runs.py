"""Extensions under the Devin base: run a schedule now, its run history, and cron previews.

Same auth as the schedules: a service user of the path's org with ManageOrgSchedules.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api import json_rows
from api.auth import authorize
from api.body import parse_query
from api.devin_models import AgentsQuery, Frequency, PageQuery, Timezone
from api.keys import CLOCK, EVENTS, STORE
from api.openapi import operation
from api.schedules import visible_agents
from api.views import respond, send_encoded
from api.wire import OffsetPage, RunJson, run_json
from storage.catalogue import default_of
from storage.cron import upcoming_fires
from storage.enums import Permission
from storage.values import UTCDatetime

MANAGE = Permission.MANAGE_ORG_SCHEDULES
TAGS = ("runs",)


class RunList(OffsetPage[RunJson]):
    pass


class RunListQuery(PageQuery, AgentsQuery):
    """Paging of GET `/schedules/{schedule_id}/runs`, newest first."""


class CronPreviewQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expr: Frequency
    timezone: Timezone = default_of("timezone")
    count: int = Field(default=5, ge=1, le=100, description="How many instants (1..100).")
    after: UTCDatetime | None = Field(
        default=None, description="List instants strictly after this one (default now)."
    )


class CronPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expr: str
    timezone: str
    instants: list[datetime]


@operation(
    "Run a schedule now (trigger manual); answers the launching run, the launch goes on",
    response=RunJson,
    status=202,
    query=AgentsQuery,
    errors=(404,),
    tags=TAGS,
)
async def trigger_schedule(request: web.Request) -> web.Response:
    # The body is never read: clients may send nothing, `{}` or a JSON content type alone.
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    caller = authorize(request, org_id, MANAGE)
    agents = visible_agents(request)
    schedule = await request.app[STORE].get_schedule(schedule_id, org_id=org_id, agents=agents)
    run = await request.app[EVENTS].trigger(schedule, by=caller.id)
    return respond(run_json(run), status=202)


@operation(
    "A schedule's runs, newest first",
    query=RunListQuery,
    response=RunList,
    errors=(404,),
    tags=TAGS,
)
async def list_runs(request: web.Request) -> web.StreamResponse:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    authorize(request, org_id, MANAGE)
    query = parse_query(request.query, RunListQuery)
    store = request.app[STORE]
    await store.get_schedule(schedule_id, org_id=org_id, agents=query.visible)
    body = await store.encode_runs(
        schedule_id,
        json_rows.RUN_FIELDS,
        json_rows.run_page(query.offset),
        limit=query.limit,
        offset=query.offset,
    )
    return await send_encoded(request, body)


@operation(
    "The next instants of a cron expression, as the engine computes them",
    query=CronPreviewQuery,
    response=CronPreview,
    tags=TAGS,
)
async def cron_preview(request: web.Request) -> web.Response:
    authorize(request, request.match_info["org_id"], MANAGE)
    query = parse_query(request.query, CronPreviewQuery)
    after = query.after if query.after is not None else request.app[CLOCK].now()
    instants = upcoming_fires(query.expr, query.timezone, after, query.count)
    return respond(CronPreview(expr=query.expr, timezone=query.timezone, instants=instants))


def add_routes(app: web.Application, base: str) -> None:
    """The extension routes under `base` (which holds `{org_id}`)."""
    item = f"{base}/schedules/{{schedule_id}}"
    app.router.add_post(f"{item}/trigger", trigger_schedule)
    app.router.add_get(f"{item}/runs", list_runs)
    app.router.add_get(f"{base}/cron/preview", cron_preview)
