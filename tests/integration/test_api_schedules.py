"""The Devin v3 schedules API over a real server and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from daemon.bootstrap import apply_bootstrap
from daemon.config import Config
from storage.domain import Schedule
from storage.store import Store
from tests.conftest import (
    ADMIN_TOKEN,
    ORG,
    OTHER_ORG,
    OTHER_TOKEN,
    SCHEDULER_TOKEN,
    ApiHarness,
    FakeClock,
    RecordingEvents,
    auth,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
BASE = f"/v3/organizations/{ORG}"
SCHEDULES = f"{BASE}/schedules"
TOMORROW_9 = "2026-11-24T09:00:00Z"

SCHEDULE_KEYS = {
    # the seed's response
    "agent",
    "consecutive_failures",
    "created_at",
    "created_by",
    "enabled",
    "frequency",
    "last_error_at",
    "last_error_message",
    "last_executed_at",
    "name",
    "notify_on",
    "org_id",
    "playbook",
    "prompt",
    "scheduled_session_id",
    "updated_at",
    "schedule_type",
    "scheduled_at",
    "slack_channel_id",
    "slack_team_id",
    # Devin's other schedule fields and agentcron's extensions
    "tags",
    "bypass_approval",
    "interval_count",
    "target_devin_id",
    "platform",
    "last_edited_by",
    "run_as_user_id",
    "timezone",
    "next_run_at",
    "paused_reason",
    # extensions a client can set
    "overlap",
    "catchup_window_s",
    "jitter_s",
    "start_at",
    "end_at",
    "launcher",
    "prompt_format",
    # read-only: who owns the definition
    "managed_by",
}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def api(api_factory: Callable[..., Any], clock: FakeClock) -> ApiHarness:
    harness: ApiHarness = await api_factory(clock=clock)
    return harness


async def create(api: ApiHarness, token: str = ADMIN_TOKEN, **fields: Any) -> dict[str, Any]:
    body = {"name": "triage", "prompt": "triage the new issues", "frequency": "0 9 * * *"}
    body.update(fields)
    status, answer = await api.call("POST", SCHEDULES, token=token, json=body)
    assert status == 200, answer
    return dict(answer)


async def get(api: ApiHarness, schedule_id: str) -> dict[str, Any]:
    status, answer = await api.call("GET", f"{SCHEDULES}/{schedule_id}")
    assert status == 200, answer
    return dict(answer)


async def patch(api: ApiHarness, schedule_id: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    return await api.call("PATCH", f"{SCHEDULES}/{schedule_id}", json=body, **kwargs)


def locs(answer: Any) -> list[list[Any]]:
    assert isinstance(answer["detail"], list), answer
    return [item["loc"] for item in answer["detail"]]


class Unchanged:
    """Captures a schedule (its JSON and its stored value) to assert a refusal changed nothing."""

    def __init__(self, api: ApiHarness, schedule_id: str) -> None:
        self.api = api
        self.schedule_id = schedule_id

    async def __aenter__(self) -> Unchanged:
        self.json = await get(self.api, self.schedule_id)
        self.stored = await self.api.store.get_schedule(self.schedule_id)
        self.changes = len(self.api.events.changed_ids)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert await get(self.api, self.schedule_id) == self.json
            assert await self.api.store.get_schedule(self.schedule_id) == self.stored
            assert len(self.api.events.changed_ids) == self.changes


# -- create ---------------------------------------------------------------------------------


async def test_create_answers_the_schedule_with_its_defaults(api: ApiHarness) -> None:
    answer = await create(api)
    assert set(answer) == SCHEDULE_KEYS
    assert answer["scheduled_session_id"].startswith("sched-")
    assert answer | {"scheduled_session_id": None} == {
        "scheduled_session_id": None,
        "org_id": ORG,
        "name": "triage",
        "prompt": "triage the new issues",
        "agent": "devin",
        "schedule_type": "recurring",
        "frequency": "0 9 * * *",
        "scheduled_at": None,
        "enabled": True,
        "notify_on": "failure",
        "playbook": None,
        "slack_channel_id": None,
        "slack_team_id": None,
        "consecutive_failures": 0,
        "last_error_at": None,
        "last_error_message": None,
        "last_executed_at": None,
        "created_at": "2026-11-23T12:00:00Z",
        "created_by": "service-admin",
        "updated_at": "2026-11-23T12:00:00Z",
        "tags": None,
        "bypass_approval": False,
        "interval_count": None,
        "target_devin_id": None,
        "platform": None,
        "last_edited_by": "service-admin",
        "run_as_user_id": None,
        "timezone": "UTC",
        "next_run_at": TOMORROW_9,
        "paused_reason": None,
        "overlap": "skip",
        "catchup_window_s": None,
        "jitter_s": 0.0,
        "start_at": None,
        "end_at": None,
        "launcher": None,
        "prompt_format": "text",
        "managed_by": None,
    }


async def test_create_stores_every_field_sent(api: ApiHarness) -> None:
    status, playbook = await api.call(
        "POST", f"{BASE}/playbooks", json={"title": "Triage", "body": "steps"}
    )
    assert status == 200
    answer = await create(
        api,
        agent="data_analyst",
        notify_on="always",
        enabled=True,
        playbook_id=playbook["playbook_id"],
        create_as_user_id="user-alice",
        slack_channel_id="C123",
        slack_team_id="T123",
        tags=["ops", "daily"],
        bypass_approval=True,
        interval_count=2,
        target_devin_id="devin-abc",
        platform="linux",
        timezone="Europe/Berlin",
        start_at="2026-12-01T00:00:00Z",
        end_at="2027-01-01T00:00:00+01:00",
        overlap="allow",
        catchup_window_s=600,
        jitter_s=1.5,
    )
    assert answer["agent"] == "data_analyst"
    assert answer["notify_on"] == "always"
    assert answer["playbook"] == {"playbook_id": playbook["playbook_id"], "title": "Triage"}
    assert answer["run_as_user_id"] == "user-alice"
    assert (answer["slack_channel_id"], answer["slack_team_id"]) == ("C123", "T123")
    assert answer["tags"] == ["ops", "daily"]
    assert answer["bypass_approval"] is True
    assert answer["interval_count"] == 2
    assert (answer["target_devin_id"], answer["platform"]) == ("devin-abc", "linux")
    assert answer["timezone"] == "Europe/Berlin"
    assert (answer["start_at"], answer["end_at"]) == (
        "2026-12-01T00:00:00Z",
        "2026-12-31T23:00:00Z",
    )
    assert (answer["overlap"], answer["catchup_window_s"], answer["jitter_s"]) == (
        "allow",
        600,
        1.5,
    )
    assert await get(api, answer["scheduled_session_id"]) == answer
    # 09:00 in Berlin (UTC+1 in December), on or after start_at
    assert answer["next_run_at"] == "2026-12-01T08:00:00Z"
    stored = await api.store.get_schedule(answer["scheduled_session_id"])
    assert stored.owner_user_id == "user-alice"
    assert stored.overlap == "allow"
    assert (stored.catchup_window_s, stored.jitter_s) == (600, 1.5)
    assert stored.end_at == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


async def test_answers_are_utf8_json_and_keep_any_text_as_sent(api: ApiHarness) -> None:
    name, prompt = "Revue hebdo — ünïcode ✓", 'Quote "this", then \\ and a tab\there.'
    body = {"name": name, "prompt": prompt, "frequency": "0 9 * * 1"}
    async with api.http.post(api.url(SCHEDULES), json=body, headers=auth()) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        answer = json.loads((await response.read()).decode("utf-8"))
    assert (answer["name"], answer["prompt"]) == (name, prompt)


async def test_create_one_time_fires_at_scheduled_at(api: ApiHarness) -> None:
    answer = await create(
        api, schedule_type="one_time", frequency=None, scheduled_at="2026-11-23T15:30:00+02:00"
    )
    assert answer["schedule_type"] == "one_time"
    assert answer["frequency"] is None
    assert answer["scheduled_at"] == "2026-11-23T13:30:00Z"
    assert answer["next_run_at"] == "2026-11-23T13:30:00Z"


async def test_a_datetime_without_offset_is_read_as_utc(api: ApiHarness) -> None:
    answer = await create(api, schedule_type="one_time", scheduled_at="2026-11-23T18:00:00")
    assert answer["scheduled_at"] == "2026-11-23T18:00:00Z"


async def test_a_disabled_schedule_has_no_next_run(api: ApiHarness) -> None:
    answer = await create(api, enabled=False)
    assert answer["enabled"] is False
    assert answer["next_run_at"] is None


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"frequency": None}, ["body", "frequency"]),
        ({"frequency": "0 0 30 2 *"}, ["body", "frequency"]),
        ({"frequency": "every day"}, ["body", "frequency"]),
        ({"frequency": "0 0 * * * *"}, ["body", "frequency"]),
        ({"schedule_type": "one_time"}, ["body", "scheduled_at"]),
        (
            {"schedule_type": "one_time", "scheduled_at": "2026-11-23T11:59:59Z"},
            ["body", "scheduled_at"],
        ),
        (
            {"schedule_type": "one_time", "scheduled_at": "2026-11-23T12:00:00Z"},
            ["body", "scheduled_at"],
        ),
        ({"schedule_type": "weekly"}, ["body", "schedule_type"]),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"timezone": "../../etc/passwd"}, ["body", "timezone"]),
        ({"name": ""}, ["body", "name"]),
        ({"prompt": None}, ["body", "prompt"]),
        ({"agent": "gpt"}, ["body", "agent"]),
        ({"notify_on": "sometimes"}, ["body", "notify_on"]),
        ({"enabled": "yes"}, ["body", "enabled"]),
        ({"interval_count": "5"}, ["body", "interval_count"]),
        ({"interval_count": 0}, ["body", "interval_count"]),
        ({"interval_count": 10**30}, ["body", "interval_count"]),
        ({"tags": "ops"}, ["body", "tags"]),
        ({"tags": [1]}, ["body", "tags", 0]),
        ({"overlap": "queue"}, ["body", "overlap"]),
        ({"jitter_s": -1}, ["body", "jitter_s"]),
        ({"catchup_window_s": "60"}, ["body", "catchup_window_s"]),
        ({"scheduled_at": "tomorrow"}, ["body", "scheduled_at"]),
        ({"start_at": "0001-01-01T00:00:00+05:00"}, ["body", "start_at"]),
        ({"end_at": "9999-12-31T23:59:59-05:00"}, ["body", "end_at"]),
        (
            {"start_at": "2027-01-01T00:00:00Z", "end_at": "2026-12-01T00:00:00Z"},
            ["body", "end_at"],
        ),
        ({"frequncy": "0 9 * * *"}, ["body", "frequncy"]),
        ({"run_as_user_id": "user-alice"}, ["body", "run_as_user_id"]),
    ],
)
async def test_create_refuses_invalid_bodies_with_422(
    api: ApiHarness, fields: dict[str, Any], loc: list[Any]
) -> None:
    body = {"name": "triage", "prompt": "triage", "frequency": "0 9 * * *"} | fields
    status, answer = await api.call("POST", SCHEDULES, json=body)
    assert status == 422, answer
    assert loc in locs(answer)
    for item in answer["detail"]:
        assert isinstance(item["msg"], str) and item["msg"]
        assert isinstance(item["type"], str) and item["type"]
    total = (await api.store.list_schedules(ORG, limit=10, offset=0)).total
    assert total == 0
    assert api.events.changed_ids == []


async def test_create_requires_name_and_prompt(api: ApiHarness) -> None:
    status, answer = await api.call("POST", SCHEDULES, json={"frequency": "@daily"})
    assert status == 422
    assert ["body", "name"] in locs(answer) and ["body", "prompt"] in locs(answer)
    assert {item["type"] for item in answer["detail"]} == {"missing"}


async def test_a_never_firing_cron_is_explained(api: ApiHarness) -> None:
    body = {"name": "n", "prompt": "p", "frequency": "0 0 30 2 *"}
    status, answer = await api.call("POST", SCHEDULES, json=body)
    assert status == 422
    assert "never fires" in answer["detail"][0]["msg"]


async def test_create_with_unknown_or_foreign_playbook_is_404(api: ApiHarness) -> None:
    status, foreign = await api.call(
        "POST",
        f"/v3/organizations/{OTHER_ORG}/playbooks",
        token=OTHER_TOKEN,
        json={"title": "theirs", "body": "b"},
    )
    assert status == 200
    for playbook_id in ("playbook-nope", foreign["playbook_id"]):
        body = {"name": "n", "prompt": "p", "frequency": "@daily", "playbook_id": playbook_id}
        status, answer = await api.call("POST", SCHEDULES, json=body)
        assert status == 404
        assert answer == {"detail": f"Playbook '{playbook_id}' not found"}


async def test_create_as_user_needs_impersonation(api: ApiHarness) -> None:
    body = {"name": "n", "prompt": "p", "frequency": "@daily", "create_as_user_id": "user-alice"}
    status, answer = await api.call("POST", SCHEDULES, token=SCHEDULER_TOKEN, json=body)
    assert status == 403
    assert isinstance(answer["detail"], str) and "ImpersonateOrgSessions" in answer["detail"]


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("user-bob", "UseDevinSessions"),
        ("user-carol", "not a member"),
        ("user-nobody", "not a member"),
    ],
)
async def test_create_as_user_refuses_users_who_cannot_run_sessions(
    api: ApiHarness, user_id: str, reason: str
) -> None:
    body = {"name": "n", "prompt": "p", "frequency": "@daily", "create_as_user_id": user_id}
    status, answer = await api.call("POST", SCHEDULES, json=body)
    assert status == 422
    (item,) = answer["detail"]
    assert item["loc"] == ["body", "create_as_user_id"]
    assert reason in item["msg"]


async def test_the_beta_base_serves_the_same_schedules(api: ApiHarness) -> None:
    created = await create(api)
    status, answer = await api.call(
        "GET", f"/v3beta1/organizations/{ORG}/schedules/{created['scheduled_session_id']}"
    )
    assert status == 200
    assert answer == created


# -- list and read --------------------------------------------------------------------------


async def test_list_pages_by_offset_in_creation_order(api: ApiHarness, clock: FakeClock) -> None:
    ids = []
    for n in range(5):
        ids.append((await create(api, name=f"s{n}"))["scheduled_session_id"])
        clock.advance(1)
    pages = []
    offset: str | None = "0"
    while offset is not None:
        status, page = await api.call("GET", f"{SCHEDULES}?limit=2&offset={offset}")
        assert status == 200
        assert set(page) == {"items", "end_cursor", "has_next_page", "total"}
        assert page["total"] == 5
        assert page["has_next_page"] is (page["end_cursor"] is not None)
        pages.append([item["scheduled_session_id"] for item in page["items"]])
        offset = page["end_cursor"]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]


async def test_list_defaults_and_an_empty_tail(api: ApiHarness) -> None:
    created = await create(api)
    status, page = await api.call("GET", SCHEDULES)
    assert status == 200
    assert page == {"items": [created], "end_cursor": None, "has_next_page": False, "total": 1}
    status, page = await api.call("GET", f"{SCHEDULES}?offset=7")
    assert (status, page["items"], page["total"]) == (200, [], 1)


async def test_list_holds_only_the_orgs_schedules(api: ApiHarness) -> None:
    await create(api)
    other_base = f"/v3/organizations/{OTHER_ORG}/schedules"
    body = {"name": "theirs", "prompt": "p", "frequency": "@daily"}
    status, theirs = await api.call("POST", other_base, token=OTHER_TOKEN, json=body)
    assert status == 200 and theirs["org_id"] == OTHER_ORG
    status, page = await api.call("GET", SCHEDULES)
    assert [item["name"] for item in page["items"]] == ["triage"]


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("limit=0", ["query", "limit"]),
        ("limit=101", ["query", "limit"]),
        ("limit=abc", ["query", "limit"]),
        ("limit=", ["query", "limit"]),
        ("offset=-1", ["query", "offset"]),
        ("offset=x", ["query", "offset"]),
        ("offset=99999999999999999999", ["query", "offset"]),
    ],
)
async def test_list_refuses_bad_paging(api: ApiHarness, query: str, loc: list[str]) -> None:
    status, answer = await api.call("GET", f"{SCHEDULES}?{query}")
    assert status == 422
    assert loc in locs(answer)


async def test_get_unknown_deleted_or_foreign_schedule_is_404(api: ApiHarness) -> None:
    body = {"name": "theirs", "prompt": "p", "frequency": "@daily"}
    status, theirs = await api.call(
        "POST", f"/v3/organizations/{OTHER_ORG}/schedules", token=OTHER_TOKEN, json=body
    )
    assert status == 200
    deleted = await create(api)
    await api.call("DELETE", f"{SCHEDULES}/{deleted['scheduled_session_id']}")
    for schedule_id in (
        "sched-nope",
        theirs["scheduled_session_id"],
        deleted["scheduled_session_id"],
    ):
        status, answer = await api.call("GET", f"{SCHEDULES}/{schedule_id}")
        assert status == 404
        assert isinstance(answer["detail"], str) and schedule_id in answer["detail"]


# -- PATCH ----------------------------------------------------------------------------------


async def test_an_empty_patch_changes_nothing(api: ApiHarness) -> None:
    created = await create(api)
    async with Unchanged(api, created["scheduled_session_id"]) as before:
        status, answer = await patch(api, created["scheduled_session_id"], {})
        assert status == 200
        assert answer == before.json


NON_CLEARABLE = [
    "name",
    "prompt",
    "agent",
    "enabled",
    "notify_on",
    "schedule_type",
    "frequency",
    "timezone",
    "interval_count",
    "bypass_approval",
    "overlap",
    "jitter_s",
    "prompt_format",
]


@pytest.mark.parametrize("key", NON_CLEARABLE)
async def test_null_leaves_a_non_clearable_field_unchanged(api: ApiHarness, key: str) -> None:
    created = await create(api, interval_count=3, jitter_s=2.0, bypass_approval=True)
    schedule_id = created["scheduled_session_id"]
    async with Unchanged(api, schedule_id):
        status, answer = await patch(api, schedule_id, {key: None})
        assert status == 200, answer


CLEARABLE = {
    # PATCH key: its key in the schedule JSON
    "playbook_id": "playbook",
    "run_as_user_id": "run_as_user_id",
    "slack_channel_id": "slack_channel_id",
    "slack_team_id": "slack_team_id",
    "tags": "tags",
    "target_devin_id": "target_devin_id",
    "platform": "platform",
    "scheduled_at": "scheduled_at",
    "start_at": "start_at",
    "end_at": "end_at",
    "catchup_window_s": "catchup_window_s",
}


async def _fully_set_schedule(api: ApiHarness) -> dict[str, Any]:
    status, playbook = await api.call("POST", f"{BASE}/playbooks", json={"title": "T", "body": "b"})
    assert status == 200
    return await create(
        api,
        playbook_id=playbook["playbook_id"],
        create_as_user_id="user-alice",
        slack_channel_id="C1",
        slack_team_id="T1",
        tags=["a"],
        target_devin_id="devin-1",
        platform="linux",
        scheduled_at="2026-12-24T18:00:00Z",
        start_at="2026-11-01T00:00:00Z",
        end_at="2027-11-01T00:00:00Z",
        catchup_window_s=60,
    )


@pytest.mark.parametrize("key", sorted(CLEARABLE))
async def test_null_clears_a_clearable_field(api: ApiHarness, key: str) -> None:
    created = await _fully_set_schedule(api)
    schedule_id = created["scheduled_session_id"]
    stored_before = await api.store.get_schedule(schedule_id)
    assert getattr(stored_before, key) is not None
    status, answer = await patch(api, schedule_id, {key: None}, token=SCHEDULER_TOKEN)
    assert status == 200, answer
    stored = await api.store.get_schedule(schedule_id)
    assert getattr(stored, key) is None
    wire_key = CLEARABLE[key]
    assert answer[wire_key] is None
    # every other field as it was
    edited = (wire_key, "updated_at", "last_edited_by")
    untouched = {k: v for k, v in created.items() if k not in edited}
    assert {k: answer[k] for k in untouched} == untouched
    assert answer["last_edited_by"] == "service-scheduler"


async def test_clearing_run_as_needs_no_impersonation(api: ApiHarness) -> None:
    created = await create(api, create_as_user_id="user-alice")
    status, answer = await patch(
        api, created["scheduled_session_id"], {"run_as_user_id": None}, token=SCHEDULER_TOKEN
    )
    assert status == 200
    assert answer["run_as_user_id"] is None


async def test_patch_changes_only_the_keys_sent(api: ApiHarness, clock: FakeClock) -> None:
    created = await create(api, tags=["x"], slack_channel_id="C1")
    schedule_id = created["scheduled_session_id"]
    clock.advance(60)
    version = (await api.store.get_schedule(schedule_id)).version
    status, answer = await patch(
        api, schedule_id, {"name": "renamed", "notify_on": "never"}, token=SCHEDULER_TOKEN
    )
    assert status == 200
    assert answer == created | {
        "name": "renamed",
        "notify_on": "never",
        "updated_at": "2026-11-23T12:01:00Z",
        "last_edited_by": "service-scheduler",
    }
    assert await get(api, schedule_id) == answer
    assert (await api.store.get_schedule(schedule_id)).version == version + 1


async def test_patch_frequency_and_timezone_recompute_next_run(api: ApiHarness) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    status, answer = await patch(api, schedule_id, {"frequency": "30 12 * * *"})
    assert (status, answer["frequency"], answer["next_run_at"]) == (
        200,
        "30 12 * * *",
        "2026-11-23T12:30:00Z",
    )
    status, answer = await patch(api, schedule_id, {"timezone": "America/New_York"})
    assert (status, answer["next_run_at"]) == (200, "2026-11-23T17:30:00Z")


async def test_disable_and_enable(api: ApiHarness) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    status, answer = await patch(api, schedule_id, {"enabled": False})
    assert (status, answer["enabled"], answer["next_run_at"]) == (200, False, None)
    status, answer = await patch(api, schedule_id, {"enabled": True})
    assert (status, answer["enabled"], answer["next_run_at"]) == (200, True, TOMORROW_9)


async def test_switch_to_one_time_with_a_future_scheduled_at(api: ApiHarness) -> None:
    created = await create(api)
    body = {"schedule_type": "one_time", "scheduled_at": "2026-11-30T08:00:00Z"}
    status, answer = await patch(api, created["scheduled_session_id"], body)
    assert status == 200
    assert answer["schedule_type"] == "one_time"
    assert answer["next_run_at"] == "2026-11-30T08:00:00Z"
    assert answer["frequency"] == "0 9 * * *"  # kept for a switch back


async def test_switch_to_one_time_uses_a_stored_future_scheduled_at(api: ApiHarness) -> None:
    created = await create(api, scheduled_at="2026-12-01T00:00:00Z")
    status, answer = await patch(
        api, created["scheduled_session_id"], {"schedule_type": "one_time"}
    )
    assert (status, answer["next_run_at"]) == (200, "2026-12-01T00:00:00Z")


async def test_switch_to_recurring_with_a_frequency(api: ApiHarness) -> None:
    created = await create(api, schedule_type="one_time", frequency=None, scheduled_at=TOMORROW_9)
    body = {"schedule_type": "recurring", "frequency": "0 18 * * 1-5"}
    status, answer = await patch(api, created["scheduled_session_id"], body)
    assert status == 200
    assert (answer["schedule_type"], answer["next_run_at"]) == ("recurring", "2026-11-23T18:00:00Z")


@pytest.mark.parametrize(
    ("create_fields", "body", "loc"),
    [
        ({}, {"schedule_type": "one_time"}, ["body", "scheduled_at"]),
        (
            {"scheduled_at": "2026-11-01T00:00:00Z"},
            {"schedule_type": "one_time"},
            ["body", "scheduled_at"],
        ),
        (
            {},
            {"schedule_type": "one_time", "scheduled_at": "2026-11-22T00:00:00Z"},
            ["body", "scheduled_at"],
        ),
        ({}, {"schedule_type": "one_time", "scheduled_at": None}, ["body", "scheduled_at"]),
        (
            {"schedule_type": "one_time", "frequency": None, "scheduled_at": TOMORROW_9},
            {"schedule_type": "recurring"},
            ["body", "frequency"],
        ),
        (
            {"schedule_type": "one_time", "frequency": None, "scheduled_at": TOMORROW_9},
            {"scheduled_at": None},
            ["body", "scheduled_at"],
        ),
        (
            {"schedule_type": "one_time", "frequency": None, "scheduled_at": TOMORROW_9},
            {"scheduled_at": "2026-11-23T11:00:00Z"},
            ["body", "scheduled_at"],
        ),
        ({}, {"frequency": "0 0 31 4 *"}, ["body", "frequency"]),
        ({}, {"frequency": ""}, ["body", "frequency"]),
        ({}, {"timezone": "Nowhere/City"}, ["body", "timezone"]),
        ({}, {"frequncy": "@hourly"}, ["body", "frequncy"]),
        ({}, {"enabled": "false"}, ["body", "enabled"]),
        ({}, {"name": ""}, ["body", "name"]),
        ({}, {"create_as_user_id": "user-alice"}, ["body", "create_as_user_id"]),
        (
            {"start_at": "2026-12-01T00:00:00Z"},
            {"end_at": "2026-11-30T00:00:00Z"},
            ["body", "end_at"],
        ),
        ({}, {"run_as_user_id": "user-bob"}, ["body", "run_as_user_id"]),
        ({}, {"run_as_user_id": "user-carol"}, ["body", "run_as_user_id"]),
        ({}, {"name": "kept?", "run_as_user_id": "user-nobody"}, ["body", "run_as_user_id"]),
    ],
)
async def test_a_refused_patch_changes_nothing(
    api: ApiHarness, create_fields: dict[str, Any], body: dict[str, Any], loc: list[str]
) -> None:
    created = await create(api, **create_fields)
    async with Unchanged(api, created["scheduled_session_id"]):
        status, answer = await patch(api, created["scheduled_session_id"], body)
        assert status == 422, answer
        assert loc in locs(answer)


async def test_null_scheduled_at_clears_it_on_a_recurring_schedule(api: ApiHarness) -> None:
    created = await create(api, scheduled_at=TOMORROW_9)
    status, answer = await patch(api, created["scheduled_session_id"], {"scheduled_at": None})
    assert (status, answer["scheduled_at"]) == (200, None)


async def test_patch_run_as_user(api: ApiHarness) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    async with Unchanged(api, schedule_id):
        status, answer = await patch(
            api, schedule_id, {"run_as_user_id": "user-alice"}, token=SCHEDULER_TOKEN
        )
        assert status == 403
        assert isinstance(answer["detail"], str)
    status, answer = await patch(api, schedule_id, {"run_as_user_id": "user-alice"})
    assert (status, answer["run_as_user_id"]) == (200, "user-alice")


async def test_patch_playbook(api: ApiHarness) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    async with Unchanged(api, schedule_id):
        status, answer = await patch(api, schedule_id, {"playbook_id": "playbook-nope"})
        assert status == 404
        assert answer == {"detail": "Playbook 'playbook-nope' not found"}
    status, playbook = await api.call("POST", f"{BASE}/playbooks", json={"title": "T", "body": "b"})
    status, answer = await patch(api, schedule_id, {"playbook_id": playbook["playbook_id"]})
    assert status == 200
    assert answer["playbook"] == {"playbook_id": playbook["playbook_id"], "title": "T"}


async def test_patch_unknown_or_foreign_schedule_is_404(api: ApiHarness) -> None:
    body = {"name": "theirs", "prompt": "p", "frequency": "@daily"}
    status, theirs = await api.call(
        "POST", f"/v3/organizations/{OTHER_ORG}/schedules", token=OTHER_TOKEN, json=body
    )
    for schedule_id in ("sched-nope", theirs["scheduled_session_id"]):
        status, answer = await patch(api, schedule_id, {"name": "mine now"})
        assert status == 404
        assert isinstance(answer["detail"], str)
    status, answer = await api.call(
        "GET",
        f"/v3/organizations/{OTHER_ORG}/schedules/{theirs['scheduled_session_id']}",
        token=OTHER_TOKEN,
    )
    assert answer["name"] == "theirs"


# -- DELETE ---------------------------------------------------------------------------------


async def test_delete_answers_the_schedule_then_it_is_gone(api: ApiHarness) -> None:
    created = await create(api)
    kept = await create(api, name="kept")
    schedule_id = created["scheduled_session_id"]
    # Clients send a JSON content type with an empty body.
    status, answer = await api.call(
        "DELETE", f"{SCHEDULES}/{schedule_id}", headers={"Content-Type": "application/json"}
    )
    assert status == 200
    assert answer["scheduled_session_id"] == schedule_id
    assert answer["name"] == "triage"
    assert answer["next_run_at"] is None
    assert (await api.call("GET", f"{SCHEDULES}/{schedule_id}"))[0] == 404
    assert (await patch(api, schedule_id, {"name": "x"}))[0] == 404
    assert (await api.call("DELETE", f"{SCHEDULES}/{schedule_id}"))[0] == 404
    status, page = await api.call("GET", SCHEDULES)
    assert page["items"] == [kept] and page["total"] == 1


async def test_delete_ignores_a_body_that_is_not_json(api: ApiHarness) -> None:
    created = await create(api)
    status, _ = await api.call(
        "DELETE",
        f"{SCHEDULES}/{created['scheduled_session_id']}",
        data=b"\xff{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 200


# -- the engine hears of every change before the answer ------------------------------------


class GatedEvents(RecordingEvents):
    """Holds every `changed` call until `gate` opens, to show the answer waits for it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def changed(self, schedule: Schedule) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().changed(schedule)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "", {"name": "n", "prompt": "p", "frequency": "@daily"}),
        ("PATCH", "/{id}", {"enabled": False}),
        ("DELETE", "/{id}", None),
    ],
)
async def test_the_engine_is_told_before_the_answer(
    api_factory: Callable[..., Any],
    store: Store,
    clock: FakeClock,
    method: str,
    suffix: str,
    body: Any,
) -> None:
    events = GatedEvents(store)
    gated: ApiHarness = await api_factory(events=events, clock=clock)
    existing = await store.create_schedule(
        Schedule(org_id=ORG, name="e", prompt="p", cron="@daily", created_at=NOW, updated_at=NOW),
        now=NOW,
    )
    path = SCHEDULES + suffix.format(id=existing.id)
    call = asyncio.create_task(gated.call(method, path, json=body))
    await asyncio.wait_for(events.entered.wait(), timeout=5)
    assert not call.done()
    assert events.changed_ids == []
    events.gate.set()
    status, answer = await asyncio.wait_for(call, timeout=5)
    assert status == 200
    assert events.changed_ids == [answer["scheduled_session_id"]]


