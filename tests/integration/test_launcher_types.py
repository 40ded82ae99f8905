"""The `devin` and `agentscope` launchers against real loopback peers speaking their wire
formats: a Devin v3 session service (`tests.session_service`) and an AgentScope 2.x stand-in
(`tests.agentscope_service`). Every request's path, headers and keys are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from daemon.config import LauncherConfig
from daemon.launcher_agentscope import AgentScopeLauncher
from daemon.launcher_devin import DevinLauncher
from daemon.launchers import LaunchRequest
from daemon.retry import Backoff
from tests.agentscope_service import AgentScopeService
from tests.conftest import ORG
from tests.integration.test_launchers import schedule
from tests.session_service import Reply, SessionService

DEVIN_TOKEN_ENV = "TEST_DEVIN_API_TOKEN"
AGENTSCOPE_TOKEN_ENV = "TEST_AGENTSCOPE_TOKEN"
CHAT_MODEL = {
    "type": "openai",
    "credential_id": "cred-1",
    "model": "gpt-4o",
    "model_class": "",
    "parameters": {},
}


@pytest.fixture(autouse=True)
def _devin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVIN_TOKEN_ENV, "cog_s3cret")
    monkeypatch.delenv(AGENTSCOPE_TOKEN_ENV, raising=False)


def devin(base_url: str, http: aiohttp.ClientSession, **keys: Any) -> DevinLauncher:
    config = LauncherConfig(
        type="devin", base_url=base_url, token_env=DEVIN_TOKEN_ENV, timeout=5.0, **keys
    )
    return DevinLauncher(config, http=http, backoff=Backoff(base=0.05))


def user_request(**changes: Any) -> LaunchRequest:
    return LaunchRequest("run-1", schedule(**changes), identity="user-alice", as_user=True)


def bot_request(session_id: str | None = None, **changes: Any) -> LaunchRequest:
    return LaunchRequest("run-1", schedule(**changes), "bot", as_user=False, session_id=session_id)


# --- devin --------------------------------------------------------------------------------


async def test_devin_creates_a_session_with_only_the_documented_keys_and_the_bearer_token(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    result = await devin(service.base, http).launch(bot_request())

    assert (result.ok, result.session_id, result.attempts) == (True, "devin-1", 1)
    assert result.session_url == f"{service.base}/s/devin-1"
    (request,) = service.requests
    assert request.path == f"/v3/organizations/{ORG}/sessions"
    assert request.headers["Authorization"] == "Bearer cog_s3cret"
    assert request.body == {
        "prompt": "Summarise the day",
        "title": "nightly report",
        "playbook_id": "playbook-1",
        "tags": ["nightly"],
        "bypass_approval": False,
    }


async def test_devin_runs_as_the_user_in_the_configured_org_with_the_acu_limit(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    launcher = devin(service.base + "/", http, org_id="org-devin", max_acu_limit=7)

    result = await launcher.launch(user_request(playbook_id=None, tags=None))

    assert result.ok
    (request,) = service.requests
    assert request.path == "/v3/organizations/org-devin/sessions"
    assert request.body == {
        "prompt": "Summarise the day",
        "title": "nightly report",
        "bypass_approval": False,
        "create_as_user_id": "user-alice",
        "max_acu_limit": 7,
    }


async def test_devin_messages_the_session_a_stateful_schedule_keeps(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    request = bot_request(session_id="devin-42", target_devin_id="devin-42")

    result = await devin(service.base, http).launch(request)

    assert (result.ok, result.session_id) == (True, "devin-42")
    (sent,) = service.requests
    assert sent.path == f"/v3/organizations/{ORG}/sessions/devin-42/messages"
    assert sent.body == {"message": "Summarise the day"}
    assert sent.headers["Authorization"] == "Bearer cog_s3cret"


async def test_neither_devin_nor_agentscope_is_resent_after_a_crash(
    http: aiohttp.ClientSession,
) -> None:
    # Neither service takes an idempotency key: `idempotent = true` cannot make them so.
    assert not devin("http://127.0.0.1:9", http, idempotent=True).idempotent
    scope = LauncherConfig(type="agentscope", base_url="http://127.0.0.1:9", idempotent=True)
    assert not AgentScopeLauncher(scope, http=http).idempotent


async def test_devin_retries_as_the_http_launcher_does_and_reports_a_refusal(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(503, headers={"Retry-After": "0"}), Reply(403, body={"detail": "no"}))

    result = await devin(service.base, http).launch(bot_request())

    assert result.attempts == 2
    assert result.error is not None and "answered HTTP 403" in result.error
    assert len(service.requests) == 2


# --- agentscope ---------------------------------------------------------------------------


@pytest.fixture
async def agentscope() -> AsyncIterator[AgentScopeService]:
    started = await AgentScopeService().start()
    yield started
    await started.close()


def agentscope_launcher(
    base_url: str, http: aiohttp.ClientSession, **keys: Any
) -> AgentScopeLauncher:
    config = LauncherConfig(type="agentscope", base_url=base_url, timeout=5.0, **keys)
    return AgentScopeLauncher(config, http=http, backoff=Backoff(base=0.05))


def agentscope_request(session_id: str | None = None, **changes: Any) -> LaunchRequest:
    fields = {"agent": "agent-7", "chat_model_config": CHAT_MODEL, **changes}
    return LaunchRequest(
        "run-1", schedule(**fields), "user-alice", as_user=True, session_id=session_id
    )


async def test_agentscope_makes_a_session_then_starts_a_chat_run_as_the_user(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    result = await agentscope_launcher(agentscope.base, http).launch(agentscope_request())

    assert (result.ok, result.session_id, result.attempts) == (True, "session-1", 3)
    missing, made, chat = agentscope.calls
    assert missing.path == "/session/"  # the documented route first; 2.0 serves /sessions/
    assert made.path == "/sessions/"
    assert made.body == {
        "agent_id": "agent-7",
        "name": "nightly report",
        "chat_model_config": CHAT_MODEL,
    }
    assert chat.path == "/chat/"
    assert chat.body == {
        "agent_id": "agent-7",
        "session_id": "session-1",
        "input": {
            "name": "user-alice",
            "role": "user",
            "content": [{"type": "text", "text": "Summarise the day"}],
        },
    }
    for call in agentscope.calls:
        assert call.headers["X-User-ID"] == "user-alice"
        assert "Authorization" not in call.headers  # no token_env: no token


async def test_agentscope_remembers_the_route_that_makes_sessions(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    launcher = agentscope_launcher(agentscope.base, http)
    await launcher.launch(agentscope_request())

    second = await launcher.launch(agentscope_request())

    assert (second.ok, second.session_id, second.attempts) == (True, "session-2", 2)
    assert [call.path for call in agentscope.calls[3:]] == ["/sessions/", "/chat/"]


async def test_agentscope_uses_the_documented_session_route_when_served(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AGENTSCOPE_TOKEN_ENV, "as-token")
    service = await AgentScopeService(route="/session/").start()
    try:
        launcher = agentscope_launcher(service.base, http, token_env=AGENTSCOPE_TOKEN_ENV)
        result = await launcher.launch(agentscope_request())
    finally:
        await service.close()

    assert (result.ok, result.attempts) == (True, 2)
    assert [call.path for call in service.calls] == ["/session/", "/chat/"]
    assert all(call.headers["Authorization"] == "Bearer as-token" for call in service.calls)


async def test_a_stateful_agentscope_schedule_chats_in_its_stored_session(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    launcher = agentscope_launcher(agentscope.base, http)
    first = await launcher.launch(agentscope_request(stateful=True))
    assert first.session_id == "session-1"

    again = await launcher.launch(agentscope_request(session_id="session-1", stateful=True))

    assert (again.ok, again.session_id, again.attempts) == (True, "session-1", 1)
    assert [call.path for call in agentscope.calls[3:]] == ["/chat/"]
    assert agentscope.calls[3].body["session_id"] == "session-1"


async def test_a_chat_already_running_is_a_failure_that_names_the_session(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    launcher = agentscope_launcher(agentscope.base, http)
    await launcher.launch(agentscope_request())
    agentscope.answer(Reply(409, body={"detail": "a chat run is in flight"}))

    result = await launcher.launch(agentscope_request(session_id="session-1"))

    assert not result.ok and result.attempts == 1
    assert result.error is not None
    assert "session-1 is still running a chat" in result.error
    assert "in flight" in result.error


async def test_a_refused_session_stops_the_launch_before_any_chat(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    agentscope.answer(Reply(404, body={"detail": "Agent 'agent-7' not found"}))
    launcher = agentscope_launcher(agentscope.base, http)
    launcher._session_route = "/sessions/"  # as after a first launch found the route

    result = await launcher.launch(agentscope_request())

    assert result.error == (
        'session service answered HTTP 404: {"detail": "Agent \'agent-7\' not found"}'
    )
    assert [call.path for call in agentscope.calls] == ["/sessions/"]


async def test_agentscope_retries_a_server_error_on_the_chat_and_then_succeeds(
    agentscope: AgentScopeService, http: aiohttp.ClientSession
) -> None:
    launcher = agentscope_launcher(agentscope.base, http)
    await launcher.launch(agentscope_request(stateful=True))
    agentscope.answer(Reply(503, body={"detail": "busy"}))

    result = await launcher.launch(agentscope_request(session_id="session-1"))

    assert (result.ok, result.attempts) == (True, 2)
    assert [call.path for call in agentscope.calls[3:]] == ["/chat/", "/chat/"]
