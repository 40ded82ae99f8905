"""The `http` launcher: create a session on a Devin v3 compatible session service.

It POSTs a Devin v3 create-session body to the session service (or, for a stateful
schedule that already has a session, a message to that session), retrying transient errors
with exponential backoff that honours `Retry-After`, and bounds one run's whole launch,
retries included, by `launcher.timeout`. Its retry loop, single attempt and answer helpers
are shared with the `devin` and `agentscope` launchers.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from daemon.config import LauncherConfig
from daemon.launchers import LaunchRequest, LaunchResult, seconds_text
from daemon.retry import Backoff, RetryPolicy, Stop, retry, retry_after_seconds
from daemon.secrets import read_secret

BODY_SNIPPET = 200
"""Characters of a session service's answer quoted in an error."""
_READ_LIMIT = 64 * 1024
"""Bytes of a session service's answer read at most."""
LAUNCH_BACKOFF = Backoff(base=0.5, cap=30.0)
"""Waits between attempts at the session service (`launcher.timeout` bounds them all)."""


def _plural_attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def snippet(text: str, limit: int = BODY_SNIPPET) -> str:
    return " ".join(text.split())[:limit]


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


def documented_session_body(request: LaunchRequest) -> dict[str, Any]:
    """The keys Devin v3's create-session documents, as this run fills them (nulls kept);
    `create_as_user_id` only when running as a user."""
    schedule = request.schedule
    body: dict[str, Any] = {
        "prompt": schedule.prompt,
        "title": schedule.name,
        "playbook_id": schedule.playbook_id,
        "tags": schedule.tags,
        "bypass_approval": schedule.bypass_approval,
    }
    if request.as_user:
        body["create_as_user_id"] = request.identity
    return body


def create_session_body(request: LaunchRequest) -> dict[str, Any]:
    """The Devin v3 create-session body with agentcron's extensions (platform, agent,
    permission mode, chat model config), for any Devin-shaped session service."""
    schedule = request.schedule
    body = documented_session_body(request) | {
        "platform": schedule.platform,
        "agent": schedule.agent,
        "permission_mode": str(schedule.permission_mode),
    }
    if schedule.chat_model_config is not None:
        body["chat_model_config"] = schedule.chat_model_config
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
                error=f"session service did not answer within {seconds_text(self.config.timeout)} "
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
            timeout = seconds_text(self.config.timeout)
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
