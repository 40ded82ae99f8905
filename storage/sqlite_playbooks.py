"""The playbooks table: each `Store` playbook operation as a function of one SQLite connection.

They run on a database thread inside the transaction `storage.db` gives them; the contracts
are `storage.store.Store`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection

from storage import dialects
from storage.domain import Playbook
from storage.errors import NotFound
from storage.sqlite_rows import playbook, values_of
from storage.tables import PLAYBOOKS

_NOT_DELETED = PLAYBOOKS.c.deleted_at.is_(None)
_KEPT_ON_UPSERT = frozenset({"id", "created_at", "created_by"})


def create(conn: Connection, new: Playbook) -> Playbook:
    conn.execute(insert(PLAYBOOKS).values(values_of(new)))
    return new


def upsert(conn: Connection, given: Playbook) -> Playbook:
    """Insert or replace by id, keeping the stored creation; the playbook as stored."""
    values = values_of(given)
    statement = dialects.upsert_insert(conn)(PLAYBOOKS).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={k: statement.excluded[k] for k in values if k not in _KEPT_ON_UPSERT},
    )
    conn.execute(statement)
    return playbook(conn.execute(select(PLAYBOOKS).where(PLAYBOOKS.c.id == given.id)).one())


def live(conn: Connection, playbook_id: str, org_id: str | None, *, lock: bool = False) -> Playbook:
    query = select(PLAYBOOKS).where(PLAYBOOKS.c.id == playbook_id, _NOT_DELETED)
    if lock:
        query = query.with_for_update()
    if org_id is not None:
        query = query.where(PLAYBOOKS.c.org_id == org_id)
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"playbook '{playbook_id}' not found")
    return playbook(row)


def titles(conn: Connection, ids: list[str]) -> dict[str, str]:
    query = select(PLAYBOOKS.c.id, PLAYBOOKS.c.title).where(PLAYBOOKS.c.id.in_(ids), _NOT_DELETED)
    return {row.id: row.title for row in conn.execute(query)}


def page_after(
    conn: Connection, org_id: str, first: int, after: str | None
) -> tuple[list[Playbook], bool]:
    """`first` live playbooks of the org after the id `after`, and whether more follow."""
    where = and_(PLAYBOOKS.c.org_id == org_id, _NOT_DELETED)
    if after is not None:
        where = and_(where, PLAYBOOKS.c.id > after)
    query = select(PLAYBOOKS).where(where).order_by(PLAYBOOKS.c.id).limit(first + 1)
    rows = [playbook(r) for r in conn.execute(query)]
    return rows[:first], len(rows) > first


def count(conn: Connection, org_id: str) -> int:
    query = (
        select(func.count())
        .select_from(PLAYBOOKS)
        .where(PLAYBOOKS.c.org_id == org_id, _NOT_DELETED)
    )
    return int(conn.execute(query).scalar_one())


def edit(
    conn: Connection, playbook_id: str, changes: Mapping[str, Any], org_id: str | None
) -> Playbook:
    updated = dataclasses.replace(live(conn, playbook_id, org_id, lock=True), **changes)
    conn.execute(update(PLAYBOOKS).where(PLAYBOOKS.c.id == playbook_id).values(values_of(updated)))
    return updated
