"""The AgentScope façade over a real aiohttp server and a real SQLite store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api.keys import ApiSettings
from storage.domain import Run, RunOutcome
from storage.enums import RunStatus, RunTrigger
from storage.identities import User
from tests.conftest import (
    ADMIN_TOKEN,
    NOPERM_TOKEN,
    ORG,
    OTHER_TOKEN,
    ApiHarness,
    auth,
)

ALICE = "user-alice"
BOB = "user-bob"  # member of ORG without UseDevinSessions
CAROL = "user-carol"  # member of another org only
DAVE = "user-dave"  # a second member of ORG who may run sessions

MISSING_HEADER = [{"loc": ["header", "x-user-id"], "msg": "Field required", "type": "missing"}]
RECORD_DATA_KEYS = {
    "name",
    "description",
    "cron_expression",
    "timezone",
    "enabled",
    "stateful",
    "permission_mode",
    "started_at",
    "ended_at",
    "chat_model_config",
    "source",
    "source_session_id",
}


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "agent_id": "agent-reporter",
        "name": "nightly report",
        "description": "Summarise yesterday's merged pull requests.",
        "cron_expression": "0 9 * * 1-5",
    } | overrides


async def call(
    api: ApiHarness, method: str, path: str, user: str | None = ALICE, **kwargs: Any
) -> tuple[int, Any]:
    """A façade request as `user` (no X-User-ID header when None), without a bearer token."""
    headers = dict(kwargs.pop("headers", {}))
    if user is not None:
        headers["X-User-ID"] = user
    return await api.call(method, path, token=None, headers=headers, **kwargs)


async def create(api: ApiHarness, user: str = ALICE, **overrides: Any) -> str:
    status, answer = await call(api, "POST", "/schedule/", user, json=body(**overrides))
    assert status == 201, answer
    schedule_id: str = answer["schedule_id"]
    return schedule_id


async def record(api: ApiHarness, schedule_id: str, user: str = ALICE) -> dict[str, Any]:
    status, answer = await call(api, "GET", f"/schedule/{schedule_id}", user)
    assert status == 200, answer
    return dict(answer)


async def stored_total(api: ApiHarness) -> int:
    return (await api.store.list_schedules(ORG, limit=100, offset=0)).total


def with_dave(api: ApiHarness) -> None:
    """Reload the directory with one more member of ORG (as a SIGHUP would)."""
    current = api.directory.current
    dave = User(DAVE, frozenset({ORG}), frozenset({"UseDevinSessions"}))
    api.directory.current = dataclasses.replace(current, users={**current.users, DAVE: dave})


def aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, text
    return moment


# -- create and read ------------------------------------------------------------------------


async def test_create_answers_201_with_the_id_and_stores_a_schedule_running_as_the_caller(
    api: ApiHarness,
) -> None:
    status, answer = await call(api, "POST", "/schedule/", json=body())

    assert status == 201
    assert set(answer) == {"schedule_id"}
    stored = await api.store.get_schedule(answer["schedule_id"])
    assert stored.org_id == ORG
    assert stored.owner_user_id == stored.run_as_user_id == ALICE
    assert stored.created_by == stored.last_edited_by == ALICE
    assert stored.prompt == "Summarise yesterday's merged pull requests."
    assert stored.agent == "agent-reporter"
    assert stored.cron == "0 9 * * 1-5"
    assert stored.next_run_at is not None
    assert api.events.changed_ids == [stored.id]


async def test_a_created_schedule_reads_back_as_agentscope_record(api: ApiHarness) -> None:
    schedule_id = await create(api)

    got = await record(api, schedule_id)

    assert set(got) == {"id", "user_id", "agent_id", "data", "created_at", "updated_at"}
    assert (got["id"], got["user_id"], got["agent_id"]) == (schedule_id, ALICE, "agent-reporter")
    assert set(got["data"]) == RECORD_DATA_KEYS
    assert got["data"] | {"started_at": None} == {
        "name": "nightly report",
        "description": "Summarise yesterday's merged pull requests.",
        "cron_expression": "0 9 * * 1-5",
        "timezone": "UTC",
        "enabled": True,
        "stateful": False,
        "permission_mode": "dont_ask",
        "started_at": None,
        "ended_at": None,
        "chat_model_config": None,
        "source": "USER",
        "source_session_id": "",
    }
    assert aware(got["data"]["started_at"]) == aware(got["created_at"])
    assert aware(got["updated_at"]) == aware(got["created_at"])


async def test_create_accepts_every_agentscope_field(api: ApiHarness) -> None:
    chat_model = {
        "type": "openai",
        "credential_id": "cred-1",
        "model": "gpt-4o",
        "parameters": {"temperature": 0.2},
        "model_class": "OpenAIChatModel",
    }
    schedule_id = await create(
        api,
        timezone="Europe/Berlin",
        enabled=False,
        stateful=True,
        permission_mode="explore",
        chat_model_config=chat_model,
    )

    data = (await record(api, schedule_id))["data"]

    assert data["timezone"] == "Europe/Berlin"
    assert (data["enabled"], data["stateful"], data["permission_mode"]) == (False, True, "explore")
    assert data["chat_model_config"] == chat_model
    stored = await api.store.get_schedule(schedule_id)
    assert stored.chat_model_config == chat_model
    assert stored.next_run_at is None  # disabled


async def test_chat_model_config_without_model_class_answers_an_empty_one(
    api: ApiHarness,
) -> None:
    schedule_id = await create(api, chat_model_config={"type": "openai", "model": "gpt-4o"})

    data = (await record(api, schedule_id))["data"]

    assert data["chat_model_config"] == {
        "type": "openai",
        "model": "gpt-4o",
        "credential_id": None,
        "parameters": {},
        "model_class": "",
    }


async def test_chat_model_config_keeps_keys_the_facade_does_not_name(api: ApiHarness) -> None:
    chat_model = {"type": "openai", "model": "m", "model_class": "C", "base_url": "http://llm"}
    schedule_id = await create(api, chat_model_config=chat_model)

    data = (await record(api, schedule_id))["data"]

    assert data["chat_model_config"] == chat_model | {"credential_id": None, "parameters": {}}


async def test_a_stored_chat_model_config_without_model_class_answers_an_empty_one(
    api: ApiHarness,
) -> None:
    """As the configuration file writes it, or as stored before the façade kept it."""
    schedule_id = await create(api)
    stored = {"type": "anthropic", "model": "m"}
    await api.store.update_schedule(
        schedule_id, {"chat_model_config": stored}, now=datetime.now(UTC)
    )

    data = (await record(api, schedule_id))["data"]

    assert data["chat_model_config"] == stored | {"model_class": ""}


@pytest.mark.parametrize(
    "sent",
    [
        {
            "source": "AGENT",
            "source_session_id": "session-parent",
            "started_at": "2040-03-05T00:00:00Z",
            "ended_at": "2001-01-01T00:00:00Z",
        },
        {"source": "SYSTEM", "source_session_id": 5, "started_at": 1, "ended_at": [1]},
    ],
)
async def test_create_ignores_source_and_window_sent_by_the_client(
    api: ApiHarness, sent: dict[str, Any]
) -> None:
    schedule_id = await create(api, cron_expression="0 9 * * *", **sent)

    got = await record(api, schedule_id)

    data = got["data"]
    assert (data["source"], data["source_session_id"]) == ("USER", "")
    assert aware(data["started_at"]) == aware(got["created_at"])
    assert (data["ended_at"], data["enabled"]) == (None, True)
    stored = await api.store.get_schedule(schedule_id)
    assert (stored.source, stored.source_session_id) == ("USER", None)
    assert (stored.start_at, stored.end_at) == (None, None)
    assert stored.next_run_at is not None
    assert stored.next_run_at < datetime(2040, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("path", ["/schedule", "/schedule/"])
async def test_both_collection_paths_list_and_create(api: ApiHarness, path: str) -> None:
    status, answer = await call(api, "POST", path, json=body())
    assert status == 201

    status, listed = await call(api, "GET", path)

    assert status == 200
    assert listed["total"] == 1
    assert [r["id"] for r in listed["schedules"]] == [answer["schedule_id"]]


async def test_list_holds_only_the_callers_schedules_in_creation_order(api: ApiHarness) -> None:
    with_dave(api)
    first = await create(api, name="first")
    await create(api, DAVE, name="dave's")
    second = await create(api, name="second")

    status, listed = await call(api, "GET", "/schedule/")

    assert status == 200
    assert listed["total"] == 2
    assert [r["id"] for r in listed["schedules"]] == [first, second]
    assert all(r["user_id"] == ALICE for r in listed["schedules"])


async def test_unknown_keys_are_ignored(api: ApiHarness) -> None:
    schedule_id = await create(api, ui_color="teal", nested={"a": 1})

    assert (await record(api, schedule_id))["data"]["name"] == "nightly report"


async def test_an_empty_description_is_accepted_as_agentscope_does(api: ApiHarness) -> None:
    schedule_id = await create(api, description="")

    assert (await record(api, schedule_id))["data"]["description"] == ""


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("enabled", "yes", "bool_type"),
        ("stateful", 1, "bool_type"),
        ("name", 5, "string_type"),
        ("name", "", "string_too_short"),
        ("timezone", None, "string_type"),
        ("permission_mode", "ask_everything", "enum"),
        ("chat_model_config", "gpt-4o", "model_type"),
        ("cron_expression", ["0", "9"], "string_type"),
    ],
)
async def test_wrong_types_are_422_and_nothing_is_stored(
    api: ApiHarness, field: str, value: Any, error_type: str
) -> None:
    status, answer = await call(api, "POST", "/schedule/", json=body(**{field: value}))

    assert status == 422
    assert [(item["loc"], item["type"]) for item in answer["detail"]] == [
        (["body", field], error_type)
    ]
    assert await stored_total(api) == 0
    assert api.events.changed_ids == []


@pytest.mark.parametrize("field", ["agent_id", "name", "cron_expression"])
async def test_required_fields(api: ApiHarness, field: str) -> None:
    without = body()
    del without[field]

    status, answer = await call(api, "POST", "/schedule/", json=without)

    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", field]
    assert answer["detail"][0]["type"] == "missing"


async def test_malformed_json_is_422_json_invalid(api: ApiHarness) -> None:
    status, answer = await call(
        api, "POST", "/schedule/", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )

    assert status == 422
    assert answer["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("expr", ["every day", "0 0 30 2 *", "* * * *", "0 9 * * 8", "@reboot"])
async def test_invalid_cron_is_422_before_anything_is_stored(api: ApiHarness, expr: str) -> None:
    status, answer = await call(api, "POST", "/schedule/", json=body(cron_expression=expr))

    assert status == 422
    (item,) = answer["detail"]
    assert item["loc"] == ["body", "cron_expression"]
    assert item["msg"]
    assert await stored_total(api) == 0
    assert api.events.changed_ids == []


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "utc+1"])
async def test_invalid_timezone_is_422_before_anything_is_stored(
    api: ApiHarness, zone: str
) -> None:
    status, answer = await call(api, "POST", "/schedule/", json=body(timezone=zone))

    assert status == 422
    assert [item["loc"] for item in answer["detail"]] == [["body", "timezone"]]
    assert await stored_total(api) == 0


async def test_bad_cron_and_timezone_are_reported_together(api: ApiHarness) -> None:
    status, answer = await call(
        api, "POST", "/schedule/", json=body(cron_expression="nope", timezone="Nowhere/Land")
    )

    assert status == 422
    assert [item["loc"][1] for item in answer["detail"]] == ["cron_expression", "timezone"]


async def test_day_of_week_zero_and_seven_are_sunday(api: ApiHarness) -> None:
    for expr in ("0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"):
        schedule_id = await create(api, cron_expression=expr, timezone="America/New_York")

        next_run = (await api.store.get_schedule(schedule_id)).next_run_at

        assert next_run is not None
        local = next_run.astimezone(ZoneInfo("America/New_York"))
        assert (local.strftime("%A"), local.hour, local.minute) == ("Sunday", 9, 0), expr


# -- identity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/schedule/"),
        ("POST", "/schedule/"),
        ("GET", "/schedule/sched-x"),
        ("PATCH", "/schedule/sched-x"),
        ("DELETE", "/schedule/sched-x"),
        ("GET", "/schedule/sched-x/sessions"),
    ],
)
async def test_missing_user_header_is_422_as_fastapi_answers(
    api: ApiHarness, method: str, path: str
) -> None:
    status, answer = await call(api, method, path, user=None, json=body())

    assert (status, answer) == (422, {"detail": MISSING_HEADER})


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/schedule/"), ("POST", "/schedule/"), ("GET", "/schedule/x")]
)
@pytest.mark.parametrize("user", ["", "  "])
async def test_empty_user_header_is_401(api: ApiHarness, method: str, path: str, user: str) -> None:
    status, answer = await call(api, method, path, user=user, json=body())

    assert (status, answer) == (401, {"detail": "X-User-ID header is required."})
    assert await stored_total(api) == 0


@pytest.mark.parametrize("user", ["user-nobody", CAROL])
async def test_a_user_who_is_not_configured_in_the_org_is_401(api: ApiHarness, user: str) -> None:
    for method, path in (("GET", "/schedule/"), ("POST", "/schedule/")):
        status, answer = await call(api, method, path, user=user, json=body())

        assert status == 401
        assert user in answer["detail"]
    assert await stored_total(api) == 0


async def test_a_member_who_cannot_run_sessions_is_refused_at_create(api: ApiHarness) -> None:
    status, answer = await call(api, "POST", "/schedule/", user=BOB, json=body())

    assert status == 422
    (item,) = answer["detail"]
    assert item["loc"] == ["header", "x-user-id"]
    assert "UseDevinSessions" in item["msg"]
    assert await stored_total(api) == 0


async def test_a_member_who_cannot_run_sessions_may_still_list(api: ApiHarness) -> None:
    await create(api)

    status, answer = await call(api, "GET", "/schedule/", user=BOB)

    assert (status, answer) == (200, {"schedules": [], "total": 0})


# -- ownership ------------------------------------------------------------------------------


def owned_routes(schedule_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", f"/schedule/{schedule_id}", {}),
        ("PATCH", f"/schedule/{schedule_id}", {"json": {"name": "taken over"}}),
        ("DELETE", f"/schedule/{schedule_id}", {}),
        ("GET", f"/schedule/{schedule_id}/sessions", {}),
    ]


async def test_another_users_schedule_is_not_found_for_every_route(api: ApiHarness) -> None:
    with_dave(api)
    schedule_id = await create(api)

    for user in (DAVE, BOB):
        for method, path, extra in owned_routes(schedule_id):
            status, answer = await call(api, method, path, user=user, **extra)

            assert (status, answer) == (404, {"detail": f"Schedule '{schedule_id}' not found."})
    assert (await record(api, schedule_id))["data"]["name"] == "nightly report"
    assert api.events.changed_ids == [schedule_id]


async def test_an_unknown_id_is_not_found_for_every_route(api: ApiHarness) -> None:
    for method, path, extra in owned_routes("sched-unknown"):
        status, answer = await call(api, method, path, **extra)

        assert (status, answer) == (404, {"detail": "Schedule 'sched-unknown' not found."})


async def test_a_schedule_without_an_owner_is_not_visible(api: ApiHarness) -> None:
    schedule_id = await create(api)
    await api.store.update_schedule(schedule_id, {"owner_user_id": None}, now=datetime.now(UTC))

    status, answer = await call(api, "GET", f"/schedule/{schedule_id}")

    assert (status, answer) == (404, {"detail": f"Schedule '{schedule_id}' not found."})
    assert (await call(api, "GET", "/schedule/"))[1]["total"] == 0


# -- patch ----------------------------------------------------------------------------------

PATCHES: dict[str, tuple[Any, str, Any]] = {
    # field: (new value, stored column, stored value)
    "name": ("weekly report", "name", "weekly report"),
    "description": ("Summarise last week.", "prompt", "Summarise last week."),
    "cron_expression": ("30  8 * * MON", "cron", "30 8 * * MON"),
    "timezone": ("Asia/Tokyo", "timezone", "Asia/Tokyo"),
    "enabled": (False, "enabled", False),
    "stateful": (True, "stateful", True),
    "permission_mode": ("bypass", "permission_mode", "bypass"),
    "chat_model_config": (
        {"type": "anthropic", "model": "m", "credential_id": "c", "parameters": {}},
        "chat_model_config",
        {
            "type": "anthropic",
            "model": "m",
            "credential_id": "c",
            "parameters": {},
            "model_class": "",
        },
    ),
}


@pytest.mark.parametrize("field", sorted(PATCHES))
async def test_patch_null_leaves_the_field_unchanged(api: ApiHarness, field: str) -> None:
    schedule_id = await create(api)
    before = await api.store.get_schedule(schedule_id)

    status, answer = await call(api, "PATCH", f"/schedule/{schedule_id}", json={field: None})

    assert status == 200
    assert answer == await record(api, schedule_id)
    assert await api.store.get_schedule(schedule_id) == before


@pytest.mark.parametrize("field", sorted(PATCHES))
async def test_patch_changes_only_the_given_field(api: ApiHarness, field: str) -> None:
    with_dave(api)
    schedule_id = await create(api)
    before = await api.store.get_schedule(schedule_id)
    value, column, stored_value = PATCHES[field]

    status, answer = await call(
        api, "PATCH", f"/schedule/{schedule_id}", json={field: value, "unknown_key": 1}
    )

    assert status == 200
    assert answer == await record(api, schedule_id)
    after = await api.store.get_schedule(schedule_id)
    assert getattr(after, column) == stored_value
    assert after.last_edited_by == ALICE
    assert after.version == before.version + 1
    unchanged = {"updated_at", "version", "next_run_at", column}
    for name in (f.name for f in dataclasses.fields(before)):
        if name not in unchanged:
            assert getattr(after, name) == getattr(before, name), name
    assert api.events.changed_ids == [schedule_id, schedule_id]


async def test_an_empty_patch_changes_nothing(api: ApiHarness) -> None:
    schedule_id = await create(api)
    before = await api.store.get_schedule(schedule_id)

    status, answer = await call(api, "PATCH", f"/schedule/{schedule_id}", json={})

    assert status == 200
    assert answer["data"]["name"] == "nightly report"
    assert await api.store.get_schedule(schedule_id) == before


async def test_patching_the_cron_reschedules_at_once(api: ApiHarness) -> None:
    schedule_id = await create(api, cron_expression="0 9 * * 1-5")

    status, answer = await call(
        api, "PATCH", f"/schedule/{schedule_id}", json={"cron_expression": "0 9 * * 0"}
    )

    assert status == 200
    assert answer["data"]["cron_expression"] == "0 9 * * 0"
    next_run = (await api.store.get_schedule(schedule_id)).next_run_at
    assert next_run is not None
    assert next_run.weekday() == 6  # Sunday
    assert api.events.changed_ids == [schedule_id, schedule_id]


async def test_disable_and_enable(api: ApiHarness) -> None:
    schedule_id = await create(api)
    path = f"/schedule/{schedule_id}"

    await call(api, "PATCH", path, json={"enabled": False})
    assert (await api.store.get_schedule(schedule_id)).next_run_at is None

    status, answer = await call(api, "PATCH", path, json={"enabled": True})
    assert (status, answer["data"]["enabled"]) == (200, True)
    assert (await api.store.get_schedule(schedule_id)).next_run_at is not None


async def test_re_enabling_clears_an_auto_pause(api: ApiHarness) -> None:
    schedule_id = await create(api)
    paused = {"enabled": False, "paused_reason": "auto-paused after 3 consecutive failures"}
    await api.store.update_schedule(schedule_id, paused, now=datetime.now(UTC))

    await call(api, "PATCH", f"/schedule/{schedule_id}", json={"enabled": True})

    assert (await api.store.get_schedule(schedule_id)).paused_reason is None


@pytest.mark.parametrize(
    "change",
    [
        {"cron_expression": "0 0 31 4 *"},
        {"timezone": "Atlantis/Capital"},
        {"name": "renamed", "cron_expression": "61 * * * *"},
        {"enabled": "no"},
        {"permission_mode": "whatever"},
    ],
)
async def test_an_invalid_patch_is_422_and_changes_nothing(
    api: ApiHarness, change: dict[str, Any]
) -> None:
    schedule_id = await create(api)
    before = await api.store.get_schedule(schedule_id)

    status, answer = await call(api, "PATCH", f"/schedule/{schedule_id}", json=change)

    assert status == 422
    assert isinstance(answer["detail"], list)
    assert await api.store.get_schedule(schedule_id) == before
    assert api.events.changed_ids == [schedule_id]


async def test_patch_ignores_source_and_window_as_agentscope_does(api: ApiHarness) -> None:
    """AgentScope's update body has no such keys: they are ignored like any unknown key."""
    schedule_id = await create(api)
    before = await api.store.get_schedule(schedule_id)
    ignored = {
        "started_at": "2031-01-01T00:00:00Z",
        "ended_at": "2032-01-01T00:00:00Z",
        "source": "AGENT",
        "source_session_id": "session-parent",
    }

    status, answer = await call(api, "PATCH", f"/schedule/{schedule_id}", json=ignored)

    assert status == 200
    assert answer == await record(api, schedule_id)
    assert (answer["data"]["source"], answer["data"]["ended_at"]) == ("USER", None)
    assert await api.store.get_schedule(schedule_id) == before


