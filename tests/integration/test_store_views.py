"""The store's views for the dashboard, on a real SQLite file: schedules by state, counts,
the latest run of each schedule, and an org's runs across its schedules."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.domain import Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleState
from storage.store import Store
from tests.conftest import ORG, OTHER_ORG

T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def schedule(store: Store, name: str, org: str = ORG, **fields: Any) -> Schedule:
    made = Schedule(org_id=org, name=name, prompt="p", created_at=T0, updated_at=T0, cron="@daily")
    return await store.create_schedule(dataclasses.replace(made, **fields), now=T0)


async def run(store: Store, schedule_id: str, minutes: int, status: RunStatus) -> Run:
    at = T0 + timedelta(minutes=minutes)
    (claimed,) = await store.claim_runs(
        [Run(schedule_id=schedule_id, scheduled_for=at, trigger=RunTrigger.CRON, started_at=at)]
    )
    if status != RunStatus.LAUNCHING:
        outcome = RunOutcome(run_id=claimed.id, status=status, finished_at=at)
        await store.finish_runs([outcome], max_consecutive_failures=0)
    return claimed


async def test_schedules_in_each_state_by_name_with_their_counts(store: Store) -> None:
    await schedule(store, "b-on")
    await schedule(store, "a-off", enabled=False, paused_reason="by hand")
    await schedule(store, "c-failing", consecutive_failures=2)
    gone = await schedule(store, "d-deleted")
    await store.delete_schedule(gone.id, now=T0)
    await schedule(store, "elsewhere", org=OTHER_ORG)

    def names(page: list[Schedule]) -> list[str]:
        return [s.name for s in page]

    listed = await store.list_schedules_in_state(ORG, ScheduleState.ALL, limit=2, offset=0)
    assert names(listed) == ["a-off", "b-on"]
    listed = await store.list_schedules_in_state(ORG, ScheduleState.ALL, limit=2, offset=2)
    assert names(listed) == ["c-failing"]
    for state, expected in [
        (ScheduleState.ENABLED, ["b-on", "c-failing"]),
        (ScheduleState.PAUSED, ["a-off"]),
        (ScheduleState.FAILING, ["c-failing"]),
    ]:
        listed = await store.list_schedules_in_state(ORG, state, limit=10, offset=0)
        assert names(listed) == expected, state
    assert await store.count_schedules_by_state(ORG) == {
        ScheduleState.ALL: 3,
        ScheduleState.ENABLED: 2,
        ScheduleState.PAUSED: 1,
        ScheduleState.FAILING: 1,
    }


async def test_the_latest_run_of_each_schedule(store: Store) -> None:
    first, second, idle = [await schedule(store, name) for name in ("first", "second", "idle")]
    await run(store, first.id, 1, RunStatus.SUCCEEDED)
    latest = await run(store, first.id, 3, RunStatus.FAILED)
    await run(store, first.id, 2, RunStatus.SUCCEEDED)
    only = await run(store, second.id, 1, RunStatus.LAUNCHING)
    found = await store.last_runs([first.id, second.id, idle.id, "sched-unknown"])
    assert {k: (v.id, v.status) for k, v in found.items()} == {
        first.id: (latest.id, RunStatus.FAILED),
        second.id: (only.id, RunStatus.LAUNCHING),
    }
    assert await store.last_runs([]) == {}


async def test_an_orgs_runs_newest_first_or_failures_first(store: Store) -> None:
    ours, other = await schedule(store, "ours"), await schedule(store, "theirs", org=OTHER_ORG)
    deleted = await schedule(store, "deleted")
    failed = await run(store, ours.id, 1, RunStatus.FAILED)
    old = await run(store, ours.id, 0, RunStatus.SUCCEEDED)
    new = await run(store, ours.id, 2, RunStatus.SUCCEEDED)
    await run(store, other.id, 5, RunStatus.FAILED)
    await run(store, deleted.id, 6, RunStatus.FAILED)
    await store.delete_schedule(deleted.id, now=T0)

    runs, more = await store.list_org_runs(ORG, limit=10, offset=0)
    assert [n.run.id for n in runs] == [new.id, failed.id, old.id] and not more
    assert {n.schedule_name for n in runs} == {"ours"}
    runs, _ = await store.list_org_runs(ORG, limit=10, offset=0, failures_first=True)
    assert [n.run.id for n in runs] == [failed.id, new.id, old.id]
    runs, more = await store.list_org_runs(ORG, limit=2, offset=0)
    assert len(runs) == 2 and more
    runs, more = await store.list_org_runs(ORG, limit=2, offset=2)
    assert [n.run.id for n in runs] == [old.id] and not more
