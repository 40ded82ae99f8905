"""Storage faults: a full or unwritable database is a 503, never a crash or a half write.

Tests run as root here, and root ignores file modes, so `chmod 0444` proves nothing. The
faults are made real in other ways:

- A full database: `PRAGMA max_page_count` on the writer's connection, set to the file's
  current size. SQLite then answers SQLITE_FULL ("database or disk is full") to any write
  that needs a new page, exactly as on a full disk. Removing the limit is the disk freed.
- A full disk, for the real daemon: its database on a 2 MiB tmpfs that the test fills
  with a file, then empties (skipped where mounting is not allowed).
- A file that cannot be written, even by root: the immutable attribute (`chattr +i`) on
  the database and its WAL, which makes SQLite's writes fail with an I/O error (skipped
  where the file system or the capability is missing).

Each fault is injected while schedules, runs and the API are live; afterwards every
refused write left nothing behind, the writer and the engine are still running, and
writes succeed again once the fault is gone. Separately, a database that is foreign,
newer, damaged or not SQLite at all stops `agentcron serve` with a one-line message and
is left byte for byte as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from storage.db import integrity_check
from storage.identities import DirectoryRef
from storage.sqlite_store import SqliteStore
from tests.conftest import ORG, ApiHarness
from tests.deadline import eventually
from tests.e2e.conftest import DaemonProcess, base_config, free_port, run_cli, write_config
from tests.engine_harness import EngineHarness, now, schedule_of
from tests.session_service import Reply, SessionService

DEVIN = f"/v3/organizations/{ORG}"
BIG = "x" * 20_000  # a value that needs new database pages
ALICE = {"X-User-ID": "user-alice"}


# -- faults ------------------------------------------------------------------------------------


class PageLimit:
    """A full database: the writer may not grow the file past its current page count."""

    name = "full"

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.default: int | None = None

    async def apply(self) -> None:
        pages = await self.store.db.read(lambda c: c.exec_driver_sql("PRAGMA page_count").scalar())
        self.default = await self.store.db.write(
            lambda c: c.exec_driver_sql("PRAGMA max_page_count").scalar()
        )
        await self.store.db.write(lambda c: c.exec_driver_sql(f"PRAGMA max_page_count = {pages}"))

    async def remove(self) -> None:
        limit = self.default
        await self.store.db.write(lambda c: c.exec_driver_sql(f"PRAGMA max_page_count = {limit}"))


class Immutable:
    """A database file that nobody, root included, may write: `chattr +i`."""

    name = "read-only"

    def __init__(self, db_path: Path) -> None:
        self.files = [db_path, db_path.with_name(db_path.name + "-wal")]

    async def apply(self) -> None:
        chattr("+i", *self.files)

    async def remove(self) -> None:
        chattr("-i", *self.files)


def chattr(flag: str, *files: Path) -> None:
    existing = [str(path) for path in files if path.exists()]
    subprocess.run(["chattr", flag, *existing], check=True, capture_output=True)


def immutable_supported(directory: Path) -> bool:
    probe = directory / "chattr-probe"
    probe.touch()
    try:
        chattr("+i", probe)
    except (OSError, subprocess.CalledProcessError):
        return False
    chattr("-i", probe)
    return True


Fault = PageLimit | Immutable


@pytest.fixture(params=["full", "read-only"])
def fault(request: pytest.FixtureRequest, store: SqliteStore, db_path: Path) -> Iterator[Fault]:
    if request.param == "full":
        yield PageLimit(store)
        return
    if not immutable_supported(db_path.parent):
        pytest.skip("chattr +i is not available here")
    immutable = Immutable(db_path)
    try:
        yield immutable
    finally:
        chattr("-i", *immutable.files)  # never leave an undeletable file behind


# -- the API and the engine over a faulty store -------------------------------------------------


@pytest.fixture
async def live(
    store: SqliteStore,
    directory: DirectoryRef,
    service: SessionService,
    api_factory: Callable[..., Any],
) -> AsyncIterator[tuple[ApiHarness, EngineHarness]]:
    """The API over a started engine that launches against the loopback session service."""
    async with aiohttp.ClientSession() as http:
        engine = EngineHarness(store, directory, service, http)
        await engine.engine.start()
        try:
            api: ApiHarness = await api_factory(events=engine.engine)
            yield api, engine
        finally:
            await engine.engine.stop(1.0)


async def make_objects(api: ApiHarness) -> dict[str, str]:
    schedule = await api.call("POST", f"{DEVIN}/schedules", json=SCHEDULE)
    playbook = await api.call("POST", f"{DEVIN}/playbooks", json={"title": "t", "body": "b"})
    agentscope = await api.call("POST", "/schedule/", token=None, headers=ALICE, json=AGENTSCOPE)
    return {
        "schedule": schedule[1]["scheduled_session_id"],
        "playbook": playbook[1]["playbook_id"],
        "agentscope": agentscope[1]["schedule_id"],
    }


SCHEDULE = {"name": "kept", "prompt": "p", "frequency": "0 9 * * *"}
AGENTSCOPE = {"agent_id": "a", "name": "kept", "cron_expression": "0 9 * * *"}


def writes(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(method, path, headers, body) of writes that each need new pages."""
    devin_schedule = f"{DEVIN}/schedules/{ids['schedule']}"
    creates = [
        ("POST", f"{DEVIN}/schedules", {}, SCHEDULE | {"name": f"new-{n}", "prompt": BIG})
        for n in range(8)
    ]
    return [
        *creates,
        ("PATCH", devin_schedule, {}, {"prompt": BIG}),
        ("PUT", f"{DEVIN}/playbooks/{ids['playbook']}", {}, {"title": "t", "body": BIG}),
        ("POST", "/schedule/", ALICE, AGENTSCOPE | {"name": "new-as", "description": BIG}),
        ("PATCH", f"/schedule/{ids['agentscope']}", ALICE, {"description": BIG}),
    ]


