"""Lists of any length read as plain value tuples, for a caller to encode on the same thread.

`SqliteStore.encode_schedules` and `encode_runs` hand these functions to a reader thread
together with the caller's encoder, so that neither the read nor the encoding of a list of
thousands of rows runs on the event loop. Rows go out as tuples of the requested fields'
values, typed as the domain types them (the tables' column types convert them: aware
datetimes, enum members, booleans, JSON values); no domain object is built per row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, and_, func, literal_column, select
from sqlalchemy.engine import Connection

from storage.store import PLAYBOOK_TITLE
from storage.tables import PLAYBOOKS, RUNS, SCHEDULES

T = TypeVar("T")
Encoder = Callable[[list[tuple[Any, ...]], int], T]

_CREATION_ORDER: tuple[Any, ...] = (SCHEDULES.c.created_at, literal_column("schedules.rowid"))
_NEWEST_FIRST: tuple[Any, ...] = (RUNS.c.scheduled_for.desc(), RUNS.c.started_at.desc())
_PLAYBOOK_TITLE = (
    select(PLAYBOOKS.c.title)
    .where(PLAYBOOKS.c.id == SCHEDULES.c.playbook_id, PLAYBOOKS.c.deleted_at.is_(None))
    .correlate(SCHEDULES)
    .scalar_subquery()
    .label(PLAYBOOK_TITLE)
)
"""The title of the schedule's live playbook, read by key for each row of the page."""


def _columns(table: Table, fields: Sequence[str], extra: dict[str, Any]) -> list[Any]:
    """The columns of `fields` in order; ValueError naming any that is not one."""
    unknown = [name for name in fields if name not in table.c and name not in extra]
    if unknown:
        raise ValueError(f"not {table.name} fields: {unknown}")
    return [extra[name] if name in extra else table.c[name] for name in fields]


def _read(
    conn: Connection,
    table: Table,
    columns: list[Any],
    where: ColumnElement[bool],
    order: tuple[Any, ...],
    window: tuple[int | None, int],
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of the window (limit, offset) and how many match `where` on every page.

    A window that ends before its limit was the end of the list, so its total is known
    without counting (the whole list, most of all, is counted by reading it).
    """
    limit, offset = window
    query = select(*columns).where(where).order_by(*order).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [tuple(row) for row in conn.execute(query)]
    if (rows or offset == 0) and (limit is None or len(rows) < limit):
        return rows, offset + len(rows)
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    return rows, int(total)


def schedules(
    conn: Connection,
    org_id: str,
    fields: Sequence[str],
    encode: Encoder[T],
    window: tuple[int | None, int],
    owner_user_id: str | None,
    agents: Collection[str] | None,
) -> T:
    """`encode` of the live schedules `sqlite_schedules.page_of` would page, as tuples."""
    columns = _columns(SCHEDULES, fields, {PLAYBOOK_TITLE: _PLAYBOOK_TITLE})
    where = and_(SCHEDULES.c.org_id == org_id, SCHEDULES.c.deleted_at.is_(None))
    if owner_user_id is not None:
        where = and_(where, SCHEDULES.c.owner_user_id == owner_user_id)
    if agents is not None:
        where = and_(where, SCHEDULES.c.agent.in_(sorted(agents)))
    rows, total = _read(conn, SCHEDULES, columns, where, _CREATION_ORDER, window)
    return encode(rows, total)


def runs(
    conn: Connection,
    schedule_id: str,
    fields: Sequence[str],
    encode: Encoder[T],
    window: tuple[int, int],
) -> T:
    """`encode` of the runs `sqlite_runs.page_of` would page, as tuples."""
    columns = _columns(RUNS, fields, {})
    rows, total = _read(
        conn, RUNS, columns, RUNS.c.schedule_id == schedule_id, _NEWEST_FIRST, window
    )
    return encode(rows, total)
