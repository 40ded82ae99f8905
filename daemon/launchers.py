"""Launchers: how a fire starts an agent session (DESIGN section 4).

`http` POSTs a Devin v3 create-session body to the session service (or, for a stateful
schedule that already has a session, a message to that session), retrying transient errors
with exponential backoff that honours `Retry-After`. `command` runs a local program with the
prompt on stdin. Both bound one run's whole launch, retries included, by `launcher.timeout`.

A launcher never raises for a failed launch: it answers a `LaunchResult` whose `error` is a
short, readable cause, which becomes the run's error and the schedule's `last_error_message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from daemon.config import LauncherConfig
from daemon.retry import Backoff, RetryPolicy, Stop, retry, retry_after_seconds
from daemon.sdnotify import SUPERVISION_ENVIRONMENT
from daemon.secrets import read_secret
from storage.domain import Schedule

BODY_SNIPPET = 200
"""Characters of a session service's answer quoted in an error."""
STDERR_TAIL = 500
"""Characters of a command's stderr quoted in an error."""
_READ_LIMIT = 64 * 1024
LAUNCH_BACKOFF = Backoff(base=0.5, cap=30.0)
"""Waits between attempts at the session service (`launcher.timeout` bounds them all)."""


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One launch: the run, its schedule as it is now, and who the session runs as.

    `identity` is the run-as user id, or the bot user id when `as_user` is false.
    `session_id` is the existing session a stateful schedule sends its prompt to, else None.
    """

    run_id: str
    schedule: Schedule
    identity: str
    as_user: bool
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """How a launch ended: a session (success) or an error, after `attempts` attempts."""

    attempts: int
    session_id: str | None = None
    session_url: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Launcher(Protocol):
    @property
    def idempotent(self) -> bool:
        """The service honours the run id as an idempotency key: a request that may have
        been sent already can be sent again after a crash without starting a second session."""
        ...

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        """Start the session (within the launcher's timeout); never raises for a failure."""
        ...


def build_launcher(
    config: LauncherConfig, *, http: aiohttp.ClientSession, workdir: Path
) -> Launcher:
    """The launcher `config.type` names, over the daemon's shared HTTP session."""
    if config.type == "command":
        return CommandLauncher(config, workdir=workdir)
    return HttpLauncher(config, http=http)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _plural_attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def snippet(text: str, limit: int = BODY_SNIPPET) -> str:
    return " ".join(text.split())[:limit]


# --- http -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One attempt's outcome: final (success or not), or transient (retried)."""

    final: bool
    session_id: str | None = None
    session_url: str | None = None
    error: str | None = None
    retry_after: float | None = None
    short_of_resources: bool = False
    """The attempt failed on this host (out of descriptors or memory), before any request."""

    @property
    def retryable(self) -> bool:
        return not self.final

    @property
    def counted(self) -> bool:
        """An attempt short of resources never reached the service: it does not count."""
        return not self.short_of_resources

    def result(self, attempts: int) -> LaunchResult:
        return LaunchResult(attempts, self.session_id, self.session_url, self.error)


def create_session_body(request: LaunchRequest) -> dict[str, Any]:
    """The Devin v3 create-session body; `create_as_user_id` only when running as a user."""
    schedule = request.schedule
    body: dict[str, Any] = {
        "prompt": schedule.prompt,
        "title": schedule.name,
        "playbook_id": schedule.playbook_id,
        "tags": schedule.tags,
        "bypass_approval": schedule.bypass_approval,
        "platform": schedule.platform,
        "agent": schedule.agent,
        "permission_mode": str(schedule.permission_mode),
    }
    if schedule.chat_model_config is not None:
        body["chat_model_config"] = schedule.chat_model_config
    if request.as_user:
        body["create_as_user_id"] = request.identity
    return body


Classify = Callable[[int, str], "Answer"]
"""What a final (not 429, not 5xx) HTTP answer means, from its status and body text."""


@dataclass(slots=True)
class Tries:
    """The attempts of one launch (every step of it) and the instant its timeout falls."""

    deadline: float
    count: int = 0


class HttpLauncher:
    """Creates sessions on a Devin v3 compatible session service.

    Its retry loop (`retrying`, within `bounded`) and its single attempt (`post`) are shared
    with the other launchers that speak HTTP (`devin`, `agentscope`): one request is retried
    on network errors, 429 and 5xx with exponential backoff honouring `Retry-After`, and a
    whole launch, every step of it, is bounded by `launcher.timeout`.
    """

    def __init__(
        self,
        config: LauncherConfig,
        *,
        http: aiohttp.ClientSession,
        backoff: Backoff = LAUNCH_BACKOFF,
    ) -> None:
        self.config = config
        self.http = http
        self.backoff = backoff

    @property
    def idempotent(self) -> bool:
        return self.config.idempotent

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        url, body, create = self._call(request)
        headers = functools.partial(self._headers, request)

        def classify(status: int, text: str) -> Answer:
            return _classify(status, text, request, create)

        return await self.bounded(lambda tries: self.send(tries, url, body, headers, classify))

    async def bounded(self, steps: Callable[[Tries], Awaitable[LaunchResult]]) -> LaunchResult:
        """Run the launch's `steps` within `launcher.timeout`, retries included."""
        tries = Tries(deadline=asyncio.get_running_loop().time() + self.config.timeout)
        try:
            async with asyncio.timeout(self.config.timeout):
                return await steps(tries)
        except TimeoutError:
            return LaunchResult(
                attempts=tries.count,
                error=f"session service did not answer within {_seconds(self.config.timeout)} "
                f"({_plural_attempts(tries.count)})",
            )

    async def send(
        self,
        tries: Tries,
        url: str,
        body: dict[str, Any],
        headers: Callable[[], dict[str, str]],
        classify: Classify,
    ) -> LaunchResult:
        """One request of a launch, retried (`retrying`) until its answer is final."""
        return await self.retrying(tries, lambda: self.post(url, body, headers, classify))

    async def retrying(
        self, tries: Tries, attempt: Callable[[], Awaitable[Answer]]
    ) -> LaunchResult:
        """Attempt, and retry transient errors, until an answer is final, `max_attempts`
        attempts reached the session service, or the next retry would pass the deadline.

        An attempt that failed for want of descriptors (or memory) on this host never
        reached the service: it does not count against `max_attempts`, so such a launch is
        retried, with backoff, until the timeout, by which the shortage has often passed.
        """

        async def counted(_number: int) -> Answer:
            tries.count += 1
            return await attempt()

        remaining = tries.deadline - asyncio.get_running_loop().time()
        policy = RetryPolicy(self.config.max_attempts, remaining, self.backoff)
        retried = await retry(policy, counted)
        answer, count = retried.outcome, tries.count
        if retried.stop is Stop.DEADLINE:
            timeout = _seconds(self.config.timeout)
            return LaunchResult(
                attempts=count,
                error=f"{answer.error} (gave up after {_plural_attempts(count)}: "
                f"the next retry would pass the {timeout} launch timeout)",
            )
        if retried.stop is Stop.ATTEMPTS:
            return LaunchResult(count, error=f"{answer.error} (after {_plural_attempts(count)})")
        return answer.result(count)

    async def post(
        self,
        url: str,
        body: dict[str, Any],
        headers: Callable[[], dict[str, str]],
        classify: Classify,
    ) -> Answer:
        """One attempt: POST `body` as JSON; 429 and 5xx are transient, `classify` says what
        any other answer means. `headers()` may raise OSError/ValueError (a secret unread)."""
        try:
            sent = headers()
        except (OSError, ValueError) as exc:
            error = f"cannot read the session service token {self.config.token_env}: {exc}"
            short = _short_of_resources(exc)  # a credential file that could not be opened now
            return Answer(final=not short, error=error, short_of_resources=short)
        try:
            async with self.http.post(url, json=body, headers=sent) as response:
                text = await _read_text(response)
                if response.status == 429 or response.status >= 500:
                    return _transient(response.status, response.headers, text)
                return classify(response.status, text)
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(
                final=False,
                error=f"session service unreachable: {_describe(exc)}",
                short_of_resources=_short_of_resources(exc),
            )

    def _call(self, request: LaunchRequest) -> tuple[str, dict[str, Any], bool]:
        """(url, body, creates a session?) for this request."""
        org = request.schedule.org_id
        url = self.config.url.replace("{org_id}", org)
        if request.session_id is not None:
            message_url = f"{url.rstrip('/')}/{request.session_id}/messages"
            return message_url, {"message": request.schedule.prompt}, False
        return url, create_session_body(request), True

    def _headers(self, request: LaunchRequest) -> dict[str, str]:
        """Idempotency-Key, and the bearer token when the secret is set (read per launch, so
        a rotated credential is picked up without a reload). Raises OSError/ValueError."""
        return {"Idempotency-Key": request.run_id, **bearer(self.config.token_env)}


def bearer(secret: str | None) -> dict[str, str]:
    """The Authorization header carrying the secret `secret`, or none when it is unset.

    Read at each call, so a rotated credential is picked up without a reload; raises
    OSError/ValueError when the secret cannot be read.
    """
    token = read_secret(secret) if secret else None
    return {"Authorization": f"Bearer {token}"} if token else {}


_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _short_of_resources(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is this host running out of descriptors or memory.

    aiohttp reports a socket that could not be made as a ClientConnectorError carrying the
    OSError's errno.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _OUT_OF_RESOURCES:
            return True
        cause = cause.__cause__
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _read_text(response: aiohttp.ClientResponse) -> str:
    """The answer's body as text, at most `_READ_LIMIT` bytes of it."""
    data = bytearray()
    while len(data) < _READ_LIMIT:
        chunk = await response.content.read(_READ_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data).decode("utf-8", errors="replace")


def _transient(status: int, headers: Mapping[str, str], text: str) -> Answer:
    retry_after = retry_after_seconds(headers.get("Retry-After"), datetime.now(UTC))
    return Answer(
        final=False,
        error=f"session service answered HTTP {status}: {snippet(text)}",
        retry_after=retry_after,
    )


def _classify(status: int, text: str, request: LaunchRequest, create: bool) -> Answer:
    """What a final HTTP answer of a Devin-shaped service means: a session, or a failure."""
    if not 200 <= status < 300:
        return refused(status, text)
    if not create:
        return final_answer(session_id=request.session_id, session_url=_json_url(text))
    return created(status, text)


def refused(status: int, text: str) -> Answer:
    """A final failure: the service answered a status that is not a success."""
    return final_answer(error=f"session service answered HTTP {status}: {snippet(text)}")


def final_answer(
    *, error: str | None = None, session_id: str | None = None, session_url: str | None = None
) -> Answer:
    return Answer(final=True, session_id=session_id, session_url=session_url, error=error)


def json_object(status: int, text: str) -> dict[str, Any] | Answer:
    """The answer's JSON object (empty when it is JSON but no object), or the final failure
    saying it is not JSON."""
    try:
        body = json.loads(text)
    except ValueError:
        return final_answer(
            error=f"session service answered HTTP {status} with a body that is not JSON: "
            f"{snippet(text)}"
        )
    return body if isinstance(body, dict) else {}


def created(status: int, text: str) -> Answer:
    """A created session: a JSON object with a non-empty `session_id` (and maybe `url`)."""
    body = json_object(status, text)
    if isinstance(body, Answer):
        return body
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return final_answer(error=f"session service answered HTTP {status} without a session_id")
    url = body.get("url")
    return final_answer(session_id=session_id, session_url=url if isinstance(url, str) else None)


def _json_url(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    url = body.get("url") if isinstance(body, dict) else None
    return url if isinstance(url, str) else None


# --- command ----------------------------------------------------------------------------

RUN_ENVIRONMENT = (
    "AGENTCRON_PROMPT",
    "AGENTCRON_SCHEDULE_ID",
    "AGENTCRON_RUN_ID",
    "AGENTCRON_ORG_ID",
    "AGENTCRON_RUN_AS",
    "AGENTCRON_AGENT",
    "AGENTCRON_PLAYBOOK_ID",
    "AGENTCRON_PERMISSION_MODE",
    "AGENTCRON_SESSION_ID",
    "AGENTCRON_CHAT_MODEL_CONFIG",
)
"""Variables describing the run; inherited values of the same names are never passed on."""

TERM_GRACE = 1.0
"""Seconds a timed-out command's process group has between SIGTERM and SIGKILL."""


def command_environment(request: LaunchRequest, base: Mapping[str, str]) -> dict[str, str]:
    """`base` without the daemon's supervision variables, plus the run's variables."""
    hidden = set(SUPERVISION_ENVIRONMENT) | set(RUN_ENVIRONMENT)
    env = {name: value for name, value in base.items() if name not in hidden}
    schedule = request.schedule
    env |= {
        "AGENTCRON_PROMPT": schedule.prompt,
        "AGENTCRON_SCHEDULE_ID": schedule.id,
        "AGENTCRON_RUN_ID": request.run_id,
        "AGENTCRON_ORG_ID": schedule.org_id,
        "AGENTCRON_RUN_AS": request.identity,
        "AGENTCRON_AGENT": schedule.agent,
        "AGENTCRON_PLAYBOOK_ID": schedule.playbook_id or "",
        "AGENTCRON_PERMISSION_MODE": str(schedule.permission_mode),
    }
    if request.session_id is not None:
        env["AGENTCRON_SESSION_ID"] = request.session_id
    if schedule.chat_model_config is not None:
        env["AGENTCRON_CHAT_MODEL_CONFIG"] = json.dumps(schedule.chat_model_config)
    return env


def session_from_stdout(stdout: str) -> tuple[str | None, str | None]:
    """(session_id, url) from a JSON object on the last non-empty line of stdout, if any."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None, None
    try:
        answer = json.loads(lines[-1])
    except ValueError:
        return None, None
    if not isinstance(answer, dict):
        return None, None
    session_id, url = answer.get("session_id"), answer.get("url")
    return (
        session_id if isinstance(session_id, str) else None,
        url if isinstance(url, str) else None,
    )


class CommandLauncher:
    """Runs `launcher.command` (an argv list, no shell) once per fire, in its own process group.

    The working directory is `workdir` (the config file's directory); the prompt comes on
    stdin and in the environment. Exit status 0 is success. On timeout the whole process
    group gets SIGTERM, then SIGKILL, so nothing the command started outlives the run.
    """

    def __init__(self, config: LauncherConfig, *, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir

    @property
    def idempotent(self) -> bool:
        return self.config.idempotent

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        argv = list(self.config.command or [])
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                env=command_environment(request, os.environ),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return LaunchResult(
                attempts=1, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            )
        return await self._supervise(process, request.schedule.prompt)

    async def _supervise(self, process: asyncio.subprocess.Process, prompt: str) -> LaunchResult:
        try:
            async with asyncio.timeout(self.config.timeout):
                stdout, stderr = await _communicate(process, prompt.encode())
        except TimeoutError:
            await _terminate_group(process, TERM_GRACE)
            return LaunchResult(
                attempts=1, error=f"command timed out after {_seconds(self.config.timeout)}"
            )
        except asyncio.CancelledError:
            _signal_group(process.pid, signal.SIGKILL)
            raise
        return _command_result(process.returncode, stdout, stderr)


def _command_result(returncode: int | None, stdout: str, stderr: str) -> LaunchResult:
    if returncode == 0:
        session_id, url = session_from_stdout(stdout)
        return LaunchResult(attempts=1, session_id=session_id, session_url=url)
    if returncode is not None and returncode < 0:
        cause = f"command was killed by signal {-returncode}"
    else:
        cause = f"command exited with status {returncode}"
    tail = stderr.strip()[-STDERR_TAIL:]
    return LaunchResult(attempts=1, error=f"{cause}: {tail}" if tail else cause)


async def _communicate(process: asyncio.subprocess.Process, data: bytes) -> tuple[str, str]:
    """Feed stdin, read the tails of stdout and stderr, wait for the exit."""
    assert process.stdin and process.stdout and process.stderr  # all three are pipes
    _, stdout, stderr, _ = await asyncio.gather(
        _feed(process.stdin, data),
        _tail(process.stdout),
        _tail(process.stderr),
        process.wait(),
    )
    return stdout, stderr


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    # A command that never reads its stdin (or exits early) is fine: drop what it refused.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.wait_closed()


async def _tail(stream: asyncio.StreamReader, limit: int = _READ_LIMIT) -> str:
    """Everything the stream says until EOF, keeping only its last `limit` bytes."""
    kept = b""
    while chunk := await stream.read(limit):
        kept = (kept + chunk)[-limit:]
    return kept.decode("utf-8", errors="replace")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _terminate_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the command's process group, SIGKILL it after `grace` s, reap the command."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
    # Always: children that ignored SIGTERM or outlived the leader are in the group too.
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()