async def test_reads_and_refusals_do_not_notify_the_engine(api: ApiHarness) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    assert api.events.changed_ids == [schedule_id]
    await api.call("GET", SCHEDULES)
    await get(api, schedule_id)
    await patch(api, schedule_id, {"frequency": "nope"})
    await patch(api, schedule_id, {})
    assert api.events.changed_ids == [schedule_id]
    await patch(api, schedule_id, {"name": "new"})
    await api.call("DELETE", f"{SCHEDULES}/{schedule_id}")
    assert api.events.changed_ids == [schedule_id] * 3


async def test_every_datetime_carries_an_offset(api: ApiHarness) -> None:
    created = await create(
        api, start_at="2026-12-01T00:00:00", scheduled_at="2026-12-02T00:00:00+05:30"
    )
    for key in ("created_at", "updated_at", "next_run_at", "scheduled_at", "start_at"):
        parsed = datetime.fromisoformat(created[key])
        assert parsed.utcoffset() == timedelta(0), key
    assert created["scheduled_at"] == "2026-12-01T18:30:00Z"


async def test_patch_enabled_true_ends_an_auto_pause(api: ApiHarness) -> None:
    status, created = await api.call(
        "POST",
        "/v3/organizations/org-local/schedules",
        json={"name": "paused", "prompt": "p", "frequency": "0 9 * * *"},
    )
    assert status == 200
    schedule_id = created["scheduled_session_id"]
    reason = "auto-paused after 3 consecutive failures: HTTP 503"
    await api.store.update_schedule(
        schedule_id, {"enabled": False, "paused_reason": reason}, now=datetime.now(UTC)
    )
    path = f"/v3/organizations/org-local/schedules/{schedule_id}"
    assert (await api.call("GET", path))[1]["paused_reason"] == reason
    status, body = await api.call("PATCH", path, json={"enabled": True})
    assert status == 200 and body["enabled"] is True
    assert body["paused_reason"] is None and body["next_run_at"] is not None


