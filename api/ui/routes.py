"""The dashboard's routes, all in one place: a sub-application mounted at /ui/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from aiohttp import web

from api.keys import CLOCK, DIRECTORY, EVENTS, LIFECYCLE, SETTINGS, STORE
from api.ports import DaemonFacts
from api.ui.context import DASHBOARD, Dashboard
from api.ui.errors import html_errors
from api.ui.guard import guard
from api.ui.health_page import health_page
from api.ui.preview import cron_preview
from api.ui.runs_page import runs_page
from api.ui.schedule_page import (
    confirm_delete,
    delete_schedule,
    edit_schedule,
    schedule_page,
    trigger_schedule,
)
from api.ui.schedules_page import create_schedule, new_schedule_form, schedules, set_enabled
from api.ui.sessions import SessionTable
from api.ui.signin import home, sign_in, sign_in_form, sign_out

PREFIX = "/ui/"
STATIC = Path(__file__).parent / "static"


def add_dashboard(app: web.Application, *, facts: DaemonFacts | None) -> None:
    """Mount the dashboard on `app` (whose store, engine, directory and clock it uses)."""
    ui = web.Application(middlewares=[html_errors, guard])
    idle = timedelta(seconds=app[SETTINGS].ui_session_idle)
    ui[DASHBOARD] = Dashboard(
        store=app[STORE],
        events=app[EVENTS],
        directory=app[DIRECTORY],
        clock=app[CLOCK],
        lifecycle=app[LIFECYCLE],
        facts=facts,
        sessions=SessionTable(app[CLOCK], idle),
    )
    _add_routes(ui.router)
    app.add_subapp(PREFIX, ui)


def _add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("", home, name="root")
    router.add_get("/", home, name="home")
    sign_in_resource = router.add_resource("/sign-in", name="sign_in")
    sign_in_resource.add_route("GET", sign_in_form)
    sign_in_resource.add_route("POST", sign_in)
    router.add_post("/sign-out", sign_out)
    router.add_static("/static", STATIC, name="static")
    org = "/orgs/{org_id}"
    router.add_get(f"{org}/schedules", schedules)
    router.add_post(f"{org}/schedules", create_schedule)
    router.add_get(f"{org}/schedules/new", new_schedule_form)
    item = f"{org}/schedules/{{schedule_id}}"
    router.add_get(item, schedule_page)
    router.add_post(item, edit_schedule)
    router.add_post(f"{item}/enabled", set_enabled)
    router.add_post(f"{item}/trigger", trigger_schedule)
    router.add_get(f"{item}/delete", confirm_delete)
    router.add_post(f"{item}/delete", delete_schedule)
    router.add_get(f"{org}/runs", runs_page)
    router.add_get(f"{org}/health", health_page)
    router.add_get(f"{org}/cron-preview", cron_preview)
