"""Launchers against real peers: a loopback session service and real child processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.config import LauncherConfig
from daemon.launcher_command import CommandLauncher
from daemon.launcher_http import HttpLauncher
from daemon.launcher_routes import build_one
from daemon.launchers import LaunchRequest
from daemon.retry import Backoff
from storage.domain import Schedule
from tests.conftest import ORG
from tests.deadline import eventually
from tests.session_service import Reply, SessionService

TOKEN_ENV = "TEST_SESSION_API_TOKEN"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def schedule(**changes: Any) -> Schedule:
    base = Schedule(
        org_id=ORG,
        name="nightly report",
        prompt="Summarise the day",
        created_at=NOW,
        updated_at=NOW,
        cron="0 2 * * *",
        tags=["nightly"],
        playbook_id="playbook-1",
        platform="linux",
    )
    return Schedule(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def bot_request(run_id: str = "run-1", **changes: Any) -> LaunchRequest:
    return LaunchRequest(run_id, schedule(**changes), identity="bot", as_user=False)


def http_launcher(
    http: aiohttp.ClientSession, url: str, *, timeout: float = 5.0, max_attempts: int = 3
) -> HttpLauncher:
    config = LauncherConfig(
        type="http", url=url, token_env=TOKEN_ENV, timeout=timeout, max_attempts=max_attempts
    )
    return HttpLauncher(config, http=http, backoff=Backoff(base=0.05))


# --- http -------------------------------------------------------------------------------


async def test_the_bot_creates_a_session_with_a_devin_body_and_the_run_as_idempotency_key(
    service: SessionService, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    result = await http_launcher(http, service.url).launch(bot_request("run-abc"))
    assert result.ok and result.attempts == 1
    assert result.session_id == "devin-1"
    assert result.session_url == f"{service.base}/s/devin-1"
    (request,) = service.requests
    assert request.path == f"/v3/organizations/{ORG}/sessions"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Idempotency-Key"] == "run-abc"
    assert request.body == {
        "prompt": "Summarise the day",
        "title": "nightly report",
        "playbook_id": "playbook-1",
        "tags": ["nightly"],
        "bypass_approval": False,
        "platform": "linux",
        "agent": "devin",
        "permission_mode": "dont_ask",
    }


async def test_a_run_as_user_creates_the_session_for_that_user(
    service: SessionService, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = {"model": "m", "temperature": 0.2}
    request = LaunchRequest(
        "run-2", schedule(chat_model_config=config), identity="user-alice", as_user=True
    )
    assert (await http_launcher(http, service.url).launch(request)).ok
    (recorded,) = service.requests
    assert recorded.body["create_as_user_id"] == "user-alice"
    assert recorded.body["chat_model_config"] == config
    assert "Authorization" not in recorded.headers  # no token configured: none sent


async def test_a_stateful_follow_up_messages_the_existing_session(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    request = LaunchRequest("run-3", schedule(stateful=True), "bot", False, session_id="devin-9")
    result = await http_launcher(http, service.url).launch(request)
    assert result.ok and result.session_id == "devin-9"
    (recorded,) = service.requests
    assert recorded.path == f"/v3/organizations/{ORG}/sessions/devin-9/messages"
    assert recorded.body == {"message": "Summarise the day"}
    assert recorded.headers["Idempotency-Key"] == "run-3"


async def test_transient_errors_are_retried_with_the_same_idempotency_key(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(500, text="database is sleeping"), Reply(502))
    result = await http_launcher(http, service.url).launch(bot_request("run-r"))
    assert result.ok and result.attempts == 3 and result.session_id == "devin-3"
    assert {r.headers["Idempotency-Key"] for r in service.requests} == {"run-r"}


async def test_retry_after_is_honoured(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(429, headers={"Retry-After": "1"}))
    result = await http_launcher(http, service.url).launch(bot_request())
    assert result.ok and result.attempts == 2
    first, second = service.requests
    assert second.at - first.at >= 0.95


async def test_a_client_error_is_final_and_quotes_the_answer(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(400, text="prompt is too long " + "x" * 500))
    result = await http_launcher(http, service.url).launch(bot_request())
    assert result.attempts == 1 and len(service.requests) == 1
    assert result.error is not None
    assert result.error.startswith("session service answered HTTP 400: prompt is too long xxx")
    assert len(result.error) < 260  # the body is quoted, not pasted whole


async def test_persistent_server_errors_fail_after_max_attempts(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(*[Reply(503, text="maintenance")] * 3)
    result = await http_launcher(http, service.url).launch(bot_request())
    assert result.error == "session service answered HTTP 503: maintenance (after 3 attempts)"
    assert result.attempts == 3 and not result.ok


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(200, text="<html>ok</html>"), "answered HTTP 200 with a body that is not JSON"),
        (Reply(201, body={"url": "u"}), "session service answered HTTP 201 without a session_id"),
        (Reply(200, body=["devin-1"]), "session service answered HTTP 200 without a session_id"),
    ],
)
async def test_a_success_status_without_a_session_is_a_failure(
    service: SessionService, http: aiohttp.ClientSession, reply: Reply, error: str
) -> None:
    service.answer(reply)
    result = await http_launcher(http, service.url).launch(bot_request())
    assert result.error is not None and error in result.error
    assert len(service.requests) == 1  # never retried: the session may exist


async def test_the_timeout_bounds_a_slow_answer(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(delay=5.0))
    started = time.monotonic()
    result = await http_launcher(http, service.url, timeout=0.5).launch(bot_request())
    assert time.monotonic() - started < 2.0
    assert result.error == "session service did not answer within 0.5s (1 attempt)"


async def test_the_timeout_bounds_the_retries_too(
    service: SessionService, http: aiohttp.ClientSession
) -> None:
    service.answer(Reply(503, headers={"Retry-After": "30"}))
    started = time.monotonic()
    result = await http_launcher(http, service.url, timeout=2.0).launch(bot_request())
    assert time.monotonic() - started < 1.0  # gave up at once instead of sleeping past it
    assert result.error is not None
    assert "gave up after 1 attempt: the next retry would pass the 2s launch timeout" in (
        result.error
    )


async def test_an_unreachable_service_is_a_clear_failure(http: aiohttp.ClientSession) -> None:
    url = "http://127.0.0.1:9/v3/organizations/{org_id}/sessions"  # discard port: refused
    result = await http_launcher(http, url, max_attempts=2).launch(bot_request())
    assert result.attempts == 2
    assert result.error is not None
    assert result.error.startswith("session service unreachable: ")


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[Callable[[], None]]:
    """Make this process really run out of file descriptors (a low soft RLIMIT_NOFILE,
    every descriptor below it taken); yields `release()`, which gives them back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    held: list[int] = []

    def release() -> None:
        while held:
            os.close(held.pop())

    try:
        with pytest.raises(OSError) as full:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert full.value.errno == errno.EMFILE
        yield release
    finally:
        release()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_running_out_of_descriptors_is_retried_until_the_timeout_not_counted(
    service: SessionService,
) -> None:
    # Attempts that could not even make a socket never reached the service: max_attempts (2)
    # does not stop them, the timeout would.
    failed: list[BaseException] = []

    async def record(_: object, __: object, params: aiohttp.TraceRequestExceptionParams) -> None:
        failed.append(params.exception)

    trace = aiohttp.TraceConfig()
    trace.on_request_exception.append(record)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        launcher = http_launcher(http, service.url, timeout=20.0, max_attempts=2)
        with descriptors_exhausted() as release:
            launch = asyncio.create_task(launcher.launch(bot_request()))
            await eventually(lambda: len(failed) >= 3 or launch.done(), within=10.0)
            release()
        result = await launch

    assert result.ok, result.error
    assert result.attempts == len(failed) + 1 >= 4
    assert {getattr(error, "errno", None) for error in failed} == {errno.EMFILE}
    assert len(service.requests) == 1


