"""The runs part of the store's interface: claimed, finished, listed, counted.

Every method follows the guarantees of `storage.store`, where `Store` joins this part with
the schedules, playbooks and identities.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from storage.domain import FinishedRun, Run, RunOutcome, Schedule
from storage.enums import ScheduleState
from storage.store_values import Move, NamedRun, OrgLaunch, Page, RowsEncoder, T


class RunStore(Protocol):
    """Runs: the engine's claims and outcomes, the API's lists, the dashboard's views."""

    # -- runs ------------------------------------------------------------------------------

    async def claim_runs(self, runs: Sequence[Run]) -> list[Run]:
        """Insert the runs whose (schedule_id, scheduled_for) is new; return those, in order.

        One atomic write, durable on return. A run whose instant was claimed before (by a
        restart, a double wake-up, another process, or earlier in `runs`) is silently not
        inserted: this uniqueness is what makes each instant fire once.
        Raises StoreUnavailable.
        """
        ...

    async def claim_catchups(
        self, moves: Sequence[Move], runs: Sequence[Run]
    ) -> tuple[list[str], list[Run]]:
        """Settle missed instants: advance as `advance_schedules`, then claim, as
        `claim_runs`, those of `runs` (the missed and catch-up runs) whose schedule moved.

        One atomic write, durable on return, so a crash leaves either the schedule behind
        with nothing claimed (the next start plans it again) or both done. Returns the ids
        moved and the runs inserted. Raises StoreUnavailable.
        """
        ...

    async def record_finished_run(self, run: Run) -> bool:
        """Insert an already-finished run (skipped, missed) unless its instant was claimed;
        return whether it was inserted. As `claim_runs` of one run."""
        ...

    async def mark_dispatched(self, run_id: str, *, at: datetime) -> None:
        """Record that the launch request of `run_id` is about to be sent, at `at` (also the
        run's `started_at` from now on: a paced catch-up starts when it launches).

        Durable on return, and callers send the request only then: a run left `launching`
        without `dispatched_at` never reached the session service, and may be launched
        again. An unknown id changes nothing. Raises StoreUnavailable.
        """
        ...

    async def finish_runs(
        self, outcomes: Sequence[RunOutcome], *, max_consecutive_failures: int
    ) -> list[FinishedRun]:
        """Finish each run and fold its outcome into its schedule, in order; return the
        runs finished, each with its schedule as the write leaves it.

        One atomic write, durable on return. The rules are `storage.rules.fold_outcomes`:
        success resets `consecutive_failures`, failure counts up and records the error, a
        one_time schedule is disabled after its fire, reaching `max_consecutive_failures`
        (when > 0) auto-pauses, a stateful schedule remembers its first session. A `running`
        outcome records a followed session and counts nothing; the run's later outcome ends
        it and does the counting. A pause or disable moves the schedule's `version` and is
        recorded in its history (`paused` or `disabled`, by `engine`); the bookkeeping alone
        is not. Runs unknown or already final (also earlier in `outcomes`) are ignored.
        Raises StoreUnavailable.
        """
        ...

    async def launching_runs(self) -> list[Run]:
        """Every run still `launching`, in no particular order: at start-up, the runs an
        earlier process left behind. Raises StoreUnavailable."""
        ...

    async def unfinished_runs(self) -> list[Run]:
        """Every run still `launching` or `running`, in no particular order: at start-up,
        the runs an earlier process left to launch or to follow. Raises StoreUnavailable."""
        ...

    async def get_run(self, run_id: str) -> Run:
        """The run `run_id`. Raises NotFound, StoreUnavailable."""
        ...

    async def list_runs(self, schedule_id: str, *, limit: int, offset: int) -> Page[Run]:
        """Runs of a schedule, newest first (by nominal instant, then start), paged.

        No org check: callers read the schedule first. `total` and the items are two reads.
        Raises StoreUnavailable.
        """
        ...

    async def previous_run(self, schedule_id: str, before: datetime) -> Run | None:
        """The schedule's latest run whose nominal instant is before `before`, or None.
        Raises StoreUnavailable."""
        ...

    async def last_success_at(self, schedule_id: str) -> datetime | None:
        """When the schedule's latest `succeeded` run finished, or None. Raises
        StoreUnavailable."""
        ...

    async def launches_since(self, since: datetime) -> list[OrgLaunch]:
        """The runs dispatched to a session service at or after `since`, with their org,
        oldest first (the org limits count them at start-up). Raises StoreUnavailable."""
        ...

    async def encode_runs(
        self,
        schedule_id: str,
        fields: Sequence[str],
        encode: RowsEncoder[T],
        *,
        limit: int,
        offset: int,
    ) -> T:
        """`encode(rows, total)` of the runs `list_runs` would page, each row the values of
        `fields` (`Run` field names) in that order: read and encoded on a database thread,
        as `encode_schedules`. Raises ValueError, StoreUnavailable."""
        ...

    # -- the dashboard's views -------------------------------------------------------------

    async def list_schedules_in_state(
        self, org_id: str, state: ScheduleState, *, limit: int, offset: int
    ) -> list[Schedule]:
        """Live schedules of an org in `state`, every agent's, ordered by name then id,
        paged. No total: `count_schedules_by_state` counts every state in one pass."""
        ...

    async def count_schedules_by_state(self, org_id: str) -> dict[ScheduleState, int]:
        """How many live schedules of an org are in each `ScheduleState` (one read)."""
        ...

    async def last_runs(self, schedule_ids: Iterable[str]) -> dict[str, Run]:
        """The latest run (by `started_at`) of each of `schedule_ids` that has one, by id."""
        ...

    async def list_org_runs(
        self, org_id: str, *, limit: int, offset: int, failures_first: bool = False
    ) -> tuple[list[NamedRun], bool]:
        """Runs of the org's live schedules, newest first (failed and interrupted first when
        `failures_first`), paged; answers the page and whether more follow (no total)."""
        ...
