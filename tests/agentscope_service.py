"""A real, loopback stand-in for an AgentScope 2.x server's session and chat routes.

It speaks AgentScope's wire format as its FastAPI app does (`agentscope.app`, 2.0): the
caller is the `X-User-ID` header (missing or empty → 401 `X-User-ID header is required.`),
POST `{route}` `{agent_id, name, chat_model_config}` answers 201 `{"session_id"}`, POST
`/chat/` `{agent_id, session_id, input}` answers 200 `{"status": "started", "session_id"}`,
GET `/sessions/{id}/status?agent_id=…` answers `{"session_id", "status"}` (the next of
`lifecycle`'s statuses at each read, the last one kept), and a path it does not serve answers
FastAPI's 404 `{"detail": "Not Found"}`. AgentScope 2.0
serves sessions at `/sessions/`; `route` may name the documented `/session/` instead.
Every request is recorded; queue `Reply`s with `answer(...)` to make the next ones fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.session_service import Reply


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: Any


class AgentScopeService:
    """Start with `await service.start()`; `base` is the server's root URL."""

    def __init__(self, route: str = "/sessions/") -> None:
        self.route = route
        self.calls: list[Call] = []
        self.replies: deque[Reply] = deque()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lifecycle: list[str] = ["running", "idle"]
        """The statuses a new session's reads answer, in turn (the last one is kept)."""
        self._statuses: dict[str, deque[str]] = {}
        self._ids = itertools.count(1)
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    def answer(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def start(self) -> AgentScopeService:
        app = web.Application()
        app.router.add_post(self.route, self._session)
        app.router.add_post("/chat/", self._chat)
        app.router.add_get("/sessions/{session_id}/status", self._status)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, within: float = 5.0) -> list[Call]:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.calls) >= count)
        return list(self.calls)

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        async with self._arrived:
            self.calls.append(Call(request.path, dict(request.headers), body))
            self._arrived.notify_all()
        return body

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"detail": "Not Found"}, status=404)

    def _queued(self) -> web.Response | None:
        if not self.replies:
            return None
        reply = self.replies.popleft()
        return web.json_response(reply.body or {"detail": "refused"}, status=reply.status)

    async def _session(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if not request.headers.get("X-User-ID"):
            return web.json_response({"detail": "X-User-ID header is required."}, status=401)
        if (queued := self._queued()) is not None:
            return queued
        session_id = f"session-{next(self._ids)}"
        self.sessions[session_id] = {"user": request.headers["X-User-ID"], **body}
        self._statuses[session_id] = deque(self.lifecycle)
        return web.json_response({"session_id": session_id}, status=201)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if not request.headers.get("X-User-ID"):
            return web.json_response({"detail": "X-User-ID header is required."}, status=401)
        if (queued := self._queued()) is not None:
            return queued
        session_id = body["session_id"]
        if session_id not in self.sessions:
            return web.json_response({"detail": f"Session '{session_id}' not found"}, status=404)
        return web.json_response({"status": "started", "session_id": session_id})

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        session_id = request.match_info["session_id"]
        session = self.sessions.get(session_id)
        owner = request.headers.get("X-User-ID")
        agent = request.query.get("agent_id")
        if session is None or session["user"] != owner or session["agent_id"] != agent:
            return web.json_response({"detail": f"Session '{session_id}' not found."}, status=404)
        statuses = self._statuses[session_id]
        status = statuses.popleft() if len(statuses) > 1 else statuses[0]
        return web.json_response({"session_id": session_id, "status": status})