# -- schedules of other agents (made through the AgentScope façade) ---------------------------


class SdkSchedule(BaseModel):
    """What a strict Devin client parses of a schedule: `agent` must be one of its enum."""

    model_config = ConfigDict(strict=True, extra="ignore")

    scheduled_session_id: str
    agent: Literal["devin", "data_analyst", "advanced"]


async def agentscope_schedule(api: ApiHarness, name: str = "report") -> str:
    body = {"agent_id": "agent-reporter", "name": name, "cron_expression": "0 9 * * *"}
    headers = {"X-User-ID": "user-alice"}
    status, answer = await api.call("POST", "/schedule/", token=None, headers=headers, json=body)
    assert status == 201, answer
    schedule_id: str = answer["schedule_id"]
    return schedule_id


async def test_a_devin_client_meets_only_devin_agents(api: ApiHarness) -> None:
    foreign = await agentscope_schedule(api)
    mine = (await create(api))["scheduled_session_id"]

    status, page = await api.call("GET", SCHEDULES)

    assert status == 200
    parsed = [SdkSchedule.model_validate_json(json.dumps(item)) for item in page["items"]]
    assert [item.scheduled_session_id for item in parsed] == [mine]
    assert (page["total"], page["has_next_page"]) == (1, False)
    status, answer = await api.call("GET", f"{SCHEDULES}/{foreign}")
    assert (status, answer) == (404, {"detail": f"schedule '{foreign}' not found"})


