"""Several launchers: a schedule's `launcher` on the Devin API, and the engine routing each
run to its schedule's launcher (real store, real timers, real loopback peers)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from daemon.config import LauncherConfig
from daemon.launcher_agentscope import AgentScopeLauncher
from daemon.launcher_devin import DevinLauncher
from daemon.launcher_routes import LauncherRoutes
from daemon.retry import Backoff
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.agentscope_service import AgentScopeService
from tests.conftest import ORG, ApiHarness
from tests.engine_harness import EngineHarness, http_launcher
from tests.integration.test_api_schedules import SCHEDULES, Unchanged, create, get, locs, patch
from tests.session_service import SessionService

DEVIN_TOKEN_ENV = "TEST_ROUTES_DEVIN_TOKEN"


@pytest.fixture
async def named_api(api: ApiHarness) -> ApiHarness:
    """The API over a configuration with the launchers `default` and `devin`."""
    current = api.directory.current
    api.directory.current = dataclasses.replace(current, launchers=frozenset({"default", "devin"}))
    return api


# --- the schedule field -------------------------------------------------------------------


async def test_a_schedule_names_its_launcher_and_the_answer_echoes_it(
    named_api: ApiHarness,
) -> None:
    made = await create(named_api, launcher="devin")
    assert made["launcher"] == "devin"
    assert (await named_api.store.get_schedule(made["scheduled_session_id"])).launcher == "devin"

    kept = await patch(named_api, made["scheduled_session_id"], {"name": "renamed"})
    assert kept[1]["launcher"] == "devin"  # omitted: unchanged
    status, cleared = await patch(named_api, made["scheduled_session_id"], {"launcher": None})
    assert (status, cleared["launcher"]) == (200, None)  # null: back to the default launcher


async def test_an_unknown_launcher_is_a_422_naming_it_and_nothing_is_stored(
    named_api: ApiHarness,
) -> None:
    status, answer = await named_api.call(
        "POST",
        SCHEDULES,
        json={"name": "n", "prompt": "p", "frequency": "0 9 * * *", "launcher": "nightly"},
    )
    assert status == 422
    assert locs(answer) == [["body", "launcher"]]
    assert answer["detail"][0]["msg"] == "unknown launcher 'nightly' (configured: default, devin)"
    assert (await named_api.store.list_schedules(ORG, limit=10, offset=0)).total == 0

    made = await create(named_api)
    async with Unchanged(named_api, made["scheduled_session_id"]):
        status, answer = await patch(named_api, made["scheduled_session_id"], {"launcher": "x"})
        assert (status, locs(answer)) == (422, [["body", "launcher"]])
        status, answer = await patch(named_api, made["scheduled_session_id"], {"launcher": 7})
        assert (status, locs(answer)) == (422, [["body", "launcher"]])


async def test_a_configuration_change_is_seen_by_the_next_request(named_api: ApiHarness) -> None:
    made = await create(named_api, launcher="devin")
    named_api.directory.current = dataclasses.replace(
        named_api.directory.current, launchers=frozenset({"default"})
    )
    status, _ = await patch(named_api, made["scheduled_session_id"], {"launcher": "devin"})
    assert status == 422
    assert (await get(named_api, made["scheduled_session_id"]))["launcher"] == "devin"


# --- routing ------------------------------------------------------------------------------


@pytest.fixture
async def agentscope() -> AsyncIterator[AgentScopeService]:
    started = await AgentScopeService(route="/session/").start()
    yield started
    await started.close()


@pytest.fixture
async def routed(
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    second_service: SessionService,
    agentscope: AgentScopeService,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[EngineHarness]:
    """An engine with `default` (http, `service`), `devin` (`second_service`) and `scope`
    (the AgentScope stand-in, for AgentScope-made schedules that name none)."""
    monkeypatch.setenv(DEVIN_TOKEN_ENV, "cog_routes")
    devin = LauncherConfig(
        type="devin", base_url=second_service.base, token_env=DEVIN_TOKEN_ENV, timeout=5.0
    )
    scope = LauncherConfig(type="agentscope", base_url=agentscope.base, timeout=5.0)
    routes = LauncherRoutes(
        {
            "default": http_launcher(service, http),
            "devin": DevinLauncher(devin, http=http, backoff=Backoff(base=0.05)),
            "scope": AgentScopeLauncher(scope, http=http, backoff=Backoff(base=0.05)),
        },
        agentscope="scope",
    )
    harness = EngineHarness(store, directory, service, http)
    harness.engine.set_launcher(routes)
    await harness.engine.start()
    yield harness
    await harness.engine.stop(0.5)


def launches(launcher: str, outcome: str) -> float:
    labels = {"launcher": launcher, "outcome": outcome}
    return REGISTRY.get_sample_value("agentcron_launches_total", labels) or 0.0


async def fire(harness: EngineHarness, **fields: Any) -> Any:
    schedule = await harness.create(**fields)
    await harness.engine.trigger(schedule, by="test")
    (run,) = await harness.finished_runs(schedule.id, 1)
    return run


async def test_each_run_goes_through_its_schedules_launcher(
    routed: EngineHarness,
    service: SessionService,
    second_service: SessionService,
    agentscope: AgentScopeService,
) -> None:
    counts = {name: launches(name, "succeeded") for name in ("default", "devin", "scope")}

    on_default = await fire(routed, name="plain")
    on_devin = await fire(routed, name="devin one", launcher="devin")
    on_scope = await fire(routed, name="scope one", agent="agent-7", run_as_user_id="user-alice")
    scope_on_default = await fire(routed, name="named", agent="agent-7", launcher="default")

    assert [run.status for run in (on_default, on_devin, on_scope, scope_on_default)] == [
        RunStatus.SUCCEEDED
    ] * 4
    assert [r.body["title"] for r in service.requests] == ["plain", "named"]
    assert "Idempotency-Key" not in second_service.requests[0].headers
    assert second_service.requests[0].headers["Authorization"] == "Bearer cog_routes"
    assert [r.body["title"] for r in second_service.requests] == ["devin one"]
    assert on_scope.session_id == "session-1"
    assert [call.path for call in agentscope.calls] == ["/session/", "/chat/"]
    assert agentscope.calls[0].headers["X-User-ID"] == "user-alice"
    assert launches("default", "succeeded") == counts["default"] + 2
    assert launches("devin", "succeeded") == counts["devin"] + 1
    assert launches("scope", "succeeded") == counts["scope"] + 1


async def test_a_run_whose_launcher_is_gone_fails_saying_so(routed: EngineHarness) -> None:
    failed_before = launches("removed", "failed")

    run = await fire(routed, launcher="removed")

    assert (run.status, run.error, run.attempts) == (
        RunStatus.FAILED,
        "launcher 'removed' is not configured",
        0,
    )
    assert launches("removed", "failed") == failed_before + 1