# -- delete ---------------------------------------------------------------------------------


async def test_delete_is_204_without_reading_the_body_and_the_schedule_is_gone(
    api: ApiHarness,
) -> None:
    schedule_id = await create(api)

    status, answer = await call(
        api,
        "DELETE",
        f"/schedule/{schedule_id}",
        headers={"Content-Type": "application/json"},
        data=b"",
    )

    assert (status, answer) == (204, None)
    assert api.events.changed_ids == [schedule_id, schedule_id]
    assert (await call(api, "GET", f"/schedule/{schedule_id}"))[0] == 404
    assert (await call(api, "GET", "/schedule/"))[1] == {"schedules": [], "total": 0}
    assert await stored_total(api) == 0
    status, answer = await call(api, "DELETE", f"/schedule/{schedule_id}")
    assert (status, answer) == (404, {"detail": f"Schedule '{schedule_id}' not found."})


async def test_delete_ignores_a_malformed_body(api: ApiHarness) -> None:
    schedule_id = await create(api)

    status, _ = await call(api, "DELETE", f"/schedule/{schedule_id}", data=b"{not json")

    assert status == 204


# -- sessions -------------------------------------------------------------------------------


async def add_runs(api: ApiHarness, schedule_id: str, count: int) -> list[Run]:
    base = datetime(2030, 1, 1, 9, tzinfo=UTC)
    runs = [
        Run(
            schedule_id=schedule_id,
            scheduled_for=base + timedelta(days=day),
            trigger=RunTrigger.CRON,
            started_at=base + timedelta(days=day, seconds=1),
            identity=ALICE,
        )
        for day in range(count)
    ]
    return await api.store.claim_runs(runs)


