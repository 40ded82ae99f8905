"""Reading an agent session's status: the poll protocol, and Devin's sessions.

A launcher type that can follow its sessions plugs in with one `SessionPoller`: `poll`
answers the session's `SessionState` now, or raises `PollFailed`. `daemon.following` does
the rest (pacing, timeout, the run's outcome).

AgentScope 2.x (GET `/sessions/{id}/status?agent_id=…`, as the run's user) answers
`running`, `idle`, `awaiting_permission` or `awaiting_external_result`: `agentscope_state`.

Devin v3 (GET `/v3/organizations/{org}/sessions/{devin_id}`) answers `status` (`new`,
`creating`, `claimed`, `running`, `exit`, `error`, `suspended`, `resuming`) and, for
`running` and `suspended`, a `status_detail`. `devin_state` maps them; the README shows the
table. A session that stops blocked (waiting for a user or an approval) or in error ends
its run as a failure: a scheduled session has nobody to unblock it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from daemon.config import LauncherConfig
from daemon.secrets import read_secret
from storage.domain import Run, Schedule

BODY_SNIPPET = 200
"""Characters of an unexpected answer quoted in an error."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """A session as its service describes it: `status` in the service's own words (kept as
    the run's `session_status`), whether it has ended, and if so whether it succeeded."""

    status: str
    terminal: bool
    succeeded: bool = False
    message: str | None = None


class PollFailed(Exception):
    """The session's status could not be read. `transient` (network, HTTP 429 or 5xx): try
    again at the next interval; otherwise the run cannot be followed and fails."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SessionPoller(Protocol):
    async def poll(self, run: Run, session_id: str, *, schedule: Schedule) -> SessionState:
        """The state of `run`'s session `session_id` (of `schedule`) now.

        Raises PollFailed when the service could not tell; never anything else for an
        answer it did not like."""
        ...


# --- Devin's statuses -----------------------------------------------------------------------

_STARTING = frozenset({"new", "creating", "claimed", "resuming"})
_BLOCKED = {
    "waiting_for_user": "blocked, waiting for a user's answer",
    "waiting_for_approval": "blocked, waiting for an action to be approved",
}
_SUSPENDED = {
    "inactivity": "inactive for too long",
    "user_request": "a user suspended it",
    "usage_limit_exceeded": "usage limit exceeded",
    "out_of_credits": "out of credits",
    "out_of_quota": "out of quota",
    "no_quota_allocation": "no quota allocated",
    "payment_declined": "payment declined",
    "org_usage_limit_exceeded": "the org's usage limit was exceeded",
    "total_session_limit_exceeded": "the total session limit was exceeded",
    "error": "an error",
}


def devin_state(body: Any) -> SessionState:
    """A Devin v3 session (the GET answer) as a `SessionState`. An unknown status is taken
    as still running: the follow timeout bounds it. Raises PollFailed without a status."""
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str) or not status:
        raise PollFailed("the session service answered without a status", transient=False)
    detail = body.get("status_detail")
    detail = detail if isinstance(detail, str) and detail else None
    said = f"{status}/{detail}" if detail else status
    if status == "exit":
        return SessionState(said, terminal=True, succeeded=True, message="the session exited")
    if status == "error":
        return SessionState(said, terminal=True, message="the session ended in error")
    if status == "suspended":
        return SessionState(
            said, terminal=True, message=_SUSPENDED.get(detail or "", "no reason given")
        )
    if status == "running" and detail == "finished":
        return SessionState(said, terminal=True, succeeded=True, message="the task is complete")
    if status == "running" and detail in _BLOCKED:
        return SessionState(said, terminal=True, message=_BLOCKED[detail])
    return SessionState(said, terminal=False)


# --- reading a status endpoint -------------------------------------------------------------


class _StatusReader:
    """One GET of a session's status, its failures as `PollFailed`, its JSON body mapped by
    the service's own rules (`state_of`)."""

    def __init__(
        self,
        *,
        token_env: str | None,
        http: aiohttp.ClientSession,
        timeout: float,
        state_of: Callable[[Any], SessionState],
    ) -> None:
        self.token_env = token_env
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.state_of = state_of

    def _bearer(self) -> dict[str, str]:
        try:
            token = read_secret(self.token_env) if self.token_env else None
        except (OSError, ValueError) as exc:
            error = f"cannot read the token {self.token_env}: {exc}"
            raise PollFailed(error, transient=True) from exc
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def read(
        self, url: str, *, headers: Mapping[str, str] = {}, params: Mapping[str, str] = {}
    ) -> SessionState:
        sent = {**headers, **self._bearer()}
        try:
            async with self.http.get(
                url, headers=sent, params=params, timeout=self.timeout
            ) as response:
                text = await response.text(errors="replace")
                return self.state_of(_body(response.status, text))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise PollFailed(f"session status unreachable: {exc!r}", transient=True) from exc


