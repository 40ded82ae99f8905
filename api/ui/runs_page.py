"""The runs page: recent runs across the org, newest first, failures first on request."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.body import parse_query
from api.ui.chart import run_seconds
from api.ui.context import dashboard
from api.ui.render import page
from storage.values import MAX_INT

PAGE_SIZE = 50


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    failures: Literal["first", "in-order"] = "in-order"
    page: int = Field(default=1, ge=1, le=MAX_INT)


async def runs_page(request: web.Request) -> web.Response:
    query = parse_query(request.query, RunsQuery)
    board = dashboard(request)
    offset = (query.page - 1) * PAGE_SIZE
    runs, has_next = await board.store.list_org_runs(
        request.match_info["org_id"],
        limit=PAGE_SIZE,
        offset=offset,
        failures_first=query.failures == "first",
    )
    now = board.clock.now()
    context = {
        "runs": [(named, run_seconds(named.run, now)) for named in runs],
        "failures_first": query.failures == "first",
        "page_number": query.page,
        "first": offset + 1,
        "has_next": has_next,
    }
    return page(request, "runs.html", context)
