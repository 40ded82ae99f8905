"""A schedule made through the AgentScope façade fires through the real engine.

The engine launches over the http launcher against a loopback session service that records
every request, so these tests see exactly what the session service receives.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.config import LauncherConfig, SchedulerConfig
from daemon.engine import Engine
from daemon.launcher_http import HttpLauncher
from storage.clock import SystemClock
from storage.domain import FinishedRun
from storage.identities import DirectoryRef, User
from storage.store import Store
from tests.conftest import ORG, ApiHarness

ALICE = "user-alice"
TOKEN_ENV = "AGENTCRON_TEST_SESSION_TOKEN"
DEADLINE = 10.0


@dataclass
class SessionService:
    """A loopback Devin-style session service: records requests, answers new sessions."""

    requests: asyncio.Queue[tuple[str, dict[str, str], dict[str, Any]]] = field(
        default_factory=asyncio.Queue
    )
    created: int = 0

    async def create_session(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.created += 1
        session_id = f"devin-{self.created}"
        return web.json_response(
            {"session_id": session_id, "url": f"https://sessions.example/{session_id}"}
        )

    async def send_message(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"session_id": request.match_info["session_id"]})

    async def _record(self, request: web.Request) -> None:
        await self.requests.put((request.path, dict(request.headers), await request.json()))

    async def next_request(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        async with asyncio.timeout(DEADLINE):
            return await self.requests.get()


@dataclass
class Finished:
    """Runs the engine reports finished, awaited one by one."""

    runs: asyncio.Queue[FinishedRun] = field(default_factory=asyncio.Queue)

    def __call__(self, finished: FinishedRun) -> None:
        self.runs.put_nowait(finished)

    async def next(self) -> FinishedRun:
        async with asyncio.timeout(DEADLINE):
            return await self.runs.get()


@pytest.fixture
async def session_service() -> AsyncIterator[tuple[SessionService, str]]:
    service = SessionService()
    app = web.Application()
    app.router.add_post("/v3/organizations/{org_id}/sessions", service.create_session)
    app.router.add_post(
        "/v3/organizations/{org_id}/sessions/{session_id}/messages", service.send_message
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield service, f"http://127.0.0.1:{server.port}/v3/organizations/{{org_id}}/sessions"
    await server.close()


@dataclass
class Firing:
    api: ApiHarness
    engine: Engine
    service: SessionService
    finished: Finished


@pytest.fixture
async def firing(
    store: Store,
    directory: DirectoryRef,
    api_factory: Callable[..., Any],
    session_service: tuple[SessionService, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Firing]:
    """The API wired to a started engine whose launches reach the loopback service."""
    service, url = session_service
    monkeypatch.setenv(TOKEN_ENV, "session-secret")
    finished = Finished()
    async with aiohttp.ClientSession() as http:
        launcher = HttpLauncher(
            LauncherConfig(url=url, token_env=TOKEN_ENV, timeout=5.0), http=http
        )
        engine = Engine(
            store,
            directory=directory,
            clock=SystemClock(),
            settings=SchedulerConfig(),
            launcher=launcher,
            on_finished=finished,
        )
        await engine.start()
        try:
            api: ApiHarness = await api_factory(events=engine)
            yield Firing(api, engine, service, finished)
        finally:
            await engine.stop(grace=5.0)


async def create(api: ApiHarness, **fields: Any) -> str:
    body = {
        "agent_id": "agent-triage",
        "name": "triage the inbox",
        "description": "Label every new issue and close the duplicates.",
        "cron_expression": "0 9 * * 0",
    } | fields
    status, answer = await api.call(
        "POST", "/schedule/", token=None, headers={"X-User-ID": ALICE}, json=body
    )
    assert status == 201, answer
    schedule_id: str = answer["schedule_id"]
    return schedule_id


async def sessions(api: ApiHarness, schedule_id: str) -> dict[str, Any]:
    status, answer = await api.call(
        "GET", f"/schedule/{schedule_id}/sessions", token=None, headers={"X-User-ID": ALICE}
    )
    assert status == 200, answer
    return dict(answer)


async def test_a_fire_sends_the_description_and_permission_mode_as_the_user(
    firing: Firing,
) -> None:
    schedule_id = await create(firing.api, permission_mode="explore")
    schedule = await firing.api.store.get_schedule(schedule_id)

    run = await firing.engine.trigger(schedule, by=ALICE)

    path, headers, body = await firing.service.next_request()
    assert path == f"/v3/organizations/{ORG}/sessions"
    assert headers["Idempotency-Key"] == run.id
    assert headers["Authorization"] == "Bearer session-secret"
    assert body["prompt"] == "Label every new issue and close the duplicates."
    assert body["permission_mode"] == "explore"
    assert body["title"] == "triage the inbox"
    assert body["create_as_user_id"] == ALICE
    finished = await firing.finished.next()
    assert (finished.run.id, finished.run.status) == (run.id, "succeeded")
    listed = await sessions(firing.api, schedule_id)
    assert listed["total"] == 1
    (session,) = listed["sessions"]
    assert session["run_id"] == run.id
    assert (session["status"], session["trigger"]) == ("succeeded", "manual")
    assert (session["session_id"], session["identity"]) == ("devin-1", ALICE)
    assert session["session_url"] == "https://sessions.example/devin-1"


async def test_a_stateful_schedule_keeps_talking_to_its_first_session(firing: Firing) -> None:
    schedule_id = await create(firing.api, stateful=True)

    first = await firing.engine.trigger(await firing.api.store.get_schedule(schedule_id), by=ALICE)
    first_path, _, _ = await firing.service.next_request()
    await firing.finished.next()
    second = await firing.engine.trigger(await firing.api.store.get_schedule(schedule_id), by=ALICE)
    second_path, _, message = await firing.service.next_request()
    await firing.finished.next()

    assert first_path == f"/v3/organizations/{ORG}/sessions"
    assert second_path == f"/v3/organizations/{ORG}/sessions/devin-1/messages"
    assert message == {"message": "Label every new issue and close the duplicates."}
    listed = await sessions(firing.api, schedule_id)
    assert [s["run_id"] for s in listed["sessions"]] == [second.id, first.id]
    assert [s["session_id"] for s in listed["sessions"]] == ["devin-1", "devin-1"]


async def test_a_refused_run_as_user_shows_in_the_sessions_with_its_cause(
    firing: Firing, directory: DirectoryRef
) -> None:
    schedule_id = await create(firing.api)
    schedule = await firing.api.store.get_schedule(schedule_id)
    without_sessions = User(ALICE, frozenset({ORG}), frozenset())
    users = {**directory.current.users, ALICE: without_sessions}
    directory.current = dataclasses.replace(directory.current, users=users)

    run = await firing.engine.trigger(schedule, by=ALICE)
    await firing.finished.next()

    assert firing.service.requests.empty()
    (session,) = (await sessions(firing.api, schedule_id))["sessions"]
    assert (session["run_id"], session["status"], session["session_id"]) == (run.id, "failed", None)
    assert "UseDevinSessions" in session["error"]
