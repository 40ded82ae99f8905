"""Changes to schedules from the dashboard, made as the Devin API's handlers make them.

Each takes a body validated by the API's own models (`api.devin_models`), applies the API's
rules (`api.schedules`), writes through the store and tells the engine
(`ScheduleEvents.changed`) before the page answers, so a change is in force, and refused or
accepted, exactly as through the API. The dashboard sees every agent's schedules. Its forms
set no run-as user and no playbook, so the API's checks of those have nothing to check here.
"""

from __future__ import annotations

from aiohttp import web

from api.devin_models import ScheduleCreate, ScheduleUpdate
from api.schedules import check_timing, new_schedule, patch_changes, patch_check
from api.ui.context import CALLER, dashboard
from storage.domain import Run, Schedule


async def create(request: web.Request, body: ScheduleCreate) -> Schedule:
    board, caller = dashboard(request), request[CALLER]
    now = board.clock.now()
    schedule = new_schedule(body, org_id=caller.org_id, by=caller.id, now=now)
    check_timing(schedule, now=now, future=True, window=True)
    stored = await board.store.create_schedule(schedule, now=now)
    await board.events.changed(stored)
    return stored


async def update(
    request: web.Request, schedule_id: str, body: ScheduleUpdate, *, version: int | None = None
) -> Schedule:
    """Edit as a PATCH does; with `version` (the one the form showed), as a PATCH with
    `If-Match` does: VersionMismatch, nothing changed, if the schedule moved on since."""
    board, caller = dashboard(request), request[CALLER]
    changes = patch_changes(body)
    now = board.clock.now()
    updated = await board.store.update_schedule(
        schedule_id,
        changes | {"last_edited_by": caller.id},
        now=now,
        org_id=caller.org_id,
        check=patch_check(changes.keys(), now=now),
        if_version=None if version is None else [version],
    )
    await board.events.changed(updated)
    return updated


async def delete(request: web.Request, schedule_id: str) -> Schedule:
    board, caller = dashboard(request), request[CALLER]
    deleted = await board.store.delete_schedule(
        schedule_id, now=board.clock.now(), org_id=caller.org_id, by=caller.id
    )
    await board.events.changed(deleted)
    return deleted


async def trigger(request: web.Request, schedule_id: str) -> Run:
    board, caller = dashboard(request), request[CALLER]
    schedule = await board.store.get_schedule(schedule_id, org_id=caller.org_id)
    return await board.events.trigger(schedule, by=caller.id)
