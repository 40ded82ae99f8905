"""Dashboard sessions: a table in memory, each row found by the random id its cookie holds.

A session keeps the sha256 of the token it was opened with, never the token, and the caller
is looked up in the current directory at every request: a token a reload removed ends its
sessions at once, and a permission it lost is lost on the next page. A session ends after
`idle` without a request, or at sign-out. The table lives as long as the process, so a
restart signs everyone out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.clock import Clock


@dataclass(slots=True)
class Session:
    """One signed-in browser. `csrf_token` must come back with every form it posts."""

    id: str
    token_hash: str
    csrf_token: str
    last_seen: datetime
    flash: str | None = None
    """A message for the next page shown ("Schedule created"), shown once."""

    def take_flash(self) -> str | None:
        message, self.flash = self.flash, None
        return message


class SessionTable:
    """Open, find and close sessions; a session unused for `idle` is gone."""

    def __init__(self, clock: Clock, idle: timedelta) -> None:
        self._clock = clock
        self._idle = idle
        self._sessions: dict[str, Session] = {}

    def open(self, token_hash: str) -> Session:
        """A new session for the holder of the token whose sha256 is `token_hash`."""
        self._sweep()
        session = Session(
            id=secrets.token_urlsafe(32),
            token_hash=token_hash,
            csrf_token=secrets.token_urlsafe(32),
            last_seen=self._clock.now(),
        )
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session `session_id`, its idle time restarted; None if unknown or expired."""
        session = self._sessions.get(session_id) if session_id else None
        if session is None:
            return None
        now = self._clock.now()
        if now - session.last_seen > self._idle:
            del self._sessions[session.id]
            return None
        session.last_seen = now
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self) -> None:
        """Forget expired sessions (at each sign-in, so the table never grows without bound)."""
        oldest = self._clock.now() - self._idle
        for session in [s for s in self._sessions.values() if s.last_seen < oldest]:
            del self._sessions[session.id]
