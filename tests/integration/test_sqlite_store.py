"""What the SQLite store adds to the `Store` contract: its file, its schema, its durability."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.db import SchemaError, integrity_check
from storage.enums import PromptFormat
from storage.schema_steps import SCHEMA_VERSION
from storage.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


async def test_a_newer_schema_version_is_refused(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    await store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer"):
        await SqliteStore.open(db_path)


async def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, and precious")
    with pytest.raises(SchemaError, match="not a SQLite database"):
        await SqliteStore.open(path)
    assert path.read_text() == "not a database, and precious"


async def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(SchemaError, match="no agentcron schema version"):
        await SqliteStore.open(path)


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from storage.domain import Schedule
    from storage.enums import ScheduleType
    from storage.sqlite_store import SqliteStore

    async def main():
        store = await SqliteStore.open(Path(sys.argv[1]))
        now = datetime.now(UTC)
        i = 0
        while True:
            s = Schedule(org_id="org-local", name=f"s{i}", prompt="p", created_at=now,
                         updated_at=now, schedule_type=ScheduleType.ONE_TIME,
                         scheduled_at=now + timedelta(days=1))
            await store.create_schedule(s, now=now)
            print(s.id, flush=True)   # acknowledged only after the commit returned
            i += 1

    asyncio.run(main())
    """
)


async def test_committed_rows_survive_kill_9(db_path: Path) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, str(db_path), stdout=subprocess.PIPE, cwd=ROOT
    )
    assert writer.stdout is not None
    acknowledged = []
    async with asyncio.timeout(30):
        while len(acknowledged) < 200:
            acknowledged.append((await writer.stdout.readline()).decode().strip())
    writer.send_signal(signal.SIGKILL)
    await writer.wait()
    store = await SqliteStore.open(db_path)
    try:
        for schedule_id in acknowledged:
            await store.get_schedule(schedule_id)
        assert await integrity_check(store.db) == "ok"
    finally:
        await store.close()


async def test_a_database_made_by_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """`fixtures/agentcron-v1.db` was written by release 0.1.0 (schema version 1): one
    schedule and one run left `launching`."""
    path = tmp_path / "agentcron.db"
    shutil.copyfile(Path(__file__).parent.parent / "fixtures" / "agentcron-v1.db", path)
    store = await SqliteStore.open(path)
    try:
        (run,) = await store.launching_runs()
        assert run.dispatched_at == run.started_at  # it may have been sent: never relaunched
        assert run.session_status is None  # not followed: no status was ever read
        assert await store.unfinished_runs() == [run]
        schedule = await store.get_schedule(run.schedule_id)
        assert (schedule.name, schedule.tags) == ("made by 0.1.0", ["triage"])
        assert schedule.prompt_format == PromptFormat.TEXT  # its prompt is sent as written
        assert (await store.schedule_history(schedule.id, limit=5, offset=0)).total == 0
        await store.update_schedule(schedule.id, {"name": "kept"}, now=schedule.updated_at)
        (entry,) = (await store.schedule_history(schedule.id, limit=5, offset=0)).items
        assert entry.changes == {"name": ["made by 0.1.0", "kept"]}
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    fresh = await _new_database(tmp_path)
    assert _schema(path, "schedule_history") == _schema(fresh, "schedule_history")
    assert indexes(path) == indexes(fresh)  # the upgrade leaves the schema a new file has


def _schema(path: Path, table: str) -> list[tuple[object, ...]]:
    """(name, type, not null, default, primary key) of each column, and the indexes."""
    with sqlite3.connect(path) as conn:
        columns = [tuple(row[1:]) for row in conn.execute(f"PRAGMA table_info({table})")]
        indexes = sorted(row[1] for row in conn.execute(f"PRAGMA index_list({table})"))
    return [*columns, tuple(indexes)]


async def _new_database(tmp_path: Path) -> Path:
    path = tmp_path / "new.db"
    await (await SqliteStore.open(path)).close()
    return path


def indexes(path: Path) -> dict[str, tuple[object, ...]]:
    """Every index of the schedules and runs tables: (unique, partial, its columns)."""
    found: dict[str, tuple[object, ...]] = {}
    with sqlite3.connect(path) as conn:
        for table in ("schedules", "runs"):
            for _, name, unique, _, partial in conn.execute(f"PRAGMA index_list({table})"):
                columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
                found[name] = (unique, partial, columns)
    return found
