"""The identity tables (orgs, users, service users), written whole from a `Directory`."""

from __future__ import annotations

from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection

from storage import dialects
from storage.identities import Directory
from storage.tables import ORGS, SERVICE_USERS, USERS


def replace(conn: Connection, directory: Directory) -> None:
    """Delete every org, user and service user, then insert those of `directory`."""
    dialects.serialize(conn, "identities")  # members starting together replace in turn
    for table in (ORGS, USERS, SERVICE_USERS):
        conn.execute(delete(table))
    for org in directory.orgs.values():
        conn.execute(insert(ORGS).values(id=org.id, name=org.name))
    for user in directory.users.values():
        conn.execute(
            insert(USERS).values(
                id=user.id, orgs=sorted(user.orgs), permissions=sorted(user.permissions)
            )
        )
    for su in directory.service_users_by_hash.values():
        conn.execute(
            insert(SERVICE_USERS).values(
                id=su.id,
                org_id=su.org_id,
                permissions=sorted(su.permissions),
                token_hash=su.token_hash,
            )
        )
