"""A consistent copy of a live database, made with SQLite's online backup API.

The copy is taken in one step inside a read transaction of the source: it is the database as
of one commit, even while the daemon keeps writing (in WAL mode a reader never blocks the
writer, nor the writer a reader). The source is opened read-only, so nothing in it changes.
The copy is a new file, readable by its owner only: it holds every schedule and prompt.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Final

BUSY_TIMEOUT_S: Final = 30.0
"""How long to wait for a lock (only a WAL recovery by another connection holds one)."""


class BackupError(Exception):
    """The backup was not made; the message says why, and no partial copy is left."""


def backup_database(source: Path, target: Path) -> None:
    """Copy the SQLite database `source` to the new file `target`, created mode 0600.

    Raises BackupError when `source` is not a file, `target` already exists (it is never
    overwritten) or cannot be created, or the copy fails (the partial file is removed).
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    _create_private(target)
    try:
        _copy(source, target)
    except (sqlite3.Error, OSError) as error:
        target.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {source}: {error}") from None


def _create_private(target: Path) -> None:
    """Create `target` empty and 0600, atomically refusing one that exists (even a link)."""
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise BackupError(f"{target} already exists; choose a new file name") from None
    except OSError as error:
        raise BackupError(f"cannot create {target}: {error.strerror}") from None


def _copy(source: Path, target: Path) -> None:
    uri = f"{source.resolve().as_uri()}?mode=ro"
    with (
        contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as reader,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        reader.backup(copy)  # all pages in one step: one consistent snapshot
