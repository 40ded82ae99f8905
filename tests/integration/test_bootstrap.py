"""Bootstrap on a real SQLite store: the file's playbooks and schedules win, run state stays."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.bootstrap import CONFIG_AUTHOR, REMOVED_REASON, BootstrapResult, apply_bootstrap
from daemon.config import Config
from storage.domain import Schedule
from storage.store import Store

ORG = "org-local"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


class RecordingChanges:
    """Stands in for the engine: records the schedules it is told about."""

    def __init__(self) -> None:
        self.seen: list[Schedule] = []

    async def changed(self, schedule: Schedule) -> None:
        self.seen.append(schedule)


def nightly(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "prompt": "Summarise the day.",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "run_as_user_id": "user-alice",
        "catchup_window": "15m",
        "jitter": "30s",
        "playbook_id": "playbook-summary",
        "tags": ["nightly"],
        **overrides,
    }


def launch(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "launch",
        "prompt": "Ship it.",
        "schedule_type": "one_time",
        "scheduled_at": "2030-01-02T09:00:00Z",
        **overrides,
    }


def summary_playbook(**overrides: Any) -> dict[str, Any]:
    return {"id": "playbook-summary", "title": "Summary", "body": "Five bullets.", **overrides}


def config(
    schedules: list[dict[str, Any]], playbooks: list[dict[str, Any]] | None = None
) -> Config:
    return Config.model_validate(
        {
            "orgs": [{"id": ORG, "name": "Local"}],
            "users": [{"id": "user-alice", "orgs": [ORG], "permissions": ["UseDevinSessions"]}],
            "playbooks": playbooks or [],
            "schedules": schedules,
        }
    )


async def apply(
    store: Store, cfg: Config, *, now: datetime = NOW
) -> tuple[BootstrapResult, RecordingChanges]:
    events = RecordingChanges()
    return await apply_bootstrap(cfg, store, events, now=now), events


async def stored(store: Store, name: str) -> Schedule:
    schedule = await store.find_schedule_by_name(ORG, name)
    assert schedule is not None, name
    return schedule


async def api_schedule(store: Store, name: str, **fields: Any) -> Schedule:
    made = Schedule(
        org_id=ORG,
        name=name,
        prompt="made through the API",
        cron="*/5 * * * *",
        created_by="service-admin",
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )
    return await store.create_schedule(made, now=NOW)


async def test_new_entries_are_created_as_config_schedules(store: Store) -> None:
    result, events = await apply(store, config([nightly(), launch()], [summary_playbook()]))

    schedule = await stored(store, "nightly")
    assert result.created == (schedule.id, (await stored(store, "launch")).id)
    assert (result.updated, result.disabled, result.playbooks) == ((), (), ("playbook-summary",))
    assert [s.id for s in events.seen] == list(result.created)
    assert schedule.from_config and schedule.created_by == CONFIG_AUTHOR
    assert (schedule.org_id, schedule.cron, schedule.timezone) == (ORG, "0 2 * * *", "Europe/Paris")
    assert (schedule.catchup_window_s, schedule.jitter_s) == (900.0, 30.0)
    assert schedule.run_as_user_id == schedule.owner_user_id == "user-alice"
    assert schedule.tags == ["nightly"] and schedule.enabled
    # 02:00 in Paris on 2 January is 01:00 UTC.
    assert schedule.next_run_at == datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    one_time = await stored(store, "launch")
    assert one_time.next_run_at == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)
    playbook = await store.get_playbook("playbook-summary", org_id=ORG)
    assert (playbook.title, playbook.body, playbook.created_by) == (
        "Summary",
        "Five bullets.",
        "config",
    )


async def test_an_unchanged_file_writes_nothing(store: Store) -> None:
    cfg = config([nightly(), launch()], [summary_playbook()])
    await apply(store, cfg)
    before = await stored(store, "nightly")

    result, events = await apply(store, cfg, now=LATER)

    assert result == BootstrapResult()
    assert events.seen == []
    after = await stored(store, "nightly")
    assert (after.version, after.updated_at) == (before.version, before.updated_at)
    playbook = await store.get_playbook("playbook-summary")
    assert playbook.updated_at == NOW


async def test_the_file_wins_over_api_edits_but_run_state_is_kept(store: Store) -> None:
    await apply(store, config([nightly()]))
    created = await stored(store, "nightly")
    run_state = {
        "consecutive_failures": 3,
        "last_error_at": NOW,
        "last_error_message": "session service answered HTTP 503",
        "last_executed_at": NOW,
        "stateful_session_id": "session-1",
    }
    api_edits = {"prompt": "edited through the API", "notify_on": "always", "last_edited_by": "x"}
    await store.update_schedule(created.id, run_state | api_edits, now=NOW)

    result, events = await apply(store, config([nightly()]), now=LATER)

    schedule = await stored(store, "nightly")
    assert result.updated == (created.id,) and [s.id for s in events.seen] == [created.id]
    assert (schedule.prompt, schedule.notify_on) == ("Summarise the day.", "failure")
    assert schedule.last_edited_by == CONFIG_AUTHOR and schedule.updated_at == LATER
    assert {key: getattr(schedule, key) for key in run_state} == run_state


async def test_a_changed_entry_reschedules(store: Store) -> None:
    await apply(store, config([nightly()]))
    before = await stored(store, "nightly")

    result, events = await apply(store, config([nightly(cron="30 6 * * *", timezone="UTC")]))

    after = await stored(store, "nightly")
    assert result.updated == (before.id,)
    assert after.version == before.version + 1
    assert after.next_run_at == datetime(2030, 1, 2, 6, 30, tzinfo=UTC)
    assert events.seen == [after]


async def test_a_removed_entry_is_disabled_and_api_schedules_are_never_touched(
    store: Store,
) -> None:
    made = await api_schedule(store, "from-the-api")
    await apply(store, config([nightly(), launch()]))
    removed = await stored(store, "launch")

    result, events = await apply(store, config([nightly()]), now=LATER)

    assert result.disabled == (removed.id,) and [s.id for s in events.seen] == [removed.id]
    disabled = await store.get_schedule(removed.id)
    assert (disabled.enabled, disabled.paused_reason) == (False, REMOVED_REASON)
    assert disabled.next_run_at is None and disabled.deleted_at is None
    assert await store.get_schedule(made.id) == made
    again, _ = await apply(store, config([nightly()]), now=LATER)
    assert again == BootstrapResult()


async def test_an_entry_listed_again_is_enabled_again(store: Store) -> None:
    await apply(store, config([nightly(), launch()]))
    await apply(store, config([nightly()]))

    result, _ = await apply(store, config([nightly(), launch()]), now=LATER)

    schedule = await stored(store, "launch")
    assert result.updated == (schedule.id,)
    assert (schedule.enabled, schedule.paused_reason) == (True, None)
    assert schedule.next_run_at == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)


async def test_an_auto_paused_schedule_stays_paused(store: Store) -> None:
    await apply(store, config([nightly()]))
    schedule = await stored(store, "nightly")
    pause = {"enabled": False, "paused_reason": "auto-paused after 3 consecutive failures: boom"}
    await store.update_schedule(schedule.id, pause, now=NOW)

    unchanged, _ = await apply(store, config([nightly()]), now=LATER)
    await apply(store, config([nightly(prompt="A better prompt.")]), now=LATER)

    assert unchanged == BootstrapResult()
    after = await stored(store, "nightly")
    assert after.prompt == "A better prompt."
    assert (after.enabled, after.paused_reason) == (False, pause["paused_reason"])


async def test_a_fired_one_time_schedule_stays_disabled_until_moved(store: Store) -> None:
    await apply(store, config([launch()]))
    schedule = await stored(store, "launch")
    assert schedule.scheduled_at is not None
    fired = {"enabled": False, "last_executed_at": schedule.scheduled_at + timedelta(seconds=1)}
    await store.update_schedule(schedule.id, fired, now=NOW)

    unchanged, _ = await apply(store, config([launch()]), now=LATER)
    moved, _ = await apply(store, config([launch(scheduled_at="2030-02-01T09:00:00Z")]))

    assert unchanged == BootstrapResult()
    assert moved.updated == (schedule.id,)
    after = await stored(store, "launch")
    assert after.enabled and after.next_run_at == datetime(2030, 2, 1, 9, 0, tzinfo=UTC)


async def test_an_api_schedule_with_a_config_name_is_adopted(store: Store) -> None:
    made = await api_schedule(store, "nightly")

    result, _ = await apply(store, config([nightly()]))
    adopted = await stored(store, "nightly")
    await apply(store, config([]))

    assert result.updated == (made.id,) and adopted.id == made.id
    assert adopted.from_config and adopted.prompt == "Summarise the day."
    assert adopted.created_by == "service-admin"
    assert (await store.get_schedule(made.id)).paused_reason == REMOVED_REASON


async def test_playbooks_follow_the_file(store: Store) -> None:
    await apply(store, config([], [summary_playbook()]))

    retitled, _ = await apply(store, config([], [summary_playbook(title="Digest")]), now=LATER)
    playbook = await store.get_playbook("playbook-summary")
    await store.update_playbook(playbook.id, {"deleted_at": LATER})
    restored, _ = await apply(store, config([], [summary_playbook(title="Digest")]), now=LATER)

    assert retitled.playbooks == restored.playbooks == ("playbook-summary",)
    assert (playbook.title, playbook.created_at, playbook.updated_at) == ("Digest", NOW, LATER)
    assert (await store.get_playbook(playbook.id)).deleted_at is None


async def test_a_config_schedule_deleted_through_the_api_comes_back(store: Store) -> None:
    await apply(store, config([nightly()]))
    deleted = await stored(store, "nightly")
    await store.delete_schedule(deleted.id, now=NOW)

    result, _ = await apply(store, config([nightly()]), now=LATER)

    recreated = await stored(store, "nightly")
    assert result.created == (recreated.id,) and recreated.id != deleted.id


def test_every_mapped_field_is_a_schedule_column() -> None:
    from daemon.bootstrap import schedule_fields

    entry = config([nightly()]).schedules[0]
    columns = {field.name for field in dataclasses.fields(Schedule)}
    assert set(schedule_fields(entry)) <= columns
