"""Devin v3 schedules: create, list, read, edit and delete under `{base}/schedules`.

Every route needs the ManageOrgSchedules permission in the path's org; choosing a run-as user
also needs ImpersonateOrgSessions. A write is reported to the engine (`ScheduleEvents.changed`)
before the answer is sent, so it is in effect once the client sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from datetime import datetime
from typing import Any

from aiohttp import web

from api import json_rows
from api.auth import authorize
from api.body import parse_body, parse_query
from api.conditional import ETAG_HEADER, IF_MATCH_HEADER, etag, if_match, require_match
from api.devin_models import (
    AgentsQuery,
    DevinSchedule,
    DevinScheduleList,
    ScheduleCreate,
    ScheduleListQuery,
    ScheduleUpdate,
)
from api.errors import ApiError, unprocessable
from api.keys import CLOCK, DIRECTORY, EVENTS, STORE
from api.openapi import operation
from api.views import (
    EDIT_HEADERS,
    answer_headers,
    schedule_answer,
    send_encoded,
)
from storage import catalogue
from storage.domain import Schedule
from storage.enums import DevinAgent, Permission, PromptFormat, ScheduleType
from storage.errors import NotFound
from storage.identities import ServiceUser
from storage.prompts import PromptError, check_template

MANAGE = Permission.MANAGE_ORG_SCHEDULES
TAGS = ("schedules",)

CLEARABLE = catalogue.CLEARABLE
"""PATCH keys whose `null` clears the field; `null` on any other key leaves it unchanged."""

_CREATE_KEYS = {key: name for name, key in catalogue.wire_names("devin", "create").items()}
_PATCH_KEYS = {key: name for name, key in catalogue.wire_names("devin", "patch").items()}
"""Body key -> schedule field (`frequency` is `cron`, `create_as_user_id` `run_as_user_id`)."""


# -- handlers -------------------------------------------------------------------------------


@operation(
    "Create a schedule",
    request=ScheduleCreate,
    response=DevinSchedule,
    headers=ETAG_HEADER,
    errors=(404,),
    tags=TAGS,
)
async def create_schedule(request: web.Request) -> web.Response:
    org_id = request.match_info["org_id"]
    caller = authorize(request, org_id, MANAGE)
    body = await parse_body(request, ScheduleCreate)
    _check_run_as(request, caller, body.create_as_user_id, key="create_as_user_id")
    _check_launcher(request, body.launcher)
    await _check_playbook(request, caller.org_id, body.playbook_id)
    now = request.app[CLOCK].now()
    schedule = new_schedule(body, org_id=org_id, by=caller.id, now=now)
    check_timing(schedule, now=now, future=True, window=True)
    check_prompt(schedule)
    stored = await request.app[STORE].create_schedule(schedule, now=now)
    return await _answer_change(request, stored, etag(stored))


@operation(
    "List the org's schedules, oldest first",
    query=ScheduleListQuery,
    response=DevinScheduleList,
    tags=TAGS,
)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    org_id = request.match_info["org_id"]
    authorize(request, org_id, MANAGE)
    query = parse_query(request.query, ScheduleListQuery)
    body = await request.app[STORE].encode_schedules(
        org_id,
        json_rows.DEVIN_SCHEDULE_FIELDS,
        json_rows.devin_schedule_page(query.offset),
        limit=query.limit,
        offset=query.offset,
        agents=query.visible,
    )
    return await send_encoded(request, body)


@operation(
    "Get a schedule",
    query=AgentsQuery,
    response=DevinSchedule,
    headers=ETAG_HEADER,
    errors=(404,),
    tags=TAGS,
)
async def get_schedule(request: web.Request) -> web.Response:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    authorize(request, org_id, MANAGE)
    agents = visible_agents(request)
    schedule = await request.app[STORE].get_schedule(schedule_id, org_id=org_id, agents=agents)
    return await _answer(request, schedule, etag(schedule))


@operation(
    "Update a schedule: only the keys present change",
    query=AgentsQuery,
    request=ScheduleUpdate,
    response=DevinSchedule,
    headers=ETAG_HEADER | EDIT_HEADERS,
    request_headers=IF_MATCH_HEADER,
    errors=(400, 404, 412),
    tags=TAGS,
)
async def update_schedule(request: web.Request) -> web.Response:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    caller = authorize(request, org_id, MANAGE)
    agents = visible_agents(request)
    changes = patch_changes(await parse_body(request, ScheduleUpdate))
    versions = if_match(request)
    store = request.app[STORE]
    if not changes:  # `{}`, or only nulls on fields that cannot be empty: nothing to write
        schedule = await store.get_schedule(schedule_id, org_id=org_id, agents=agents)
        require_match(schedule, versions)
        return await _answer(request, schedule, answer_headers(schedule))
    _check_run_as(request, caller, changes.get("run_as_user_id"), key="run_as_user_id")
    _check_launcher(request, changes.get("launcher"))
    await _check_playbook(request, org_id, changes.get("playbook_id"))
    now = request.app[CLOCK].now()
    updated = await store.update_schedule(
        schedule_id,
        changes | {"last_edited_by": caller.id},
        now=now,
        org_id=org_id,
        agents=agents,
        check=patch_check(changes.keys(), now=now),
        if_version=versions,
    )
    return await _answer_change(request, updated, answer_headers(updated))


@operation(
    "Delete a schedule; answers it as it was deleted",
    query=AgentsQuery,
    response=DevinSchedule,
    headers=ETAG_HEADER | EDIT_HEADERS,
    request_headers=IF_MATCH_HEADER,
    errors=(400, 404, 412),
    tags=TAGS,
)
async def delete_schedule(request: web.Request) -> web.Response:
    # The body is never read: clients send a JSON content type with an empty body.
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    caller = authorize(request, org_id, MANAGE)
    agents = visible_agents(request)
    versions = if_match(request)
    now = request.app[CLOCK].now()
    deleted = await request.app[STORE].delete_schedule(
        schedule_id, now=now, org_id=org_id, agents=agents, by=caller.id, if_version=versions
    )
    return await _answer_change(request, deleted, answer_headers(deleted))


def add_routes(app: web.Application, base: str) -> None:
    """The schedule routes under `base` (which holds `{org_id}`)."""
    collection, item = f"{base}/schedules", f"{base}/schedules/{{schedule_id}}"
    app.router.add_post(collection, create_schedule)
    app.router.add_get(collection, list_schedules)
    app.router.add_get(item, get_schedule)
    app.router.add_patch(item, update_schedule)
    app.router.add_delete(item, delete_schedule)


def visible_agents(request: web.Request) -> frozenset[str] | None:
    """The agents whose schedules this request may see, from its `agents` parameter (422)."""
    return parse_query(request.query, AgentsQuery).visible


async def _answer_change(
    request: web.Request, schedule: Schedule, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Tell the engine about the stored change, then answer with the schedule."""
    await request.app[EVENTS].changed(schedule)
    return await _answer(request, schedule, headers)