async def test_sessions_list_the_runs_newest_first(api: ApiHarness) -> None:
    schedule_id = await create(api)
    first, second, third = await add_runs(api, schedule_id, 3)
    finished_at = third.started_at + timedelta(seconds=2)
    await api.store.finish_runs(
        [
            RunOutcome(
                run_id=first.id,
                status=RunStatus.SUCCEEDED,
                finished_at=finished_at,
                attempts=1,
                session_id="devin-1",
                session_url="https://sessions.example/devin-1",
            ),
            RunOutcome(
                run_id=second.id,
                status=RunStatus.FAILED,
                finished_at=finished_at,
                attempts=3,
                error="session service answered HTTP 503",
            ),
        ],
        max_consecutive_failures=0,
    )

    status, answer = await call(api, "GET", f"/schedule/{schedule_id}/sessions")

    assert status == 200
    assert answer["total"] == 3
    assert [s["run_id"] for s in answer["sessions"]] == [third.id, second.id, first.id]
    newest, failed, succeeded = answer["sessions"]
    assert (newest["status"], newest["session_id"], newest["finished_at"]) == (
        "launching",
        None,
        None,
    )
    assert (failed["status"], failed["error"], failed["attempts"]) == (
        "failed",
        "session service answered HTTP 503",
        3,
    )
    assert succeeded == {
        "session_id": "devin-1",
        "session_url": "https://sessions.example/devin-1",
        "run_id": first.id,
        "schedule_id": schedule_id,
        "status": "succeeded",
        "trigger": "cron",
        "scheduled_for": succeeded["scheduled_for"],
        "started_at": succeeded["started_at"],
        "finished_at": succeeded["finished_at"],
        "identity": ALICE,
        "attempts": 1,
        "error": None,
        "session_status": None,
    }
    assert aware(succeeded["scheduled_for"]) == first.scheduled_for
    assert aware(succeeded["started_at"]) == first.started_at
    assert aware(succeeded["finished_at"]) == finished_at


