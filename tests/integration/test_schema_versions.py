"""Schema versions as Alembic revisions: every step has its revision, an older database of
either backend is upgraded at open, a newer one refused; `agentcron db current|upgrade`."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from storage.postgres_store import PostgresStore
from storage.schema_steps import MIGRATIONS, SCHEMA_VERSION
from storage.schema_versions import head_version, revision_of
from storage.sqlite_store import SqliteStore
from tests.integration.test_store import NOW, recurring
from tests.postgres_cluster import cluster

FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "agentcron-v1.db"
ROOT = Path(__file__).resolve().parents[2]


def test_every_migration_step_is_one_revision_and_the_head_is_the_schema_version() -> None:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "storage" / "migrations"))
    scripts = ScriptDirectory.from_config(config)
    chain = {script.revision: script.down_revision for script in scripts.walk_revisions()}
    assert head_version() == SCHEMA_VERSION
    assert chain[revision_of(1)] is None
    for old in MIGRATIONS:
        assert chain[revision_of(old + 1)] == revision_of(old), f"no revision runs step {old}"
    assert len(chain) == len(MIGRATIONS) + 1


async def test_the_first_releases_file_is_upgraded_through_alembic(tmp_path: Path) -> None:
    path = tmp_path / "agentcron.db"
    shutil.copyfile(FIXTURE_V1, path)
    store = await SqliteStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert revision == (revision_of(SCHEMA_VERSION),)
    assert "dispatched_at" in columns


def first_release_schema() -> list[str]:
    """The first release's DDL, as its SQLite file holds it (portable SQL)."""
    with sqlite3.connect(FIXTURE_V1) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
        return [sql for (sql,) in rows]


def columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


async def test_every_step_upgrades_a_postgresql_database_to_what_a_new_one_has() -> None:
    url = cluster().new_database()
    with psycopg.connect(url) as conn:  # a database at schema 1, the first release's tables
        for statement in first_release_schema():
            conn.execute(statement)
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0001')")
    members = await asyncio.gather(*(PostgresStore.connect(url) for _ in range(3)))
    for store in members:  # one upgraded (under the lock), the others found it done
        await store.close()

    fresh = cluster().new_database()
    await (await PostgresStore.connect(fresh)).close()
    with psycopg.connect(url) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == (revision_of(SCHEMA_VERSION),)
    upgraded, new = columns(url), columns(fresh)
    for table, names in upgraded.items():
        assert names == new[table] - {"rowid"}, table  # rowid: PostgreSQL's creation order

    store = await PostgresStore.connect(url)  # and it works: the history numbers its entries
    try:
        made = await store.create_schedule(recurring(), now=NOW)
        await store.update_schedule(made.id, {"name": "renamed"}, now=NOW)
        history = await store.schedule_history(made.id, limit=10, offset=0)
        assert len(history.items) == 2
    finally:
        await store.close()


def db_cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "db", command, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_current_then_upgrade(tmp_path: Path, backend: str) -> None:
    config = tmp_path / "agentcron.toml"
    if backend == "sqlite":
        shutil.copyfile(FIXTURE_V1, tmp_path / "agentcron.db")
        config.write_text('[storage]\npath = "agentcron.db"\n')
        older = 1
    else:
        config.write_text(f'[storage]\nurl = "{cluster().new_database()}"\n')
        older = 0

    before = db_cli("current", config)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith(f"schema {older} (revision {revision_of(older)})")
    upgraded = db_cli("upgrade", config)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith(f"schema {older} -> {SCHEMA_VERSION}: ")
    after = db_cli("current", config)
    assert after.stdout.strip().endswith("up to date")
    assert "already up to date" in db_cli("upgrade", config).stdout


def test_db_current_refuses_a_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "agentcron.db"
    shutil.copyfile(FIXTURE_V1, path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    config = tmp_path / "agentcron.toml"
    config.write_text('[storage]\npath = "agentcron.db"\n')
    current = db_cli("current", config)
    assert current.returncode == 1 and "newer than this agentcron" in current.stdout
    upgrade = db_cli("upgrade", config)
    assert upgrade.returncode == 1 and "newer than this agentcron" in upgrade.stderr
