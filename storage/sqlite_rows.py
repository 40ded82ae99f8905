"""Rows of the SQLite tables as domain values and back, and the read shapes every table shares.

Field names equal column names (`storage.tables`), so a row maps onto a value by name; only
the enum columns need converting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Table, func, select
from sqlalchemy.engine import Connection

from storage.domain import Playbook, Run, Schedule
from storage.enums import (
    NotifyOn,
    Overlap,
    PermissionMode,
    RunStatus,
    RunTrigger,
    ScheduleType,
    Source,
)

T = TypeVar("T")

_SCHEDULE_ENUMS: dict[str, Callable[[Any], Any]] = {
    "schedule_type": ScheduleType,
    "notify_on": NotifyOn,
    "permission_mode": PermissionMode,
    "source": Source,
    "overlap": Overlap,
}
_ENUM_MEMBERS: dict[str, dict[Any, Any]] = {
    name: {member.value: member for member in enum}  # type: ignore[attr-defined]
    for name, enum in _SCHEDULE_ENUMS.items()
}
"""Stored value -> member, for each enum column: a lookup is cheaper than the enum's call."""

IDS_PER_QUERY = 500
"""Ids in one `IN (...)` list (SQLite allows 32,766 bound values in a statement)."""


def schedule(row: Row[Any]) -> Schedule:
    return schedule_of(row._asdict())


def schedule_of(values: dict[str, Any]) -> Schedule:
    """The schedule of a row's values by column name (`values` is converted in place)."""
    for name, members in _ENUM_MEMBERS.items():
        value = values[name]
        values[name] = members[value] if value in members else _SCHEDULE_ENUMS[name](value)
    return Schedule(**values)


def run(row: Row[Any]) -> Run:
    values = dict(row._mapping)
    values["trigger"] = RunTrigger(values["trigger"])
    values["status"] = RunStatus(values["status"])
    return Run(**values)


def playbook(row: Row[Any]) -> Playbook:
    return Playbook(**row._mapping)


def values_of(value: Any) -> dict[str, Any]:
    """Every field of a domain value, by name: the row to insert."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def bound(value: Any, names: Sequence[str]) -> dict[str, Any]:
    """Parameters for the `b_`-prefixed bind names of a bulk statement."""
    return {f"b_{name}": getattr(value, name) for name in names}


def chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), IDS_PER_QUERY):
        yield items[start : start + IDS_PER_QUERY]


def rows_by_id(
    conn: Connection,
    table: Table,
    ids: Iterable[str],
    *where: Any,
    columns: Sequence[Any] = (),
    lock: bool = False,
) -> list[Row[Any]]:
    """The rows of `table` whose id is among `ids` (and that match `where`), any order.

    Every column, or only `columns` when given. `lock` keeps them locked until the
    transaction ends where the database has other writers (PostgreSQL; chunks are read in
    id order, so two transactions lock shared rows in the same order).
    """
    query = select(*columns) if columns else select(table)
    if lock:
        query = query.with_for_update()
    rows: list[Row[Any]] = []
    for chunk in chunks(sorted(set(ids))):
        rows.extend(conn.execute(query.where(table.c.id.in_(chunk), *where)))
    return rows


def page(
    conn: Connection, table: Table, where: Any, order: Sequence[Any], limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """The rows of one page and the number of rows matching `where` on every page."""
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    rows = conn.execute(
        select(table).where(where).order_by(*order).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)