# --- command ----------------------------------------------------------------------------

REPORT = """
import json, os, sys
prompt = sys.stdin.read()
names = [n for n in os.environ if n.startswith("AGENTCRON_") or n in ("NOTIFY_SOCKET",)]
report = {"stdin": prompt, "cwd": os.getcwd(), "env": {n: os.environ[n] for n in names}}
with open("report.json", "w") as f:
    json.dump(report, f)
print("starting the agent")
print(json.dumps({"session_id": "local-" + os.environ["AGENTCRON_RUN_ID"], "url": "file:///x"}))
"""


def command_launcher(workdir: Path, *argv: str, timeout: float = 5.0) -> CommandLauncher:
    config = LauncherConfig(type="command", command=list(argv), timeout=timeout)
    return CommandLauncher(config, workdir=workdir)


async def test_a_command_gets_the_prompt_and_the_run_and_reports_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("AGENTCRON_")]:
        monkeypatch.delenv(name)  # the test runner's own (AGENTCRON_AGENTSCOPE_PYTHON in CI)
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("AGENTCRON_SESSION_ID", "stale-from-the-daemon")
    launcher = command_launcher(tmp_path, sys.executable, "-c", REPORT)
    request = LaunchRequest(
        "run-7", schedule(chat_model_config={"model": "m"}), "user-alice", as_user=True
    )
    result = await launcher.launch(request)
    assert result.ok, result.error
    assert (result.session_id, result.session_url) == ("local-run-7", "file:///x")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stdin"] == "Summarise the day"
    assert report["cwd"] == str(tmp_path)  # pytest hands out resolved paths
    assert report["env"] == {
        "AGENTCRON_PROMPT": "Summarise the day",
        "AGENTCRON_SCHEDULE_ID": request.schedule.id,
        "AGENTCRON_RUN_ID": "run-7",
        "AGENTCRON_ORG_ID": ORG,
        "AGENTCRON_RUN_AS": "user-alice",
        "AGENTCRON_AGENT": "devin",
        "AGENTCRON_PLAYBOOK_ID": "playbook-1",
        "AGENTCRON_PERMISSION_MODE": "dont_ask",
        "AGENTCRON_CHAT_MODEL_CONFIG": '{"model": "m"}',
    }


