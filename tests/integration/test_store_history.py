"""The store's behaviour for conditional edits (`if_version`) and the edit history, as
`storage.store.Store` documents them; part of the behavioural suite of `test_store.py`,
run against every backend of `STORE_BACKENDS`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage.domain import Run, RunOutcome
from storage.enums import HistoryAction, RunStatus, RunTrigger
from storage.errors import NotFound, VersionMismatch
from storage.store import Store
from tests.conftest import STORE_BACKENDS
from tests.integration.test_store import NOW, launching, one_time, recurring

LATER = NOW + timedelta(minutes=5)


@pytest.fixture(params=sorted(STORE_BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await STORE_BACKENDS[request.param](tmp_path)
    yield opened
    await opened.close()


async def _actions(store: Store, schedule_id: str) -> list[tuple[str, str | None]]:
    page = await store.schedule_history(schedule_id, limit=100, offset=0)
    return [(entry.action.value, entry.by) for entry in page.items]


async def test_an_edit_expecting_the_stored_version_is_written(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    updated = await store.update_schedule(
        created.id, {"name": "renamed"}, now=LATER, if_version=[created.version]
    )
    assert (updated.name, updated.version) == ("renamed", created.version + 1)


async def test_an_edit_expecting_another_version_writes_nothing(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    edited = await store.update_schedule(created.id, {"name": "b", "last_edited_by": "u"}, now=NOW)
    with pytest.raises(VersionMismatch) as refused:
        await store.update_schedule(
            created.id, {"name": "c", "last_edited_by": "u"}, now=LATER, if_version=[1]
        )
    assert refused.value.current == edited.version == 2
    assert await store.get_schedule(created.id) == edited
    assert await _actions(store, created.id) == [("updated", "u"), ("created", None)]


async def test_of_two_edits_expecting_one_version_exactly_one_wins(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    outcomes = await asyncio.gather(
        *(
            store.update_schedule(created.id, {"name": name}, now=LATER, if_version=[1])
            for name in ("first", "second")
        ),
        return_exceptions=True,
    )
    (winner,) = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [type(o) for o in outcomes if isinstance(o, BaseException)] == [VersionMismatch]
    assert await store.get_schedule(created.id) == winner


async def test_a_delete_expecting_another_version_deletes_nothing(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    await store.update_schedule(created.id, {"prompt": "new"}, now=NOW)
    with pytest.raises(VersionMismatch):
        await store.delete_schedule(created.id, now=LATER, by="u", if_version=[1])
    assert (await store.get_schedule(created.id)).deleted_at is None
    deleted = await store.delete_schedule(created.id, now=LATER, by="u", if_version=[1, 2])
    assert deleted.deleted_at == LATER


async def test_history_lists_create_edit_and_delete_newest_first(store: Store) -> None:
    schedule = dataclasses.replace(recurring(), created_by="alice", last_edited_by="alice")
    created = await store.create_schedule(schedule, now=NOW)
    await store.update_schedule(
        created.id, {"cron": "0 10 * * *", "last_edited_by": "bob"}, now=LATER
    )
    await store.delete_schedule(created.id, now=LATER, by="carol")
    page = await store.schedule_history(created.id, limit=10, offset=0)
    assert page.total == 3
    deleted, edited, made = page.items
    assert (made.action, made.by, made.at) == (HistoryAction.CREATED, "alice", NOW)
    assert made.changes["frequency"] == [None, "0 9 * * 1-5"]
    assert made.changes["enabled"] == [None, True]
    assert "scheduled_at" not in made.changes  # null on both sides: nothing to tell
    assert (edited.action, edited.by, edited.at) == (HistoryAction.UPDATED, "bob", LATER)
    assert edited.changes == {"frequency": ["0 9 * * 1-5", "0 10 * * *"]}
    assert (deleted.action, deleted.by) == (HistoryAction.DELETED, "carol")
    assert deleted.changes["name"] == ["triage", None]
    assert deleted.changes["frequency"] == ["0 10 * * *", None]


async def test_history_pages_and_keeps_a_deleted_schedule(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    for i in range(4):
        await store.update_schedule(created.id, {"prompt": f"p{i}"}, now=NOW)
    await store.delete_schedule(created.id, now=NOW)
    first = await store.schedule_history(created.id, limit=2, offset=0, org_id="org-local")
    rest = await store.schedule_history(created.id, limit=10, offset=2, org_id="org-local")
    assert first.total == rest.total == 6
    assert [e.action for e in first.items] == [HistoryAction.DELETED, HistoryAction.UPDATED]
    assert [e.changes["prompt"][1] for e in (first.items[1], *rest.items[:3])] == [
        "p3",
        "p2",
        "p1",
        "p0",
    ]
    assert rest.items[-1].action == HistoryAction.CREATED
    ids = [e.id for e in (*first.items, *rest.items)]
    assert ids == sorted(ids, key=lambda i: -(i or 0))


async def test_history_of_an_unknown_or_foreign_schedule_is_not_found(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    with pytest.raises(NotFound):
        await store.schedule_history("sched-none", limit=10, offset=0)
    with pytest.raises(NotFound):
        await store.schedule_history(created.id, limit=10, offset=0, org_id="org-other")
    with pytest.raises(NotFound):
        await store.schedule_history(created.id, limit=10, offset=0, agents={"reporter"})


async def test_an_edit_changing_no_recorded_field_adds_no_entry(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)
    same = await store.update_schedule(created.id, {"name": created.name}, now=LATER)
    assert same.version == created.version + 1  # the write happened: updated_at moved
    assert await _actions(store, created.id) == [("created", None)]


async def test_a_failed_edit_records_nothing(store: Store) -> None:
    created = await store.create_schedule(recurring(), now=NOW)

    def refuse(before: object, after: object) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await store.update_schedule(created.id, {"name": "x"}, now=NOW, check=refuse)
    assert await _actions(store, created.id) == [("created", None)]


async def test_an_auto_pause_is_history_by_the_engine_and_moves_the_version(
    store: Store,
) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    for i in range(2):
        (run,) = await store.claim_runs([launching(schedule, NOW + timedelta(minutes=i))])
        ended = NOW + timedelta(minutes=i, seconds=30)
        outcome = RunOutcome(run.id, RunStatus.FAILED, ended, error="HTTP 503")
        await store.finish_runs([outcome], max_consecutive_failures=2)
    stored = await store.get_schedule(schedule.id)
    assert stored.version == schedule.version + 1  # the first failure alone moved nothing
    assert stored.updated_at == NOW + timedelta(minutes=1, seconds=30)
    page = await store.schedule_history(schedule.id, limit=10, offset=0)
    paused = page.items[0]
    assert (paused.action, paused.by, paused.at) == (HistoryAction.PAUSED, "engine", ended)
    assert paused.changes == {
        "enabled": [True, False],
        "paused_reason": [None, stored.paused_reason],
    }
    assert page.total == 2


async def test_a_one_time_fire_disables_it_in_the_history(store: Store) -> None:
    schedule = await store.create_schedule(one_time(), now=NOW)
    run = Run(
        schedule_id=schedule.id,
        scheduled_for=schedule.scheduled_at or NOW,
        trigger=RunTrigger.ONE_TIME,
        started_at=NOW,
    )
    (claimed,) = await store.claim_runs([run])
    outcome = RunOutcome(claimed.id, RunStatus.SUCCEEDED, LATER)
    (finished,) = await store.finish_runs([outcome], max_consecutive_failures=0)
    assert finished.schedule.version == schedule.version + 1
    (done, _) = (await store.schedule_history(schedule.id, limit=10, offset=0)).items
    assert (done.action, done.by, done.changes) == (
        HistoryAction.DISABLED,
        "engine",
        {"enabled": [True, False]},
    )


async def test_a_missed_one_time_disabled_by_the_engine_is_history(store: Store) -> None:
    schedule = await store.create_schedule(one_time(), now=NOW)
    assert await store.disable_if_due(schedule.id, schedule.next_run_at or NOW, now=LATER)
    (done, _) = (await store.schedule_history(schedule.id, limit=10, offset=0)).items
    assert (done.action, done.by, done.at) == (HistoryAction.DISABLED, "engine", LATER)


async def test_run_bookkeeping_alone_is_not_history(store: Store) -> None:
    schedule = await store.create_schedule(recurring(), now=NOW)
    (run,) = await store.claim_runs([launching(schedule)])
    outcome = RunOutcome(run.id, RunStatus.FAILED, LATER, error="boom")
    (finished,) = await store.finish_runs([outcome], max_consecutive_failures=0)
    assert finished.schedule.consecutive_failures == 1
    assert finished.schedule.version == schedule.version
    await store.advance_schedules([(schedule.id, schedule.next_run_at, LATER)])
    assert await _actions(store, schedule.id) == [("created", None)]