async def test_the_devin_list_pages_and_counts_only_devin_agents(
    api: ApiHarness, clock: FakeClock
) -> None:
    ids = []
    for n, agent in enumerate(["devin", "data_analyst", "advanced"]):
        await agentscope_schedule(api, f"agentscope {n}")
        ids.append((await create(api, name=f"d{n}", agent=agent))["scheduled_session_id"])
        clock.advance(1)
    await agentscope_schedule(api, "agentscope last")

    pages = []
    offset: str | None = "0"
    while offset is not None:
        status, page = await api.call("GET", f"{SCHEDULES}?limit=2&offset={offset}")
        assert (status, page["total"]) == (200, 3)
        pages.append([item["scheduled_session_id"] for item in page["items"]])
        offset = page["end_cursor"]

    assert pages == [ids[0:2], ids[2:3]]


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PATCH", {"name": "mine now"}), ("PATCH", {}), ("DELETE", None)],
)
async def test_a_schedule_of_another_agent_is_not_found_by_id(
    api: ApiHarness, method: str, body: Any
) -> None:
    schedule_id = await agentscope_schedule(api)
    before = await api.store.get_schedule(schedule_id)

    status, answer = await api.call(method, f"{SCHEDULES}/{schedule_id}", json=body)

    assert (status, answer) == (404, {"detail": f"schedule '{schedule_id}' not found"})
    assert await api.store.get_schedule(schedule_id) == before
    assert api.events.changed_ids == [schedule_id]


