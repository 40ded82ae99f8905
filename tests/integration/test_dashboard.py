"""The dashboard over real HTTP: a real aiohttp server, a real SQLite store, a cookie jar.

Sign-in and sign-out, the session cookie's flags, CSRF refusals, other orgs, form errors
beside their field with nothing stored, and what the pages show. Every refusal is checked
to have changed nothing: the store is compared before and after, and the engine stand-in
records every change and trigger it is told of.
"""

from __future__ import annotations

import html
import re
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import ApiSettings
from storage.domain import Run, RunOutcome
from storage.enums import RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import (
    ADMIN_TOKEN,
    ORG,
    OTHER_ORG,
    OTHER_TOKEN,
    PLAYBOOKS_TOKEN,
    ApiHarness,
    FakeClock,
    RecordingEvents,
    Serving,
    make_directory,
)

UI = f"/ui/orgs/{ORG}"
DEVIN = f"/v3/organizations/{ORG}"
START = datetime(2030, 1, 7, 7, 0, tzinfo=UTC)  # a Monday
OPEN_ROUTES = {("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/sign-in"), ("POST", "/ui/sign-in")}
FORM = {
    "name": "weekday triage",
    "prompt": "Triage the new issues.",
    "frequency": "0 9 * * MON-FRI",
    "timezone": "Europe/Berlin",
    "notify_on": "failure",
    "overlap": "skip",
    "slack_channel_id": "",
    "enabled": "on",
}


@dataclass
class Visitor:
    """A browser as far as the server can tell: a cookie jar, forms, redirects."""

    api: ApiHarness
    http: aiohttp.ClientSession
    page: str = ""

    async def get(self, path: str, **kwargs: Any) -> int:
        async with self.http.get(self.api.url(path), **kwargs) as response:
            self.page = await response.text()
            return response.status

    async def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> int:
        """Post `data` as a form, with the CSRF token of the last page seen when `csrf`."""
        fields = {"csrf_token": self.csrf_token(), **data} if csrf else data
        async with self.http.post(self.api.url(path), data=fields) as response:
            self.page = await response.text()
            return response.status

    def csrf_token(self) -> str:
        found = re.search(r'name="csrf_token" value="([^"]*)"', self.page)
        assert found, "no form on the last page"
        return found.group(1)

    async def sign_in(self, token: str = ADMIN_TOKEN) -> int:
        await self.get("/ui/sign-in")
        return await self.post("/ui/sign-in", {"token": token})

    def text(self) -> str:
        """The last page's text, tags dropped and entities decoded, spaces collapsed."""
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", self.page)).split())

    def error_beside(self, field: str) -> str | None:
        """The error shown in the form field holding the input `field`, if any."""
        pattern = (
            rf'<div class="field has-error">\s*<label for="{field}">'
            rf'.*?<p class="error" id="{field}-error">([^<]*)</p>'
        )
        found = re.search(pattern, self.page, re.S)
        return html.unescape(found.group(1)) if found else None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def ui(api_factory: Callable[..., Any], clock: FakeClock) -> ApiHarness:
    harness: ApiHarness = await api_factory(
        settings=ApiSettings(ui_enabled=True, ui_session_idle=3600, agentscope_enabled=True),
        clock=clock,
    )
    return harness


@pytest.fixture
async def visitor(ui: ApiHarness) -> Any:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Visitor(ui, http)


@pytest.fixture
async def signed_in(visitor: Visitor) -> Visitor:
    assert await visitor.sign_in() == 200
    return visitor


async def create(ui: ApiHarness, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "prompt": "p", "frequency": "0 9 * * MON-FRI"} | fields
    status, schedule = await ui.call("POST", f"{DEVIN}/schedules", json=body)
    assert status == 200, schedule
    return schedule  # type: ignore[no-any-return]


async def snapshot(store: Store) -> tuple[Any, ...]:
    page = await store.list_schedules(ORG, limit=100, offset=0)
    runs = [(await store.list_runs(s.id, limit=100, offset=0)).items for s in page.items]
    return tuple(page.items), tuple(map(tuple, runs))


