"""The `agentscope` launcher against a real AgentScope 2.0 server (opt-in: `pytest --peers`).

The server is AgentScope's own app (`agentscope.app.create_app`, SQLite storage, in-memory
message bus, local workspaces) under uvicorn, run by the Python of a separate virtual
environment: `tests/peers/install-agentscope.sh` makes it, and `AGENTCRON_AGENTSCOPE_PYTHON`
names its interpreter. The user gets an agent and an OpenAI credential with a fake key and an
unreachable `base_url`, so the chat run starts (that is what a launch checks) and then fails
to reach a model, which costs nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.config import LauncherConfig
from daemon.launcher_agentscope import AgentScopeLauncher
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.deadline import eventually
from tests.engine_harness import EngineHarness
from tests.session_service import SessionService

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

PYTHON_ENV = "AGENTCRON_AGENTSCOPE_PYTHON"
SERVER = Path(__file__).with_name("agentscope_server.py")
USER = "user-alice"
START_WITHIN = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AgentScope:
    """A running AgentScope server and a client acting as `USER`."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-User-ID": USER}
        async with self.http.request(
            method, self.base + path, json=body, headers=headers
        ) as answer:
            return answer.status, await answer.json(content_type=None)

    async def made(self, path: str, body: dict[str, Any], key: str) -> str:
        status, answer = await self.call("POST", path, body)
        assert status == 201, answer
        made: str = answer[key]
        return made


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """The AgentScope server process, its URL and its log file; stopped afterwards."""
    python = os.environ.get(PYTHON_ENV)
    if not python:
        pytest.fail(f"set {PYTHON_ENV} to the AgentScope venv's python (install-agentscope.sh)")
    port = free_port()
    log_path = tmp_path / "agentscope.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [python, str(SERVER), str(port), str(tmp_path)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def agentscope(
    server: tuple[subprocess.Popen[bytes], str, Path], http: aiohttp.ClientSession
) -> AgentScope:
    """A client of the server as `USER`, once the server answers `/health`."""
    process, base, log = server
    client = AgentScope(base, http)

    async def healthy() -> bool | None:
        if process.poll() is not None:
            raise AssertionError(_exit_report(process, log))
        try:
            status, _ = await client.call("GET", "/health")
        except aiohttp.ClientError:
            return None
        return status == 200 or None

    await eventually(healthy, within=START_WITHIN, every=0.25)
    return client


def _exit_report(process: subprocess.Popen[bytes], log: Path) -> str:
    return f"the AgentScope server exited with {process.returncode}:\n{log.read_text()}"


@pytest.fixture
async def harness(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[EngineHarness]:
    started = EngineHarness(store, directory, service, http)
    await started.engine.start()
    yield started
    await started.engine.stop(0.5)


async def test_a_fire_makes_a_session_on_agentscope_and_starts_its_chat_run(
    agentscope: AgentScope, harness: EngineHarness, http: aiohttp.ClientSession
) -> None:
    agent_id = await agentscope.made("/agent/", {"name": "nightly"}, "agent_id")
    credential = {
        "type": "openai_credential",
        "name": "unreachable",
        "api_key": "sk-not-a-real-key",
        "base_url": "http://127.0.0.1:9/v1",
    }
    credential_id = await agentscope.made("/credential/", {"data": credential}, "credential_id")
    model = {
        "type": "openai_credential",
        "credential_id": credential_id,
        "model": "gpt-4o-mini",
        "model_class": "",
        "parameters": {},
    }
    config = LauncherConfig(type="agentscope", base_url=agentscope.base, timeout=30.0)
    harness.engine.set_launcher(AgentScopeLauncher(config, http=http))
    schedule = await harness.create(
        name="nightly summary",
        prompt="Summarise the day's tickets",
        agent=agent_id,
        run_as_user_id=USER,
        chat_model_config=model,
    )

    await harness.engine.trigger(schedule, by="test")
    (run,) = await harness.finished_runs(schedule.id, 1, within=60.0)

    assert (run.status, run.error, run.identity) == (RunStatus.SUCCEEDED, None, USER)
    assert run.session_id is not None
    status, listed = await agentscope.call("GET", f"/sessions/?agent_id={agent_id}")
    assert status == 200, listed
    (session,) = [item["session"] for item in listed["sessions"]]
    assert (session["id"], session["user_id"]) == (run.session_id, USER)
    assert session["config"]["name"] == "nightly summary"
    assert session["config"]["chat_model_config"] == model

    async def prompt_received() -> list[Any] | None:
        path = f"/sessions/{run.session_id}/messages?agent_id={agent_id}"
        status, answer = await agentscope.call("GET", path)
        assert status == 200, answer
        users = [m for m in answer["messages"] if m["role"] == "user"]
        return users or None

    (message,) = await eventually(prompt_received, within=30.0)
    assert message["name"] == USER
    assert [block["text"] for block in message["content"]] == ["Summarise the day's tickets"]
