"""The AgentScope-compatible façade: `/schedule`, identified by the `X-User-ID` header.

Served only when `agentscope.enabled`. Every schedule made here belongs to the org
`agentscope.org`, is owned by the header's user and runs as that user; a user sees and edits
only their own schedules, and anything else (another user's, deleted, unknown) answers 404
`Schedule '<id>' not found.`. When `agentscope.require_token` is set a bearer token of a
service user of that org with ManageOrgSchedules is required as well (401/403 as the Devin
façade answers).

Every create, edit and delete is handed to the engine (`ScheduleEvents.changed`) before
the answer is sent, so it is in effect by then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api import json_rows
from api.agentscope_models import (
    CreateScheduleRequest,
    ScheduleCreated,
    ScheduleList,
    ScheduleRecord,
    SessionList,
    SessionsQuery,
    UpdateScheduleRequest,
)
from api.auth import authorize
from api.body import parse_body, parse_query
from api.conditional import ETAG_HEADER, IF_MATCH_HEADER, etag, if_match, require_match
from api.errors import ApiError, Unprocessable, unprocessable
from api.keys import ANSWERS, CLOCK, DIRECTORY, EVENTS, SETTINGS, STORE
from api.openapi import operation
from api.views import (
    EDIT_HEADERS,
    answer_headers,
    edit_headers,
    encoded_answer,
    respond,
    send_encoded,
)
from storage.catalogue import wire_names
from storage.domain import Schedule
from storage.enums import Permission, Source
from storage.errors import NotFound
from storage.values import valid_cron, valid_timezone

_TAGS = ("agentscope",)


@dataclass(frozen=True, slots=True)
class Caller:
    """The user named by `X-User-ID`, and the org the façade serves."""

    user_id: str
    org_id: str


# -- identity and ownership -----------------------------------------------------------------


def caller_of(request: web.Request) -> Caller:
    """Authenticate the request (token first when required, then `X-User-ID`).

    Absent header: 422 as FastAPI answers a missing required header; empty (or blank): 401
    `X-User-ID header is required.` as AgentScope answers; a user who is not configured as
    a member of the façade's org: 401.
    """
    settings = request.app[SETTINGS]
    org_id = settings.agentscope_org
    if settings.agentscope_require_token:
        authorize(request, org_id, Permission.MANAGE_ORG_SCHEDULES)
    user_id = request.headers.get("X-User-ID")
    if user_id is None:
        raise unprocessable(["header", "x-user-id"], "Field required", "missing")
    user_id = user_id.strip()
    if not user_id:
        raise ApiError(401, "X-User-ID header is required.")
    user = request.app[DIRECTORY].current.users.get(user_id)
    if user is None or org_id not in user.orgs:
        raise ApiError(401, f"Unknown user '{user_id}'")
    return Caller(user_id, org_id)


def schedule_not_found(schedule_id: str) -> ApiError:
    return ApiError(404, f"Schedule '{schedule_id}' not found.")


def _require_owner(schedule: Schedule, user_id: str | None) -> None:
    if schedule.owner_user_id != user_id:
        raise schedule_not_found(schedule.id)


async def owned_schedule(request: web.Request, caller: Caller) -> Schedule:
    """The live schedule of the path, if the caller owns it; else 404."""
    schedule_id = request.match_info["schedule_id"]
    try:
        schedule = await request.app[STORE].get_schedule(schedule_id, org_id=caller.org_id)
    except NotFound:
        raise schedule_not_found(schedule_id) from None
    _require_owner(schedule, caller.user_id)
    return schedule


# -- validation and translation (pure) --------------------------------------------------


_CREATE_KEYS = wire_names("agentscope", "create")
_PATCH_KEYS = wire_names("agentscope", "patch")
"""{schedule field: request key} (`description` is `prompt`, `cron_expression` `cron`...)."""


def _checked(
    key: str, value: str | None, check: Callable[[str], str], refusals: list[dict[str, Any]]
) -> str | None:
    """`check(value)`, or None with the refusal added to `refusals`; None passes as None."""
    if value is None:
        return None
    try:
        return check(value)
    except ValueError as exc:
        refusals.append({"loc": ["body", key], "msg": str(exc), "type": "value_error"})
        return None


def checked_timing(cron_expression: str | None, timezone: str | None) -> str | None:
    """The normalised cron (None when not given); 422 naming every bad field."""
    refusals: list[dict[str, Any]] = []
    cron = _checked("cron_expression", cron_expression, valid_cron, refusals)
    _checked("timezone", timezone, valid_timezone, refusals)
    if refusals:
        raise Unprocessable(refusals)
    return cron


def _sent(body: BaseModel, keys: Mapping[str, str], cron: str | None) -> dict[str, Any]:
    """The schedule fields `body` gives under `keys`, as stored: the cron normalised, the
    chat model config as a plain object."""
    fields = {name: getattr(body, key) for name, key in keys.items()}
    fields["cron"] = cron
    if (chat_model := fields.get("chat_model_config")) is not None:
        fields["chat_model_config"] = chat_model.model_dump()
    return fields


def new_schedule(body: CreateScheduleRequest, caller: Caller, now: datetime) -> Schedule:
    """The schedule a valid create request describes, owned by and running as the caller.

    Made by a user, in force from now on, without an end: AgentScope's server sets these
    itself, whatever the client sends (see `CreateScheduleRequest`).
    """
    cron = checked_timing(body.cron_expression, body.timezone)
    return Schedule(
        org_id=caller.org_id,
        created_at=now,
        updated_at=now,
        owner_user_id=caller.user_id,
        created_by=caller.user_id,
        last_edited_by=caller.user_id,
        run_as_user_id=caller.user_id,
        source=Source.USER,
        **_sent(body, _CREATE_KEYS, cron),
    )


def schedule_changes(body: UpdateScheduleRequest) -> dict[str, Any]:
    """Store column changes for a PATCH; a field omitted or null is left as it is.

    Re-enabling clears an auto-pause reason. Validates cron and timezone (422).
    """
    cron = checked_timing(body.cron_expression, body.timezone)
    sent = _sent(body, _PATCH_KEYS, cron)
    return {name: value for name, value in sent.items() if value is not None}


# -- handlers ---------------------------------------------------------------------------


@operation(
    "List the caller's schedules",
    response=ScheduleList,
    auth="x-user-id",
    tags=_TAGS,
    errors=(401, 403, 422),
)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    caller = caller_of(request)
    store = request.app[STORE]

    async def read() -> bytes:
        # Unpaged, as AgentScope answers it: read and encoded off the loop, however many.
        return await store.encode_schedules(
            caller.org_id,
            json_rows.AGENTSCOPE_SCHEDULE_FIELDS,
            json_rows.agentscope_schedule_list,
            limit=None,
            owner_user_id=caller.user_id,
        )

    key = ("agentscope-schedules", caller.org_id, caller.user_id)
    return await send_encoded(request, await request.app[ANSWERS].answer(key, read))


@operation(
    "Create a schedule owned by and running as the caller",
    response=ScheduleCreated,
    status=201,
    headers=ETAG_HEADER,
    request=CreateScheduleRequest,
    auth="x-user-id",
    tags=_TAGS,
    errors=(401, 403),
)
async def create_schedule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    body = await parse_body(request, CreateScheduleRequest)
    refusal = request.app[DIRECTORY].current.run_as_refusal(caller.user_id, caller.org_id)
    if refusal is not None:
        raise unprocessable(["header", "x-user-id"], f"cannot run sessions: {refusal}")
    now = request.app[CLOCK].now()
    stored = await request.app[STORE].create_schedule(new_schedule(body, caller, now), now=now)
    await request.app[EVENTS].changed(stored)
    return respond(ScheduleCreated(schedule_id=stored.id), status=201, headers=etag(stored))


@operation(
    "One of the caller's schedules",
    response=ScheduleRecord,
    headers=ETAG_HEADER,
    auth="x-user-id",
    tags=_TAGS,
    errors=(401, 403, 404, 422),
)
async def get_schedule(request: web.Request) -> web.Response:
    schedule = await owned_schedule(request, caller_of(request))
    return encoded_answer(json_rows.agentscope_schedule(schedule), etag(schedule))


@operation(
    "Edit a schedule; an omitted or null field is left unchanged",
    response=ScheduleRecord,
    request=UpdateScheduleRequest,
    headers=ETAG_HEADER | EDIT_HEADERS,
    request_headers=IF_MATCH_HEADER,
    auth="x-user-id",
    tags=_TAGS,
    errors=(400, 401, 403, 404, 412),
)
async def update_schedule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    body = await parse_body(request, UpdateScheduleRequest)
    versions = if_match(request)
    try:
        changes = schedule_changes(body)
    except Unprocessable:
        await owned_schedule(request, caller)  # a schedule the caller cannot see is 404 first
        raise
    if changes:
        edit = changes | {"last_edited_by": caller.user_id}
        schedule = await _apply(request, caller, edit, versions)
    else:
        schedule = await owned_schedule(request, caller)
        require_match(schedule, versions)
    await request.app[EVENTS].changed(schedule)
    return encoded_answer(json_rows.agentscope_schedule(schedule), answer_headers(schedule))


async def _apply(
    request: web.Request, caller: Caller, changes: dict[str, Any], versions: frozenset[int] | None
) -> Schedule:
    """Write `changes` to the caller's schedule of the path: one write finds it among the
    caller's own (404 for any other, whatever If-Match says), compares the version with
    `versions` when given (412), and edits it."""
    schedule_id = request.match_info["schedule_id"]
    try:
        return await request.app[STORE].update_schedule(
            schedule_id,
            changes,
            now=request.app[CLOCK].now(),
            org_id=caller.org_id,
            if_version=versions,
            owner_user_id=caller.user_id,
        )
    except NotFound:
        raise schedule_not_found(schedule_id) from None


@operation(
    "Delete a schedule (it never fires again)",
    status=204,
    headers=EDIT_HEADERS,
    request_headers=IF_MATCH_HEADER,
    auth="x-user-id",
    tags=_TAGS,
    errors=(400, 401, 403, 404, 412, 422),
)
async def delete_schedule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    versions = if_match(request)
    schedule_id = request.match_info["schedule_id"]
    try:  # the caller's own schedule only: 404 for any other, whatever If-Match says
        deleted = await request.app[STORE].delete_schedule(
            schedule_id,
            now=request.app[CLOCK].now(),
            org_id=caller.org_id,
            by=caller.user_id,
            if_version=versions,
            owner_user_id=caller.user_id,
        )
    except NotFound:
        raise schedule_not_found(schedule_id) from None
    await request.app[EVENTS].changed(deleted)
    return web.Response(status=204, headers=edit_headers(deleted))


@operation(
    "The schedule's sessions (its runs), newest first",
    response=SessionList,
    query=SessionsQuery,
    auth="x-user-id",
    tags=_TAGS,
    errors=(401, 403, 404),
)
async def list_sessions(request: web.Request) -> web.StreamResponse:
    caller = caller_of(request)
    query = parse_query(request.query, SessionsQuery)
    schedule = await owned_schedule(request, caller)
    body = await request.app[STORE].encode_runs(
        schedule.id,
        json_rows.session_fields(),
        json_rows.agentscope_session_list,
        limit=query.limit,
        offset=query.offset,
    )
    return await send_encoded(request, body)


def add_routes(app: web.Application) -> None:
    """Register the façade (the caller decides whether it is enabled)."""
    for collection in ("/schedule", "/schedule/"):
        app.router.add_get(collection, list_schedules)
        app.router.add_post(collection, create_schedule)
    app.router.add_get("/schedule/{schedule_id}", get_schedule)
    app.router.add_patch("/schedule/{schedule_id}", update_schedule)
    app.router.add_delete("/schedule/{schedule_id}", delete_schedule)
    app.router.add_get("/schedule/{schedule_id}/sessions", list_sessions)
