"""`agentcron db current|upgrade`: the database's schema version, and upgrading it by hand.

`serve` upgrades an older database at start (one member at a time on PostgreSQL); these run
the same steps without starting a daemon, e.g. before a fleet's rolling restart. `current`
writes nothing. A SQLite file in use by a daemon is not upgraded under it: the daemon holds
the file's lock.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI's other commands start without the database's modules
    from daemon.config import StorageConfig


def add_db_commands(commands: Any) -> None:
    """Add `db current` and `db upgrade` to the CLI's subcommands."""
    db = commands.add_parser("db", help="the database's schema: its version, upgrades")
    sub = db.add_subparsers(dest="db_command", required=True)
    current = sub.add_parser("current", help="print the database's schema version")
    current.add_argument("--config", required=True, help="path of the TOML configuration")
    current.set_defaults(func=_current)
    upgrade = sub.add_parser("upgrade", help="upgrade the database to this agentcron's schema")
    upgrade.add_argument("--config", required=True, help="path of the TOML configuration")
    upgrade.set_defaults(func=_upgrade)


def _current(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_storage
    from daemon.service import schema_versions
    from storage.errors import StoreError
    from storage.schema_versions import revision_of

    try:
        version, ours = schema_versions(load_storage(Path(args.config)))
    except (ConfigError, StoreError) as exc:
        return _failed(exc)
    print(f"schema {version} (revision {revision_of(version)}): {_verdict(version, ours)}")
    return 1 if version > ours else 0


def _upgrade(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_storage
    from daemon.service import schema_versions
    from storage.errors import StoreError

    try:
        storage = load_storage(Path(args.config))
        before, ours = schema_versions(storage)
        asyncio.run(_open_and_close(storage))
    except (ConfigError, StoreError) as exc:
        return _failed(exc)
    if before == ours:
        print(f"schema {ours}: already up to date")
    else:
        print(f"schema {before} -> {ours}: {'created' if before == 0 else 'upgraded'}")
    return 0


async def _open_and_close(storage: StorageConfig) -> None:
    """Open the store, which creates or upgrades the schema, and close it."""
    from daemon.service import open_store
    from storage.lock import lock_database

    if storage.url is not None:
        await (await open_store(storage)).close()
        return
    with lock_database(storage.path):  # never under a serving daemon
        await (await open_store(storage)).close()


def _verdict(version: int, ours: int) -> str:
    if version == ours:
        return "up to date"
    if version == 0:
        return f"no schema yet (this agentcron creates schema {ours})"
    if version < ours:
        return f"older than this agentcron's {ours}: run `agentcron db upgrade`"
    return f"newer than this agentcron understands ({ours}): upgrade agentcron"


def _failed(exc: Exception) -> int:
    from daemon.config import ConfigError

    kind = "configuration error:\n" if isinstance(exc, ConfigError) else ""
    print(f"agentcron: {kind}{exc}", file=sys.stderr)
    return 1
