"""The schema's versions and the step from each to the next, for both databases.

`SCHEMA_VERSION` is bumped with every schema change; `MIGRATIONS[n]` upgrades a database from
version n, run by the Alembic revision of version n + 1 (`storage/migrations/versions/`, see
`storage.schema_versions` and ARCHITECTURE.md). A step is a plain function of a SQLAlchemy
connection, in SQL both SQLite and PostgreSQL run (or branching on `conn.dialect.name`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

SCHEMA_VERSION = 7
"""The schema this release makes and understands."""


def _add_run_dispatched_at(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN dispatched_at VARCHAR(26)")
    # An earlier release did not record it: a run it left launching may have been sent.
    conn.exec_driver_sql("UPDATE runs SET dispatched_at = started_at WHERE status = 'launching'")


def _add_schedule_launcher(conn: Connection) -> None:
    # NULL: the default launcher, which is what every earlier schedule used.
    conn.exec_driver_sql("ALTER TABLE schedules ADD COLUMN launcher VARCHAR")


def _add_schedule_prompt_format(conn: Connection) -> None:
    conn.exec_driver_sql(
        "ALTER TABLE schedules ADD COLUMN prompt_format VARCHAR NOT NULL DEFAULT 'text'"
    )


def _add_run_session_status(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN session_status VARCHAR")


def _add_schedule_history(conn: Connection) -> None:
    # The same table `storage.tables.ScheduleHistoryRow` creates in a new database: ids
    # numbered by the database (SQLite's INTEGER PRIMARY KEY is its rowid; PostgreSQL's, a
    # sequence).
    serial = "SERIAL" if conn.dialect.name == "postgresql" else "INTEGER"
    conn.exec_driver_sql(
        "CREATE TABLE schedule_history ("
        f" id {serial} NOT NULL PRIMARY KEY,"
        " schedule_id VARCHAR NOT NULL,"
        " org_id VARCHAR NOT NULL,"
        " at VARCHAR(26) NOT NULL,"
        ' "by" VARCHAR,'
        " action VARCHAR NOT NULL,"
        " changes JSON NOT NULL)"
    )
    conn.exec_driver_sql(
        "CREATE INDEX ix_schedule_history_schedule ON schedule_history (schedule_id, id)"
    )


def _add_list_indexes(conn: Connection) -> None:
    # As `storage.tables.LIST_INDEXES` declares them for a new database.
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_schedules_live_owner_created "
        "ON schedules (org_id, owner_user_id, created_at) WHERE deleted_at IS NULL"
    )
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_schedules_live_org_created "
        "ON schedules (org_id, created_at) WHERE deleted_at IS NULL"
    )


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _add_run_dispatched_at,
    2: _add_schedule_launcher,
    3: _add_schedule_prompt_format,
    4: _add_run_session_status,
    5: _add_schedule_history,
    6: _add_list_indexes,
}