async def test_agents_all_lists_and_edits_every_schedule(api: ApiHarness) -> None:
    foreign = await agentscope_schedule(api)
    mine = (await create(api))["scheduled_session_id"]
    path = f"{SCHEDULES}/{foreign}?agents=all"

    status, page = await api.call("GET", f"{SCHEDULES}?agents=all")
    assert (status, page["total"]) == (200, 2)
    assert [item["scheduled_session_id"] for item in page["items"]] == [foreign, mine]
    status, got = await api.call("GET", path)
    assert (status, got["agent"], got["run_as_user_id"]) == (200, "agent-reporter", "user-alice")
    status, patched = await api.call("PATCH", path, json={"enabled": False})
    assert (status, patched["enabled"]) == (200, False)
    status, deleted = await api.call("DELETE", path)
    assert (status, deleted["scheduled_session_id"]) == (200, foreign)
    assert (await api.call("GET", path))[0] == 404


async def test_agents_devin_is_the_default(api: ApiHarness) -> None:
    await agentscope_schedule(api)
    mine = await create(api)

    status, page = await api.call("GET", f"{SCHEDULES}?agents=devin")

    assert (status, page["items"], page["total"]) == (200, [mine], 1)


@pytest.mark.parametrize("suffix", ["", "/{id}"])
async def test_an_unknown_agents_value_is_422(api: ApiHarness, suffix: str) -> None:
    created = await create(api)
    path = SCHEDULES + suffix.format(id=created["scheduled_session_id"])

    status, answer = await api.call("GET", f"{path}?agents=agentscope")

    assert status == 422
    assert locs(answer) == [["query", "agents"]]


