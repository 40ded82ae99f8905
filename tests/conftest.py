"""Shared fixtures: a real SQLite store in tmp_path, test identities, a real aiohttp server."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import ApiSettings
from storage.domain import Run, Schedule
from storage.enums import RunTrigger
from storage.identities import Directory, DirectoryRef, Org, ServiceUser, User, token_sha256
from storage.postgres_store import PostgresStore
from storage.sqlite_store import SqliteStore
from storage.store import Store
from tests.postgres_cluster import cluster as postgres_cluster
from tests.postgres_cluster import stop_cluster
from tests.session_service import SessionService

ORG = "org-local"
OTHER_ORG = "org-other"

ADMIN_TOKEN = "cog_admin_token"  # every permission in ORG
SCHEDULER_TOKEN = "cog_scheduler_token"  # ManageOrgSchedules only
PLAYBOOKS_TOKEN = "cog_playbooks_token"  # ManageOrgPlaybooks only
NOPERM_TOKEN = "cog_noperm_token"  # no permission at all
OTHER_TOKEN = "cog_other_token"  # every permission in OTHER_ORG

RUN_KEYS = frozenset(
    {
        "id",
        "schedule_id",
        "scheduled_for",
        "trigger",
        "status",
        "identity",
        "started_at",
        "finished_at",
        "session_id",
        "session_url",
        "attempts",
        "error",
        "session_status",
    }
)
"""The keys of a run's JSON (DESIGN sections 5 and 9), in every answer and notification."""

ALL = frozenset({"ManageOrgSchedules", "ImpersonateOrgSessions", "ManageOrgPlaybooks"})


def _service_user(user_id: str, org: str, token: str, permissions: frozenset[str]) -> ServiceUser:
    return ServiceUser(
        id=user_id, org_id=org, permissions=permissions, token_hash=token_sha256(token)
    )


def make_directory() -> Directory:
    """alice: member with UseDevinSessions; bob: member without it; carol: other org only."""
    return Directory.build(
        orgs=[Org(ORG, "Local"), Org(OTHER_ORG, "Other")],
        users=[
            User("user-alice", frozenset({ORG}), frozenset({"UseDevinSessions"})),
            User("user-bob", frozenset({ORG}), frozenset()),
            User("user-carol", frozenset({OTHER_ORG}), frozenset({"UseDevinSessions"})),
        ],
        service_users=[
            _service_user("service-admin", ORG, ADMIN_TOKEN, ALL),
            _service_user(
                "service-scheduler", ORG, SCHEDULER_TOKEN, frozenset({"ManageOrgSchedules"})
            ),
            _service_user(
                "service-playbooks", ORG, PLAYBOOKS_TOKEN, frozenset({"ManageOrgPlaybooks"})
            ),
            _service_user("service-noperm", ORG, NOPERM_TOKEN, frozenset()),
            _service_user("service-other", OTHER_ORG, OTHER_TOKEN, ALL),
        ],
    )


def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RecordingEvents:
    """Stands in for the engine where only the API is under test: records what it is told.

    `trigger` claims a real manual run in the store, as the engine does, without launching.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.changed_ids: list[str] = []
        self.triggered: list[str] = []

    async def changed(self, schedule: Schedule) -> None:
        self.changed_ids.append(schedule.id)

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        now = datetime.now(UTC)
        run = Run(
            schedule_id=schedule.id, scheduled_for=now, trigger=RunTrigger.MANUAL, started_at=now
        )
        self.triggered.append(schedule.id)
        (claimed,) = await self.store.claim_runs([run])
        return claimed

    async def backfill(
        self, schedule: Schedule, instants: Sequence[datetime], *, by: str
    ) -> list[Run]:
        now = datetime.now(UTC)
        runs = [
            Run(
                schedule_id=schedule.id,
                scheduled_for=at,
                trigger=RunTrigger.BACKFILL,
                started_at=now,
            )
            for at in instants
        ]
        return await self.store.claim_runs(runs)


class Serving:
    state = "serving"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agentcron.db"


async def _open_sqlite(workdir: Path) -> SqliteStore:
    return await SqliteStore.open(workdir / "agentcron.db")


async def _open_postgres(_workdir: Path) -> PostgresStore:
    return await PostgresStore.connect(postgres_cluster().new_database())


STORE_BACKENDS: dict[str, Callable[[Path], Awaitable[Any]]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
}
"""Every implementation of `storage.store.Store`, by name: how to open a fresh, empty one in
a directory (closed with `close()`). The store's behavioural suite (`integration/
test_store.py`) runs once against each; a backend joins it with one entry here."""


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    """The SQLite store at `db_path`: what the daemon runs, for the API and engine tests."""
    opened = await SqliteStore.open(db_path)
    yield opened
    await opened.close()


@pytest.fixture
async def service() -> AsyncIterator[SessionService]:
    """A loopback Devin-style session service recording every request."""
    started = await SessionService().start()
    yield started
    await started.close()


@pytest.fixture
async def second_service() -> AsyncIterator[SessionService]:
    """Another one, for a second launcher."""
    started = await SessionService().start()
    yield started
    await started.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session, as the daemon keeps one for its life."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def directory() -> DirectoryRef:
    return DirectoryRef(make_directory())


@dataclasses.dataclass
class ApiHarness:
    """A real aiohttp server on 127.0.0.1 over a real store; `url(path)` and `http` to call it."""

    server: TestServer
    http: aiohttp.ClientSession
    store: SqliteStore
    events: Any
    directory: DirectoryRef

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        """One request; returns (status, parsed JSON body or None)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers.update(auth(token))
        async with self.http.request(method, self.url(path), headers=headers, **kwargs) as response:
            body = await response.read()
            parsed = await response.json(content_type=None) if body else None
            return response.status, parsed


@pytest.fixture
async def api_factory(
    store: SqliteStore, directory: DirectoryRef
) -> AsyncIterator[Callable[..., Any]]:
    """`await api_factory(events=None, settings=None, clock=None)` starts a server; closed after."""
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(
        events: Any = None, settings: ApiSettings | None = None, clock: Any = None
    ) -> ApiHarness:
        events = events if events is not None else RecordingEvents(store)
        app = create_app(
            store=store,
            events=events,
            directory=directory,
            clock=clock if clock is not None else _Now(),
            lifecycle=Serving(),
            settings=settings or ApiSettings(agentscope_enabled=True),
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        started.append((server, http))
        return ApiHarness(server, http, store, events, directory)

    yield start
    for server, http in started:
        await http.close()
        await server.close()


class _Now:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> ApiHarness:
    """The API over the shared store, with RecordingEvents and the AgentScope façade enabled."""
    harness: ApiHarness = await api_factory()
    return harness


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_cluster()  # the PostgreSQL cluster, if a test started one


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="also run crash loops and soaks")
    parser.addoption(
        "--peers",
        action="store_true",
        help="also run the checks against real agent servers (see tests/peers/)",
    )


OPT_IN: Final = (("long", "--long"), ("peers", "--peers"))
"""Markers of checks that only run when asked for, and the option that asks."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long checks and peer checks are opt-in: without their option they are deselected,
    not skipped."""
    left_out = {marker for marker, option in OPT_IN if not config.getoption(option)}
    if not left_out:
        return

    def opted_out(item: pytest.Item) -> bool:
        return any(item.get_closest_marker(marker) is not None for marker in left_out)

    kept = [item for item in items if not opted_out(item)]
    deselected = [item for item in items if opted_out(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
