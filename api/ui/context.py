"""What the dashboard's handlers reach: the daemon's parts, and who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from api.ports import DaemonFacts, Lifecycle, ScheduleEvents
from api.ui.sessions import Session, SessionTable
from storage.clock import Clock
from storage.identities import DirectoryRef, ServiceUser
from storage.store import Store


@dataclass(frozen=True, slots=True)
class Dashboard:
    store: Store
    events: ScheduleEvents
    directory: DirectoryRef
    clock: Clock
    lifecycle: Lifecycle
    facts: DaemonFacts | None
    sessions: SessionTable


DASHBOARD = web.AppKey("dashboard", Dashboard)
SESSION = web.RequestKey("session", Session)
CALLER = web.RequestKey("caller", ServiceUser)
"""Set by the guard on every request to a page that needs signing in."""


def dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]
