"""The aiohttp application: every route is registered here, in one place."""

from __future__ import annotations

from aiohttp import web

from api import backfill, health, history, openapi, playbooks, prompt_preview, runs, schedules
from api.answer_cache import AnswerCache
from api.errors import error_middleware
from api.keys import (
    ANSWERS,
    CLOCK,
    DIRECTORY,
    EVENTS,
    FLEET,
    LIFECYCLE,
    SETTINGS,
    STORE,
    ApiSettings,
)
from api.ports import DaemonFacts, FleetView, Lifecycle, ScheduleEvents
from storage.clock import Clock
from storage.identities import DirectoryRef
from storage.store import Store

DEVIN_BASES = ("/v3/organizations/{org_id}", "/v3beta1/organizations/{org_id}")


def create_app(
    *,
    store: Store,
    events: ScheduleEvents,
    directory: DirectoryRef,
    clock: Clock,
    lifecycle: Lifecycle,
    settings: ApiSettings,
    facts: DaemonFacts | None = None,
    fleet: FleetView | None = None,
) -> web.Application:
    """Build the app with every route; nothing starts until it is run.

    `facts` is what the dashboard's health page shows of the daemon (None: not known);
    `fleet`, the daemons sharing the database, for `/readyz` (None: not told).
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[STORE] = store
    app[ANSWERS] = AnswerCache(store)
    app[EVENTS] = events
    app[DIRECTORY] = directory
    app[CLOCK] = clock
    app[LIFECYCLE] = lifecycle
    if fleet is not None:
        app[FLEET] = fleet
    app[SETTINGS] = settings
    health.add_routes(app)
    app.router.add_get("/openapi.json", openapi.serve_openapi)
    for base in DEVIN_BASES:
        schedules.add_routes(app, base)
        playbooks.add_routes(app, base)
        runs.add_routes(app, base)
        backfill.add_routes(app, base)
        prompt_preview.add_routes(app, base)
        history.add_routes(app, base)
    if settings.agentscope_enabled:
        # Imported only when served: its request and answer models cost start-up ~30 ms.
        from api import agentscope

        agentscope.add_routes(app)
    if settings.ui_enabled:
        from api.ui.routes import add_dashboard

        add_dashboard(app, facts=facts)
    return app
