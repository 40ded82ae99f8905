"""Wire models of the AgentScope-compatible façade (`/schedule`).

Request bodies follow AgentScope's own schedule API: unknown keys are ignored (its web UI
sends more than the API reads), but nothing is coerced (`"yes"` is not a boolean). Keys that
AgentScope's server reads from no client (`source`, `source_session_id`, `started_at`,
`ended_at`) are not request fields, so they are ignored like any unknown key. Responses
carry every datetime with its offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.wire import run_fields
from storage.catalogue import default_of
from storage.domain import Run, Schedule
from storage.enums import PermissionMode, RunStatus, RunTrigger, Source
from storage.values import NonEmpty


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ChatModelConfig(BaseModel):
    """Which model the agent's session uses; stored and answered as given, passed through
    untouched, keys this model does not name included (with the defaults filled in)."""

    model_config = ConfigDict(strict=True, extra="allow")

    type: str
    model: str
    credential_id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    model_class: str = Field(default="", description='AgentScope answers "" when not sent.')


class CreateScheduleRequest(_Request):
    """POST `/schedule/`: AgentScope's CreateScheduleRequest.

    A schedule made here has `source` USER, no `source_session_id`, is in force from its
    creation (`started_at`) and has no end (`ended_at` null), whatever the client sends.
    """

    agent_id: NonEmpty
    name: NonEmpty
    description: str = Field(default="", description="The task text each session receives.")
    cron_expression: str = Field(description="Standard 5-field cron (0 and 7 are Sunday).")
    timezone: str = default_of("timezone")
    enabled: bool = default_of("enabled")
    stateful: bool = default_of("stateful")
    permission_mode: PermissionMode = default_of("permission_mode")
    chat_model_config: ChatModelConfig | None = None


class UpdateScheduleRequest(_Request):
    """PATCH `/schedule/{id}`: every field optional; omitted or null leaves it unchanged.

    The fields of AgentScope's UpdateScheduleRequest, plus `chat_model_config` (replaced as a
    whole). `started_at`, `ended_at`, `source` and `source_session_id` are not among them,
    as in AgentScope: sent here, they are ignored like any unknown key.
    """

    name: NonEmpty | None = None
    description: str | None = None
    cron_expression: str | None = None
    timezone: str | None = None
    enabled: bool | None = None
    stateful: bool | None = None
    permission_mode: PermissionMode | None = None
    chat_model_config: ChatModelConfig | None = None


class SessionsQuery(BaseModel):
    """Paging of `GET /schedule/{id}/sessions`; query strings convert to integers."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2**63 - 1)  # SQLite's largest integer


class ScheduleData(BaseModel):
    """The configuration part of a record, named as AgentScope names it."""

    name: str
    description: str
    cron_expression: str
    timezone: str
    enabled: bool
    stateful: bool
    permission_mode: PermissionMode
    started_at: datetime | None
    ended_at: datetime | None
    chat_model_config: dict[str, Any] | None
    source: Source
    source_session_id: str


class ScheduleRecord(BaseModel):
    """A persisted schedule as AgentScope's API returns it."""

    id: str
    user_id: str
    agent_id: str
    data: ScheduleData
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleRecord:
        """`started_at` is the configured lower bound, or the creation time when unbounded
        (the schedule has been in force since then, which is what AgentScope reports)."""
        data = ScheduleData(
            name=schedule.name,
            description=schedule.prompt,
            cron_expression=schedule.cron or "",
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            stateful=schedule.stateful,
            permission_mode=schedule.permission_mode,
            started_at=schedule.start_at or schedule.created_at,
            ended_at=schedule.end_at,
            chat_model_config=_chat_model_answer(schedule.chat_model_config),
            source=schedule.source,
            source_session_id=schedule.source_session_id or "",
        )
        return cls(
            id=schedule.id,
            user_id=schedule.owner_user_id or "",
            agent_id=schedule.agent,
            data=data,
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )


def _chat_model_answer(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """As AgentScope answers it: `model_class` is "" when none was ever given (the file's
    schedules, or one stored before the façade kept it)."""
    return None if stored is None else {"model_class": ""} | stored


class ScheduleList(BaseModel):
    schedules: list[ScheduleRecord]
    total: int


class ScheduleCreated(BaseModel):
    schedule_id: str


class SessionItem(BaseModel):
    """One firing of the schedule: the agent session it launched (or why none was)."""

    session_id: str | None
    session_url: str | None
    run_id: str
    schedule_id: str
    status: RunStatus
    trigger: RunTrigger
    scheduled_for: datetime
    started_at: datetime
    finished_at: datetime | None
    identity: str | None
    attempts: int
    error: str | None
    session_status: str | None

    @classmethod
    def of(cls, run: Run) -> SessionItem:
        fields = run_fields(run)
        fields["run_id"] = fields.pop("id")
        return cls(**fields)


class SessionList(BaseModel):
    sessions: list[SessionItem]
    total: int
