"""`Store` on one SQLite file: each method hands one operation to `storage.db.Database`.

Every write runs as one operation of the writer's group commit (atomic, durable once it
returns; see `storage.db`); reads run on a reader thread, and the keyed schedule read on the
loop thread (`Database.lookup`). The operations themselves are the functions of
`storage.sqlite_schedules`, `sqlite_history`, `sqlite_runs`, `sqlite_playbooks` and
`sqlite_identities`; the
contracts are those of `storage.store.Store`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from storage import (
    rules,
    sqlite_history,
    sqlite_identities,
    sqlite_lists,
    sqlite_playbooks,
    sqlite_runs,
    sqlite_schedules,
    sqlite_views,
)
from storage.db import Database
from storage.domain import FinishedRun, HistoryEntry, Playbook, Run, RunOutcome, Schedule
from storage.enums import ScheduleState
from storage.identities import Directory
from storage.store import FireState, Move, NamedRun, OrgLaunch, Page, RowsEncoder

T = TypeVar("T")

_KEYED_FIRE_STATES = 16
"""Up to this many schedules, `fire_states` is a keyed read (see `Database.lookup`)."""
_CLAIMED_NOW = 16
"""Up to this many runs, a claim may commit on the loop (see `Database.write_now`)."""


class SqliteStore:
    """agentcron's state in a SQLite file. Open with `await SqliteStore.open(path)`, close
    with `close()`; between the two it is a `storage.store.Store`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open or create the database file. Raises SchemaError / StoreUnavailable."""
        return cls(await Database.open(path))

    async def close(self) -> None:
        """Commit queued writes and close the file."""
        await self.db.close()

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule, *, now: datetime) -> Schedule:
        stored = rules.created_schedule(schedule, now)
        return await self.db.write(lambda conn: sqlite_schedules.insert(conn, stored))

    async def get_schedule(
        self,
        schedule_id: str,
        *,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Schedule:
        return await self.db.lookup(
            lambda conn: sqlite_schedules.live(conn, schedule_id, org_id, agents)
        )

    async def list_schedules(
        self,
        org_id: str,
        *,
        limit: int,
        offset: int,
        owner_user_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Page[Schedule]:
        def op(conn: Connection) -> Page[Schedule]:
            return sqlite_schedules.page_of(conn, org_id, limit, offset, owner_user_id, agents)

        return await self.db.read(op)

    async def encode_schedules(
        self,
        org_id: str,
        fields: Sequence[str],
        encode: RowsEncoder[T],
        *,
        limit: int | None,
        offset: int = 0,
        owner_user_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> T:
        def op(conn: Connection) -> T:
            window = (limit, offset)
            return sqlite_lists.schedules(
                conn, org_id, fields, encode, window, owner_user_id, agents
            )

        # An unpaged list may be any length: it must not hold up the engine's reads.
        return await (self.db.read(op) if limit is not None else self.db.read_bulk(op))

    def generation(self) -> int | None:
        return self.db.generation  # one writer, this process: every write is seen here

    async def find_schedule_by_name(self, org_id: str, name: str) -> Schedule | None:
        return await self.db.read(lambda conn: sqlite_schedules.by_name(conn, org_id, name))

    async def list_config_schedules(self) -> list[Schedule]:
        return await self.db.read(sqlite_schedules.from_config)

    async def schedules_on_launchers(self, names: Collection[str]) -> list[Schedule]:
        chosen = list(names)
        return await self.db.read(lambda conn: sqlite_schedules.on_launchers(conn, chosen))

    async def update_schedule(
        self,
        schedule_id: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
        check: Callable[[Schedule, Schedule], None] | None = None,
        if_version: Collection[int] | None = None,
        owner_user_id: str | None = None,
    ) -> Schedule:
        def op(conn: Connection) -> Schedule:
            return sqlite_schedules.edit(
                conn, schedule_id, changes, now, org_id, agents, check, if_version, owner_user_id
            )

        return await self.db.write(op)

    async def delete_schedule(
        self,
        schedule_id: str,
        *,
        now: datetime,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
        by: str | None = None,
        if_version: Collection[int] | None = None,
        owner_user_id: str | None = None,
    ) -> Schedule:
        changes = rules.deletion(now, by)
        return await self.update_schedule(
            schedule_id,
            changes,
            now=now,
            org_id=org_id,
            agents=agents,
            if_version=if_version,
            owner_user_id=owner_user_id,
        )

    async def schedule_history(
        self,
        schedule_id: str,
        *,
        limit: int,
        offset: int,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Page[HistoryEntry]:
        def op(conn: Connection) -> Page[HistoryEntry]:
            return sqlite_history.page_of(conn, schedule_id, org_id, agents, limit, offset)

        return await self.db.read(op)

    async def due_schedules(
        self, until: datetime, *, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Schedule]:
        return await self.db.read(lambda conn: sqlite_schedules.due(conn, until, limit, after))

    async def get_schedules(self, schedule_ids: Iterable[str]) -> dict[str, Schedule]:
        ids = list(schedule_ids)
        return await self.db.read(lambda conn: sqlite_schedules.live_by_id(conn, ids))

    async def fire_states(self, schedule_ids: Iterable[str]) -> dict[str, FireState]:
        ids = list(schedule_ids)
        # A few schedules (most timers fire one or two) are a keyed read, made on the loop:
        # a trip to a reader thread and back would add two turns of a busy loop to the fire.
        read = self.db.lookup if len(ids) <= _KEYED_FIRE_STATES else self.db.read
        return await read(lambda conn: sqlite_schedules.fire_states(conn, ids))

    async def count_active_schedules(self) -> int:
        return await self.db.read(sqlite_schedules.count_active)

    async def disable_if_due(self, schedule_id: str, expected: datetime, *, now: datetime) -> bool:
        def op(conn: Connection) -> bool:
            return sqlite_schedules.disable_if_due(conn, schedule_id, expected, now)

        return await self.db.write(op)

    async def advance_schedules(self, moves: Sequence[Move]) -> list[str]:
        return await self.db.write(lambda conn: sqlite_schedules.advance(conn, moves))

    # -- runs ------------------------------------------------------------------------------

    async def claim_runs(self, runs: Sequence[Run]) -> list[Run]:
        # A timer's few runs launch as soon as their claim commits: not a moment later.
        write = self.db.write_now if len(runs) <= _CLAIMED_NOW else self.db.write
        return await write(lambda conn: sqlite_runs.claim(conn, runs))

    async def claim_catchups(
        self, moves: Sequence[Move], runs: Sequence[Run]
    ) -> tuple[list[str], list[Run]]:
        return await self.db.write(lambda conn: _claim_catchups(conn, moves, runs))

    async def record_finished_run(self, run: Run) -> bool:
        claimed = await self.claim_runs([run])
        return bool(claimed)

    async def mark_dispatched(self, run_id: str, *, at: datetime) -> None:
        await self.db.write_now(lambda conn: sqlite_runs.mark_dispatched(conn, run_id, at))

    async def finish_runs(
        self, outcomes: Sequence[RunOutcome], *, max_consecutive_failures: int
    ) -> list[FinishedRun]:
        def op(conn: Connection) -> list[FinishedRun]:
            return sqlite_runs.finish(conn, outcomes, max_consecutive_failures)

        return await self.db.write(op)

    async def launching_runs(self) -> list[Run]:
        return await self.db.read(sqlite_runs.launching)

    async def unfinished_runs(self) -> list[Run]:
        return await self.db.read(sqlite_runs.unfinished)

    async def get_run(self, run_id: str) -> Run:
        return await self.db.read(lambda conn: sqlite_runs.get(conn, run_id))

    async def list_runs(self, schedule_id: str, *, limit: int, offset: int) -> Page[Run]:
        return await self.db.read(
            lambda conn: sqlite_runs.page_of(conn, schedule_id, limit, offset)
        )

    async def previous_run(self, schedule_id: str, before: datetime) -> Run | None:
        return await self.db.read(lambda conn: sqlite_runs.previous(conn, schedule_id, before))

    async def last_success_at(self, schedule_id: str) -> datetime | None:
        return await self.db.read(lambda conn: sqlite_runs.last_success_at(conn, schedule_id))

    async def launches_since(self, since: datetime) -> list[OrgLaunch]:
        return await self.db.read(lambda conn: sqlite_runs.launches_since(conn, since))

    async def encode_runs(
        self,
        schedule_id: str,
        fields: Sequence[str],
        encode: RowsEncoder[T],
        *,
        limit: int,
        offset: int,
    ) -> T:
        return await self.db.read(
            lambda conn: sqlite_lists.runs(conn, schedule_id, fields, encode, (limit, offset))
        )

    # -- the dashboard's views -------------------------------------------------------------

    async def list_schedules_in_state(
        self, org_id: str, state: ScheduleState, *, limit: int, offset: int
    ) -> list[Schedule]:
        return await self.db.read(
            lambda conn: sqlite_views.schedules_in_state(conn, org_id, state, limit, offset)
        )

    async def count_schedules_by_state(self, org_id: str) -> dict[ScheduleState, int]:
        return await self.db.read(lambda conn: sqlite_views.count_by_state(conn, org_id))

    async def last_runs(self, schedule_ids: Iterable[str]) -> dict[str, Run]:
        ids = list(schedule_ids)
        return await self.db.read(lambda conn: sqlite_views.last_runs(conn, ids))

    async def list_org_runs(
        self, org_id: str, *, limit: int, offset: int, failures_first: bool = False
    ) -> tuple[list[NamedRun], bool]:
        return await self.db.read(
            lambda conn: sqlite_views.org_runs(conn, org_id, limit, offset, failures_first)
        )

    # -- playbooks -------------------------------------------------------------------------

    async def create_playbook(self, playbook: Playbook) -> Playbook:
        return await self.db.write(lambda conn: sqlite_playbooks.create(conn, playbook))

    async def upsert_playbook(self, playbook: Playbook) -> Playbook:
        return await self.db.write(lambda conn: sqlite_playbooks.upsert(conn, playbook))

    async def get_playbook(self, playbook_id: str, *, org_id: str | None = None) -> Playbook:
        return await self.db.read(lambda conn: sqlite_playbooks.live(conn, playbook_id, org_id))

    async def playbook_titles(self, playbook_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(playbook_ids))
        if not ids:
            return {}
        return await self.db.read(lambda conn: sqlite_playbooks.titles(conn, ids))

    async def list_playbooks(
        self, org_id: str, *, first: int, after: str | None
    ) -> tuple[list[Playbook], bool]:
        return await self.db.read(
            lambda conn: sqlite_playbooks.page_after(conn, org_id, first, after)
        )

    async def count_playbooks(self, org_id: str) -> int:
        return await self.db.read(lambda conn: sqlite_playbooks.count(conn, org_id))

    async def update_playbook(
        self, playbook_id: str, changes: Mapping[str, Any], *, org_id: str | None = None
    ) -> Playbook:
        return await self.db.write(
            lambda conn: sqlite_playbooks.edit(conn, playbook_id, changes, org_id)
        )

    # -- identities ------------------------------------------------------------------------

    async def replace_identities(self, directory: Directory) -> None:
        await self.db.write(lambda conn: sqlite_identities.replace(conn, directory))


def _claim_catchups(
    conn: Connection, moves: Sequence[Move], new: Sequence[Run]
) -> tuple[list[str], list[Run]]:
    """Advance, then claim the runs of the schedules that moved, in one transaction."""
    moved = sqlite_schedules.advance(conn, moves)
    moving = set(moved)
    return moved, sqlite_runs.claim(conn, [run for run in new if run.schedule_id in moving])
