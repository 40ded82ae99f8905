"""Runs an operator asks for: a manual run now (`trigger`), backfills of past instants.

Neither goes through timers or overlap. A manual run is claimed and launched at once (the
org limits count it but never refuse it, see `daemon.org_limits`); backfill runs are
claimed together and queued at the catch-up rate (`daemon.pacer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog

from daemon.catchup import CatchUp
from daemon.firing import FireIdentity, fire_identity
from daemon.launching import Launch
from storage.clock import Clock
from storage.domain import Run, Schedule
from storage.enums import RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store

log = structlog.get_logger("agentcron.engine")

_UTC_TICK = timedelta(microseconds=1)


def operator_run(
    schedule: Schedule,
    identity: FireIdentity,
    instant: datetime,
    trigger: RunTrigger,
    now: datetime,
) -> Run:
    """The `launching` run an operator's request claims for `instant`."""
    return Run(
        schedule_id=schedule.id,
        scheduled_for=instant,
        trigger=trigger,
        started_at=now,
        identity=identity.user_id,
    )


class ManualFires:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        directory: DirectoryRef,
        catchup: CatchUp,
        launch: Callable[[Launch], None],
        active: Callable[[], bool],
    ) -> None:
        self._store = store
        self._clock = clock
        self._directory = directory
        self._catchup = catchup
        self._launch = launch
        self._active = active

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        """Fire `schedule` now (trigger `manual`, overlap not applied); the run is `launching`."""
        identity = fire_identity(schedule, self._directory.current)
        now = self._clock.now()
        for nudge in range(3):  # two manual runs in the same microsecond: take the next one
            instant = now + nudge * _UTC_TICK
            run = operator_run(schedule, identity, instant, RunTrigger.MANUAL, now)
            if await self._store.claim_runs([run]):
                log.info(
                    "schedule_fired",
                    schedule_id=schedule.id,
                    run_id=run.id,
                    trigger=RunTrigger.MANUAL.value,
                    scheduled_for=instant.isoformat(),
                    identity=identity.user_id,
                    triggered_by=by,
                )
                self._launch(Launch(schedule, run, identity))
                return run
        raise RuntimeError(f"could not claim a manual run of {schedule.id}")

    async def backfill(
        self, schedule: Schedule, instants: Sequence[datetime], *, by: str
    ) -> list[Run]:
        """Claim a `backfill` run for each of `instants` that has none yet and queue them at
        the catch-up rate; answers the runs claimed (an instant with a run is skipped)."""
        identity = fire_identity(schedule, self._directory.current)
        now = self._clock.now()
        runs = [
            operator_run(schedule, identity, instant, RunTrigger.BACKFILL, now)
            for instant in instants
        ]
        claimed = await self._store.claim_runs(runs)
        if self._active():  # else they stay launching: the next start sends them
            self._catchup.queue_backfill(schedule, claimed)
        log.info(
            "backfill_queued",
            schedule_id=schedule.id,
            asked=len(instants),
            queued=len(claimed),
            triggered_by=by,
        )
        return claimed
