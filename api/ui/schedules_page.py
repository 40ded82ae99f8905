"""The schedules page: the org's schedules a page at a time, filtered by state, each with its
cron in words, next fires and last run; enable/disable in place; the create form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.body import parse_query
from api.devin_models import ScheduleCreate, ScheduleUpdate
from api.errors import Unprocessable
from api.ui import writes
from api.ui.context import SESSION, dashboard
from api.ui.forms import ScheduleForm, body_of, validated, with_errors
from api.ui.guard import read_form, text
from api.ui.render import page
from api.ui.timing import next_fires
from storage.domain import Run, Schedule
from storage.enums import ScheduleState
from storage.values import MAX_INT

PAGE_SIZE = 50


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: ScheduleState = ScheduleState.ALL
    page: int = Field(default=1, ge=1, le=MAX_INT)


@dataclass(frozen=True, slots=True)
class Row:
    schedule: Schedule
    fires: list[datetime]
    last_run: Run | None


async def schedules(request: web.Request) -> web.Response:
    query = parse_query(request.query, ListQuery)
    org_id, board = request.match_info["org_id"], dashboard(request)
    offset = (query.page - 1) * PAGE_SIZE
    listed = await board.store.list_schedules_in_state(
        org_id, query.state, limit=PAGE_SIZE, offset=offset
    )
    counts = await board.store.count_schedules_by_state(org_id)
    last_runs = await board.store.last_runs(s.id for s in listed)
    now = board.clock.now()
    rows = [Row(s, next_fires(s, now), last_runs.get(s.id)) for s in listed]
    context = {
        "rows": rows,
        "state": query.state,
        "states": list(ScheduleState),
        "counts": counts,
        "page_number": query.page,
        "first": offset + 1,
        "total": counts[query.state],
        "has_next": offset + len(rows) < counts[query.state],
    }
    return page(request, "schedules.html", context)


async def set_enabled(request: web.Request) -> web.Response:
    """Enable or disable one schedule from its row (or its page), then back to where it was."""
    form = await read_form(request)
    enabled = text(form, "enabled") == "true"
    body = validated(ScheduleUpdate, {"enabled": enabled})
    schedule = await writes.update(request, request.match_info["schedule_id"], body)
    request[SESSION].flash = f"{schedule.name}: {'enabled' if enabled else 'paused'}."
    raise web.HTTPSeeOther(_back(request, text(form, "back")))


async def new_schedule_form(request: web.Request) -> web.Response:
    return page(request, "new_schedule.html", {"form": ScheduleForm.blank()})


async def create_schedule(request: web.Request) -> web.Response:
    body = body_of(await read_form(request))
    try:
        schedule = await writes.create(request, validated(ScheduleCreate, body))
    except Unprocessable as refusal:
        context = {"form": with_errors(body, refusal)}
        return page(request, "new_schedule.html", context, status=422)
    request[SESSION].flash = f"Schedule {schedule.name!r} created."
    raise web.HTTPSeeOther(f"/ui/orgs/{schedule.org_id}/schedules/{schedule.id}")


def _back(request: web.Request, back: str) -> str:
    """`back` if it is a page of this org's schedules, else the schedules page."""
    schedules_path = f"/ui/orgs/{request.match_info['org_id']}/schedules"
    if back == schedules_path or back.startswith((schedules_path + "?", schedules_path + "/")):
        return back if back.isprintable() and "//" not in back else schedules_path
    return schedules_path