async def send_all(api: ApiHarness, ids: dict[str, str]) -> list[tuple[int, Any]]:
    """Every write at once, so they share group-commit batches."""
    return await asyncio.gather(
        *(
            api.call(method, path, headers=headers, json=body)
            for method, path, headers, body in writes(ids)
        )
    )


async def state(store: SqliteStore) -> tuple[Any, ...]:
    """What the refused writes would change (a run finishing meanwhile may change the rest)."""
    schedules = await store.list_schedules(ORG, limit=100, offset=0)
    playbooks, _ = await store.list_playbooks(ORG, first=100, after=None)
    edits = [(s.id, s.name, s.prompt, s.version, s.updated_at) for s in schedules.items]
    return tuple(edits), tuple(playbooks)


def assert_unavailable(answer: tuple[int, Any]) -> None:
    status, body = answer
    assert status == 503, answer
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert "storage unavailable" in body["detail"]


async def test_writes_during_a_storage_fault_are_503_change_nothing_and_work_after_it(
    live: tuple[ApiHarness, EngineHarness], fault: Fault, service: SessionService
) -> None:
    api, harness = live
    ids = await make_objects(api)
    service.answer(Reply(delay=0.5))  # a launch still going when the fault starts
    status, in_flight = await api.call("POST", f"{DEVIN}/schedules/{ids['schedule']}/trigger")
    assert status == 202
    # Its request has left (so its dispatch mark committed before the fault): only its
    # outcome meets the fault.
    await service.wait_for(1)
    before = await state(api.store)

    with capture_logs() as logs:
        await fault.apply()
        answers = await send_all(api, ids)

        async def launch_came_back() -> bool:  # its outcome met the fault, or slipped through
            finished = (await api.store.get_run(in_flight["id"])).status != "launching"
            return finished or any(entry["event"] == "finish_failed" for entry in logs)

        await eventually(launch_came_back)
    for answer in answers:
        assert_unavailable(answer)
    assert await state(api.store) == before, "a refused write left something behind"
    status, schedule = await api.call("GET", f"{DEVIN}/schedules/{ids['schedule']}")
    assert (status, schedule["prompt"]) == (200, "p")  # reads go on
    writer = api.store.db.writer_task
    assert writer is not None and not writer.done()
    assert harness.engine.healthy()
    assert not any(task.done() for task in harness.engine.background_tasks())

    await fault.remove()
    answers = await send_all(api, ids)
    assert [status for status, _ in answers] == [200] * 10 + [201, 200], answers
    (run,) = await harness.finished_runs(ids["schedule"], 1)
    assert (run.id, run.status) == (in_flight["id"], "succeeded")  # its outcome was not lost
    assert await integrity_check(api.store.db) == "ok"


async def test_a_read_or_edit_whose_statement_fails_is_503_and_works_after_it(
    api: ApiHarness, db_path: Path
) -> None:
    """The keyed read of a GET and the read-merge-write of a PATCH run on the driver's
    cursor; their errors are the store's like any other (here another program has renamed
    the schedules table away)."""
    status, created = await api.call("POST", f"{DEVIN}/schedules", json=SCHEDULE)
    assert status == 200
    item = f"{DEVIN}/schedules/{created['scheduled_session_id']}"

    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute("ALTER TABLE schedules RENAME TO schedules_away")
        db.commit()
        assert_unavailable(await api.call("GET", item))
        assert_unavailable(await api.call("PATCH", item, json={"prompt": "changed"}))
        db.execute("ALTER TABLE schedules_away RENAME TO schedules")
        db.commit()

    status, schedule = await api.call("GET", item)
    assert (status, schedule["prompt"]) == (200, SCHEDULE["prompt"])
    status, schedule = await api.call("PATCH", item, json={"prompt": "changed"})
    assert (status, schedule["prompt"]) == (200, "changed")