def ui_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path template) the dashboard serves, found by walking the router."""
    found = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/ui")
    }
    return sorted((m, t) for m, t in found if m != "HEAD" and not t.startswith("/ui/static"))


# -- signing in and out -------------------------------------------------------------------------


async def test_sign_in_opens_a_session_in_an_httponly_samesite_strict_cookie(
    visitor: Visitor,
) -> None:
    await visitor.get("/ui/sign-in")
    form = {"token": ADMIN_TOKEN, "csrf_token": visitor.csrf_token()}
    async with visitor.http.post(
        visitor.api.url("/ui/sign-in"), data=form, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"{UI}/schedules"
        cookie = next(c for c in response.headers.getall("Set-Cookie") if "agentcron_session=" in c)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    assert ADMIN_TOKEN not in cookie
    assert await visitor.get(f"{UI}/schedules") == 200
    assert "service-admin" in visitor.text()


@pytest.fixture
def tls(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_over_https_the_cookies_are_secure(
    tls: ssl.SSLContext, store: Store, directory: DirectoryRef
) -> None:
    app = create_app(
        store=store,
        events=RecordingEvents(store),
        directory=directory,
        clock=FakeClock(START),
        lifecycle=Serving(),
        settings=ApiSettings(ui_enabled=True),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(server.make_url("/ui/sign-in"), ssl=False) as answer:
                assert "; Secure" in answer.headers["Set-Cookie"]
                token = re.search(r'name="csrf_token" value="([^"]*)"', await answer.text())
            assert token is not None
            form = {"token": ADMIN_TOKEN, "csrf_token": token.group(1)}
            url = server.make_url("/ui/sign-in")
            async with http.post(url, data=form, ssl=False, allow_redirects=False) as answer:
                assert answer.status == 303
                cookies = answer.headers.getall("Set-Cookie")
        session = next(c for c in cookies if c.startswith("agentcron_session="))
        assert "; Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session
    finally:
        await server.close()


async def test_a_wrong_token_is_refused_and_opens_no_session(visitor: Visitor) -> None:
    assert await visitor.sign_in("cog_not_a_token") == 401
    assert "not valid" in visitor.text()
    assert not any(c.key == "agentcron_session" for c in visitor.http.cookie_jar)
    assert await visitor.get(f"{UI}/schedules") == 401


async def test_a_sign_in_without_its_form_token_is_refused(visitor: Visitor) -> None:
    await visitor.get("/ui/sign-in")
    assert await visitor.post("/ui/sign-in", {"token": ADMIN_TOKEN}, csrf=False) == 403
    assert (
        await visitor.post("/ui/sign-in", {"token": ADMIN_TOKEN, "csrf_token": "x"}, csrf=False)
        == 403
    )
    assert await visitor.get(f"{UI}/schedules") == 401


async def test_a_page_asked_for_before_signing_in_is_shown_after_it(visitor: Visitor) -> None:
    assert await visitor.get(f"{UI}/runs") == 401
    assert "Sign in" in visitor.text()
    assert await visitor.post("/ui/sign-in", {"token": ADMIN_TOKEN}) == 200
    assert await visitor.get(f"{UI}/runs") == 200
    assert "Recent runs" in visitor.text()


async def test_sign_out_ends_the_session_on_the_server(signed_in: Visitor) -> None:
    await signed_in.get(f"{UI}/schedules")
    cookie = next(c for c in signed_in.http.cookie_jar if c.key == "agentcron_session")
    assert await signed_in.post("/ui/sign-out", {}) == 200  # followed to the sign-in page
    assert "Sign in" in signed_in.text()
    assert not any(c.key == "agentcron_session" for c in signed_in.http.cookie_jar)
    # The old cookie, replayed, opens nothing: the session is gone from the server.
    headers = {"Cookie": f"agentcron_session={cookie.value}"}
    url = signed_in.api.url(f"{UI}/schedules")
    async with aiohttp.ClientSession() as other, other.get(url, headers=headers) as answer:
        assert answer.status == 401


async def test_a_session_ends_after_its_idle_time(signed_in: Visitor, clock: FakeClock) -> None:
    clock.advance(3000)
    assert await signed_in.get(f"{UI}/schedules") == 200  # each request restarts the idle time
    clock.advance(3000)
    assert await signed_in.get(f"{UI}/schedules") == 200
    clock.advance(3601)
    assert await signed_in.get(f"{UI}/schedules") == 401


async def test_a_token_revoked_by_a_reload_ends_its_sessions(
    signed_in: Visitor, directory: DirectoryRef
) -> None:
    full = make_directory()
    kept = {h: su for h, su in full.service_users_by_hash.items() if su.id != "service-admin"}
    directory.current = type(full)(full.orgs, full.users, kept)
    assert await signed_in.get(f"{UI}/schedules") == 401


# -- every page needs a session; every form its CSRF token -----------------------------------


async def test_every_dashboard_route_refuses_a_visitor_who_is_not_signed_in(
    ui: ApiHarness, visitor: Visitor
) -> None:
    schedule = await create(ui)
    before = await snapshot(ui.store)
    routes = ui_routes(ui.server.app)
    assert len(routes) >= 12, routes
    for method, template in routes:
        if (method, template) in OPEN_ROUTES:
            continue
        path = template.format(org_id=ORG, schedule_id=schedule["scheduled_session_id"])
        data = FORM | {"csrf_token": "guess", "enabled": "false", "confirm": "yes"}
        async with visitor.http.request(method, ui.url(path), data=data) as response:
            assert response.status == 401, (method, path)
            assert "Sign in" in await response.text()
    assert await snapshot(ui.store) == before
    assert isinstance(ui.events, RecordingEvents)
    assert ui.events.changed_ids == [schedule["scheduled_session_id"]]  # the create only
    assert ui.events.triggered == []


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    await signed_in.get(f"{UI}/schedules")
    before, changes = await snapshot(ui.store), list(ui.events.changed_ids)
    posts = [(m, t) for m, t in ui_routes(ui.server.app) if m == "POST"]
    posts = [p for p in posts if p not in OPEN_ROUTES]
    assert len(posts) >= 6
    token = signed_in.csrf_token()
    for _, template in posts:
        path = template.format(org_id=ORG, schedule_id=schedule_id)
        data = FORM | {"enabled": "false", "confirm": "yes"}
        for offered in ({}, {"csrf_token": ""}, {"csrf_token": token + "x"}):
            assert await signed_in.post(path, data | offered, csrf=False) == 403, path
            assert "out of date" in signed_in.text()
    assert await snapshot(ui.store) == before
    assert ui.events.changed_ids == changes and ui.events.triggered == []
    assert await signed_in.get(f"{UI}/schedules") == 200  # still signed in


async def test_another_orgs_pages_are_refused_and_show_nothing_of_it(
    ui: ApiHarness, visitor: Visitor
) -> None:
    schedule = await create(ui, name="secret-name")
    assert await visitor.sign_in(OTHER_TOKEN) == 200
    before = await snapshot(ui.store)
    ids = {"schedule_id": schedule["scheduled_session_id"]}
    for method, template in ui_routes(ui.server.app):
        if "{org_id}" not in template:
            continue
        data = FORM | {"csrf_token": visitor.csrf_token(), "confirm": "yes"}
        # This org's pages: refused outright.
        path = template.format(org_id=ORG, **ids)
        async with visitor.http.request(method, ui.url(path), data=data) as response:
            assert response.status == 403, (method, path)
            assert "secret-name" not in await response.text()
        # Its own org's pages naming this org's schedule: as if it did not exist.
        if "{schedule_id}" in template:
            own = template.format(org_id=OTHER_ORG, **ids)
            async with visitor.http.request(method, ui.url(own), data=data) as response:
                assert response.status == 404, (method, own)
    assert await snapshot(ui.store) == before
    assert ui.events.triggered == []


async def test_a_token_without_manage_schedules_sees_no_schedule_page(
    ui: ApiHarness, visitor: Visitor
) -> None:
    await create(ui, name="hidden")
    assert await visitor.sign_in(PLAYBOOKS_TOKEN) == 403
    assert "ManageOrgSchedules" in visitor.text() and "hidden" not in visitor.text()


# -- forms ---------------------------------------------------------------------------------------


async def test_creating_through_the_form_stores_it_as_the_api_would(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    await signed_in.get(f"{UI}/schedules/new")
    assert await signed_in.post(f"{UI}/schedules", FORM) == 200
    assert "Schedule 'weekday triage' created." in signed_in.text()
    (schedule,) = (await ui.store.list_schedules(ORG, limit=10, offset=0)).items
    assert (schedule.cron, schedule.timezone, schedule.enabled) == (
        "0 9 * * MON-FRI",
        "Europe/Berlin",
        True,
    )
    assert schedule.created_by == "service-admin" and schedule.agent == "devin"
    assert schedule.next_run_at == datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    assert ui.events.changed_ids == [schedule.id]
    assert "At 09:00, Monday through Friday" in signed_in.text()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("frequency", "0 0 30 2 *", "never fires: day-of-month '30' never occurs in month '2'"),
        ("frequency", "61 * * * *", "invalid cron expression"),
        ("name", "", "String should have at least 1 character"),
        ("timezone", "Mars/Olympus", "Mars/Olympus"),
    ],
)
async def test_a_bad_field_is_shown_beside_it_and_nothing_is_stored(
    ui: ApiHarness, signed_in: Visitor, field: str, value: str, message: str
) -> None:
    await signed_in.get(f"{UI}/schedules/new")
    assert await signed_in.post(f"{UI}/schedules", FORM | {field: value}) == 422
    shown = signed_in.error_beside(field)
    assert shown is not None and message in shown, signed_in.page
    assert f'value="{html.escape(value)}"' in signed_in.page or field == "name"  # kept as typed
    assert (await ui.store.list_schedules(ORG, limit=10, offset=0)).total == 0
    assert ui.events.changed_ids == []


async def test_the_form_error_is_the_apis_message(ui: ApiHarness, signed_in: Visitor) -> None:
    bad = {"name": "x", "prompt": "y", "frequency": "0 0 30 2 *"}
    _, answer = await ui.call("POST", f"{DEVIN}/schedules", json=bad)
    await signed_in.get(f"{UI}/schedules/new")
    await signed_in.post(f"{UI}/schedules", FORM | bad)
    assert signed_in.error_beside("frequency") == answer["detail"][0]["msg"]


async def test_editing_changes_the_schedule_through_the_apis_rules(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    edit = FORM | {"name": "renamed", "frequency": "30 8 * * *", "timezone": "UTC"}
    assert await signed_in.post(page, edit) == 200
    assert "Changes saved." in signed_in.text() and "At 08:30" in signed_in.text()
    stored = await ui.store.get_schedule(schedule_id)
    assert (stored.name, stored.cron, stored.timezone) == ("renamed", "30 8 * * *", "UTC")
    assert stored.next_run_at == datetime(2030, 1, 7, 8, 30, tzinfo=UTC)
    assert stored.last_edited_by == "service-admin"
    assert ui.events.changed_ids[-1] == schedule_id

    before = await snapshot(ui.store)
    assert await signed_in.post(page, edit | {"frequency": "* * * *"}) == 422
    assert "expected 5 fields" in (signed_in.error_beside("frequency") or "")
    assert await snapshot(ui.store) == before


async def test_enable_and_disable_in_place(ui: ApiHarness, signed_in: Visitor) -> None:
    schedule_id = (await create(ui, name="toggled"))["scheduled_session_id"]
    await signed_in.get(f"{UI}/schedules")
    back = f"{UI}/schedules?state=all&page=1"
    path = f"{UI}/schedules/{schedule_id}/enabled"
    assert await signed_in.post(path, {"enabled": "false", "back": back}) == 200
    assert "toggled: paused." in signed_in.text()
    assert not (await ui.store.get_schedule(schedule_id)).enabled
    assert ui.events.changed_ids[-1] == schedule_id
    await signed_in.get(f"{UI}/schedules?state=paused")
    assert "toggled" in signed_in.text()
    await signed_in.get(f"{UI}/schedules?state=enabled")
    assert "toggled" not in signed_in.text()
    assert await signed_in.post(path, {"enabled": "true", "back": "https://evil.example/"}) == 200
    assert (await ui.store.get_schedule(schedule_id)).enabled  # and back to the list, not there
    assert "Schedules" in signed_in.text()


async def test_trigger_now_starts_a_manual_run(ui: ApiHarness, signed_in: Visitor) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    assert await signed_in.post(f"{page}/trigger", {}) == 200
    assert ui.events.triggered == [schedule_id]
    (run,) = (await ui.store.list_runs(schedule_id, limit=5, offset=0)).items
    assert f"Run {run.id} started." in signed_in.text()
    assert "launching" in signed_in.text() and "manual" in signed_in.text()


async def test_delete_asks_for_confirmation_first(ui: ApiHarness, signed_in: Visitor) -> None:
    schedule_id = (await create(ui, name="doomed"))["scheduled_session_id"]
    path = f"{UI}/schedules/{schedule_id}/delete"
    assert await signed_in.get(path) == 200
    assert "Delete “doomed”?" in signed_in.text()
    assert await signed_in.post(path, {}) == 422
    assert "Tick the box" in signed_in.text()
    await ui.store.get_schedule(schedule_id)  # still there
    assert await signed_in.post(path, {"confirm": "yes"}) == 200
    assert "Schedule 'doomed' deleted." in signed_in.text()
    status, _ = await ui.call("GET", f"{DEVIN}/schedules/{schedule_id}")
    assert status == 404
    assert ui.events.changed_ids[-1] == schedule_id


async def test_unreadable_form_bodies_are_refused_and_change_nothing(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    await signed_in.get(f"{UI}/schedules")
    before = await snapshot(ui.store)
    bodies = {
        "application/x-www-form-urlencoded": b"name=\xff\xfe&csrf_token=\xff",
        "multipart/form-data; boundary=zz": b"--zz\r\nbroken",
        "application/json": b'{"name": "x"}',
    }
    for method, template in ui_routes(ui.server.app):
        if method != "POST":
            continue
        path = template.format(org_id=ORG, schedule_id=schedule_id)
        for content_type, raw in bodies.items():
            headers = {"Content-Type": content_type}
            async with signed_in.http.post(ui.url(path), data=raw, headers=headers) as response:
                assert 400 <= response.status < 500, (path, content_type, response.status)
                assert response.content_type == "text/html"
    assert await snapshot(ui.store) == before


# -- what the pages show -------------------------------------------------------------------------


async def test_the_schedules_page_shows_the_cron_in_words_and_the_next_fires(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    await create(ui, name="berlin mornings", timezone="Europe/Berlin")
    await signed_in.get(f"{UI}/schedules")
    text = signed_in.text()
    assert "At 09:00, Monday through Friday" in text and "(Europe/Berlin)" in text
    fires = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', signed_in.page)
    assert fires[:3] == [
        ("2030-01-07T08:00:00Z", "2030-01-07 08:00:00 UTC"),
        ("2030-01-08T08:00:00Z", "2030-01-08 08:00:00 UTC"),
        ("2030-01-09T08:00:00Z", "2030-01-09 08:00:00 UTC"),
    ]
    assert '<html lang="en">' in signed_in.page


async def test_the_schedules_page_pages_and_filters(ui: ApiHarness, signed_in: Visitor) -> None:
    for index in range(120):
        await create(ui, name=f"s{index:03}", enabled=index % 4 != 0)
    await signed_in.get(f"{UI}/schedules?page=3")
    assert "Showing 101\N{EN DASH}120 of 120" in signed_in.text()
    assert "s100" in signed_in.text() and "s099" not in signed_in.text()
    await signed_in.get(f"{UI}/schedules?state=paused")
    assert "Showing 1\N{EN DASH}30 of 30" in signed_in.text() and "Paused 30" in signed_in.text()
    assert await signed_in.get(f"{UI}/schedules?page=0") == 422


async def test_the_dashboard_sees_every_agents_schedules(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    status, made = await ui.call(
        "POST",
        "/schedule/",
        token=None,
        headers={"X-User-ID": "user-alice"},
        json={"agent_id": "helper", "name": "agentscope one", "cron_expression": "0 9 * * *"},
    )
    assert status == 201
    await signed_in.get(f"{UI}/schedules")
    assert "agentscope one" in signed_in.text() and "(helper)" in signed_in.text()
    assert await signed_in.get(f"{UI}/schedules/{made['schedule_id']}") == 200


async def test_a_schedules_page_shows_its_runs_and_their_chart(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    await finished_runs(ui.store, schedule_id, [RunStatus.SUCCEEDED, RunStatus.FAILED] * 3)
    await signed_in.get(f"{UI}/schedules/{schedule_id}")
    assert len(re.findall(r'<rect class="bar bar-(succeeded|failed)"', signed_in.page)) == 6
    assert "6 runs: 3 failed, 3 succeeded" in signed_in.text()
    assert "boom 5" in signed_in.text()
    assert 'href="https://sessions.example/' in signed_in.page
    assert 'href="javascript:' not in signed_in.page


async def test_the_runs_page_puts_failures_first_on_request(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui, name="mixed"))["scheduled_session_id"]
    await finished_runs(ui.store, schedule_id, [RunStatus.FAILED] + [RunStatus.SUCCEEDED] * 3)
    await signed_in.get(f"{UI}/runs")
    statuses = re.findall(r'class="status status-(\w+)"', signed_in.page)
    assert statuses == ["succeeded", "succeeded", "succeeded", "failed"]  # newest first
    await signed_in.get(f"{UI}/runs?failures=first")
    statuses = re.findall(r'class="status status-(\w+)"', signed_in.page)
    assert statuses == ["failed", "succeeded", "succeeded", "succeeded"]


async def test_the_health_page_shows_the_run_state_and_counts(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    await create(ui)
    await create(ui, name="off", enabled=False)
    await signed_in.get(f"{UI}/health")
    text = signed_in.text()
    assert "Run state serving" in text
    assert "Enabled 1" in text and "Paused 1" in text and "All 2" in text


async def test_the_cron_preview_answers_the_session_with_words_and_instants(
    ui: ApiHarness, signed_in: Visitor, visitor: Visitor
) -> None:
    query = {"expr": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "count": "2"}
    async with signed_in.http.get(ui.url(f"{UI}/cron-preview"), params=query) as response:
        assert response.status == 200
        assert await response.json() == {
            "expr": "0 9 * * MON-FRI",
            "timezone": "Europe/Berlin",
            "words": "At 09:00, Monday through Friday",
            "instants": ["2030-01-07T08:00:00Z", "2030-01-08T08:00:00Z"],
        }
    query["expr"] = "0 0 30 2 *"
    async with signed_in.http.get(ui.url(f"{UI}/cron-preview"), params=query) as response:
        assert response.status == 422
        (item,) = (await response.json())["detail"]
        assert item["loc"] == ["query", "expr"] and "never fires" in item["msg"]


async def finished_runs(store: Store, schedule_id: str, statuses: list[RunStatus]) -> list[Run]:
    """Runs of `schedule_id` an hour apart, oldest first, finished with `statuses`."""
    runs = []
    for index, status in enumerate(statuses):
        at = START - timedelta(hours=len(statuses) - index)
        (run,) = await store.claim_runs(
            [Run(schedule_id=schedule_id, scheduled_for=at, trigger=RunTrigger.CRON, started_at=at)]
        )
        failed = status == RunStatus.FAILED
        outcome = RunOutcome(
            run_id=run.id,
            status=status,
            finished_at=at + timedelta(seconds=index + 1),
            session_id=None if failed else f"s{index}",
            session_url=None if failed else f"https://sessions.example/{index}",
            error=f"boom {index}" if failed else None,
        )
        await store.finish_runs([outcome], max_consecutive_failures=0)
        runs.append(run)
    return runs