def _body(status: int, text: str) -> Any:
    snippet = " ".join(text.split())[:BODY_SNIPPET]
    if status == 429 or status >= 500:
        raise PollFailed(f"session status answered HTTP {status}: {snippet}", transient=True)
    if not 200 <= status < 300:
        raise PollFailed(f"session status answered HTTP {status}: {snippet}", transient=False)
    try:
        return json.loads(text)
    except ValueError:
        raise PollFailed(f"session status is not JSON: {snippet}", transient=False) from None


class DevinSessionPoller:
    """GETs a session's status where `url_template` says (`{org_id}` and `{session_id}`
    filled in), as Devin v3's GET session answers it, with the launcher's bearer token."""

    def __init__(
        self, url_template: str, *, token_env: str, http: aiohttp.ClientSession, timeout: float
    ) -> None:
        self.url_template = url_template
        self._reader = _StatusReader(
            token_env=token_env, http=http, timeout=timeout, state_of=devin_state
        )

    def url(self, session_id: str, org_id: str) -> str:
        return self.url_template.replace("{org_id}", org_id).replace("{session_id}", session_id)

    async def poll(self, run: Run, session_id: str, *, schedule: Schedule) -> SessionState:
        return await self._reader.read(self.url(session_id, schedule.org_id))


# --- AgentScope's statuses ------------------------------------------------------------------

_AGENTSCOPE_PARKED = {
    "awaiting_permission": "blocked, waiting for a tool call to be permitted",
    "awaiting_external_result": "blocked, waiting for an external tool's result",
}


def agentscope_state(body: Any) -> SessionState:
    """An AgentScope 2.x session status (`GET /sessions/{id}/status`) as a `SessionState`:
    `running` while a worker holds the session's run; `idle` once the chat run is over (a
    success: AgentScope's status does not tell a failed run from a finished one); parked on
    a permission or an external result is blocked, a failure."""
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str) or not status:
        raise PollFailed("AgentScope answered without a status", transient=False)
    if status == "idle":
        return SessionState(status, terminal=True, succeeded=True, message="the chat run ended")
    if status in _AGENTSCOPE_PARKED:
        return SessionState(status, terminal=True, message=_AGENTSCOPE_PARKED[status])
    return SessionState(status, terminal=False)


class AgentScopeSessionPoller:
    """GETs `{base_url}/sessions/{session_id}/status?agent_id=…` as the run's user
    (`X-User-ID`), with the launcher's bearer token when it sends one."""

    def __init__(
        self,
        base_url: str,
        *,
        token_env: str | None,
        http: aiohttp.ClientSession,
        timeout: float,
    ) -> None:
        self.base_url = base_url
        self._reader = _StatusReader(
            token_env=token_env, http=http, timeout=timeout, state_of=agentscope_state
        )

    async def poll(self, run: Run, session_id: str, *, schedule: Schedule) -> SessionState:
        url = f"{self.base_url}/sessions/{quote(session_id, safe='')}/status"
        user = run.identity or schedule.run_as_user_id or ""
        params = {"agent_id": schedule.agent}
        return await self._reader.read(url, headers={"X-User-ID": user}, params=params)


def build_poller(config: LauncherConfig, *, http: aiohttp.ClientSession) -> SessionPoller | None:
    """The poller of `config`'s sessions, or None for a launcher type that has none (a
    command follows its process itself)."""
    if config.type == "agentscope":
        return AgentScopeSessionPoller(
            config.service_url, token_env=config.token_secret, http=http, timeout=config.timeout
        )
    if config.type not in ("http", "devin"):
        return None
    return DevinSessionPoller(
        config.session_status_url,
        token_env=config.token_env,
        http=http,
        timeout=config.timeout,
    )