async def test_patched_extensions_are_answered(api: ApiHarness) -> None:
    created = await create(api)
    changes = {
        "overlap": "buffer_one",
        "catchup_window_s": 90,
        "jitter_s": 4.5,
        "start_at": "2027-01-01T00:00:00+01:00",
        "end_at": "2028-01-01T00:00:00",
    }

    status, answer = await patch(api, created["scheduled_session_id"], changes)

    assert status == 200
    assert {key: answer[key] for key in changes} == {
        "overlap": "buffer_one",
        "catchup_window_s": 90,
        "jitter_s": 4.5,
        "start_at": "2026-12-31T23:00:00Z",
        "end_at": "2028-01-01T00:00:00Z",
    }
    status, page = await api.call("GET", SCHEDULES)
    assert page["items"] == [answer]


# -- schedules the configuration file manages ----------------------------------------------

CONFIG_WARNING = '299 - "managed by the configuration file: the next reload reverts this change"'


def file_config(agent: str = "devin") -> Config:
    """A configuration declaring one schedule, running as user-alice."""
    declared = {"org": ORG, "name": "from the file", "prompt": "p", "cron": "0 9 * * *"}
    return Config.model_validate(
        {
            "orgs": [{"id": ORG, "name": "Local"}],
            "users": [{"id": "user-alice", "orgs": [ORG], "permissions": ["UseDevinSessions"]}],
            "schedules": [declared | {"agent": agent, "run_as_user_id": "user-alice"}],
        }
    )


