"""Org limits: how many sessions an org may have launching at once, and launch per hour.

`[[orgs]] max_concurrent_sessions` and `max_sessions_per_hour` bound the sessions the
engine starts on its own (scheduled fires, catch-ups, backfills). A fire over a limit is a
`skipped` run whose error names the limit: the schedule did nothing wrong, so it is not a
failure. A manual run (`trigger`) is an operator's explicit request: it counts towards
the limits but is never refused by them.

The decision (`limit_refusal`) is a pure function of the limits and the two counts.
`OrgUsage` owns the counts: the runs of each org in flight (from their launch until they
settle in a status `counts_in_flight` does not count) and the launches of the last rolling
hour. The engine restores it from the store at start-up (`restore_from`); which of the
runs an earlier process left still hold a session is the pure `in_flight_at_start`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from daemon.config_sections import OrgConfig
from storage.domain import FinishedRun, Run, Schedule
from storage.enums import RunStatus
from storage.store import OrgLaunch, Store

HOUR: Final = timedelta(seconds=3600)
"""The rolling window of `max_sessions_per_hour`."""

IN_FLIGHT: Final = frozenset({RunStatus.LAUNCHING, RunStatus.RUNNING})
"""Run statuses that hold one of the org's concurrent sessions."""


def counts_in_flight(status: RunStatus) -> bool:
    """Whether a run in `status` holds one of its org's concurrent sessions."""
    return status in IN_FLIGHT


@dataclass(frozen=True, slots=True)
class OrgLimits:
    """An org's limits; None: unlimited."""

    max_concurrent_sessions: int | None = None
    max_sessions_per_hour: int | None = None


NO_LIMITS: Final = OrgLimits()


def limits_of(orgs: Iterable[OrgConfig]) -> dict[str, OrgLimits]:
    """{org id: limits} of the `[[orgs]]` entries that set one."""
    return {
        org.id: OrgLimits(org.max_concurrent_sessions, org.max_sessions_per_hour)
        for org in orgs
        if org.max_concurrent_sessions is not None or org.max_sessions_per_hour is not None
    }


class SkipReason(StrEnum):
    """Why a fire was skipped: the `reason` label of `agentcron_runs_skipped_total`."""

    OVERLAP = "overlap"
    ORG_CONCURRENCY = "org_concurrency"
    ORG_HOURLY = "org_hourly"


@dataclass(frozen=True, slots=True)
class LimitRefusal:
    reason: SkipReason
    error: str


def limit_refusal(limits: OrgLimits, *, in_flight: int, last_hour: int) -> LimitRefusal | None:
    """Whether one more launch of an org with these counts goes over one of its limits."""
    concurrent = limits.max_concurrent_sessions
    if concurrent is not None and in_flight >= concurrent:
        error = f"org limit max_concurrent_sessions={concurrent} reached"
        return LimitRefusal(SkipReason.ORG_CONCURRENCY, error)
    hourly = limits.max_sessions_per_hour
    if hourly is not None and last_hour >= hourly:
        error = f"org limit max_sessions_per_hour={hourly} reached"
        return LimitRefusal(SkipReason.ORG_HOURLY, error)
    return None


def left_in_flight(run: Run) -> bool:
    """Whether an unfinished run an earlier process left holds a session: it was sent (its
    dispatch marked) or is `running`. One not sent yet is admitted when released."""
    return run.dispatched_at is not None or run.status == RunStatus.RUNNING


def in_flight_at_start(
    unfinished: Iterable[Run], schedules: Mapping[str, Schedule]
) -> list[tuple[str, str]]:
    """(org id, run id) of the unfinished runs `left_in_flight`; a run of a schedule gone
    from `schedules` (deleted) has no org to count against."""
    return [
        (schedules[run.schedule_id].org_id, run.id)
        for run in unfinished
        if left_in_flight(run) and run.schedule_id in schedules
    ]