async def _answer(
    request: web.Request, schedule: Schedule, headers: Mapping[str, str] | None = None
) -> web.Response:
    return await schedule_answer(request.app[STORE], schedule, headers)


# -- conversion -----------------------------------------------------------------------------


def new_schedule(body: ScheduleCreate, *, org_id: str, by: str, now: datetime) -> Schedule:
    """The schedule a create body describes; what it omits (or sends as null) takes the
    catalogue's default. The run-as user of `create_as_user_id` also owns the schedule."""
    fields = {
        name: _stored(value)
        for key, name in _CREATE_KEYS.items()
        if (value := getattr(body, key)) is not None
    }
    return Schedule(
        org_id=org_id,
        created_at=now,
        updated_at=now,
        owner_user_id=fields.get("run_as_user_id"),
        created_by=by,
        last_edited_by=by,
        **fields,
    )


def patch_changes(body: ScheduleUpdate) -> dict[str, Any]:
    """The field changes a PATCH body asks for (field name -> new value).

    Only keys present in the body count; a `null` clears a CLEARABLE field and is dropped
    for any other.
    """
    changes: dict[str, Any] = {}
    for key in body.model_fields_set:
        name, value = _PATCH_KEYS[key], getattr(body, key)
        if value is None and name not in CLEARABLE:
            continue
        changes[name] = _stored(value)
    return changes


