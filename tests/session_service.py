"""A real, loopback Devin-style session service for tests: records requests, answers as told.

POST `/v3/organizations/{org_id}/sessions` creates a session (`{"session_id", "url"}`);
POST `/v3/organizations/{org_id}/sessions/{session_id}/messages` accepts a message. Queue
`Reply`s with `answer(...)` to make the next requests fail, stall or answer oddly.

GET `/v3/organizations/{org_id}/sessions/{session_id}` answers the session as Devin v3
does (`status`, `status_detail`, `url`, ...). Each session follows a script of Devin
(status, status_detail) steps, one step per read, the last one repeated: `lifecycle(body)`
picks a new session's script from its create body (default: running/working for ever),
`set_status` jumps a session to a state. Reads are recorded in `polls`, not `requests`;
queue `Reply`s with `answer_polls(...)` to make the next reads fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """How to answer one request: `status`, a JSON `body` (or raw `text`), after `delay` s."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    org_id: str
    session_id: str | None
    headers: dict[str, str]
    body: Any
    at: float
    """`time.monotonic()` when the request arrived."""


Step = tuple[str, str | None]
"""A Devin session state: (`status`, `status_detail`)."""
WORKING: Step = ("running", "working")


def _forever_working(_: Any) -> Sequence[Step]:
    return [WORKING]


class SessionService:
    """Start with `await service.start()`; `url` is the create-session URL template."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self.polls: list[Recorded] = []
        self.poll_replies: deque[Reply] = deque()
        self.lifecycle: Callable[[Any], Sequence[Step]] = _forever_working
        self.sessions: dict[str, dict[str, Any]] = {}
        self._scripts: dict[str, list[Step]] = {}
        self.in_progress = 0
        self.max_in_progress = 0
        self._ids = itertools.count(1)
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    @property
    def url(self) -> str:
        return self.base + "/v3/organizations/{org_id}/sessions"

    def answer(self, *replies: Reply) -> None:
        """Answer the next requests with `replies`, in order (then normally again)."""
        self.replies.extend(replies)

    def answer_polls(self, *replies: Reply) -> None:
        """Answer the next status reads with `replies`, in order (then normally again)."""
        self.poll_replies.extend(replies)

    def set_status(self, session_id: str, status: str, detail: str | None = None) -> None:
        """From now on, `session_id` is in this state."""
        self._scripts[session_id] = [(status, detail)]

    async def wait_for_polls(self, count: int, within: float = 5.0) -> list[Recorded]:
        """Wait until at least `count` status reads arrived; raise TimeoutError after."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.polls) >= count)
        return list(self.polls)

    async def start(self) -> SessionService:
        app = web.Application()
        app.router.add_get("/v3/organizations/{org_id}/sessions/{session_id}", self._read)
        app.router.add_post("/v3/organizations/{org_id}/sessions", self._create)
        app.router.add_post(
            "/v3/organizations/{org_id}/sessions/{session_id}/messages", self._message
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, within: float = 5.0) -> list[Recorded]:
        """Wait until at least `count` requests arrived; raise TimeoutError after `within` s."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    def bodies(self, predicate: Callable[[Recorded], bool] = lambda _: True) -> list[Any]:
        return [request.body for request in self.requests if predicate(request)]

    async def _create(self, request: web.Request) -> web.StreamResponse:
        session_id = f"devin-{next(self._ids)}"
        url = f"{self.base}/s/{session_id}"
        normal = Reply(body={"session_id": session_id, "url": url})
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        self.sessions[session_id] = _devin_session(session_id, url, request, body)
        self._scripts[session_id] = list(self.lifecycle(body))
        return await self._answer(request, None, normal)

    async def _read(self, request: web.Request) -> web.StreamResponse:
        """GET a session, as Devin v3 answers it; each read moves its script one step on."""
        session_id = request.match_info["session_id"]
        recorded = Recorded(
            path=request.path,
            org_id=request.match_info["org_id"],
            session_id=session_id,
            headers=dict(request.headers),
            body=None,
            at=time.monotonic(),
        )
        async with self._arrived:
            self.polls.append(recorded)
            self._arrived.notify_all()
        if self.poll_replies:
            reply = self.poll_replies.popleft()
            await asyncio.sleep(reply.delay)
            body = reply.body if reply.body is not None else {"detail": f"HTTP {reply.status}"}
            return web.json_response(body, status=reply.status, headers=reply.headers)
        session = self.sessions.get(session_id)
        if session is None:
            return web.json_response({"detail": "Session not found"}, status=404)
        script = self._scripts[session_id]
        status, detail = script.pop(0) if len(script) > 1 else script[0]
        session |= {"status": status, "status_detail": detail, "updated_at": int(time.time())}
        return web.json_response(session)

    async def _message(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        return await self._answer(request, session_id, Reply(body={"detail": "sent"}))

    async def _answer(
        self, request: web.Request, session_id: str | None, normal: Reply
    ) -> web.StreamResponse:
        raw = await request.read()
        recorded = Recorded(
            path=request.path,
            org_id=request.match_info["org_id"],
            session_id=session_id,
            headers=dict(request.headers),
            body=json.loads(raw) if raw else None,
            at=time.monotonic(),
        )
        reply = self.replies.popleft() if self.replies else normal
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        self.in_progress += 1
        self.max_in_progress = max(self.max_in_progress, self.in_progress)
        try:
            await asyncio.sleep(reply.delay)
        finally:
            self.in_progress -= 1
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text, headers=reply.headers)
        body = reply.body
        if body is None:
            body = normal.body if 200 <= reply.status < 300 else {"detail": f"HTTP {reply.status}"}
        return web.json_response(body, status=reply.status, headers=reply.headers)


def _devin_session(
    session_id: str, url: str, request: web.Request, body: dict[str, Any]
) -> dict[str, Any]:
    """A new session as Devin v3's GET session answers it (before its first read)."""
    now = int(time.time())
    return {
        "session_id": session_id,
        "url": url,
        "status": "new",
        "status_detail": None,
        "org_id": request.match_info["org_id"],
        "title": body.get("title"),
        "tags": body.get("tags") or [],
        "playbook_id": body.get("playbook_id"),
        "user_id": body.get("create_as_user_id"),
        "acus_consumed": 0,
        "pull_requests": [],
        "created_at": now,
        "updated_at": now,
        "is_archived": False,
        "parent_session_id": None,
        "child_session_ids": None,
        "structured_output": None,
    }
