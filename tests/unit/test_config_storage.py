"""`[storage]`: a SQLite path or a PostgreSQL URL, exactly one; `[fleet]` timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import ConfigError, load_config
from daemon.reload import keep_restart_keys, logged_value
from tests.unit.test_config import load_error, write_config

URL = "postgresql://agentcron@db.internal/agentcron"


def test_a_url_selects_postgresql(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, f'[storage]\nurl = "{URL}"\n'))
    assert config.storage.is_postgres and config.storage.url == URL


def test_no_storage_section_is_the_default_sqlite_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ""))
    assert not config.storage.is_postgres
    assert config.storage.path == tmp_path / "agentcron.db"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f'path = "a.db"\nurl = "{URL}"', "not both"),
        ("", "set path (a SQLite file) or url"),
    ],
)
def test_path_and_url_are_exclusive_and_one_is_needed(
    tmp_path: Path, body: str, message: str
) -> None:
    error = load_error(tmp_path, f"[storage]\n{body}\n")
    (problem,) = error.problems
    assert problem.key.startswith("storage") and message in problem.message


def test_a_url_of_another_database_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[storage]\nurl = "mysql://db/agentcron"\n')
    (problem,) = error.problems
    assert problem.key == "storage.url" and "postgresql://" in problem.message


def test_fleet_timing_reads_durations(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, '[fleet]\nheartbeat = "1s"\nlease = "4s"\n'))
    assert (config.fleet.heartbeat, config.fleet.lease) == (1.0, 4.0)
    defaults = load_config(write_config(tmp_path, "")).fleet
    assert (defaults.heartbeat, defaults.lease) == (2.0, 10.0)


def test_a_lease_not_longer_than_the_heartbeat_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lease must be longer than heartbeat"):
        load_config(write_config(tmp_path, '[fleet]\nheartbeat = "5s"\nlease = "5s"\n'))


def test_backup_refuses_a_postgresql_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f'[storage]\nurl = "{URL}"\n')
    assert main(["backup", str(tmp_path / "copy.db"), "--config", str(config)]) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "copy.db").exists()


def test_the_database_and_the_fleet_timing_need_a_restart(tmp_path: Path) -> None:
    running = load_config(write_config(tmp_path, f'[storage]\nurl = "{URL}"\n'))
    changed = '[storage]\nurl = "postgresql://u:secret@elsewhere/db"\n[fleet]\nlease = "30s"\n'
    loaded = load_config(write_config(tmp_path, changed))
    kept, refused = keep_restart_keys(running, loaded)
    assert refused == ["storage.url", "fleet.lease"]
    assert (kept.storage.url, kept.fleet.lease) == (URL, 10.0)
    assert "secret" not in logged_value(loaded, "storage.url")
