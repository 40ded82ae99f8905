"""`agentcron --version`, `check-config` warnings and `backup`, run as an operator would."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import (
    DaemonProcess,
    base_config,
    free_port,
    run_cli,
    wait_until,
    write_config,
)

StartDaemon = Callable[..., DaemonProcess]
UNSET = "AGENTCRON_E2E_UNSET_TOKEN"
"""A secret name that is set nowhere: neither in the environment nor as a credential."""
NO_SECRETS = {UNSET: "", "CREDENTIALS_DIRECTORY": ""}


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")

    assert result.returncode == 0
    assert result.stdout == f"agentcron {importlib.metadata.version('agentcron')}\n"


def test_check_config_prints_each_warning_and_still_exits_0(tmp_path: Path) -> None:
    settings = base_config(free_port())  # check-config never binds the address
    settings["server"]["listen"] = "0.0.0.0:8787"
    settings["agentscope"] = {"enabled": True, "org": "org-local"}
    settings["launcher"] = {"type": "http", "url": "http://127.0.0.1:9/s", "token_env": UNSET}
    config = write_config(tmp_path / "config.toml", settings)

    result = run_cli("check-config", "--config", str(config), env=NO_SECRETS)

    assert result.returncode == 0
    assert result.stdout.startswith(f"{config}: ok")
    warnings = result.stderr.splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in warnings] == [
        "[agentscope_unauthenticated]",
        "[launcher_token_missing]",
    ]
    assert all(line.startswith(f"{config}: warning: ") for line in warnings)
    assert "0.0.0.0:8787" in warnings[0] and UNSET in warnings[1]


def test_a_config_without_risks_checks_without_warnings(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))

    result = run_cli("check-config", "--config", str(config))

    assert (result.returncode, result.stderr) == (0, "")


class Writer(threading.Thread):
    """Creates schedules through the API, one after another, until stopped."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon=True)
        self.daemon_process = daemon
        self.created: list[str] = []
        self.failures: list[object] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            name = f"written-{len(self.created)}"
            body = {"name": name, "prompt": "p", "frequency": "@yearly"}
            status, answer = self.daemon_process.call(
                "POST", self.daemon_process.devin("/schedules"), body=body
            )
            if status == 200:
                self.created.append(name)
            else:
                self.failures.append(answer)


def schedule_names(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {name for (name,) in db.execute("SELECT name FROM schedules")}


def test_backup_copies_the_live_database_while_the_daemon_writes(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    settings = base_config(free_port())
    # A secret only the daemon has: backup reads nothing of the file but [storage].
    settings["service_users"].append(
        {"id": "svc-env", "org": "org-local", "permissions": [], "token_env": UNSET}
    )
    config = write_config(tmp_path / "config.toml", settings)
    daemon = start_daemon(config, {UNSET: "cog_only_the_daemon_knows"})
    writer = Writer(daemon)
    writer.start()
    try:
        wait_until(lambda: len(writer.created) >= 20, "20 schedules written")
        copy = tmp_path / "backup" / "copy.db"
        copy.parent.mkdir()
        result = run_cli("backup", str(copy), "--config", str(config), env=NO_SECRETS)
        written_by_then = len(writer.created)
        wait_until(lambda: len(writer.created) > written_by_then + 5, "writes after the backup")
    finally:
        writer.halt.set()
        writer.join(10)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"backed up {tmp_path / 'agentcron.db'} to {copy}"
    assert writer.failures == []
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    copied = schedule_names(copy)
    first = {f"written-{n}" for n in range(20)}
    assert first <= copied <= set(writer.created)
    assert len(copied) <= written_by_then + 1  # one answer may have been on its way


def test_backup_never_overwrites_a_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))
    sqlite3.connect(tmp_path / "agentcron.db").close()
    existing = tmp_path / "precious.db"
    existing.write_bytes(b"not to be lost")

    result = run_cli("backup", str(existing), "--config", str(config))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"agentcron: {existing} already exists; choose a new file name"
    ]
    assert existing.read_bytes() == b"not to be lost"


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", base_config(free_port()))

    result = run_cli("backup", str(tmp_path / "copy.db"), "--config", str(config))

    assert result.returncode == 1
    assert result.stderr.strip() == f"agentcron: no database at {tmp_path / 'agentcron.db'}"
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "agentcron.db").exists()