async def test_sessions_page_with_limit_and_offset(api: ApiHarness) -> None:
    schedule_id = await create(api)
    runs = await add_runs(api, schedule_id, 5)

    status, answer = await call(api, "GET", f"/schedule/{schedule_id}/sessions?limit=2&offset=1")

    assert status == 200
    assert answer["total"] == 5
    assert [s["run_id"] for s in answer["sessions"]] == [runs[3].id, runs[2].id]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "offset=-1"])
async def test_bad_session_paging_is_422(api: ApiHarness, query: str) -> None:
    schedule_id = await create(api)

    status, answer = await call(api, "GET", f"/schedule/{schedule_id}/sessions?{query}")

    assert status == 422
    assert answer["detail"][0]["loc"][0] == "query"


async def test_a_new_schedule_has_no_sessions(api: ApiHarness) -> None:
    schedule_id = await create(api)

    assert await call(api, "GET", f"/schedule/{schedule_id}/sessions") == (
        200,
        {"sessions": [], "total": 0},
    )


# -- settings -------------------------------------------------------------------------------


async def test_the_facade_is_absent_unless_enabled(api_factory: Callable[..., Any]) -> None:
    disabled: ApiHarness = await api_factory(settings=ApiSettings(agentscope_enabled=False))

    for method in ("GET", "POST"):
        status, answer = await call(disabled, method, "/schedule/", json=body())
        assert (status, answer) == (404, {"detail": "Not Found"})
    assert (await call(disabled, "GET", "/schedule/sched-x"))[0] == 404
    assert await stored_total(disabled) == 0


