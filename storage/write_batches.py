"""Applying a batch of write operations in the writer's transaction(s).

SQLite (`apply_batch`): one transaction for the whole batch, a savepoint per operation only
when one fails. A server database (`apply_each`): one transaction per operation, an
operation the server aborted to break a conflict with another process run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, NestedTransaction
from sqlalchemy.exc import DBAPIError, OperationalError

from storage.errors import StoreUnavailable


@dataclass(slots=True)
class WriteOp:
    """One queued write: its function, the caller's future, and what it came to."""

    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


def unavailable(exc: BaseException) -> StoreUnavailable:
    reason = getattr(exc, "orig", exc)
    return StoreUnavailable(f"the database cannot be written: {reason}")


def batch_of(batch: list[WriteOp]) -> Callable[[Connection], None]:
    return lambda conn: _apply_batch(conn, batch)


def each_of(batch: list[WriteOp]) -> Callable[[Connection], None]:
    return lambda conn: _apply_each(conn, batch)


RETRIES = 3
"""Attempts of one operation that a server database aborted to break a deadlock or a
serialization conflict with another process's transaction."""


def _apply_each(conn: Connection, batch: list[WriteOp]) -> None:
    """One transaction per operation, in order (for a server database, where a commit costs
    a round trip rather than an fsync of a shared file and other processes write too).

    An operation aborted by the server to resolve a conflict with another process (a
    deadlock, a serialization failure) runs again: operations are functions of the
    database alone.
    """
    for op in batch:
        for attempt in range(1, RETRIES + 1):
            try:
                with conn.begin():
                    op.result = op.fn(conn)
            except DBAPIError as exc:
                if _retryable(exc) and attempt < RETRIES:
                    continue
                op.error = unavailable(exc) if isinstance(exc, OperationalError) else exc
            except Exception as exc:
                op.error = exc
            break


def _retryable(exc: DBAPIError) -> bool:
    # SQLSTATE 40001 serialization_failure, 40P01 deadlock_detected
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


class _Replay(Exception):
    """An operation failed in a batch run without savepoints: run the batch again with them."""


def _apply_batch(conn: Connection, batch: list[WriteOp]) -> None:
    """One transaction for the whole batch (on the writer thread).

    Operations seldom fail, so the batch first runs without savepoints, two statements
    fewer per operation. If one raises, that attempt is rolled back whole and the batch runs
    again with a savepoint per operation, so that only the failing one is undone: the
    outcome is the same either way, and operations are functions of the database alone.
    """
    try:
        with conn.begin():
            for op in batch:
                try:
                    op.result = op.fn(conn)
                except Exception as exc:
                    raise _Replay from exc
        return
    except _Replay:
        pass
    _apply_with_savepoints(conn, batch)


def _apply_with_savepoints(conn: Connection, batch: list[WriteOp]) -> None:
    with conn.begin():
        for op in batch:
            savepoint = conn.begin_nested()
            try:
                op.result = op.fn(conn)
            except Exception as exc:
                _rollback_savepoint(savepoint, exc)
                op.error = unavailable(exc) if isinstance(exc, OperationalError) else exc
            else:
                savepoint.commit()


def _rollback_savepoint(savepoint: NestedTransaction, error: Exception) -> None:
    """Undo one operation; if SQLite already rolled the whole transaction back (it does on
    a full disk), the batch fails with the operation's error, not with the missing savepoint."""
    try:
        savepoint.rollback()
    except DBAPIError:
        raise error from None
