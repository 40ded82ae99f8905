"""`/ui/orgs/{org_id}/cron-preview`: the edit form's live preview, for the page's script.

The same query and computation as the API's `GET .../cron/preview` (its model, the engine's
cron code), answered to the session cookie instead of a bearer token, with the expression in
words besides its next instants. A bad expression or zone is a 422 with the API's items.
"""

from __future__ import annotations

from aiohttp import web

from api.body import parse_query
from api.errors import Unprocessable
from api.runs import CronPreviewQuery
from api.ui.context import dashboard
from api.ui.describe import cron_in_words
from api.ui.render import iso_utc
from storage.cron import upcoming_fires


async def cron_preview(request: web.Request) -> web.Response:
    try:
        query = parse_query(request.query, CronPreviewQuery)
    except Unprocessable as refusal:
        return web.json_response({"detail": refusal.items}, status=422)
    after = query.after if query.after is not None else dashboard(request).clock.now()
    instants = upcoming_fires(query.expr, query.timezone, after, query.count)
    answer = {
        "expr": query.expr,
        "timezone": query.timezone,
        "words": cron_in_words(query.expr),
        "instants": [iso_utc(instant) for instant in instants],
    }
    return web.json_response(answer, headers={"Cache-Control": "no-store"})