async def test_a_stateful_command_is_told_its_session(tmp_path: Path) -> None:
    launcher = command_launcher(tmp_path, sys.executable, "-c", REPORT)
    request = LaunchRequest("run-8", schedule(stateful=True), "bot", False, session_id="s-1")
    assert (await launcher.launch(request)).ok
    env = json.loads((tmp_path / "report.json").read_text())["env"]
    assert env["AGENTCRON_SESSION_ID"] == "s-1"
    assert "NOTIFY_SOCKET" not in env


async def test_a_failing_command_reports_its_status_and_the_tail_of_stderr(
    tmp_path: Path,
) -> None:
    script = "import sys; sys.stderr.write('noise ' * 400 + 'fatal: no credentials'); sys.exit(3)"
    result = await command_launcher(tmp_path, sys.executable, "-c", script).launch(bot_request())
    assert result.error is not None
    assert result.error.startswith("command exited with status 3: ")
    assert result.error.endswith("fatal: no credentials")
    assert len(result.error) <= len("command exited with status 3: ") + 500


async def test_a_missing_program_is_a_clear_failure(tmp_path: Path) -> None:
    result = await command_launcher(tmp_path, "/nonexistent/agent").launch(bot_request())
    assert result.error == "cannot start '/nonexistent/agent': No such file or directory"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_a_timed_out_command_and_everything_it_started_are_killed(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    script = f"{sys.executable} -c '{stubborn}' & echo $! > grandchild.pid; wait"
    started = time.monotonic()
    result = await command_launcher(tmp_path, "sh", "-c", script, timeout=0.5).launch(bot_request())
    assert result.error == "command timed out after 0.5s"
    assert time.monotonic() - started < 4.0
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    await eventually(lambda: not _alive(grandchild), within=3.0)  # SIGKILL lands asynchronously


def test_build_one_picks_the_configured_type(tmp_path: Path) -> None:
    http = object.__new__(aiohttp.ClientSession)  # never used to send anything here
    command = LauncherConfig(type="command", command=["true"])
    assert isinstance(build_one(command, http=http, workdir=tmp_path), CommandLauncher)
    assert isinstance(build_one(LauncherConfig(), http=http, workdir=tmp_path), HttpLauncher)


@pytest.fixture(autouse=True)
def _no_inherited_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert TOKEN_ENV not in os.environ
