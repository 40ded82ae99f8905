"""GET `/schedules/{id}/history` over a real server and a real SQLite store: entries from
the Devin and AgentScope façades and the configuration file, newest first, kept after a
delete, and read with the schedule's own permission and narrowing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.bootstrap import apply_bootstrap
from daemon.config import Config
from tests.conftest import (
    NOPERM_TOKEN,
    OTHER_TOKEN,
    ApiHarness,
    FakeClock,
)
from tests.integration.test_api_schedules import (
    NOW,
    SCHEDULES,
    create,
    file_config,
    iso,
    patch,
)

ENVELOPE = {"items", "end_cursor", "has_next_page", "total"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def api(api_factory: Callable[..., Any], clock: FakeClock) -> ApiHarness:
    harness: ApiHarness = await api_factory(clock=clock)
    return harness


async def history(api: ApiHarness, schedule_id: str, query: str = "", **kw: Any) -> Any:
    status, answer = await api.call("GET", f"{SCHEDULES}/{schedule_id}/history{query}", **kw)
    assert status == 200, answer
    assert set(answer) == ENVELOPE
    return answer


async def test_api_edits_are_listed_newest_first_by_the_caller(
    api: ApiHarness, clock: FakeClock
) -> None:
    created = await create(api)
    schedule_id = created["scheduled_session_id"]
    clock.advance(60)
    assert (await patch(api, schedule_id, {"frequency": "0 10 * * *", "name": "t2"}))[0] == 200
    clock.advance(60)
    assert (await patch(api, schedule_id, {"enabled": False}))[0] == 200
    answer = await history(api, schedule_id)
    assert answer["total"] == 3 and answer["has_next_page"] is False
    paused, edited, made = answer["items"]
    assert set(made) == {"at", "by", "action", "changes"}
    assert (made["action"], made["by"], made["at"]) == ("created", "service-admin", iso(NOW))
    assert made["changes"]["name"] == [None, "triage"]
    assert made["changes"]["frequency"] == [None, "0 9 * * *"]
    assert edited["action"] == "updated"
    assert edited["changes"] == {"frequency": ["0 9 * * *", "0 10 * * *"], "name": ["triage", "t2"]}
    assert paused == {
        "at": iso(clock.now()),
        "by": "service-admin",
        "action": "disabled",
        "changes": {"enabled": [True, False]},
    }


async def test_a_deleted_schedule_keeps_its_history(api: ApiHarness) -> None:
    schedule_id = (await create(api, tags=["a"]))["scheduled_session_id"]
    status, _ = await api.call("DELETE", f"{SCHEDULES}/{schedule_id}")
    assert status == 200
    assert (await api.call("GET", f"{SCHEDULES}/{schedule_id}"))[0] == 404
    deleted, _ = (await history(api, schedule_id))["items"]
    assert (deleted["action"], deleted["by"]) == ("deleted", "service-admin")
    assert deleted["changes"]["tags"] == [["a"], None]
    assert deleted["changes"]["enabled"] == [True, None]


async def test_history_pages_by_limit_and_offset(api: ApiHarness) -> None:
    schedule_id = (await create(api))["scheduled_session_id"]
    for i in range(4):
        await patch(api, schedule_id, {"prompt": f"p{i}"})
    first = await history(api, schedule_id, "?limit=2")
    assert (first["total"], first["has_next_page"], first["end_cursor"]) == (5, True, "2")
    assert [e["changes"]["prompt"][1] for e in first["items"]] == ["p3", "p2"]
    last = await history(api, schedule_id, "?limit=2&offset=4")
    assert (last["has_next_page"], last["end_cursor"]) == (False, None)
    assert [e["action"] for e in last["items"]] == ["created"]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?offset=-1", "?limit=x"])
async def test_bad_paging_is_422(api: ApiHarness, query: str) -> None:
    schedule_id = (await create(api))["scheduled_session_id"]
    status, answer = await api.call("GET", f"{SCHEDULES}/{schedule_id}/history{query}")
    assert status == 422 and isinstance(answer["detail"], list)


async def test_an_id_that_never_was_a_schedule_of_the_org_is_404(api: ApiHarness) -> None:
    schedule_id = (await create(api))["scheduled_session_id"]
    assert (await api.call("GET", f"{SCHEDULES}/sched-none/history"))[0] == 404
    other = f"/v3/organizations/org-other/schedules/{schedule_id}/history"
    assert (await api.call("GET", other, token=OTHER_TOKEN))[0] == 404


async def test_history_needs_the_permission_to_read_the_schedule(api: ApiHarness) -> None:
    schedule_id = (await create(api))["scheduled_session_id"]
    path = f"{SCHEDULES}/{schedule_id}/history"
    assert (await api.call("GET", path, token=NOPERM_TOKEN))[0] == 403
    assert (await api.call("GET", path, token=None))[0] == 401


async def test_agentscope_edits_are_by_the_user_and_shown_with_every_agent(
    api: ApiHarness,
) -> None:
    user = {"X-User-ID": "user-alice"}
    body = {"name": "digest", "agent_id": "reporter", "cron_expression": "0 8 * * *"}
    status, made = await api.call("POST", "/schedule/", token=None, json=body, headers=user)
    assert status == 201
    schedule_id = made["schedule_id"]
    edit = {"description": "new", "cron_expression": "0 9 * * *"}
    path = f"/schedule/{schedule_id}"
    assert (await api.call("PATCH", path, token=None, json=edit, headers=user))[0] == 200
    # The Devin façade hides another agent's schedule, its history with it.
    assert (await api.call("GET", f"{SCHEDULES}/{schedule_id}/history"))[0] == 404
    edited, created = (await history(api, schedule_id, "?agents=all"))["items"]
    assert (created["by"], created["changes"]["agent"]) == ("user-alice", [None, "reporter"])
    assert (edited["by"], edited["action"]) == ("user-alice", "updated")
    assert edited["changes"]["frequency"] == ["0 8 * * *", "0 9 * * *"]


async def test_the_configuration_file_edits_as_config(api: ApiHarness, clock: FakeClock) -> None:
    made = await apply_bootstrap(file_config(), api.store, api.events, now=NOW)
    (schedule_id,) = made.created
    changed = file_config().model_dump()
    changed["schedules"][0]["prompt"] = "changed in the file"
    clock.advance(60)
    await apply_bootstrap(Config.model_validate(changed), api.store, api.events, now=clock.now())
    await apply_bootstrap(Config.model_validate(changed), api.store, api.events, now=clock.now())
    edited, created = (await history(api, schedule_id))["items"]
    assert (created["by"], created["changes"]["managed_by"]) == ("config", [None, "config"])
    assert edited == {
        "at": iso(clock.now()),
        "by": "config",
        "action": "updated",
        "changes": {"prompt": ["p", "changed in the file"]},
    }
