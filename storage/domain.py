"""Immutable domain values handed out by the store.

Field names equal the column names of `storage.tables`, so a row maps onto a value with
`Schedule(**row._mapping)`. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.enums import (
    NotifyOn,
    Overlap,
    PermissionMode,
    RunStatus,
    RunTrigger,
    ScheduleType,
    Source,
)

JSONObject = dict[str, Any]


def new_schedule_id() -> str:
    return "sched-" + secrets.token_hex(16)


def new_run_id() -> str:
    return "run-" + secrets.token_hex(16)


def new_playbook_id() -> str:
    return "playbook-" + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule, as both API façades and the engine see it."""

    org_id: str
    name: str
    prompt: str
    created_at: datetime
    updated_at: datetime
    id: str = field(default_factory=new_schedule_id)
    owner_user_id: str | None = None
    created_by: str | None = None
    last_edited_by: str | None = None
    agent: str = "devin"
    schedule_type: ScheduleType = ScheduleType.RECURRING
    cron: str | None = None
    timezone: str = "UTC"
    scheduled_at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    enabled: bool = True
    notify_on: NotifyOn = NotifyOn.FAILURE
    slack_channel_id: str | None = None
    slack_team_id: str | None = None
    playbook_id: str | None = None
    run_as_user_id: str | None = None
    tags: list[str] | None = None
    bypass_approval: bool = False
    interval_count: int | None = None
    target_devin_id: str | None = None
    platform: str | None = None
    stateful: bool = False
    permission_mode: PermissionMode = PermissionMode.DONT_ASK
    chat_model_config: JSONObject | None = None
    source: Source = Source.USER
    source_session_id: str | None = None
    stateful_session_id: str | None = None
    overlap: Overlap = Overlap.SKIP
    catchup_window_s: float | None = None
    jitter_s: float = 0.0
    consecutive_failures: int = 0
    last_error_at: datetime | None = None
    last_error_message: str | None = None
    last_executed_at: datetime | None = None
    next_run_at: datetime | None = None
    paused_reason: str | None = None
    from_config: bool = False
    deleted_at: datetime | None = None
    version: int = 1

    @property
    def is_stateful(self) -> bool:
        """Fires send the prompt to one long-lived session instead of creating a new one."""
        return self.stateful or self.target_devin_id is not None

    @property
    def is_active(self) -> bool:
        return self.enabled and self.deleted_at is None


@dataclass(frozen=True, slots=True)
class Run:
    """One firing of a schedule. Unique per (schedule_id, scheduled_for).

    `dispatched_at` is set, and committed, just before the launch request is sent: a run
    still `launching` without it after a crash never reached the session service.
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
    """How a launch ended; the store folds it into the Run and its schedule's bookkeeping."""

    run_id: str
    status: RunStatus
    finished_at: datetime
    attempts: int = 0
    identity: str | None = None
    session_id: str | None = None
    session_url: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run after `Store.finish_runs`, with its schedule as the same transaction left it."""

    run: Run
    schedule: Schedule
    auto_paused: bool
