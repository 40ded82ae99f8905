"""SQLModel tables. Column names equal the fields of the values in `storage.domain`; the
schedules table is derived from `storage.catalogue`.

Datetimes are stored as fixed-width UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`), which sorts in
time order, so `next_run_at` can be indexed and compared in SQL.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import AutoString

from storage.catalogue import CATALOGUE, INDEXED, PRIMARY_KEY, Entry

_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as sortable UTC text; naive datetimes are refused."""

    impl = String(26)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # Byte order, whatever the server's locale: a locale's collation may weigh the
        # punctuation apart from the digits, and the text must sort as the time does.
        if dialect.name == "postgresql":
            return dialect.type_descriptor(String(26, collation="C"))
        return dialect.type_descriptor(String(26))

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


class StoredEnum(TypeDecorator[StrEnum]):
    """A string enumeration stored as its value and read back as the member."""

    impl = AutoString()
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum
        self._members: dict[Any, StrEnum] = {member.value: member for member in enum}

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        if value is None:
            return None
        member = self._members.get(value)
        return member if member is not None else self.enum(value)


def _column_type(entry: Entry) -> Any:
    kind = entry.value_type
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return StoredEnum(kind)
    if kind is datetime:
        return UTCDateTime()
    if typing.get_origin(kind) in (list, dict):
        return JSON
    return {str: AutoString(), bool: Boolean(), int: Integer(), float: Float()}[kind]


def _column_default(entry: Entry) -> Any:
    default = entry.default
    if default is MISSING or default is None:
        return None
    return default.value if isinstance(default, StrEnum) else default


def _column(entry: Entry) -> Column[Any]:
    """The column of a catalogue field: its type, `None` allowed iff the type allows it."""
    return Column(
        entry.name,
        _column_type(entry),
        primary_key=entry.has(PRIMARY_KEY),
        nullable=entry.nullable,
        index=entry.has(INDEXED) or None,
        default=_column_default(entry),
    )


SCHEDULES = Table(
    "schedules",
    SQLModel.metadata,
    *(_column(entry) for entry in CATALOGUE),
    Index("ix_schedules_org_name", "org_id", "name"),
)
"""The schedules, one column per field of `storage.catalogue.Schedule`, in its order."""

LIST_INDEXES = (
    Index(
        "ix_schedules_live_owner_created",
        SCHEDULES.c.org_id,
        SCHEDULES.c.owner_user_id,
        SCHEDULES.c.created_at,
        sqlite_where=SCHEDULES.c.deleted_at.is_(None),
    ),
    Index(
        "ix_schedules_live_org_created",
        SCHEDULES.c.org_id,
        SCHEDULES.c.created_at,
        sqlite_where=SCHEDULES.c.deleted_at.is_(None),
    ),
)
"""The lists of an owner's and of an org's live schedules in creation order: read along
the index (SQLite keeps the rowid last in every index entry, which breaks ties in
`created_at` as the lists do), counted from the index alone, never sorted. A runs list
needs none of its own: `uq_runs_schedule_instant` gives its order.

Partial on PostgreSQL too: `storage.postgres_db` adds the same condition as that dialect's
option when it loads (naming it here would load the dialect into every SQLite daemon)."""


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
    session_status: str | None = None


class ScheduleHistoryRow(SQLModel, table=True):
    """One entry of a schedule's edit history (`storage.domain.HistoryEntry`). Kept after
    the schedule is deleted; `id` grows with every entry, so it orders them."""

    __tablename__ = "schedule_history"
    __table_args__ = (Index("ix_schedule_history_schedule", "schedule_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: str
    org_id: str
    at: datetime = _when(nullable=False)
    by: str | None = None
    action: str
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


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


RUNS = table_of(RunRow)
PLAYBOOKS = table_of(PlaybookRow)
SCHEDULE_HISTORY = table_of(ScheduleHistoryRow)
ORGS = table_of(OrgRow)
USERS = table_of(UserRow)
SERVICE_USERS = table_of(ServiceUserRow)
