"""Schema versions as Alembic revisions, on SQLite and PostgreSQL alike.

A schema version is an integer (`storage.schema_steps.SCHEMA_VERSION`), and each step up is a plain
function of a connection (`storage.schema_steps.MIGRATIONS[n]` upgrades version n to n + 1). Alembic
orders and records them: revision `"%04d" % n` is schema version n, and the revision file of
version n + 1 (`storage/migrations/versions/`) runs `MIGRATIONS[n]`. The revision a database
is at is kept in Alembic's `alembic_version` table; a SQLite file also keeps the version in
`PRAGMA user_version`, which releases before Alembic read (they then refuse a newer file).

A new database is made whole from the table definitions and stamped at the head; Alembic
itself (its import and its scripts) is loaded only when a database must be upgraded.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
)


def revision_of(version: int) -> str:
    """The Alembic revision id of schema version `version`."""
    return f"{version:04d}"


def version_of(revision: str) -> int:
    """The schema version of an Alembic revision id; ValueError for one not ours."""
    if len(revision) != 4 or not revision.isdigit():
        raise ValueError(f"not an agentcron schema revision: {revision!r}")
    return int(revision)


def recorded_version(conn: Connection, table_names: set[str]) -> int:
    """The version `alembic_version` records (0: no such table or row)."""
    if VERSION_TABLE not in table_names:
        return 0
    revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return 0 if revision is None else version_of(str(revision))


def stamp(conn: Connection, version: int) -> None:
    """Record `version` as the database's revision (inside the caller's transaction)."""
    conn.exec_driver_sql(_CREATE)
    conn.exec_driver_sql(f"DELETE FROM {VERSION_TABLE}")
    conn.execute(
        text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:r)"), {"r": revision_of(version)}
    )


def upgrade(conn: Connection, version: int) -> None:
    """Upgrade a database at schema `version` to the head revision, with Alembic, inside the
    caller's transaction: a failed step leaves the database as it was."""
    from alembic import command  # only here: start-up on a current database never needs it

    stamp(conn, version)  # a file older than Alembic records its version in user_version only
    command.upgrade(_alembic_config(conn), "head")


def head_version() -> int:
    """The newest schema version the revision scripts reach."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return version_of(head)


def _alembic_config(conn: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("storage") / "migrations"))
    config.attributes["connection"] = conn
    return config
