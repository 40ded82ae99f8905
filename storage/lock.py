"""One daemon per SQLite file: an exclusive lock held for the life of the process.

Two daemons on one database would each fire every schedule, and the second one's start-up
would mark the first one's launches in flight `interrupted`. `lock_database` takes an OS
file lock (`flock`, exclusive, non-blocking) on a sidecar file next to the database,
`<database>.lock`, before anything opens the database, and writes the holder's pid into
it so that a second daemon can say who holds it. The kernel releases the lock when the
descriptor is closed, and so when the process ends, however it ends (even `kill -9`):
a stale lock file is harmless, since only a held lock refuses.

The lock is on a sidecar file rather than on the database itself: it must be taken before
the database exists (creating the database would already be a write), and it stays apart
from the locks SQLite itself takes on the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from storage.errors import StoreError

_PID_WAIT = 1.0
"""Seconds to wait for a holder that has just taken the lock to write its pid."""


class DatabaseLocked(StoreError):
    """Another process holds the database's lock; the message names its pid."""


class LockFileError(StoreError):
    """The lock file cannot be created or opened (missing directory, no permission)."""


def lock_path(database: Path) -> Path:
    """The lock file of `database`: `<database>.lock`, next to the real file (links resolved,
    so two paths to one database share one lock)."""
    resolved = database.resolve()
    return resolved.with_name(resolved.name + ".lock")


@contextlib.contextmanager
def lock_database(database: Path) -> Iterator[Path]:
    """Hold the exclusive lock of `database` for the body of the `with`; yields the lock file.

    Raises DatabaseLocked, naming the holder's pid, if another process holds it, and
    LockFileError if the lock file cannot be opened. Nothing is written unless the lock
    was taken. The descriptor is close-on-exec, so commands the daemon starts never
    inherit (and outlive it holding) the lock.
    """
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LockFileError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    try:
        _take(fd, database)
        _write_pid(fd)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _take(fd: int, database: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        raise DatabaseLocked(
            f"{database} is in use by another agentcron (pid {holder}); "
            "only one daemon may serve a database"
        ) from None


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(fd: int) -> str:
    """The pid the holder wrote, waiting briefly for one that has only just taken the lock."""
    deadline = time.monotonic() + _PID_WAIT
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() or time.monotonic() >= deadline:
            return text if text.isdigit() else "unknown"
        time.sleep(0.05)