async def declared_schedule(api: ApiHarness, agent: str = "devin") -> str:
    """Apply the file as start-up and every reload do; the id of its schedule."""
    result = await apply_bootstrap(file_config(agent), api.store, api.events, now=NOW)
    (schedule_id,) = result.created
    return schedule_id


async def answer_with_headers(
    api: ApiHarness, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    async with api.http.request(method, api.url(path), **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, dict(response.headers)


async def test_managed_by_says_which_schedules_the_file_manages(api: ApiHarness) -> None:
    declared = await declared_schedule(api)
    made = (await create(api))["scheduled_session_id"]

    status, page = await api.call("GET", SCHEDULES)

    assert status == 200
    assert {item["scheduled_session_id"]: item["managed_by"] for item in page["items"]} == {
        declared: "config",
        made: None,
    }
    assert (await get(api, declared))["managed_by"] == "config"


async def test_managed_by_is_read_only(api: ApiHarness) -> None:
    schedule_id = (await create(api))["scheduled_session_id"]

    status, answer = await patch(api, schedule_id, {"managed_by": "config"})

    assert status == 422
    assert locs(answer) == [["body", "managed_by"]]


async def test_an_edit_of_a_declared_schedule_warns_that_a_reload_reverts_it(
    api: ApiHarness,
) -> None:
    schedule_id = await declared_schedule(api)
    path = f"{SCHEDULES}/{schedule_id}"

    status, answer, headers = await answer_with_headers(
        api, "PATCH", path, headers=auth(), json={"prompt": "edited"}
    )

    assert (status, answer["prompt"], answer["managed_by"]) == (200, "edited", "config")
    assert headers["Warning"] == CONFIG_WARNING
    await apply_bootstrap(file_config(), api.store, api.events, now=NOW)
    assert (await get(api, schedule_id))["prompt"] == "p"
    status, answer, headers = await answer_with_headers(api, "DELETE", path, headers=auth())
    assert (status, answer["scheduled_session_id"]) == (200, schedule_id)
    assert headers["Warning"] == CONFIG_WARNING


async def test_an_edit_of_a_schedule_made_through_the_api_does_not_warn(api: ApiHarness) -> None:
    path = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"

    patched = await answer_with_headers(api, "PATCH", path, headers=auth(), json={"prompt": "e"})
    deleted = await answer_with_headers(api, "DELETE", path, headers=auth())

    assert (patched[0], deleted[0]) == (200, 200)
    assert "Warning" not in patched[2] and "Warning" not in deleted[2]


async def test_the_agentscope_facade_warns_too(api: ApiHarness) -> None:
    schedule_id = await declared_schedule(api, agent="agent-reporter")
    alice = {"X-User-ID": "user-alice"}

    status, _, patched = await answer_with_headers(
        api, "PATCH", f"/schedule/{schedule_id}", headers=alice, json={"description": "e"}
    )
    deleted = await answer_with_headers(api, "DELETE", f"/schedule/{schedule_id}", headers=alice)

    assert (status, deleted[0]) == (200, 204)
    assert patched["Warning"] == deleted[2]["Warning"] == CONFIG_WARNING
