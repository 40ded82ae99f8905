"""Immutable domain values handed out by the store.

Field names equal the column names of `storage.tables`, so a row maps onto a value with
`Run(**row._mapping)`. Every datetime is timezone-aware UTC. `Schedule` is declared in
`storage.catalogue`, with what every layer needs to know about each of its fields.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.catalogue import JSONObject as JSONObject
from storage.catalogue import Schedule as Schedule
from storage.catalogue import new_schedule_id as new_schedule_id
from storage.enums import HistoryAction, RunStatus, RunTrigger


def new_run_id() -> str:
    return "run-" + secrets.token_hex(16)


def new_playbook_id() -> str:
    return "playbook-" + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Run:
    """One firing of a schedule. Unique per (schedule_id, scheduled_for).

    `dispatched_at` is set, and committed, just before the launch request is sent: a run
    still `launching` without it after a crash never reached the session service.
    `session_status` is the agent service's last word on a followed session, else None.
    """

    schedule_id: str
    scheduled_for: datetime
    trigger: RunTrigger
    started_at: datetime
    id: str = field(default_factory=new_run_id)
    status: RunStatus = RunStatus.LAUNCHING
    identity: str | None = None
    finished_at: datetime | None = None
    session_id: str | None = None
    session_url: str | None = None
    attempts: int = 0
    error: str | None = None
    dispatched_at: datetime | None = None
    session_status: str | None = None


@dataclass(frozen=True, slots=True)
class Playbook:
    org_id: str
    title: str
    body: str
    created_at: datetime
    updated_at: datetime
    id: str = field(default_factory=new_playbook_id)
    macro: str | None = None
    created_by: str | None = None
    updated_by: str | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a launch ended; the store folds it into the Run and its schedule's bookkeeping.

    A `running` outcome records a launched session that is followed; a later outcome of the
    same run ends it. Unset session fields keep what the run already holds.
    """

    run_id: str
    status: RunStatus
    finished_at: datetime
    attempts: int = 0
    identity: str | None = None
    session_id: str | None = None
    session_url: str | None = None
    error: str | None = None
    session_status: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run after `Store.finish_runs`, with its schedule as the same transaction left it."""

    run: Run
    schedule: Schedule
    auto_paused: bool


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a schedule, recorded in the transaction that made it.

    `by` is who made it (a user or service user id, `config`, `engine`; None when the writer
    named nobody); `changes` maps each changed field's wire name to `[before, after]` as
    JSON values (see `storage.history`). `id` orders entries: a later change has a larger id.
    """

    schedule_id: str
    org_id: str
    at: datetime
    by: str | None
    action: HistoryAction
    changes: dict[str, list[Any]]
    id: int | None = None
