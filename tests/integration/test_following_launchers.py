"""Following sessions through the named `devin` and `agentscope` launchers: each launcher's
follow plan is built from its configuration as the daemon builds it (`follow_plan`), its
poller reads the service's real status route, and the session's end decides the run."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from daemon.config import LauncherConfig
from daemon.following import FollowPlan, follow_plan
from daemon.launcher_agentscope import AgentScopeLauncher
from daemon.launcher_devin import DevinLauncher
from daemon.launcher_routes import LauncherRoutes
from daemon.retry import Backoff
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.agentscope_service import AgentScopeService
from tests.engine_harness import EngineHarness, http_launcher
from tests.session_service import WORKING, SessionService

S = RunStatus
DEVIN_TOKEN_ENV = "TEST_FOLLOW_DEVIN_TOKEN"


@pytest.fixture
async def agentscope() -> AsyncIterator[AgentScopeService]:
    started = await AgentScopeService().start()
    yield started
    await started.close()


def quick(plan: FollowPlan | None) -> FollowPlan:
    """The plan as configured, read every 0.05 s (a config allows no less than 1 s)."""
    assert plan is not None, "the launcher type reads no session status"
    return dataclasses.replace(plan, interval=0.05)


@pytest.fixture
async def followed(
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    second_service: SessionService,
    agentscope: AgentScopeService,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[EngineHarness]:
    """An engine whose `devin` (Devin's API on `second_service`) and `scope` (the AgentScope
    stand-in) launchers follow their sessions; `default` does not."""
    monkeypatch.setenv(DEVIN_TOKEN_ENV, "cog_follow")
    devin = LauncherConfig(
        type="devin",
        base_url=second_service.base,
        token_env=DEVIN_TOKEN_ENV,
        org_id="org-devin",
        timeout=5.0,
        follow=True,
    )
    scope = LauncherConfig(type="agentscope", base_url=agentscope.base, timeout=5.0, follow=True)
    routes = LauncherRoutes(
        {
            "default": http_launcher(service, http),
            "devin": DevinLauncher(devin, http=http, backoff=Backoff(base=0.05)),
            "scope": AgentScopeLauncher(scope, http=http, backoff=Backoff(base=0.05)),
        },
        follows={
            "devin": quick(follow_plan(devin, http=http, name="devin")),
            "scope": quick(follow_plan(scope, http=http, name="scope")),
        },
    )
    harness = EngineHarness(store, directory, service, http)
    harness.engine.set_launcher(routes)
    await harness.engine.start()
    yield harness
    await harness.engine.stop(0.5)


async def test_a_devin_session_is_read_at_devins_own_route_until_it_ends(
    followed: EngineHarness, second_service: SessionService
) -> None:
    second_service.lifecycle = lambda _: [WORKING, WORKING, ("error", None)]
    schedule = await followed.create(name="nightly", launcher="devin")
    await followed.engine.trigger(schedule, by="test")
    (running,) = await followed.run_with_status(schedule.id, [S.RUNNING])
    assert running.session_id == "devin-1"
    (done,) = await followed.finished_runs(schedule.id, 1)
    assert (done.status, done.session_status) == (S.FAILED, "error")
    assert done.error == "session ended error: the session ended in error"
    polls = second_service.polls
    assert {poll.path for poll in polls} == {"/v3/organizations/org-devin/sessions/devin-1"}
    assert {poll.headers["Authorization"] for poll in polls} == {"Bearer cog_follow"}
    books = await followed.store.get_schedule(schedule.id)
    assert books.consecutive_failures == 1  # the session's end counted, not its launch


async def test_an_agentscope_chat_run_is_followed_until_its_session_is_idle(
    followed: EngineHarness, agentscope: AgentScopeService
) -> None:
    agentscope.lifecycle = ["running", "running", "idle"]
    schedule = await followed.create(
        name="digest", agent="agent-7", run_as_user_id="user-alice", launcher="scope"
    )
    await followed.engine.trigger(schedule, by="test")
    (done,) = await followed.finished_runs(schedule.id, 1)
    assert (done.status, done.session_status, done.session_id) == (S.SUCCEEDED, "idle", "session-1")
    reads = [call for call in agentscope.calls if call.path.endswith("/status")]
    assert len(reads) == 3 and {call.path for call in reads} == {"/sessions/session-1/status"}
    assert {call.headers["X-User-ID"] for call in reads} == {"user-alice"}


async def test_an_agentscope_session_parked_on_a_permission_fails_its_run(
    followed: EngineHarness, agentscope: AgentScopeService
) -> None:
    agentscope.lifecycle = ["running", "awaiting_permission"]
    schedule = await followed.create(
        name="digest", agent="agent-7", run_as_user_id="user-alice", launcher="scope"
    )
    await followed.engine.trigger(schedule, by="test")
    (done,) = await followed.finished_runs(schedule.id, 1)
    assert (done.status, done.session_status) == (S.FAILED, "awaiting_permission")
    assert done.error == (
        "session ended awaiting_permission: blocked, waiting for a tool call to be permitted"
    )


async def test_a_launcher_without_follow_leaves_its_runs_succeeded_at_launch(
    followed: EngineHarness, service: SessionService
) -> None:
    schedule = await followed.create(name="plain")
    await followed.engine.trigger(schedule, by="test")
    (done,) = await followed.finished_runs(schedule.id, 1)
    assert (done.status, done.session_status) == (S.SUCCEEDED, None)
    assert service.polls == []
