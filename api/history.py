"""A schedule's edit history under the Devin base: GET `/schedules/{schedule_id}/history`.

Same auth as reading the schedule (ManageOrgSchedules in the path's org, the same `agents`
narrowing). The history of a deleted schedule stays readable; only an id that never was a
schedule of the org is answered 404. What an entry holds is `storage.history`'s to say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authorize
from api.body import parse_query
from api.devin_models import AgentsQuery, PageQuery
from api.keys import STORE
from api.openapi import operation
from api.views import respond
from api.wire import OffsetPage
from storage.domain import HistoryEntry
from storage.enums import HistoryAction, Permission

MANAGE = Permission.MANAGE_ORG_SCHEDULES


class HistoryEntryJson(BaseModel):
    """One change of a schedule."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    by: str | None = Field(
        description="Who made it: a user or service user id, `config` (the configuration "
        "file), `engine` (a pause after consecutive failures, a one_time schedule done)."
    )
    action: HistoryAction = Field(
        description="created, updated, enabled, disabled, paused (disabled with a "
        "`paused_reason`) or deleted."
    )
    changes: dict[str, list[Any]] = Field(
        description="Each changed field by its wire name: [before, after]. A creation lists "
        "[null, value], a deletion [value, null]."
    )

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryJson:
        return cls(at=entry.at, by=entry.by, action=entry.action, changes=entry.changes)


class HistoryList(OffsetPage[HistoryEntryJson]):
    pass


class HistoryQuery(PageQuery, AgentsQuery):
    """Paging of GET `/schedules/{schedule_id}/history`, newest first."""


@operation(
    "A schedule's edit history, newest first (also of a deleted schedule)",
    query=HistoryQuery,
    response=HistoryList,
    errors=(404,),
    tags=("schedules",),
)
async def schedule_history(request: web.Request) -> web.Response:
    org_id, schedule_id = request.match_info["org_id"], request.match_info["schedule_id"]
    authorize(request, org_id, MANAGE)
    query = parse_query(request.query, HistoryQuery)
    page = await request.app[STORE].schedule_history(
        schedule_id, limit=query.limit, offset=query.offset, org_id=org_id, agents=query.visible
    )
    entries = [HistoryEntryJson.of(entry) for entry in page.items]
    return respond(HistoryList.of(entries, offset=query.offset, total=page.total))


def add_routes(app: web.Application, base: str) -> None:
    """The history route under `base` (which holds `{org_id}`)."""
    app.router.add_get(f"{base}/schedules/{{schedule_id}}/history", schedule_history)
