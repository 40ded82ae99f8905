"""SQLModel tables. Column names equal the fields of the values in `storage.domain`.

Datetimes are stored as fixed-width UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`), which sorts in
time order, so `next_run_at` can be indexed and compared in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Table, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as sortable UTC text; naive datetimes are refused."""

    impl = String(26)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: every datetime must carry a timezone")
        return value.astimezone(UTC).strftime(_FORMAT)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        try:  # the stored form is ISO 8601 with a space; fromisoformat is ~50x strptime
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:  # a year before 1000 is stored unpadded
            return datetime.strptime(value, _FORMAT).replace(tzinfo=UTC)


def _when(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_org_name", "org_id", "name"),)

    id: str = Field(primary_key=True)
    org_id: str = Field(index=True)
    owner_user_id: str | None = None
    created_by: str | None = None
    last_edited_by: str | None = None
    name: str
    prompt: str
    agent: str = "devin"
    schedule_type: str = "recurring"
    cron: str | None = None
    timezone: str = "UTC"
    scheduled_at: datetime | None = _when()
    start_at: datetime | None = _when()
    end_at: datetime | None = _when()
    enabled: bool = True
    notify_on: str = "failure"
    slack_channel_id: str | None = None
    slack_team_id: str | None = None
    playbook_id: str | None = None
    run_as_user_id: str | None = None
    tags: list[str] | None = _json()
    bypass_approval: bool = False
    interval_count: int | None = None
    target_devin_id: str | None = None
    platform: str | None = None
    stateful: bool = False
    permission_mode: str = "dont_ask"
    chat_model_config: dict[str, Any] | None = _json()
    source: str = "USER"
    source_session_id: str | None = None
    stateful_session_id: str | None = None
    overlap: str = "skip"
    catchup_window_s: float | None = None
    jitter_s: float = 0.0
    consecutive_failures: int = 0
    last_error_at: datetime | None = _when()
    last_error_message: str | None = None
    last_executed_at: datetime | None = _when()
    next_run_at: datetime | None = _when(index=True)
    paused_reason: str | None = None
    from_config: bool = False
    deleted_at: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)
    version: int = 1


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for", name="uq_runs_schedule_instant"),
        Index("ix_runs_schedule_started", "schedule_id", "started_at"),
        Index("ix_runs_status", "status"),
    )

    id: str = Field(primary_key=True)
    schedule_id: str = Field(foreign_key="schedules.id")
    scheduled_for: datetime = _when(nullable=False)
    trigger: str
    status: str
    identity: str | None = None
    started_at: datetime = _when(nullable=False)
    finished_at: datetime | None = _when()
    session_id: str | None = None
    session_url: str | None = None
    attempts: int = 0
    error: str | None = None
    dispatched_at: datetime | None = _when()


class PlaybookRow(SQLModel, table=True):
    __tablename__ = "playbooks"

    id: str = Field(primary_key=True)
    org_id: str = Field(index=True)
    title: str
    body: str
    macro: str | None = None
    created_by: str | None = None
    updated_by: str | None = None
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)
    deleted_at: datetime | None = _when()


class OrgRow(SQLModel, table=True):
    __tablename__ = "orgs"

    id: str = Field(primary_key=True)
    name: str


class UserRow(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True)
    orgs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    permissions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ServiceUserRow(SQLModel, table=True):
    __tablename__ = "service_users"

    id: str = Field(primary_key=True)
    org_id: str
    permissions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    token_hash: str = Field(index=True)


def table_of(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


SCHEDULES = table_of(ScheduleRow)
RUNS = table_of(RunRow)
PLAYBOOKS = table_of(PlaybookRow)
ORGS = table_of(OrgRow)
USERS = table_of(UserRow)
SERVICE_USERS = table_of(ServiceUserRow)
