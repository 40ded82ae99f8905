"""AgentScope's schedule list as it was answered before `api.json_rows`: the baseline.

Every schedule read as a domain value in pages of 500 (`Store.list_schedules`), each
rendered by the pydantic model `ScheduleRecord` and the whole list dumped by pydantic, on
the event loop. `install()` puts it in place of the handler before the app is built (the
probed daemon does so when `BENCH_LIST_ENCODER=models`).
"""

from __future__ import annotations

from aiohttp import web

import api.agentscope
from api.agentscope import Caller, caller_of
from api.agentscope_models import ScheduleList, ScheduleRecord
from api.keys import STORE
from api.views import respond
from storage.domain import Schedule

_LIST_BATCH = 500


async def list_schedules(request: web.Request) -> web.Response:
    caller = caller_of(request)
    schedules = await _all_owned(request, caller)
    records = [ScheduleRecord.of(s) for s in schedules]
    return respond(ScheduleList(schedules=records, total=len(records)))


async def _all_owned(request: web.Request, caller: Caller) -> list[Schedule]:
    store = request.app[STORE]
    found: list[Schedule] = []
    while True:
        page = await store.list_schedules(
            caller.org_id, limit=_LIST_BATCH, offset=len(found), owner_user_id=caller.user_id
        )
        found += page.items
        if not page.items or len(found) >= page.total:
            return found


def install() -> None:
    """Answer `GET /schedule/` with this handler in every app built from now on."""
    api.agentscope.list_schedules = list_schedules  # type: ignore[assignment]
