"""Reloading the configuration while the daemon runs (SIGHUP, `systemctl reload agentcron`).

A reload re-reads the file the daemon was started with. An invalid file changes nothing: the
daemon keeps serving on the configuration it has and logs `config_reload_failed` with the
file's own error (file, line, key). A valid file is applied in place, without dropping timers
or runs in flight:

1. identities: the directory is swapped in one assignment, so a token removed from the file
   is refused from the next request on, then the store's copy is replaced;
2. the launchers (new fires use them; launches in flight finish on the old ones), the
   scheduler settings, the org limits (the next fire is held to them; the counts are kept),
   the notifiers, the logging level and format;
3. bootstrap: the file's playbooks and schedules (see `daemon.bootstrap`).

Keys that only take effect at start-up (`RESTART_KEYS`: the listening address, the database
file, the HTTP layer's settings) keep their running values; each one that differs is logged
as `config_reload_refused` naming the key. systemd hears `RELOADING=1` before and `READY=1`
after, whatever the outcome. A file that removes a launcher which live schedules still name
(other than schedules the file itself defines, which follow it) is refused whole, as an
invalid file is, naming them (`config_reload_failed`). A reload never raises: the daemon
treats a reload task that failed as a dead background task and would exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Final, Protocol

import aiohttp
import structlog

from daemon.bootstrap import BootstrapResult, apply_bootstrap
from daemon.config import Config, ConfigError, load_config
from daemon.engine import Engine
from daemon.identity import build_directory
from daemon.launcher_routes import build_routes
from daemon.logs import configure_logging
from daemon.notify import Notifier
from daemon.org_limits import limits_of
from daemon.sdnotify import SystemdNotifier
from storage.clock import Clock
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.reload")

RESTART_KEYS: Final = (
    ("server", "listen"),
    ("server", "max_body_bytes"),
    ("server", "request_timeout"),
    ("server", "max_connections"),
    ("storage", "path"),
    ("storage", "url"),
    ("fleet", "heartbeat"),
    ("fleet", "lease"),
    ("agentscope", "enabled"),
    ("agentscope", "org"),
    ("agentscope", "require_token"),
    ("ui", "enabled"),
    ("ui", "session_idle"),
)
"""(section, key) pairs read once at start-up: changing them needs a restart."""


class RunningDaemon(Protocol):
    """The parts of the daemon a reload reads and replaces."""

    config: Config

    @property
    def systemd(self) -> SystemdNotifier: ...

    @property
    def clock(self) -> Clock: ...


def keep_restart_keys(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """`loaded` with the running value of every key in `RESTART_KEYS`, and the keys that differed.

    Pure: the result is the configuration the daemon actually runs with after the reload.
    """
    refused = []
    for section, key in RESTART_KEYS:
        running_value = getattr(getattr(running, section), key)
        if getattr(getattr(loaded, section), key) != running_value:
            refused.append(f"{section}.{key}")
            pinned = getattr(loaded, section).model_copy(update={key: running_value})
            loaded = loaded.model_copy(update={section: pinned})
    return loaded, refused


def logged_value(config: Config, dotted: str) -> str:
    """The value of a key for the log (a database URL without its password)."""
    section, key = dotted.split(".")
    value = getattr(getattr(config, section), key)
    if dotted == "storage.url" and value is not None:
        from storage.postgres_db import display_url  # psycopg: only for a fleet

        return display_url(value)
    return str(value)


class Reloader:
    """Applies the configuration file to a running daemon: at start-up and on each reload."""

    def __init__(
        self,
        daemon: RunningDaemon,
        *,
        store: Store,
        engine: Engine,
        notifier: Notifier,
        directory: DirectoryRef,
        http: aiohttp.ClientSession,
        one_at_a_time: Callable[[], AbstractAsyncContextManager[object]] = nullcontext,
    ) -> None:
        self.daemon = daemon
        # Members of a fleet apply the same file: one at a time, or two would both create
        # a schedule the file adds.
        self._one_at_a_time = one_at_a_time
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self.directory = directory
        self.http = http
        # Two SIGHUPs in a row reload one after the other, never interleaved.
        self._lock = asyncio.Lock()

    async def bootstrap(self, config: Config) -> BootstrapResult:
        """Apply the file's playbooks and schedules to the store; errors propagate."""
        async with self._one_at_a_time():
            now = self.daemon.clock.now()
            result = await apply_bootstrap(config, self.store, self.engine, now=now)
        log.info("config_bootstrapped", **result.counts())
        return result

    async def reload(self) -> None:
        """Re-read the configuration file and apply it; never raises (but cancellation)."""
        async with self._lock:
            self.daemon.systemd.reloading()
            path = str(self.daemon.config.source_path)
            log.info("config_reload_started", path=path)
            try:
                await self._reload()
            except Exception as error:
                log.exception("config_reload_failed", path=path, error=str(error) or repr(error))
            self.daemon.systemd.ready()

    async def _reload(self) -> None:
        running = self.daemon.config
        try:
            loaded = load_config(running.source_path)
        except ConfigError as error:
            problems = [str(problem) for problem in error.problems]
            path = str(running.source_path)
            log.error("config_reload_failed", path=path, error=str(error), problems=problems)
            return
        if stranded := await self._stranded_schedules(running, loaded):
            kept = f"{stranded}; the running configuration is kept"
            log.error("config_reload_failed", path=str(running.source_path), error=kept)
            return
        config, refused = keep_restart_keys(running, loaded)
        for key in refused:
            self._log_refused(key, running, loaded)
        await self._apply(config)
        log.info("config_reloaded", path=str(config.source_path), refused=refused)

    async def _stranded_schedules(self, running: Config, loaded: Config) -> str | None:
        """Why `loaded` cannot be applied: it removes launchers that live schedules name."""
        removed = set(running.named_launchers) - set(loaded.named_launchers)
        defined = {(entry.org, entry.name) for entry in loaded.schedules}
        users = [
            schedule
            for schedule in await self.store.schedules_on_launchers(removed)
            if not (schedule.from_config and (schedule.org_id, schedule.name) in defined)
        ]
        if not users:
            return None
        named = ", ".join(f"{s.name!r} ({s.id}, launcher {s.launcher!r})" for s in users[:20])
        more = f" and {len(users) - 20} more" if len(users) > 20 else ""
        return f"launchers still used by schedules cannot be removed: {named}{more}"

    @staticmethod
    def _log_refused(key: str, running: Config, loaded: Config) -> None:
        log.warning(
            "config_reload_refused",
            key=key,
            running=logged_value(running, key),
            configured=logged_value(loaded, key),
            reason=f"changing {key} needs a restart; the running value is kept until then",
        )

    async def _apply(self, config: Config) -> None:
        previous = self.daemon.config
        self.directory.current = build_directory(config)
        await self.store.replace_identities(self.directory.current)
        self.engine.set_launcher(build_routes(config, http=self.http))
        self.engine.update_settings(config.scheduler)
        self.engine.set_org_limits(limits_of(config.orgs))
        self.notifier.update(config.notify)
        if config.logging != previous.logging:
            configure_logging(config.logging.level, config.logging.format)
        self.daemon.config = config
        await self.bootstrap(config)
