"""The values the store's interface answers besides `storage.domain`'s (see `storage.store`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from storage.domain import Run, Schedule

T = TypeVar("T")

PLAYBOOK_TITLE = "playbook_title"
"""A field `Store.encode_schedules` reads besides the schedule's own: its live playbook's title."""
RowsEncoder = Callable[[list[tuple[Any, ...]], int], T]
"""`encode(rows, total)` of `Store.encode_schedules` and `encode_runs`: each row a tuple of the
requested fields' values, `total` how many match on every page. Runs on a database thread."""

Move = tuple[str, datetime | None, datetime | None]
"""(schedule id, the `next_run_at` it is expected to have, the one to set)."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the total number of items across all pages."""

    items: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class OrgLaunch:
    """A run sent to a session service: its org, its id and when it was dispatched."""

    org_id: str
    run_id: str
    dispatched_at: datetime


@dataclass(frozen=True, slots=True)
class NamedRun:
    """A run with the name of its schedule, for lists of runs across schedules."""

    run: Run
    schedule_name: str


@dataclass(frozen=True, slots=True)
class FireState:
    """The parts of a stored schedule that change without its `version` moving.

    Every edit of a schedule's definition bumps `version`, and so does the engine disabling
    it (a change a client sees and the history records); the engine's own bookkeeping (the
    advance of `next_run_at`, a run's outcome, the stateful session) does not. A schedule
    read earlier with the same `version`, with these fields applied, is the stored schedule
    as far as firing it is concerned.
    """

    version: int
    enabled: bool
    deleted_at: datetime | None
    next_run_at: datetime | None
    stateful_session_id: str | None

    def applied_to(self, schedule: Schedule) -> Schedule:
        """`schedule` (of the same version) with these fields; itself when they agree."""
        fields = (
            schedule.enabled,
            schedule.deleted_at,
            schedule.next_run_at,
            schedule.stateful_session_id,
        )
        if fields == (self.enabled, self.deleted_at, self.next_run_at, self.stateful_session_id):
            return schedule
        return dataclasses.replace(
            schedule,
            enabled=self.enabled,
            deleted_at=self.deleted_at,
            next_run_at=self.next_run_at,
            stateful_session_id=self.stateful_session_id,
        )
