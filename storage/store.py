"""The store: every read and write of agentcron's state, as one documented interface.

The engine (`daemon/`) and the API (`api/`) type against `Store`; the daemon's composition
root constructs an implementation (`storage.sqlite_store.SqliteStore` on a file, or
`storage.postgres_store.PostgresStore` on a database a fleet of daemons shares). Callers
get immutable values from `storage.domain` (and `Page`, `FireState` below); nothing of a
backend (connections, rows, its own exceptions for the cases below) leaves it.

What every implementation guarantees, and each method's contract relies on:

- Writes. A write method is atomic: all of it or nothing. It returns only once its
  transaction is durable (a crash after the return loses none of it); a write that raises
  wrote nothing. Writes are applied one after another in the order they were called, each
  seeing the ones before it; a read-check-write method (`update_schedule`, the
  compare-and-sets) has no other write between its read and its write.
- Reads see every write that returned before they were called. A read made of several
  statements (a page and its total, many ids read a chunk at a time) is not one snapshot: a
  write committed meanwhile may show in one part and not in another.
- Narrowing. Schedule reads and edits may be narrowed to an org (`org_id`) and to some
  agents (`agents`, a collection of agent ids; None means any): a schedule of another org or
  agent is then as absent as a missing one.
- Errors. `NotFound` for a missing (or soft-deleted, or other org's or agent's) object;
  `VersionMismatch` for a conditional edit (`if_version`) of a schedule changed meanwhile;
  `StoreUnavailable` when the database cannot be read or written right now (full, read-only,
  damaged meanwhile), after which the store keeps serving once the cause is gone; an
  exception raised by a caller's `check` passes through unchanged. In each case nothing was
  written.
- Concurrency. Every method may be called concurrently from the event loop; none blocks it
  for longer than a keyed read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from storage.domain import HistoryEntry, Playbook, Schedule
from storage.errors import NotFound as NotFound  # re-exported: its earlier home
from storage.identities import Directory
from storage.store_runs import RunStore
from storage.store_values import PLAYBOOK_TITLE as PLAYBOOK_TITLE
from storage.store_values import FireState as FireState
from storage.store_values import Move as Move
from storage.store_values import NamedRun as NamedRun
from storage.store_values import OrgLaunch as OrgLaunch
from storage.store_values import Page as Page
from storage.store_values import RowsEncoder as RowsEncoder
from storage.store_values import T


class Store(RunStore, Protocol):
    """agentcron's persistent state. Every method follows the module's guarantees; the
    runs' methods are declared in `storage.store_runs`."""

    # -- schedules, as the API and the configuration edit them ----------------------------

    async def create_schedule(self, schedule: Schedule, *, now: datetime) -> Schedule:
        """Insert `schedule` with its `next_run_at` computed from `now`; return what was
        stored (`storage.rules.created_schedule`).

        One atomic write, durable on return, with a `created` history entry by the
        schedule's `created_by`. The id must be new (ids are random).
        Raises StoreUnavailable.
        """
        ...

    async def get_schedule(
        self,
        schedule_id: str,
        *,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Schedule:
        """The live schedule `schedule_id` (of `org_id`, of one of `agents`, when given).

        The keyed read behind every GET and PATCH: one row by key, kept cheap enough to be
        served without leaving the event loop. Raises NotFound, StoreUnavailable.
        """
        ...

    async def list_schedules(
        self,
        org_id: str,
        *,
        limit: int,
        offset: int,
        owner_user_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Page[Schedule]:
        """Live schedules of an org (of one owner, of some agents, when given) in creation
        order (insertion order among equal `created_at`), `limit` of them from `offset`.

        `total` counts every schedule that matches, on every page; it and the items are two
        reads. Raises StoreUnavailable.
        """
        ...

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
        """`encode(rows, total)` of the schedules `list_schedules` would page (every one from
        `offset` when `limit` is None), each row the values of `fields` in that order.

        For answers whose size grows with the data: the rows are read and `encode` runs on a
        database thread, never on the event loop, and no domain value is built per row.
        `fields` are schedule field names or `PLAYBOOK_TITLE`; values are typed as on
        `Schedule` (aware datetimes, enum members, booleans, JSON values). `encode` may only
        compute from its arguments and immutable values; its exceptions pass through. An
        unpaged read waits for the unpaged reads before it, never in front of other reads.
        Raises ValueError (a name that is not a field), StoreUnavailable.
        """
        ...

    def generation(self) -> int | None:
        """A number that moves with every write this store commits, or None when writers
        this process does not see (other members of a fleet) share the database.

        An answer read while `generation()` is g reflects every write acknowledged before
        it was read; while `generation()` is still g, no write has been acknowledged since.
        So an answer kept with the g read just before it was read may be answered again as
        long as `generation()` is g. Never raises.
        """
        ...

    async def find_schedule_by_name(self, org_id: str, name: str) -> Schedule | None:
        """The live schedule named `name` in `org_id` (one of them if several), or None.

        Raises StoreUnavailable.
        """
        ...

    async def list_config_schedules(self) -> list[Schedule]:
        """Live schedules made by the configuration file (`from_config`), of every org,
        ordered by org, then name. Schedules made through the API are never listed here.

        Raises StoreUnavailable.
        """
        ...

    async def schedules_on_launchers(self, names: Collection[str]) -> list[Schedule]:
        """Live schedules, of every org, whose `launcher` is one of `names`, ordered by org,
        then name (a launcher they use cannot be removed from the configuration).

        Raises StoreUnavailable.
        """
        ...

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
        """Apply `changes` (field name -> value) to the live schedule; return it after them.

        The schedule is found by id, in `org_id`, of one of `agents`, and owned by
        `owner_user_id`, each when given; any other is NotFound, whatever `if_version` says.

        Read, compare, check, write and history are one atomic write, durable on return: no
        other write comes between them. With `if_version`, the stored `version` must be one
        of those (a compare-and-set: of two edits expecting the same version, one wins and
        the other raises VersionMismatch). The edit follows `storage.rules.edited_schedule`:
        `updated_at` and `version` move (even for empty changes: the caller asked for a
        write), re-enabling ends a pause, a timing change recomputes `next_run_at` from
        `now`. Only the fields that edit may change are written. `check(before, after)` runs
        inside the transaction, perhaps on a database thread (so it may only compute from
        its arguments and immutable values), and may raise to refuse the change; its
        exception passes through. A history entry (`storage.history.entry_of`) by
        `changes["last_edited_by"]` is recorded in the same transaction when a recorded field
        changed.
        Raises NotFound, VersionMismatch, ValueError (a name that is not a schedule field),
        StoreUnavailable; nothing is written then.
        """
        ...

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
        """Soft-delete (`storage.rules.deletion`) as one `update_schedule`; return it.

        The schedule disappears from every read but `fire_states` and `schedule_history`,
        and never fires again; a `deleted` history entry by `by` lists what it was.
        Raises NotFound, VersionMismatch (see `if_version` there), StoreUnavailable.
        """
        ...

    async def schedule_history(
        self,
        schedule_id: str,
        *,
        limit: int,
        offset: int,
        org_id: str | None = None,
        agents: Collection[str] | None = None,
    ) -> Page[HistoryEntry]:
        """The edit history of a schedule, newest first, `limit` entries from `offset`.

        Every write that changed a recorded field (`storage.history`) left one entry, in
        its own transaction: creations, edits, deletions, and the engine's pauses and
        disables (by `engine`). A deleted schedule's history stays readable; NotFound only
        for an id that never was a schedule (of `org_id`, of one of `agents`, when given).
        `total` and the items are two reads. Raises NotFound, StoreUnavailable.
        """
        ...

    # -- schedules, as the engine fires them ----------------------------------------------

    async def due_schedules(
        self, until: datetime, *, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Schedule]:
        """Active schedules whose `next_run_at` is at or before `until`, soonest first.

        Ordered by (`next_run_at`, `id`), at most `limit`; pass the last pair of a page as
        `after` to read the next page (keyset paging: each page is its own read).
        Raises StoreUnavailable.
        """
        ...

    async def get_schedules(self, schedule_ids: Iterable[str]) -> dict[str, Schedule]:
        """The live schedules among `schedule_ids`, by id (unknown or deleted ones are
        absent). A long list is read in chunks, not as one snapshot. Raises StoreUnavailable.
        """
        ...

    async def fire_states(self, schedule_ids: Iterable[str]) -> dict[str, FireState]:
        """The `FireState` of each schedule among `schedule_ids`, by id, deleted ones
        included (unknown ids are absent). Much cheaper than `get_schedules` for a large
        batch; read in chunks, not as one snapshot. Raises StoreUnavailable.
        """
        ...

    async def count_active_schedules(self) -> int:
        """How many schedules are enabled and not deleted. Raises StoreUnavailable."""
        ...

    async def disable_if_due(self, schedule_id: str, expected: datetime, *, now: datetime) -> bool:
        """Disable the schedule (`next_run_at` cleared, `version` bumped, `updated_at = now`)
        if its `next_run_at` still equals `expected`; return whether it was disabled. A
        `disabled` history entry by `engine` is recorded with it.

        For a one_time schedule whose instant was missed beyond its catch-up window. An
        atomic compare-and-set, durable on return: a schedule edited meanwhile is left alone.
        Raises StoreUnavailable.
        """
        ...

    async def advance_schedules(self, moves: Sequence[Move]) -> list[str]:
        """For each (id, expected, new): set `next_run_at = new` where it still equals
        `expected`; return the ids moved, in the order of `moves`.

        All moves are one atomic write, durable on return, applied in order (a later move of
        the same id compares with the earlier one's result). The compare-and-set keeps an
        engine that computed from an old definition from overwriting a concurrent edit's
        `next_run_at`. `version` does not move (see `FireState`). Raises StoreUnavailable.
        """
        ...

    # -- playbooks -------------------------------------------------------------------------

    async def create_playbook(self, playbook: Playbook) -> Playbook:
        """Insert a playbook (its id must be new); return it. One atomic write, durable on
        return. Raises StoreUnavailable."""
        ...

    async def upsert_playbook(self, playbook: Playbook) -> Playbook:
        """Insert or replace the playbook with this id, keeping the stored `created_at` and
        `created_by`; return it as stored. One atomic write, durable on return.
        Raises StoreUnavailable."""
        ...

    async def get_playbook(self, playbook_id: str, *, org_id: str | None = None) -> Playbook:
        """The live playbook (of `org_id` when given). Raises NotFound, StoreUnavailable."""
        ...

    async def playbook_titles(self, playbook_ids: Iterable[str]) -> dict[str, str]:
        """Titles of the given live playbooks, by id (unknown ids are absent), in one read.
        Raises StoreUnavailable."""
        ...

    async def list_playbooks(
        self, org_id: str, *, first: int, after: str | None
    ) -> tuple[list[Playbook], bool]:
        """Live playbooks of an org ordered by id, `first` of them after the id `after`;
        returns the page and whether more follow. Raises StoreUnavailable."""
        ...

    async def count_playbooks(self, org_id: str) -> int:
        """How many live playbooks the org has. Raises StoreUnavailable."""
        ...

    async def update_playbook(
        self, playbook_id: str, changes: Mapping[str, Any], *, org_id: str | None = None
    ) -> Playbook:
        """Apply `changes` (field name -> value) to the live playbook; return it.

        Read and write are one atomic write, durable on return. Raises NotFound,
        StoreUnavailable; nothing is written then.
        """
        ...

    # -- identities ------------------------------------------------------------------------

    async def replace_identities(self, directory: Directory) -> None:
        """Replace every org, user and service user with those of `directory`.

        One atomic write, durable on return: no read sees a half-replaced directory.
        Raises StoreUnavailable.
        """
        ...