async def test_require_token_mode(api_factory: Callable[..., Any]) -> None:
    settings = ApiSettings(agentscope_enabled=True, agentscope_require_token=True)
    guarded: ApiHarness = await api_factory(settings=settings)

    assert (await call(guarded, "GET", "/schedule/"))[0] == 401
    bad_token = auth("cog_not_a_token")
    assert (await call(guarded, "GET", "/schedule/", headers=bad_token))[0] == 401
    assert (await call(guarded, "GET", "/schedule/", headers=auth(OTHER_TOKEN)))[0] == 403
    assert (await call(guarded, "GET", "/schedule/", headers=auth(NOPERM_TOKEN)))[0] == 403
    admin = auth(ADMIN_TOKEN)
    assert await call(guarded, "GET", "/schedule/", user=None, headers=admin) == (
        422,
        {"detail": MISSING_HEADER},
    )
    status, answer = await call(guarded, "POST", "/schedule/", headers=admin, json=body())
    assert status == 201
    status, listed = await call(guarded, "GET", "/schedule/", headers=admin)
    assert [r["id"] for r in listed["schedules"]] == [answer["schedule_id"]]


async def test_wrong_method_is_405(api: ApiHarness) -> None:
    status, answer = await call(api, "PUT", "/schedule/sched-x", json=body())

    assert status == 405
    assert isinstance(answer["detail"], str)


