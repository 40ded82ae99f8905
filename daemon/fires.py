"""Due instants on their way to runs: the values a fire batch passes between its steps.

A `Fire` is made when a timer goes off (or a buffered fire is released); reading the batch's
schedules (`current_schedules`) and deciding each fire (`run_for`) are small functions of
those values, so the engine's batch is a pipeline of them. `yielding` lets the event loop
breathe between slices of a large batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from daemon.firing import FireIdentity, OverlapAction, Timer, natural_trigger, next_after_fire
from daemon.org_limits import LimitRefusal
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.store import Store

T = TypeVar("T")

STEP = 200
"""Fires handled between two turns of the event loop (see `yielding`)."""


@dataclass(frozen=True, slots=True)
class Fire:
    """A due instant on its way to a run.

    `expected` is the `next_run_at` the store must still hold for the fire to go ahead (and
    the compare-and-set value of the advance); None for a buffered fire, which no longer
    advances anything. `following` is where `next_run_at` goes afterwards, computed as
    `next_after_fire(schedule, following_after)` for schedule `version`. `known` is the
    schedule as read when the fire was planned (see `current_schedules`).
    """

    schedule_id: str
    instant: datetime
    expected: datetime | None
    trigger: RunTrigger | None
    following: datetime | None
    following_after: datetime
    version: int
    known: Schedule | None = None

    @classmethod
    def of_timer(cls, timer: Timer) -> Fire:
        return cls(
            timer.schedule_id,
            timer.instant,
            timer.instant,
            None,
            timer.following,
            timer.instant,
            timer.version,
            timer.schedule,
        )

    def next_run_at(self, schedule: Schedule) -> datetime | None:
        if schedule.version == self.version:
            return self.following
        return next_after_fire(schedule, self.following_after)

    def buffered(self, schedule: Schedule) -> Fire:
        """This fire held until the previous run ends: it advances nothing any more."""
        return dataclasses.replace(
            self, expected=None, trigger=self.trigger or natural_trigger(schedule)
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What one fire of a batch does: its schedule as read now, the run, and the action."""

    fire: Fire
    schedule: Schedule
    identity: FireIdentity
    action: OverlapAction
    run: Run | None
    refusal: LimitRefusal | None = None
    """Set when an org limit turned the fire into a skipped run."""


async def current_schedules(store: Store, fires: Sequence[Fire]) -> dict[str, Schedule]:
    """The schedules of `fires` as stored now (deleted ones may be present, marked so).

    A fire's `known` schedule stands for the stored one while its `version` is unchanged,
    with the few fields that change without a version bump read afresh: for a large batch
    that is a small fraction of reading every schedule whole.
    """
    states = await store.fire_states(fire.schedule_id for fire in fires)
    current, unknown = {}, []
    for fire in fires:
        state, known = states.get(fire.schedule_id), fire.known
        if state is None:
            continue
        if known is None or known.version != state.version:
            unknown.append(fire.schedule_id)
        else:
            current[fire.schedule_id] = state.applied_to(known)
    if unknown:
        current.update(await store.get_schedules(unknown))
    return current


def run_for(
    fire: Fire,
    schedule: Schedule,
    identity: FireIdentity,
    action: OverlapAction,
    now: datetime,
    *,
    running: Sequence[str],
) -> Run | None:
    """The run a decided fire claims: launching, skipped (naming the `running` runs it gave
    way to), or none for a buffered fire."""
    run = Run(
        schedule_id=schedule.id,
        scheduled_for=fire.instant,
        trigger=fire.trigger or natural_trigger(schedule),
        started_at=now,
        identity=identity.user_id,
    )
    if action == OverlapAction.FIRE:
        return run
    if action == OverlapAction.BUFFER:
        return None
    return dataclasses.replace(
        run,
        status=RunStatus.SKIPPED,
        finished_at=now,
        error=f"skipped: the previous run ({', '.join(running)}) was still in progress",
    )


def skipped_over_limit(run: Run, refusal: LimitRefusal, now: datetime) -> Run:
    """The run of a fire an org limit refused: skipped, its error naming the limit."""
    return dataclasses.replace(run, status=RunStatus.SKIPPED, finished_at=now, error=refusal.error)


async def yielding(items: Sequence[T]) -> AsyncIterator[T]:
    """`items`, letting the loop run other callbacks every `STEP` of them: a batch of
    thousands of fires must not hold the loop (and the HTTP API) for its whole length."""
    for start in range(0, len(items), STEP):
        if start:
            await asyncio.sleep(0)
        for item in items[start : start + STEP]:
            yield item
