"""The database's files on disk: private modes, and the lock that keeps one daemon per file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.domain import Schedule
from storage.lock import DatabaseLocked, LockFileError, lock_database
from storage.sqlite_store import SqliteStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COMPANIONS = ("", "-wal", "-shm")


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask of a login shell (0022), as outside systemd, whatever this process has."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(database: Path) -> dict[str, int]:
    return {suffix: mode(database.with_name(database.name + suffix)) for suffix in COMPANIONS}


async def write_something(store: SqliteStore) -> None:
    schedule = Schedule(
        org_id="org-local", name="n", prompt="p", created_at=NOW, updated_at=NOW, cron="0 9 * * *"
    )
    await store.create_schedule(schedule, now=NOW)


@pytest.mark.usefixtures("usual_umask")
async def test_a_new_database_its_wal_and_its_shm_are_readable_by_the_owner_alone(
    tmp_path: Path,
) -> None:
    database = tmp_path / "agentcron.db"
    store = await SqliteStore.open(database)
    try:
        await write_something(store)
        seen = modes(database)
    finally:
        await store.close()
    assert seen == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def uncheckpointed_wal(database: Path) -> bytes:
    """The bytes of a -wal file holding a transaction not yet copied into `database`.

    (SQLite itself gives an empty -wal the database's mode when it opens it, so the stale
    file must hold something.)
    """
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA user_version = {version}")  # a write that changes nothing
        content = database.with_name(database.name + "-wal").read_bytes()
    assert content
    return content


@pytest.mark.usefixtures("usual_umask")
async def test_a_wal_left_more_open_than_its_database_is_given_the_database_mode(
    tmp_path: Path,
) -> None:
    database = tmp_path / "agentcron.db"
    await (await SqliteStore.open(database)).close()
    database.chmod(0o640)  # the owner's choice for an existing file is kept
    wal = database.with_name(database.name + "-wal")
    wal.write_bytes(uncheckpointed_wal(database))  # as a crash could leave it
    wal.chmod(0o644)
    store = await SqliteStore.open(database)
    try:
        seen = modes(database)
    finally:
        await store.close()
    assert seen == {"": 0o640, "-wal": 0o640, "-shm": 0o640}


def test_a_held_lock_refuses_another_holder_naming_the_pid_and_writes_nothing(
    tmp_path: Path,
) -> None:
    database = tmp_path / "agentcron.db"
    with lock_database(database) as lock:
        assert lock == tmp_path / "agentcron.db.lock"
        assert mode(lock) == 0o600
        held = lock.read_bytes()
        assert held == f"{os.getpid()}\n".encode()
        refused = pytest.raises(DatabaseLocked, match=rf"\(pid {os.getpid()}\)")
        with refused, lock_database(database):
            pass
        assert lock.read_bytes() == held
        assert not database.exists()
    with lock_database(database):  # released with its descriptor
        pass


def test_two_paths_to_one_database_share_its_lock(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with (
        lock_database(tmp_path / "data" / "agentcron.db"),
        pytest.raises(DatabaseLocked),
        lock_database(tmp_path / "link" / "agentcron.db"),
    ):
        pass


def test_a_lock_file_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no such directory" / "agentcron.db"
    with pytest.raises(LockFileError, match="cannot open the lock file"), lock_database(missing):
        pass