def _stored(value: Any) -> Any:
    """An agent the body names as one of Devin's is stored as its plain id, like any other."""
    return value.value if isinstance(value, DevinAgent) else value


# -- rules ----------------------------------------------------------------------------------


def check_timing(schedule: Schedule, *, now: datetime, future: bool, window: bool) -> None:
    """Refuse (422) a schedule that cannot fire as its type says.

    A recurring schedule needs a cron; a one_time one a `scheduled_at`, after `now` when
    `future`; with `window`, `end_at` must come after `start_at`.
    """
    if schedule.schedule_type == ScheduleType.RECURRING and schedule.cron is None:
        raise unprocessable(
            ("body", "frequency"), "a recurring schedule needs a frequency (cron)", "missing"
        )
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        _check_scheduled_at(schedule.scheduled_at, now=now, future=future)
    if window and schedule.start_at and schedule.end_at and schedule.end_at <= schedule.start_at:
        raise unprocessable(("body", "end_at"), "end_at must be after start_at")


def _check_scheduled_at(scheduled_at: datetime | None, *, now: datetime, future: bool) -> None:
    if scheduled_at is None:
        raise unprocessable(
            ("body", "scheduled_at"), "a one_time schedule needs scheduled_at", "missing"
        )
    if future and scheduled_at <= now:
        raise unprocessable(("body", "scheduled_at"), "scheduled_at must be in the future")


def patch_check(changed: Set[str], *, now: datetime) -> Callable[[Schedule, Schedule], None]:
    """The store's `check(before, after)` for a PATCH changing the fields `changed`.

    It runs inside the write's transaction, so a refused edit leaves nothing changed.
    A `scheduled_at` must be in the future when it is sent or the type switches to one_time;
    a template prompt must parse when the prompt or its format changes.
    """

    def check(before: Schedule, after: Schedule) -> None:
        future = "scheduled_at" in changed or before.schedule_type != after.schedule_type
        window = bool({"start_at", "end_at"} & changed)
        check_timing(after, now=now, future=future, window=window)
        if {"prompt", "prompt_format"} & changed:
            check_prompt(after)

    return check


def check_prompt(schedule: Schedule) -> None:
    """Refuse (422) a template prompt that does not parse, naming its line."""
    if schedule.prompt_format != PromptFormat.TEMPLATE:
        return
    try:
        check_template(schedule.prompt)
    except PromptError as error:
        raise unprocessable(("body", "prompt"), f"prompt: {error}") from None


def _check_run_as(
    request: web.Request, caller: ServiceUser, user_id: str | None, *, key: str
) -> None:
    """Refuse choosing `user_id` (sent as `key`) to run the sessions: 403 without
    ImpersonateOrgSessions, 422 when the user may not run sessions in the org. None passes."""
    if user_id is None:
        return
    if not caller.has(Permission.IMPERSONATE_ORG_SESSIONS):
        raise ApiError(403, f"Setting {key} needs the ImpersonateOrgSessions permission")
    refusal = request.app[DIRECTORY].current.run_as_refusal(user_id, caller.org_id)
    if refusal is not None:
        raise unprocessable(("body", key), refusal)


def _check_launcher(request: web.Request, name: str | None) -> None:
    """422 unless `name` is a configured launcher. None (the default launcher) passes."""
    if name is None:
        return
    refusal = request.app[DIRECTORY].current.launcher_refusal(name)
    if refusal is not None:
        raise unprocessable(("body", "launcher"), refusal)


async def _check_playbook(request: web.Request, org_id: str, playbook_id: str | None) -> None:
    """404 unless `playbook_id` is a live playbook of the org. None passes."""
    if playbook_id is None:
        return
    try:
        await request.app[STORE].get_playbook(playbook_id, org_id=org_id)
    except NotFound:
        raise ApiError(404, f"Playbook '{playbook_id}' not found") from None