class OrgUsage:
    """Per org: the runs in flight and the launches of the last hour; the limits in force.

    Every method is synchronous and touches only this object: the event loop runs one at a
    time, so a batch deciding thousands of fires sees each admission it made before.
    """

    def __init__(self, limits: Mapping[str, OrgLimits] | None = None) -> None:
        self._limits: Mapping[str, OrgLimits] = dict(limits or {})
        self._in_flight: dict[str, set[str]] = {}
        # Launch instants by run id, in the order recorded (oldest first, near enough).
        self._launched: dict[str, dict[str, datetime]] = {}

    def set_limits(self, limits: Mapping[str, OrgLimits]) -> None:
        """Limits applied from the next admission on (a reload); the counts are kept."""
        self._limits = dict(limits)

    def limits_of(self, org_id: str) -> OrgLimits:
        return self._limits.get(org_id, NO_LIMITS)

    def admit(self, org_id: str, run_id: str, now: datetime) -> LimitRefusal | None:
        """Refuse a launch over the org's limits, or count it as launched at `now`. A run
        counted already (re-sent after a restart) is never refused for being counted."""
        if run_id in self._in_flight.get(org_id, ()):
            return None
        counts = self.counts(org_id, now)
        refusal = limit_refusal(self.limits_of(org_id), in_flight=counts[0], last_hour=counts[1])
        if refusal is None:
            self.record(org_id, run_id, now)
        return refusal

    def admit_run(self, schedule: Schedule, run: Run, now: datetime) -> LimitRefusal | None:
        """`admit` for a run of `schedule`."""
        return self.admit(schedule.org_id, run.id, now)

    def record(self, org_id: str, run_id: str, now: datetime) -> None:
        """Count a launch that goes ahead whatever the limits (idempotent per run)."""
        self._in_flight.setdefault(org_id, set()).add(run_id)
        self._launched.setdefault(org_id, {}).setdefault(run_id, now)

    def settled(self, org_id: str, run_id: str, status: RunStatus) -> None:
        """The run's launch ended in `status`: it leaves the in-flight count unless that
        status still holds a session."""
        if not counts_in_flight(status):
            self._in_flight.get(org_id, set()).discard(run_id)

    def settled_run(self, item: FinishedRun) -> None:
        """`settled` for a finished run: it may free one of its org's sessions."""
        self.settled(item.schedule.org_id, item.run.id, item.run.status)

    def forget(self, org_id: str, run_id: str) -> None:
        """An admitted run was not launched after all (its instant was claimed before)."""
        self._in_flight.get(org_id, set()).discard(run_id)
        self._launched.get(org_id, {}).pop(run_id, None)

    def counts(self, org_id: str, now: datetime) -> tuple[int, int]:
        """(runs in flight, launches in the hour up to `now`) of the org."""
        launched = self._launched.get(org_id, {})
        horizon = now - HOUR
        while launched:  # oldest first: stop at the first launch still within the hour
            run_id, at = next(iter(launched.items()))
            if at > horizon:
                break
            del launched[run_id]
        return len(self._in_flight.get(org_id, ())), len(launched)

    def restore(self, in_flight: Iterable[tuple[str, str]], launches: Iterable[OrgLaunch]) -> None:
        """At start-up: (org, run id) of the runs in flight, and the recent launches."""
        for org_id, run_id in in_flight:
            self._in_flight.setdefault(org_id, set()).add(run_id)
        for launch in launches:
            self._launched.setdefault(launch.org_id, {})[launch.run_id] = launch.dispatched_at

    async def restore_from(self, store: Store, now: datetime) -> None:
        """At start-up: count what an earlier process left, the runs still in flight (their
        sessions followed or not) and the launches of the hour up to `now`."""
        stuck = [run for run in await store.unfinished_runs() if left_in_flight(run)]
        launches = await store.launches_since(now - HOUR)
        schedules = await store.get_schedules({run.schedule_id for run in stuck})  # theirs only
        self.restore(in_flight_at_start(stuck, schedules), launches)
