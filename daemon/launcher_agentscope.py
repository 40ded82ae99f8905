"""The `agentscope` launcher: a chat run on an AgentScope 2.x server (DESIGN section 9).

Per fire, as the run's user (`X-User-ID`; with a bearer token when `token_env` is set):

1. POST `{base_url}/session/` `{agent_id, name, chat_model_config}` answers `{session_id}`.
   A stateful schedule does this once: its stored session is reused on later fires.
   AgentScope 2.0 serves this route as `/sessions/`: when `/session/` is not a route there
   (FastAPI's bare 404 `{"detail": "Not Found"}`), the launcher uses `/sessions/` from then on.
2. POST `{base_url}/chat/` `{agent_id, session_id, input}`, `input` a user message whose
   one text block is the prompt. AgentScope starts the chat run in the background and
   answers `{"status": "started", "session_id": …}`: that is a success. 409 means a chat
   run of that session is still going: a failure, not retried.

Both requests are retried and bounded as the `http` launcher's are; the run records the
AgentScope session id.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from daemon.launchers import (
    Answer,
    HttpLauncher,
    LaunchRequest,
    LaunchResult,
    Tries,
    bearer,
    created,
    final_answer,
    json_object,
    refused,
    snippet,
)

SESSION_ROUTES: Final = ("/session/", "/sessions/")
"""Where sessions are made: the documented route first, then AgentScope 2.0's own."""
_NO_ROUTE: Final = {"detail": "Not Found"}
"""What FastAPI answers for a path it has no route for."""


def chat_input(request: LaunchRequest) -> dict[str, Any]:
    """AgentScope's `Msg` from the user: the prompt as its one text block."""
    return {
        "name": request.identity,
        "role": "user",
        "content": [{"type": "text", "text": request.schedule.prompt}],
    }


class AgentScopeLauncher(HttpLauncher):
    """Starts a chat run in a new session (or, stateful, in the schedule's own session)."""

    _session_route = SESSION_ROUTES[0]

    @property
    def idempotent(self) -> bool:
        return False  # AgentScope has no idempotency key: a resent request starts a second run

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        return await self.bounded(functools.partial(self._steps, request))

    async def _steps(self, request: LaunchRequest, tries: Tries) -> LaunchResult:
        session_id = request.session_id
        if session_id is None:
            made = await self._create_session(request, tries)
            if not made.ok or made.session_id is None:
                return made
            session_id = made.session_id
        return await self._chat(request, session_id, tries)

    def _headers_for(self, request: LaunchRequest) -> dict[str, str]:
        return {"X-User-ID": request.identity, **bearer(self.config.token_secret)}

    async def _create_session(self, request: LaunchRequest, tries: Tries) -> LaunchResult:
        schedule = request.schedule
        body = {
            "agent_id": schedule.agent,
            "name": schedule.name,
            "chat_model_config": schedule.chat_model_config,
        }
        headers = functools.partial(self._headers_for, request)
        while True:
            route = self._session_route
            url = f"{self.config.service_url}{route}"
            classify = functools.partial(_session, route=route)
            result = await self.send(tries, url, body, headers, classify)
            if result.error != _route_missing(route) or route == SESSION_ROUTES[-1]:
                return result
            self._session_route = SESSION_ROUTES[SESSION_ROUTES.index(route) + 1]

    async def _chat(self, request: LaunchRequest, session_id: str, tries: Tries) -> LaunchResult:
        url = f"{self.config.service_url}/chat/"
        body = {
            "agent_id": request.schedule.agent,
            "session_id": session_id,
            "input": chat_input(request),
        }
        headers = functools.partial(self._headers_for, request)

        def started(status: int, text: str) -> Answer:
            return _started(status, text, session_id)

        return await self.send(tries, url, body, headers, started)


def _route_missing(route: str) -> str:
    return f"AgentScope has no route {route}"


def _session(status: int, text: str, *, route: str) -> Answer:
    if status in (404, 405) and json_object(status, text) == _NO_ROUTE:
        return final_answer(error=_route_missing(route))
    if not 200 <= status < 300:
        return refused(status, text)
    return created(status, text)


def _started(status: int, text: str, session_id: str) -> Answer:
    if status == 409:
        return final_answer(
            error=f"AgentScope session {session_id} is still running a chat: {snippet(text)}"
        )
    if not 200 <= status < 300:
        return refused(status, text)
    body = json_object(status, text)
    if isinstance(body, Answer):
        return body
    if body.get("status") != "started":
        return final_answer(
            error=f"AgentScope answered HTTP {status} without starting a chat run: {snippet(text)}"
        )
    return final_answer(session_id=session_id)
