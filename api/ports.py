"""What the HTTP layer needs from the rest of the daemon, declared here and injected by it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from storage.domain import Run, Schedule


class ScheduleEvents(Protocol):
    """The engine, as the API sees it."""

    async def changed(self, schedule: Schedule) -> None:
        """`schedule` was created, edited, enabled, disabled or deleted (as stored now).

        Returns once the engine's timers reflect it, so the change is in effect before the
        HTTP answer is sent.
        """
        ...

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        """Fire `schedule` now (trigger `manual`); return the run, still `launching`.

        The launch itself finishes in the background.
        """
        ...

    async def backfill(
        self, schedule: Schedule, instants: Sequence[datetime], *, by: str
    ) -> list[Run]:
        """Claim a run (trigger `backfill`) for each of `instants` that has none yet and
        launch them paced at the catch-up rate; return the runs claimed, still `launching`."""
        ...


class Lifecycle(Protocol):
    """The daemon's run state, for `/readyz`."""

    @property
    def state(self) -> str:
        """`starting`, `serving` or `stopping`; only `serving` is ready."""
        ...


class FleetView(Protocol):
    """The daemons sharing the database, as `/readyz` names them."""

    def describe(self) -> dict[str, object]:
        """This member, the live members and the share this member owns (JSON values)."""
        ...


class DaemonFacts(Protocol):
    """What the dashboard's health page tells about the running daemon."""

    @property
    def launchers(self) -> Sequence[str]:
        """How each configured launcher starts sessions (`http`, `command`)."""
        ...
