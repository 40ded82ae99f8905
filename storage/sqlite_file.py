"""The SQLite file itself, before and beside the store: is it an agentcron database this
release can use, at which schema version, and with which permissions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

from storage.errors import SchemaError
from storage.schema_steps import SCHEMA_VERSION

TABLES = "SELECT name FROM sqlite_master WHERE type='table'"
_COMPANIONS = ("-wal", "-shm")


def check_file(path: Path) -> None:
    """Refuse a file that exists but is not an agentcron database this version can use.

    Runs before anything opens the file for writing: even switching it to WAL would
    change a foreign database's header. The file is read as immutable, which creates no
    -wal or -shm file; what a -wal file may add is checked again when the writer opens it.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        raise SchemaError(f"{path} is not a SQLite database (refusing to overwrite it)")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        ) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = {row[0] for row in conn.execute(TABLES)}
    except sqlite3.Error as exc:
        raise SchemaError(f"cannot open {path}: {exc} (refusing to use it)") from exc
    check_version(version, names)


def file_version(path: Path) -> int:
    """The schema version of the database file at `path`, read without writing anything
    (0: no file, or an empty one). Raises SchemaError for a file SQLite cannot read.

    Read-only, but not immutable: a daemon serving the file may hold the latest version in
    its write-ahead log."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise SchemaError(f"cannot read {path}: {exc}") from exc


def create_private(path: Path) -> None:
    """Create a missing database file readable and writable by its owner alone (0600).

    The file holds prompts and token hashes. SQLite would create it with the process's
    umask (often 0644); made first, it is the mode SQLite copies to the -wal and -shm files
    it creates next to it. An existing file keeps the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite's own open then reports why the file cannot be made
    os.close(fd)


def align_companions(path: Path) -> None:
    """Give existing -wal and -shm files the database file's permission bits.

    SQLite does so for those it creates; one left by a crash of an earlier run, when the
    database may have been more open, keeps its mode otherwise.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    for suffix in _COMPANIONS:
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to change
            if stat.S_IMODE(companion.stat().st_mode) != mode:
                companion.chmod(mode)


def check_version(version: int, table_names: set[str]) -> None:
    """SchemaError unless the schema version is one this agentcron can open or upgrade."""
    if version == 0 and table_names:
        raise SchemaError(
            "the database has tables but no agentcron schema version; refusing to use it"
        )
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, newer than this agentcron "
            f"understands ({SCHEMA_VERSION}); upgrade agentcron or use another file"
        )
