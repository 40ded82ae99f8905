"""The store's behaviour, as `storage.store.Store` documents it, run against every backend.

The `store` fixture is one fresh store per backend of `STORE_BACKENDS`; nothing here knows
which. What only the SQLite file has (its schema version, its durability under kill -9) is in
`test_sqlite_store.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.domain import Playbook, Run, RunOutcome, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.errors import NotFound
from storage.store import Store
from tests.conftest import STORE_BACKENDS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(STORE_BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await STORE_BACKENDS[request.param](tmp_path)
    yield opened
    await opened.close()


def one_time(name: str = "release notes", *, at: datetime = NOW + timedelta(hours=1)) -> Schedule:
    return Schedule(
        org_id="org-local",
        name=name,
        prompt="write the release notes",
        created_at=NOW,
        updated_at=NOW,
        schedule_type=ScheduleType.ONE_TIME,
        scheduled_at=at,
    )


def recurring(name: str = "triage", cron: str = "0 9 * * 1-5") -> Schedule:
    return Schedule(
        org_id="org-local", name=name, prompt="triage", created_at=NOW, updated_at=NOW, cron=cron
    )


def launching(schedule: Schedule, at: datetime = NOW) -> Run:
    return Run(schedule_id=schedule.id, scheduled_for=at, trigger=RunTrigger.CRON, started_at=at)


async def test_create_then_get_returns_the_same_values(store: Store) -> None:
    created = await store.create_schedule(one_time(), now=NOW)
    assert created.next_run_at == NOW + timedelta(hours=1)
    assert await store.get_schedule(created.id) == created
    assert created.id.startswith("sched-") and len(created.id) == len("sched-") + 32


async def test_recurring_next_run_at_follows_the_cron(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)  # a Monday, 12:00 UTC
    assert created.next_run_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def test_update_changes_only_given_fields_and_bumps_version(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    later = NOW + timedelta(minutes=5)
    updated = await store.update_schedule(created.id, {"name": "renamed"}, now=later)
    assert (updated.name, updated.prompt, updated.version) == ("renamed", "triage", 2)
    assert updated.updated_at == later and updated.next_run_at == created.next_run_at
    assert await store.get_schedule(created.id) == updated


async def test_timing_change_recomputes_next_run(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    updated = await store.update_schedule(created.id, {"cron": "30 12 * * *"}, now=NOW)
    assert updated.next_run_at == datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    disabled = await store.update_schedule(created.id, {"enabled": False}, now=NOW)
    assert disabled.next_run_at is None


async def test_a_refusing_check_writes_nothing(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)

    def refuse(before: Schedule, after: Schedule) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await store.update_schedule(created.id, {"name": "x"}, now=NOW, check=refuse)
    assert await store.get_schedule(created.id) == created


async def test_soft_delete_hides_and_other_orgs_do_not_see(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    with pytest.raises(NotFound):
        await store.get_schedule(created.id, org_id="org-other")
    deleted = await store.delete_schedule(created.id, now=NOW, by="service-admin")
    assert deleted.deleted_at == NOW and deleted.next_run_at is None
    with pytest.raises(NotFound):
        await store.get_schedule(created.id)
    assert (await store.list_schedules("org-local", limit=10, offset=0)).total == 0
    assert await store.due_schedules(NOW + timedelta(days=7), limit=10) == []


async def test_list_pages_in_creation_order(store: Store) -> None:
    for i in range(5):
        await store.create_schedule(recurring(f"s{i}"), now=NOW)
    first = await store.list_schedules("org-local", limit=2, offset=0)
    rest = await store.list_schedules("org-local", limit=10, offset=2)
    assert first.total == rest.total == 5
    assert [s.name for s in first.items + rest.items] == ["s0", "s1", "s2", "s3", "s4"]


DEVIN_AGENTS = frozenset({"devin", "data_analyst", "advanced"})


async def test_a_list_of_some_agents_pages_and_counts_only_them(store: Store) -> None:
    for i, agent in enumerate(["agent-a", "devin", "agent-b", "advanced", "data_analyst", "x"]):
        await store.create_schedule(dataclasses.replace(recurring(f"s{i}"), agent=agent), now=NOW)

    first = await store.list_schedules("org-local", limit=2, offset=0, agents=DEVIN_AGENTS)
    rest = await store.list_schedules("org-local", limit=2, offset=2, agents=DEVIN_AGENTS)
    every = await store.list_schedules("org-local", limit=10, offset=0)

    assert first.total == rest.total == 3
    assert [s.name for s in first.items + rest.items] == ["s1", "s3", "s4"]
    assert every.total == 6


async def test_a_schedule_of_another_agent_is_not_found_among_some_agents(store: Store) -> None:
    created = await store.create_schedule(
        dataclasses.replace(recurring(), agent="agent-a"), now=NOW
    )

    with pytest.raises(NotFound):
        await store.get_schedule(created.id, org_id="org-local", agents=DEVIN_AGENTS)
    with pytest.raises(NotFound):
        await store.update_schedule(created.id, {"name": "x"}, now=NOW, agents=DEVIN_AGENTS)
    with pytest.raises(NotFound):
        await store.delete_schedule(created.id, now=NOW, agents=DEVIN_AGENTS)
    assert await store.get_schedule(created.id) == created
    assert await store.get_schedule(created.id, agents={"agent-a"}) == created


async def test_claiming_an_instant_twice_inserts_once(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    first = await store.claim_runs([launching(schedule)])
    second = await store.claim_runs([launching(schedule)])  # a fresh id, the same instant
    assert len(first) == 1 and second == []
    assert (await store.list_runs(schedule.id, limit=10, offset=0)).total == 1


async def test_concurrent_claims_of_one_instant_insert_once(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    results = await asyncio.gather(*(store.claim_runs([launching(schedule)]) for _ in range(20)))
    assert sum(len(r) for r in results) == 1


async def test_failures_count_up_then_reset(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    for i, status in enumerate([RunStatus.FAILED, RunStatus.FAILED, RunStatus.SUCCEEDED]):
        at = NOW + timedelta(minutes=i)
        (run,) = await store.claim_runs([launching(schedule, at)])
        outcome = RunOutcome(run.id, status, at, attempts=1, error=f"boom {i}")
        (finished,) = await store.finish_runs([outcome], max_consecutive_failures=0)
        expected = [1, 2, 0][i]
        assert finished.schedule.consecutive_failures == expected
    stored = await store.get_schedule(schedule.id)
    assert stored.last_error_message == "boom 1"
    assert stored.last_error_at == NOW + timedelta(minutes=1)
    assert stored.last_executed_at == NOW + timedelta(minutes=2)


async def test_reaching_the_failure_limit_auto_pauses(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    paused = []
    for i in range(2):
        (run,) = await store.claim_runs([launching(schedule, NOW + timedelta(minutes=i))])
        outcome = RunOutcome(run.id, RunStatus.FAILED, NOW, error="HTTP 503")
        (finished,) = await store.finish_runs([outcome], max_consecutive_failures=2)
        paused.append(finished.auto_paused)
    assert paused == [False, True]
    stored = await store.get_schedule(schedule.id)
    assert not stored.enabled and stored.next_run_at is None
    assert stored.paused_reason is not None and "2 consecutive failures" in stored.paused_reason


async def test_re_enabling_clears_the_pause_reason(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    paused = await store.update_schedule(
        schedule.id, {"enabled": False, "paused_reason": "auto-paused"}, now=NOW
    )
    assert paused.paused_reason == "auto-paused"
    resumed = await store.update_schedule(schedule.id, {"enabled": True}, now=NOW)
    assert resumed.paused_reason is None and resumed.next_run_at is not None


async def test_one_time_is_disabled_after_its_fire_even_when_it_failed(store: Store) -> None:
    schedule = await store.create_schedule(one_time(), now=NOW)
    run = Run(
        schedule_id=schedule.id,
        scheduled_for=schedule.scheduled_at or NOW,
        trigger=RunTrigger.ONE_TIME,
        started_at=NOW,
    )
    (claimed,) = await store.claim_runs([run])
    outcome = RunOutcome(claimed.id, RunStatus.FAILED, NOW, error="refused")
    (finished,) = await store.finish_runs([outcome], max_consecutive_failures=0)
    assert not finished.schedule.enabled and finished.schedule.next_run_at is None


async def test_launching_runs_say_whether_their_request_was_dispatched(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    sent, unsent = await store.claim_runs(
        [launching(schedule), launching(schedule, NOW + timedelta(minutes=1))]
    )
    later = NOW + timedelta(seconds=3)
    await store.mark_dispatched(sent.id, at=later)
    runs = {run.id: run for run in await store.launching_runs()}
    assert runs[sent.id].dispatched_at == later and runs[sent.id].started_at == later
    assert runs[unsent.id].dispatched_at is None
    assert runs[unsent.id].started_at == unsent.started_at
    outcome = RunOutcome(sent.id, RunStatus.SUCCEEDED, NOW)
    await store.finish_runs([outcome], max_consecutive_failures=0)
    assert [run.id for run in await store.launching_runs()] == [unsent.id]


async def test_a_followed_run_is_unfinished_until_its_session_s_end(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    (run,) = await store.claim_runs([launching(schedule)])
    launched = RunOutcome(run.id, RunStatus.RUNNING, NOW, attempts=1, session_id="devin-1")
    (item,) = await store.finish_runs([launched], max_consecutive_failures=1)
    assert (item.run.status, item.run.finished_at, item.schedule.consecutive_failures) == (
        RunStatus.RUNNING,
        None,
        0,
    )
    assert [r.id for r in await store.unfinished_runs()] == [run.id]
    assert await store.launching_runs() == []
    later = NOW + timedelta(minutes=5)
    end = RunOutcome(
        run.id, RunStatus.FAILED, later, 1, error="session ended error", session_status="error"
    )
    (ended,) = await store.finish_runs([end], max_consecutive_failures=1)
    stored = await store.get_run(run.id)
    assert stored == ended.run and (stored.session_id, stored.session_status) == (
        "devin-1",
        "error",
    )
    assert (ended.schedule.consecutive_failures, ended.schedule.enabled, ended.auto_paused) == (
        1,
        False,
        True,
    )
    assert await store.unfinished_runs() == []
    assert await store.finish_runs([end], max_consecutive_failures=1) == []  # final: ignored


async def test_settling_a_catchup_claims_only_what_moved(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    due, later = schedule.next_run_at, datetime(2026, 11, 25, 9, tzinfo=UTC)
    catchup = launching(schedule, due)
    moved, claimed = await store.claim_catchups([(schedule.id, due, later)], [catchup])
    assert (moved, claimed) == ([schedule.id], [catchup])
    again = launching(schedule, due)  # a second planner, from the same stale state
    assert await store.claim_catchups([(schedule.id, due, later)], [again]) == ([], [])
    assert [run.id for run in await store.launching_runs()] == [catchup.id]
    assert (await store.get_schedule(schedule.id)).next_run_at == later


async def test_a_dropped_catchup_leaves_the_schedule_books_alone(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    (run,) = await store.claim_runs([launching(schedule)])
    outcome = RunOutcome(run.id, RunStatus.MISSED, NOW, error="catch-up dropped")
    (finished,) = await store.finish_runs([outcome], max_consecutive_failures=1)
    assert finished.run.status == RunStatus.MISSED
    assert finished.schedule == await store.get_schedule(schedule.id)
    assert (finished.schedule.last_executed_at, finished.schedule.enabled) == (None, True)


async def test_advance_is_a_compare_and_set(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    due = schedule.next_run_at
    later = datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert await store.advance_schedules([(schedule.id, due, later)]) == [schedule.id]
    assert await store.advance_schedules([(schedule.id, due, NOW)]) == []
    assert (await store.get_schedule(schedule.id)).next_run_at == later


async def test_an_unknown_field_is_refused_and_nothing_is_written(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    with pytest.raises(ValueError, match="no_such_field"):
        await store.update_schedule(created.id, {"no_such_field": 1, "name": "x"}, now=NOW)
    assert await store.get_schedule(created.id) == created


async def test_writes_apply_in_the_order_they_were_called(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    names = [f"n{i}" for i in range(30)]
    written = await asyncio.gather(
        *(store.update_schedule(created.id, {"name": name}, now=NOW) for name in names)
    )
    assert [s.version for s in written] == list(range(2, 32))
    assert (await store.get_schedule(created.id)).name == "n29"


async def test_due_schedules_page_by_instant_then_id(store: Store) -> None:
    made = [await store.create_schedule(recurring(f"s{i}", "0 9 * * *"), now=NOW) for i in range(5)]
    disabled = await store.create_schedule(recurring("off", "0 9 * * *"), now=NOW)
    await store.update_schedule(disabled.id, {"enabled": False}, now=NOW)
    until = NOW + timedelta(days=1)
    first = await store.due_schedules(until, limit=3)
    last = first[-1]
    rest = await store.due_schedules(until, limit=3, after=(last.next_run_at or NOW, last.id))
    assert [s.id for s in first + rest] == sorted(s.id for s in made)
    assert await store.due_schedules(NOW, limit=10) == []
    assert await store.count_active_schedules() == 5


async def test_fire_states_include_the_deleted_and_get_schedules_do_not(store: Store) -> None:
    kept = await store.create_schedule(recurring("kept"), now=NOW)
    gone = await store.create_schedule(recurring("gone"), now=NOW)
    await store.delete_schedule(gone.id, now=NOW)
    ids = [kept.id, gone.id, "sched-unknown"]
    states = await store.fire_states(ids)
    assert set(states) == {kept.id, gone.id}
    assert states[kept.id].applied_to(kept) is kept
    assert (states[gone.id].deleted_at, states[gone.id].next_run_at) == (NOW, None)
    assert states[gone.id].version == gone.version + 1
    assert await store.get_schedules(ids) == {kept.id: kept}


async def test_disable_if_due_is_a_compare_and_set(store: Store) -> None:
    schedule = await store.create_schedule(one_time(), now=NOW)
    due = schedule.next_run_at or NOW
    assert not await store.disable_if_due(schedule.id, due + timedelta(seconds=1), now=NOW)
    assert await store.disable_if_due(schedule.id, due, now=NOW)
    stored = await store.get_schedule(schedule.id)
    assert (stored.enabled, stored.next_run_at, stored.version) == (False, None, 2)


async def test_config_schedules_are_found_by_name_and_listed(store: Store) -> None:
    def from_file(name: str, org_id: str = "org-local") -> Schedule:
        return dataclasses.replace(recurring(name), from_config=True, org_id=org_id)

    b = await store.create_schedule(from_file("b"), now=NOW)
    other = await store.create_schedule(from_file("a", "org-other"), now=NOW)
    a = await store.create_schedule(from_file("a"), now=NOW)
    await store.create_schedule(recurring("made by the API"), now=NOW)
    assert [s.id for s in await store.list_config_schedules()] == [a.id, b.id, other.id]
    assert await store.find_schedule_by_name("org-local", "b") == b
    assert await store.find_schedule_by_name("org-other", "b") is None


async def test_schedules_on_launchers_are_the_live_ones_naming_them(store: Store) -> None:
    b = await store.create_schedule(dataclasses.replace(recurring("b"), launcher="devin"), now=NOW)
    a = await store.create_schedule(dataclasses.replace(recurring("a"), launcher="scope"), now=NOW)
    gone = await store.create_schedule(
        dataclasses.replace(recurring("gone"), launcher="devin"), now=NOW
    )
    await store.delete_schedule(gone.id, now=NOW)
    await store.create_schedule(recurring("on the default"), now=NOW)
    assert [s.id for s in await store.schedules_on_launchers({"devin", "scope"})] == [a.id, b.id]
    assert [s.id for s in await store.schedules_on_launchers(["devin"])] == [b.id]
    assert await store.schedules_on_launchers([]) == []


async def test_a_finished_run_recorded_once_per_instant(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    skipped = dataclasses.replace(launching(schedule), status=RunStatus.SKIPPED, finished_at=NOW)
    assert await store.record_finished_run(skipped)
    assert not await store.record_finished_run(dataclasses.replace(skipped, id="run-other"))
    assert await store.get_run(skipped.id) == skipped
    with pytest.raises(NotFound):
        await store.get_run("run-unknown")


async def test_runs_list_newest_first(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    instants = [NOW + timedelta(minutes=m) for m in (2, 0, 1)]
    await store.claim_runs([launching(schedule, at) for at in instants])
    page = await store.list_runs(schedule.id, limit=2, offset=0)
    assert page.total == 3
    assert [r.scheduled_for for r in page.items] == sorted(instants, reverse=True)[:2]


def finished(schedule: Schedule, at: datetime, status: RunStatus) -> Run:
    return dataclasses.replace(
        launching(schedule, at), status=status, finished_at=at + timedelta(seconds=5)
    )


async def test_previous_run_and_last_success(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    assert await store.previous_run(schedule.id, NOW) is None
    assert await store.last_success_at(schedule.id) is None
    hours = [NOW - timedelta(hours=h) for h in (3, 2, 1)]
    statuses = [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED]
    runs = [finished(schedule, at, status) for at, status in zip(hours, statuses, strict=True)]
    await store.claim_runs([*runs, launching(schedule, NOW)])
    assert await store.previous_run(schedule.id, NOW) == runs[2]  # before, not at
    assert await store.previous_run(schedule.id, hours[2]) == runs[1]
    assert await store.last_success_at(schedule.id) == hours[1] + timedelta(seconds=5)


async def test_launches_since_are_the_dispatched_runs_with_their_org(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    old, recent, unsent = (launching(schedule, NOW - timedelta(minutes=m)) for m in (90, 30, 10))
    await store.claim_runs([old, recent, unsent])
    await store.mark_dispatched(old.id, at=NOW - timedelta(minutes=90))
    await store.mark_dispatched(recent.id, at=NOW - timedelta(minutes=30))
    launches = await store.launches_since(NOW - timedelta(hours=1))
    assert [(item.org_id, item.run_id) for item in launches] == [("org-local", recent.id)]
    assert launches[0].dispatched_at == NOW - timedelta(minutes=30)


def playbook(title: str, *, org_id: str = "org-local") -> Playbook:
    return Playbook(org_id=org_id, title=title, body="b", created_at=NOW, updated_at=NOW)


async def test_playbooks_page_by_id_and_count(store: Store) -> None:
    made = [await store.create_playbook(playbook(f"p{i}")) for i in range(3)]
    await store.create_playbook(playbook("elsewhere", org_id="org-other"))
    first, more = await store.list_playbooks("org-local", first=2, after=None)
    rest, more_after = await store.list_playbooks("org-local", first=2, after=first[-1].id)
    assert [p.id for p in first + rest] == sorted(p.id for p in made)
    assert (more, more_after) == (True, False)
    assert await store.count_playbooks("org-local") == 3
    titles = await store.playbook_titles([made[0].id, "playbook-unknown"])
    assert titles == {made[0].id: "p0"}


async def test_a_playbook_edit_and_upsert(store: Store) -> None:
    created = await store.create_playbook(playbook("first"))
    with pytest.raises(NotFound):
        await store.get_playbook(created.id, org_id="org-other")
    edited = await store.update_playbook(created.id, {"title": "second"}, org_id="org-local")
    assert await store.get_playbook(created.id) == edited and edited.title == "second"
    replacement = dataclasses.replace(
        created, title="third", created_at=NOW + timedelta(days=1), created_by="someone"
    )
    upserted = await store.upsert_playbook(replacement)
    assert (upserted.title, upserted.created_at, upserted.created_by) == ("third", NOW, None)
    deleted = await store.update_playbook(created.id, {"deleted_at": NOW})
    assert deleted.deleted_at == NOW
    with pytest.raises(NotFound):
        await store.get_playbook(created.id)
    assert await store.count_playbooks("org-local") == 0
