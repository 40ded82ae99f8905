"""A schedule's page: its fields, run history and chart, the edit form, its edit history,
trigger and delete.

The edit form carries the version it was rendered from; saving it is a conditional edit, so
a form left open while someone (or the engine, or the configuration file) changed the
schedule is refused with a message, the visitor's input kept in the form, and nothing
changed (see `api.conditional`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.body import parse_query
from api.devin_models import ScheduleUpdate
from api.errors import ApiError, Unprocessable
from api.ui import writes
from api.ui.chart import SLOTS, run_chart, run_seconds
from api.ui.context import SESSION, dashboard
from api.ui.forms import ScheduleForm, body_of, validated, with_errors
from api.ui.guard import Form, read_form, text
from api.ui.render import page
from api.ui.timing import next_fires
from storage.domain import Schedule
from storage.enums import ScheduleType
from storage.errors import VersionMismatch
from storage.values import MAX_INT

RUNS_PER_PAGE = SLOTS
EDITS_SHOWN = 20
"""How many of the latest history entries the page lists."""


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    runs_page: int = Field(default=1, ge=1, le=MAX_INT)


async def schedule_page(request: web.Request) -> web.Response:
    schedule = await _schedule(request)
    return await _render(request, schedule, ScheduleForm.of(schedule))


async def edit_schedule(request: web.Request) -> web.Response:
    schedule = await _schedule(request)
    form = await read_form(request)
    body = body_of(form)
    if schedule.schedule_type == ScheduleType.ONE_TIME and not body["frequency"]:
        del body["frequency"]  # a one_time schedule has none to keep
    try:
        edit = validated(ScheduleUpdate, body)
        await writes.update(request, schedule.id, edit, version=_form_version(form))
    except Unprocessable as refusal:
        return await _render(request, schedule, with_errors(body, refusal), status=422)
    except VersionMismatch:
        current = await _schedule(request)  # shown above the form, whose input is kept
        form_kept = await _changed_meanwhile(request, body, current)
        return await _render(request, current, form_kept, status=412)
    request[SESSION].flash = "Changes saved."
    raise web.HTTPSeeOther(request.path)


def _form_version(form: Form) -> int | None:
    """The version the edit form was rendered from; None when the form sent none."""
    version = text(form, "version").strip()
    if not version:
        return None
    if not version.isdigit() or len(version) > 18:
        raise ApiError(400, "the form's version is not a number: reload the page")
    return int(version)


async def _changed_meanwhile(
    request: web.Request, body: dict[str, Any], current: Schedule
) -> ScheduleForm:
    """The posted form, kept, with a message naming who changed the schedule last."""
    latest = await dashboard(request).store.schedule_history(current.id, limit=1, offset=0)
    by = next((entry.by for entry in latest.items if entry.by), "someone")
    message = (
        f"Not saved: this schedule was changed since you opened the form (by {by}; see its "
        "edit history). Your changes are kept below; check the schedule as it is now, then "
        "save again to apply them."
    )
    return ScheduleForm(body, problems=[message])


async def trigger_schedule(request: web.Request) -> web.Response:
    run = await writes.trigger(request, request.match_info["schedule_id"])
    request[SESSION].flash = f"Run {run.id} started."
    raise web.HTTPSeeOther(_schedule_path(request))


async def confirm_delete(request: web.Request) -> web.Response:
    return page(request, "delete.html", {"schedule": await _schedule(request), "error": None})


async def delete_schedule(request: web.Request) -> web.Response:
    form = await read_form(request)
    if text(form, "confirm") != "yes":
        context = {"schedule": await _schedule(request), "error": "Tick the box to confirm."}
        return page(request, "delete.html", context, status=422)
    deleted = await writes.delete(request, request.match_info["schedule_id"])
    request[SESSION].flash = f"Schedule {deleted.name!r} deleted."
    raise web.HTTPSeeOther(f"/ui/orgs/{deleted.org_id}/schedules")


async def _schedule(request: web.Request) -> Schedule:
    """The path's schedule, of any agent; NotFound (404) unless it is a live one of the org."""
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    return await dashboard(request).store.get_schedule(schedule_id, org_id=org_id)


def _schedule_path(request: web.Request) -> str:
    return f"/ui/orgs/{request.match_info['org_id']}/schedules/{request.match_info['schedule_id']}"


async def _render(
    request: web.Request, schedule: Schedule, form: ScheduleForm, *, status: int = 200
) -> web.Response:
    query = parse_query(request.query, HistoryQuery)
    board = dashboard(request)
    offset = (query.runs_page - 1) * RUNS_PER_PAGE
    runs = await board.store.list_runs(schedule.id, limit=RUNS_PER_PAGE, offset=offset)
    edits = await board.store.schedule_history(schedule.id, limit=EDITS_SHOWN, offset=0)
    now = board.clock.now()
    context: dict[str, Any] = {
        "schedule": schedule,
        "fires": next_fires(schedule, now),
        "runs": [(run, run_seconds(run, now)) for run in runs.items],
        "runs_total": runs.total,
        "runs_page": query.runs_page,
        "runs_has_next": offset + len(runs.items) < runs.total,
        "chart": run_chart(runs.items, now),
        "edits": edits.items,
        "edits_total": edits.total,
        "form": form,
    }
    return page(request, "schedule.html", context, status=status)