async def test_a_batch_failing_at_the_limit_commits_none_of_its_writes(
    store: SqliteStore, db_path: Path
) -> None:
    """Group commit: when the batch's transaction fails, every caller in it is told so,
    and another connection sees none of those writes."""
    limit = PageLimit(store)
    await limit.apply()
    results = await asyncio.gather(
        *(
            store.create_schedule(schedule_of(name=f"s{n}", prompt=BIG), now=now())
            for n in range(20)
        ),
        return_exceptions=True,
    )
    assert all(type(result).__name__ == "StoreUnavailable" for result in results), results
    assert "database or disk is full" in str(results[0])
    with contextlib.closing(sqlite3.connect(db_path)) as other:
        assert other.execute("SELECT count(*) FROM schedules").fetchone() == (0,)
    await limit.remove()
    stored = await store.create_schedule(schedule_of(name="after", prompt=BIG), now=now())
    with contextlib.closing(sqlite3.connect(db_path)) as other:
        names = [row[0] for row in other.execute("SELECT name FROM schedules")]
    assert names == [stored.name]


# -- the real daemon ------------------------------------------------------------------------------


class TinyDisk:
    """A 2 MiB tmpfs the test can fill up and empty again."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler"

    def fill(self) -> None:
        # Unbuffered: a buffered file would keep the bytes that did not fit and raise
        # ENOSPC again when closed, depending on how much space the database left.
        with self.filler.open("ab", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 16384)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield TinyDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(database: Path) -> DaemonProcess:
        config = base_config(free_port())
        config["storage"]["path"] = str(database)
        daemon = DaemonProcess(write_config(tmp_path / "config.toml", config))
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()


def daemon_writes_are_refused_then_accepted(
    daemon: DaemonProcess, apply: Callable[[], None], remove: Callable[[], None]
) -> str:
    """Drive one fault through a running daemon; return the schedule id it edited."""
    status, created = daemon.call("POST", daemon.devin("/schedules"), body=SCHEDULE)
    assert status == 200, created
    path = daemon.devin(f"/schedules/{created['scheduled_session_id']}")
    apply()
    assert_unavailable(daemon.call("PATCH", path, body={"prompt": BIG}))
    assert_unavailable(
        daemon.call("POST", daemon.devin("/schedules"), body=SCHEDULE | {"name": "refused"})
    )
    assert daemon.call("GET", path)[1]["prompt"] == "p"
    assert daemon.call("GET", "/readyz", token=None)[0] == 200
    assert daemon.process.poll() is None
    remove()
    status, edited = daemon.call("PATCH", path, body={"prompt": BIG})
    assert (status, edited["prompt"]) == (200, BIG), edited
    assert daemon.stop() == 0
    return str(created["scheduled_session_id"])


def assert_database_holds(database: Path, schedule_id: str) -> None:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT id, prompt FROM schedules WHERE deleted_at IS NULL").fetchall()
    assert rows == [(schedule_id, BIG)]


def test_the_daemon_answers_503_on_a_full_disk_and_recovers(
    tiny_disk: TinyDisk, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    database = tiny_disk.mountpoint / "agentcron.db"
    daemon = daemon_factory(database)
    schedule_id = daemon_writes_are_refused_then_accepted(daemon, tiny_disk.fill, tiny_disk.free)
    assert "database or disk is full" in daemon.log_text()
    assert_database_holds(database, schedule_id)


def test_the_daemon_answers_503_when_its_file_cannot_be_written_and_recovers(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    if not immutable_supported(tmp_path):
        pytest.skip("chattr +i is not available here")
    database = tmp_path / "data" / "agentcron.db"
    database.parent.mkdir()
    daemon = daemon_factory(database)
    files = (database, database.with_name(database.name + "-wal"))
    try:
        schedule_id = daemon_writes_are_refused_then_accepted(
            daemon, lambda: chattr("+i", *files), lambda: chattr("-i", *files)
        )
    finally:
        chattr("-i", *files)
    assert_database_holds(database, schedule_id)


# -- a database this version must not use --------------------------------------------------------


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"my notes, not a database\n" * 100)


def foreign_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()


def newer_agentcron(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE schedules (id TEXT PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()


def damaged_agentcron(path: Path) -> None:
    async def create() -> None:
        await (await SqliteStore.open(path)).close()

    asyncio.run(create())
    with path.open("r+b") as handle:  # page 1's b-tree header, right after the file header
        handle.seek(100)
        handle.write(b"\xff" * 12)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (not_sqlite, "is not a SQLite database"),
        (foreign_sqlite, "has tables but no agentcron schema version"),
        (newer_agentcron, "schema version 99, newer than this agentcron"),
        (damaged_agentcron, "malformed"),
    ],
    ids=["not-sqlite", "foreign", "newer", "damaged"],
)
def test_serve_refuses_a_database_it_must_not_use_and_leaves_it_as_it_was(
    tmp_path: Path, make: Callable[[Path], None], reason: str
) -> None:
    database = tmp_path / "agentcron.db"
    make(database)
    files_before = {p.name for p in tmp_path.iterdir()}
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    config = write_config(tmp_path / "config.toml", base_config(free_port()))

    done = run_cli("serve", "--config", str(config))

    assert done.returncode == 1, done.stderr
    assert "cannot use the database" in done.stderr and reason in done.stderr
    assert "Traceback" not in done.stderr
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest
    # Nothing but the lock, taken before the file is looked at (one daemon per database).
    created = {"config.toml", "agentcron.db.lock"}
    assert {p.name for p in tmp_path.iterdir()} == files_before | created