async def test_the_facade_is_in_the_openapi_document(api: ApiHarness) -> None:
    status, document = await call(api, "GET", "/openapi.json", user=None)

    assert status == 200
    paths = document["paths"]
    assert set(paths["/schedule/"]) == {"get", "post"}
    assert set(paths["/schedule/{schedule_id}"]) == {"get", "patch", "delete"}
    assert "201" in paths["/schedule/"]["post"]["responses"]
    headers = [p["name"] for p in paths["/schedule/{schedule_id}/sessions"]["get"]["parameters"]]
    assert "X-User-ID" in headers


# -- the other façade -----------------------------------------------------------------------


async def test_the_schedule_is_seen_through_the_devin_facade_only_with_every_agent(
    api: ApiHarness,
) -> None:
    schedule_id = await create(api, cron_expression="15 7 * * 0", timezone="Europe/Paris")
    mine = await record(api, schedule_id)
    path = f"/v3/organizations/{ORG}/schedules/{schedule_id}"

    assert (await api.call("GET", path))[0] == 404
    status, devin = await api.call("GET", f"{path}?agents=all")

    assert status == 200, devin
    assert devin["agent"] == "agent-reporter"
    assert devin["scheduled_session_id"] == schedule_id
    assert devin["org_id"] == ORG
    assert devin["name"] == mine["data"]["name"]
    assert devin["prompt"] == mine["data"]["description"]
    assert devin["frequency"] == mine["data"]["cron_expression"]
    assert devin["timezone"] == mine["data"]["timezone"]
    assert devin["enabled"] == mine["data"]["enabled"]
    assert devin["run_as_user_id"] == ALICE
    assert devin["schedule_type"] == "recurring"
    assert aware(devin["created_at"]) == aware(mine["created_at"])
    assert aware(devin["updated_at"]) == aware(mine["updated_at"])
