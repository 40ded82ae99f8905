"""Typed keys of what the app holds, set once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from api.answer_cache import AnswerCache
from api.ports import FleetView, Lifecycle, ScheduleEvents
from storage.clock import Clock
from storage.identities import DirectoryRef
from storage.store import Store


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The parts of the configuration the HTTP layer reads."""

    max_body_bytes: int = 1_048_576
    agentscope_enabled: bool = False
    agentscope_org: str = "org-local"
    agentscope_require_token: bool = False
    ui_enabled: bool = False
    """Serve the dashboard under /ui/ (the daemon's `[ui] enabled`, on by default there)."""
    ui_session_idle: float = 43200.0
    """Seconds without a request after which a dashboard session ends."""


STORE = web.AppKey("store", Store)
EVENTS = web.AppKey("events", ScheduleEvents)
DIRECTORY = web.AppKey("directory", DirectoryRef)
CLOCK = web.AppKey("clock", Clock)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
FLEET = web.AppKey("fleet", FleetView)
SETTINGS = web.AppKey("settings", ApiSettings)
ANSWERS = web.AppKey("answers", AnswerCache)
