"""The schedule_history table: entries written inside the change's own transaction, and
read newest first. The contracts are `storage.store.Store`'s (`schedule_history`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Row

from storage import prepared
from storage.domain import HistoryEntry, Schedule
from storage.enums import HistoryAction
from storage.errors import NotFound
from storage.history import entry_of
from storage.sqlite_rows import page
from storage.store import Page
from storage.tables import SCHEDULE_HISTORY, SCHEDULES

_INSERT = insert(SCHEDULE_HISTORY)
_NEWEST_FIRST = (SCHEDULE_HISTORY.c.id.desc(),)


def record(conn: Connection, entries: Iterable[HistoryEntry | None]) -> None:
    """Insert the entries (None stands for "nothing to record") in one statement."""
    rows = [_row(entry) for entry in entries if entry is not None]
    if len(rows) == 1:  # an API edit: the fast path
        prepared.INSERT_HISTORY.run(conn, **rows[0])
    elif rows:
        conn.execute(_INSERT, rows)


def record_change(
    conn: Connection, before: Schedule | None, after: Schedule, by: str | None
) -> None:
    """Record the change from `before` to `after` made by `by` at `after.updated_at`."""
    record(conn, [entry_of(before, after, by=by, at=after.updated_at)])


def _row(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "schedule_id": entry.schedule_id,
        "org_id": entry.org_id,
        "at": entry.at,
        "by": entry.by,
        "action": entry.action.value,
        "changes": entry.changes,
    }


def page_of(
    conn: Connection,
    schedule_id: str,
    org_id: str | None,
    agents: Collection[str] | None,
    limit: int,
    offset: int,
) -> Page[HistoryEntry]:
    """The history of a schedule that exists or existed (in `org_id`, of `agents`), newest
    first; NotFound for any other id."""
    _require_known(conn, schedule_id, org_id, agents)
    where = SCHEDULE_HISTORY.c.schedule_id == schedule_id
    rows, total = page(conn, SCHEDULE_HISTORY, where, _NEWEST_FIRST, limit, offset)
    return Page([_entry(row) for row in rows], total)


def _require_known(
    conn: Connection, schedule_id: str, org_id: str | None, agents: Collection[str] | None
) -> None:
    # Deleted schedules keep their row (a soft delete), so their history stays readable.
    query = select(SCHEDULES.c.org_id, SCHEDULES.c.agent).where(SCHEDULES.c.id == schedule_id)
    found = conn.execute(query).first()
    if (
        found is None
        or (org_id is not None and found.org_id != org_id)
        or (agents is not None and found.agent not in agents)
    ):
        raise NotFound(f"schedule '{schedule_id}' not found")


def _entry(row: Row[Any]) -> HistoryEntry:
    return HistoryEntry(
        id=row.id,
        schedule_id=row.schedule_id,
        org_id=row.org_id,
        at=row.at,
        by=row.by,
        action=HistoryAction(row.action),
        changes=row.changes,
    )
