"""The composition root: store -> engine -> HTTP, brought up in order and torn down in reverse.

`Daemon.run()` is the whole life of `agentcron serve`: it takes the database's lock (one
daemon per database file), raises its file-descriptor limit, opens the store, recovers runs
a crash left behind, starts the engine and the HTTP server, tells systemd it is ready, then
waits for a signal. SIGTERM/SIGINT stop it gracefully; SIGHUP reloads the configuration.
If any background task dies the daemon logs it and exits non-zero, so systemd restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import structlog

from api.app import create_app
from api.http_server import start_http_server
from api.keys import ApiSettings
from daemon.config import Config, StorageConfig
from daemon.engine import Engine
from daemon.fdlimit import raise_fd_limit
from daemon.fleet import LocalFleet, PostgresFleet
from daemon.identity import build_directory
from daemon.launcher_routes import build_routes
from daemon.notify import Notifier
from daemon.org_limits import limits_of
from daemon.preflight import log_config_warnings
from daemon.reload import Reloader
from daemon.sdnotify import SystemdNotifier, run_watchdog
from storage.clock import Clock, SystemClock
from storage.identities import DirectoryRef
from storage.lock import lock_database
from storage.schema_steps import SCHEMA_VERSION
from storage.sqlite_file import file_version
from storage.sqlite_store import SqliteStore
from storage.store import Store

if TYPE_CHECKING:  # psycopg and the PostgreSQL store load only when a fleet is configured
    from storage.postgres_store import PostgresStore

log = structlog.get_logger("agentcron.daemon")


class StartupError(Exception):
    """The daemon cannot start; the message says why, and nothing is left running."""


class RunState(StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"


def api_settings(config: Config) -> ApiSettings:
    return ApiSettings(
        max_body_bytes=config.server.max_body_bytes,
        agentscope_enabled=config.agentscope.enabled,
        agentscope_org=config.agentscope.org,
        agentscope_require_token=config.agentscope.require_token,
        ui_enabled=config.ui.enabled,
        ui_session_idle=config.ui.session_idle,
    )


class Daemon:
    """One run of the daemon on one configuration file."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.state = RunState.STARTING
        self.systemd = SystemdNotifier.from_environ()
        self._stop = asyncio.Event()
        self._critical: set[asyncio.Task[object]] = set()

    @property
    def launchers(self) -> tuple[str, ...]:
        """The launchers in force (a reload may change them), for the dashboard: the
        default's type alone when it is the only one, else `name (type)` each."""
        named = self.config.named_launchers
        if len(named) == 1:
            return (self.config.launcher.type,)
        return tuple(f"{name} ({launcher.type})" for name, launcher in named.items())

    async def run(self) -> int:
        """Serve until stopped; return the process exit code."""
        async with AsyncExitStack() as stack:
            await self._start(stack)
            code = await self._serve()
            self.state = RunState.STOPPING
            self.systemd.stopping()
            self.engine.stop_claiming()
            log.info("daemon_stopping", grace_s=self.config.scheduler.shutdown_grace)
        log.info("daemon_stopped", exit_code=code)
        return code

    async def _start(self, stack: AsyncExitStack) -> None:
        config = self.config
        if not config.storage.is_postgres:
            # First of all: a second daemon on this file stops here, having written nothing.
            stack.enter_context(lock_database(config.storage.path))
        fd_limit = raise_fd_limit(config.server.max_connections)
        log_config_warnings(config)
        store = await open_store(config.storage)
        stack.push_async_callback(store.close)
        fleet = await join_fleet(store, config)
        directory = DirectoryRef(build_directory(config))
        await store.replace_identities(directory.current)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        notifier = Notifier(config.notify, http=http)
        await notifier.start()
        stack.push_async_callback(notifier.stop)
        self._watch(notifier.worker)
        engine = Engine(
            store,
            directory=directory,
            clock=self.clock,
            settings=config.scheduler,
            launcher=build_routes(config, http=http),
            on_finished=notifier.run_finished,
            org_limits=limits_of(config.orgs),
            owns=fleet.owns,
            recovery_age=recovery_age(config),
        )
        fleet.attach(engine)
        self.engine = engine
        self.fleet = fleet
        self.reloader = Reloader(
            self,
            store=store,
            engine=engine,
            notifier=notifier,
            directory=directory,
            http=http,
            one_at_a_time=bootstrap_turns(store, config.storage),
        )
        await self.reloader.bootstrap(config)
        await engine.start()
        stack.push_async_callback(engine.stop, config.scheduler.shutdown_grace)
        await fleet.start()
        stack.push_async_callback(fleet.stop)  # leaves first: the others take over sooner
        await self._start_http(stack, store, engine, directory)
        self._watch(store.db.writer_task, *engine.background_tasks(), *fleet.background_tasks())
        if self.systemd.watchdog_interval is not None:
            self._watch(asyncio.create_task(run_watchdog(self.systemd, engine.healthy)))
        self.state = RunState.SERVING
        self.systemd.ready()
        log.info(
            "daemon_ready",
            listen=config.server.listen,
            storage=storage_name(config),
            fd_limit=fd_limit.soft,
        )

    async def _start_http(
        self, stack: AsyncExitStack, store: Store, engine: Engine, directory: DirectoryRef
    ) -> None:
        app = create_app(
            store=store,
            events=engine,
            directory=directory,
            clock=self.clock,
            lifecycle=self,
            settings=api_settings(self.config),
            facts=self,
            # A lone daemon's /readyz stays as it was: the fleet is named where there is one.
            fleet=self.fleet if isinstance(self.fleet, PostgresFleet) else None,
        )
        server = self.config.server
        try:
            runner = await start_http_server(
                app,
                server.host,
                server.port,
                request_timeout=server.request_timeout,
                max_connections=server.max_connections,
            )
        except OSError as exc:
            raise StartupError(f"cannot listen on {server.listen}: {exc.strerror or exc}") from exc
        stack.push_async_callback(runner.cleanup)

    def _watch(self, *tasks: asyncio.Task[object] | None) -> None:
        self._critical.update(task for task in tasks if task is not None)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)

    def _reload_soon(self) -> None:
        self._watch(asyncio.create_task(self.reloader.reload(), name="reload"))

    async def _serve(self) -> int:
        self._install_signals()
        stop = asyncio.create_task(self._stop.wait(), name="stop-signal")
        try:
            while True:
                done, _ = await asyncio.wait(
                    {stop, *self._critical}, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    return 0
                if self._background_task_died(done):
                    return 1
        finally:
            stop.cancel()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _background_task_died(self, done: set[asyncio.Task[object]]) -> bool:
        died = False
        for task in done:
            self._critical.discard(task)
            if task.get_name() == "reload" and not task.cancelled() and task.exception() is None:
                continue
            error = None if task.cancelled() else task.exception()
            log.error("background_task_died", task=task.get_name(), error=repr(error))
            died = True
        return died


async def open_store(storage: StorageConfig) -> SqliteStore:
    """The store `[storage]` names: a PostgreSQL database or a SQLite file (created or
    upgraded as it opens)."""
    if storage.url is not None:
        from storage.postgres_store import PostgresStore  # psycopg: only for a fleet

        return await PostgresStore.connect(storage.url)
    return await SqliteStore.open(storage.path)


def schema_versions(storage: StorageConfig) -> tuple[int, int]:
    """The schema version of the database `[storage]` names (0: none yet), read without
    writing, and the one this agentcron uses. Raises StoreError."""
    if storage.url is not None:
        from storage.postgres_db import server_version

        return server_version(storage.url), SCHEMA_VERSION
    return file_version(storage.path), SCHEMA_VERSION


def fleet_store(store: SqliteStore, storage: StorageConfig) -> PostgresStore | None:
    """`store` as the PostgreSQL store a fleet shares, or None on a SQLite file. Asks the
    configuration, so that serving on SQLite never imports the PostgreSQL modules."""
    if not storage.is_postgres:
        return None
    from storage.postgres_store import PostgresStore  # imported by `open_store` already

    assert isinstance(store, PostgresStore)
    return store


async def join_fleet(store: SqliteStore, config: Config) -> LocalFleet | PostgresFleet:
    """The fleet this daemon is a member of: of one on SQLite; on PostgreSQL, joined now."""
    shared = fleet_store(store, config.storage)
    if shared is None:
        return LocalFleet()
    fleet = PostgresFleet(shared, config.fleet)
    await fleet.join()
    return fleet


def bootstrap_turns(
    store: SqliteStore, storage: StorageConfig
) -> Callable[[], AbstractAsyncContextManager[object]]:
    """How the members of a fleet take turns applying the configuration's schedules (a lone
    daemon needs none)."""
    shared = fleet_store(store, storage)
    if shared is None:
        return contextlib.nullcontext
    return functools.partial(shared.one_at_a_time, "bootstrap")


def recovery_age(config: Config) -> float | None:
    """How old a run left `launching` must be before a fleet member recovers it: older than
    any launch of a live member can take (None: a lone daemon recovers all at start)."""
    if not config.storage.is_postgres:
        return None
    return config.launcher.timeout + config.fleet.lease


def storage_name(config: Config) -> str:
    """The store for logs: the file, or the URL without its password."""
    if config.storage.url is not None:
        from storage.postgres_db import display_url

        return display_url(config.storage.url)
    return str(config.storage.path)


def serve(config_path: Path) -> int:
    """Run the daemon on `config_path` until it stops; return the exit code."""
    from daemon.config import load_config
    from daemon.logs import configure_logging

    config = load_config(config_path)
    configure_logging(config.logging.level, config.logging.format)
    # What is loaded by now (modules, models, tables) lives as long as the process: keep it
    # out of the collector's full passes, which would otherwise scan it all again and stop
    # the loop for a tenth of a second or more in the middle of a burst of fires.
    gc.freeze()
    # Collect the young generation every 10,000 net allocations instead of 700: a burst of
    # thousands of fires allocates millions of objects, and each full collection it would
    # trigger walks every launch in flight (0.1 s or more with ten thousand of them).
    gc.set_threshold(10_000, 10, 10)
    return asyncio.run(Daemon(config).run())
