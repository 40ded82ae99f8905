"""The extension routes over real HTTP: trigger (real engine), run history, cron preview."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from storage.domain import Schedule
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import (
    NOPERM_TOKEN,
    OTHER_TOKEN,
    PLAYBOOKS_TOKEN,
    RUN_KEYS,
    SCHEDULER_TOKEN,
    ApiHarness,
)
from tests.deadline import eventually
from tests.engine_harness import EngineHarness, now, schedule_of
from tests.session_service import SessionService

BASE = "/v3/organizations/org-local"


@pytest.fixture
async def engine(
    store: Store, directory: DirectoryRef
) -> AsyncIterator[tuple[EngineHarness, SessionService]]:
    service = await SessionService().start()
    async with aiohttp.ClientSession() as http:
        harness = EngineHarness(store, directory, service, http)
        await harness.engine.start()
        yield harness, service
        await harness.engine.stop(0.5)
    await service.close()


@pytest.fixture
async def api_with_engine(
    api_factory: Callable[..., Any], engine: tuple[EngineHarness, SessionService]
) -> ApiHarness:
    harness: ApiHarness = await api_factory(events=engine[0].engine)
    return harness


async def stored(store: Store, **fields: Any) -> Schedule:
    return await store.create_schedule(schedule_of(**fields), now=now())


async def settled_runs(api: ApiHarness, schedule_id: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        status, body = await api.call("GET", f"{BASE}/schedules/{schedule_id}/runs")
        assert status == 200
        items: list[dict[str, Any]] = body["items"]
        done = [item for item in items if item["status"] != RunStatus.LAUNCHING]
        return items if len(done) >= count else None

    return await eventually(probe)


# --- trigger ------------------------------------------------------------------------------


async def test_trigger_answers_202_with_the_launching_run_which_then_succeeds(
    api_with_engine: ApiHarness, store: Store, engine: tuple[EngineHarness, SessionService]
) -> None:
    schedule = await stored(store)
    status, run = await api_with_engine.call("POST", f"{BASE}/schedules/{schedule.id}/trigger")
    assert status == 202
    assert set(run) == RUN_KEYS
    assert (run["schedule_id"], run["status"], run["trigger"]) == (
        schedule.id,
        "launching",
        "manual",
    )
    assert run["identity"] == "bot" and run["finished_at"] is None
    assert datetime.fromisoformat(run["scheduled_for"]).utcoffset() is not None
    (finished,) = await settled_runs(api_with_engine, schedule.id, 1)
    assert finished["id"] == run["id"]
    assert (finished["status"], finished["session_id"]) == ("succeeded", "devin-1")
    service = engine[1]
    assert service.requests[0].headers["Idempotency-Key"] == run["id"]


async def test_trigger_needs_the_schedule_permission_in_the_schedule_org(
    api_with_engine: ApiHarness, store: Store
) -> None:
    schedule = await stored(store)
    path = f"{BASE}/schedules/{schedule.id}/trigger"
    assert (await api_with_engine.call("POST", path, token=None))[0] == 401
    assert (await api_with_engine.call("POST", path, token=NOPERM_TOKEN))[0] == 403
    assert (await api_with_engine.call("POST", path, token=PLAYBOOKS_TOKEN))[0] == 403
    status, body = await api_with_engine.call("POST", path, token=OTHER_TOKEN)
    assert status == 403 and isinstance(body["detail"], str)
    other_org = "/v3/organizations/org-other/schedules"
    status, body = await api_with_engine.call(
        "POST", f"{other_org}/{schedule.id}/trigger", token=OTHER_TOKEN
    )
    assert status == 404 and body == {"detail": f"schedule '{schedule.id}' not found"}
    status, _ = await api_with_engine.call("POST", path, token=SCHEDULER_TOKEN)
    assert status == 202


async def test_trigger_of_an_unknown_or_deleted_schedule_is_404(
    api_with_engine: ApiHarness, store: Store
) -> None:
    status, body = await api_with_engine.call("POST", f"{BASE}/schedules/sched-nope/trigger")
    assert (status, body) == (404, {"detail": "schedule 'sched-nope' not found"})
    schedule = await stored(store)
    await store.delete_schedule(schedule.id, now=now())
    status, _ = await api_with_engine.call("POST", f"{BASE}/schedules/{schedule.id}/trigger")
    assert status == 404


async def test_the_beta_base_serves_the_extensions_too(
    api_with_engine: ApiHarness, store: Store
) -> None:
    schedule = await stored(store)
    beta = "/v3beta1/organizations/org-local"
    status, run = await api_with_engine.call("POST", f"{beta}/schedules/{schedule.id}/trigger")
    assert status == 202
    status, page = await api_with_engine.call("GET", f"{beta}/schedules/{schedule.id}/runs")
    assert status == 200 and page["items"][0]["id"] == run["id"]
    status, _ = await api_with_engine.call("GET", f"{beta}/cron/preview?expr=@daily")
    assert status == 200


# --- run history --------------------------------------------------------------------------


async def test_runs_are_listed_newest_first_in_pages(
    api_with_engine: ApiHarness, store: Store
) -> None:
    schedule = await stored(store)
    ids = []
    for count in (1, 2, 3):
        _, run = await api_with_engine.call("POST", f"{BASE}/schedules/{schedule.id}/trigger")
        ids.append(run["id"])
        await settled_runs(api_with_engine, schedule.id, count)
    runs = f"{BASE}/schedules/{schedule.id}/runs"
    status, first = await api_with_engine.call("GET", f"{runs}?limit=2")
    assert status == 200
    assert [item["id"] for item in first["items"]] == [ids[2], ids[1]]
    assert (first["has_next_page"], first["end_cursor"], first["total"]) == (True, "2", 3)
    status, second = await api_with_engine.call("GET", f"{runs}?limit=2&offset=2")
    assert [item["id"] for item in second["items"]] == [ids[0]]
    assert (second["has_next_page"], second["end_cursor"], second["total"]) == (False, None, 3)


async def test_a_schedule_without_runs_has_an_empty_history(
    api_with_engine: ApiHarness, store: Store
) -> None:
    schedule = await stored(store)
    status, page = await api_with_engine.call("GET", f"{BASE}/schedules/{schedule.id}/runs")
    assert (status, page) == (
        200,
        {"items": [], "end_cursor": None, "has_next_page": False, "total": 0},
    )
    status, _ = await api_with_engine.call("GET", f"{BASE}/schedules/sched-nope/runs")
    assert status == 404


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=abc", "offset=1.5"])
async def test_bad_paging_is_a_422_list(
    api_with_engine: ApiHarness, store: Store, query: str
) -> None:
    schedule = await stored(store)
    status, body = await api_with_engine.call("GET", f"{BASE}/schedules/{schedule.id}/runs?{query}")
    assert status == 422
    (item,) = body["detail"]
    assert item["loc"] == ["query", query.split("=")[0]]


# --- cron preview -------------------------------------------------------------------------


async def test_cron_preview_lists_the_next_instants_in_the_timezone(
    api_with_engine: ApiHarness,
) -> None:
    status, body = await api_with_engine.call(
        "GET",
        f"{BASE}/cron/preview",
        params={
            "expr": "0 9 * * MON-FRI",
            "timezone": "Europe/Berlin",
            "after": "2030-01-04T00:00:00Z",
            "count": "3",
        },
    )
    assert status == 200
    assert (body["expr"], body["timezone"]) == ("0 9 * * MON-FRI", "Europe/Berlin")
    instants = [datetime.fromisoformat(text) for text in body["instants"]]
    assert [i.isoformat() for i in instants] == [
        "2030-01-04T08:00:00+00:00",  # Friday, 09:00 in Berlin (UTC+1)
        "2030-01-07T08:00:00+00:00",  # Monday: the weekend is skipped
        "2030-01-08T08:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("params", "first"),
    [
        # 7 is Sunday, as in cron; a naive `after` is UTC; the default count is 5
        ({"expr": "0 0 * * 7", "after": "2030-01-04T12:00:00"}, "2030-01-06T00:00:00+00:00"),
        ({"expr": "0 0 1,15 * MON", "after": "2030-01-01T00:00:00Z"}, "2030-01-07T00:00:00+00:00"),
    ],
)
async def test_cron_preview_reads_standard_cron(
    api_with_engine: ApiHarness, params: dict[str, str], first: str
) -> None:
    status, body = await api_with_engine.call("GET", f"{BASE}/cron/preview", params=params)
    assert status == 200 and body["timezone"] == "UTC" and len(body["instants"]) == 5
    assert datetime.fromisoformat(body["instants"][0]).isoformat() == first


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"expr": "0 0 30 2 *"}, ["query", "expr"]),
        ({"expr": "* * *"}, ["query", "expr"]),
        ({"expr": "@daily", "timezone": "Mars/Olympus"}, ["query", "timezone"]),
        ({"expr": "@daily", "count": "0"}, ["query", "count"]),
        ({"expr": "@daily", "after": "yesterday"}, ["query", "after"]),
        ({}, ["query", "expr"]),
    ],
)
async def test_cron_preview_refuses_bad_input_with_a_422_list(
    api_with_engine: ApiHarness, params: dict[str, str], loc: list[str]
) -> None:
    status, body = await api_with_engine.call("GET", f"{BASE}/cron/preview", params=params)
    assert status == 422
    (item,) = body["detail"]
    assert item["loc"] == loc and item["msg"]


async def test_cron_preview_needs_auth(api_with_engine: ApiHarness) -> None:
    path = f"{BASE}/cron/preview?expr=@daily"
    assert (await api_with_engine.call("GET", path, token=None))[0] == 401
    assert (await api_with_engine.call("GET", path, token=OTHER_TOKEN))[0] == 403


# --- schedules of other agents (made through the AgentScope façade) ------------------------


async def agentscope_schedule(api: ApiHarness) -> str:
    body = {"agent_id": "agent-reporter", "name": "report", "cron_expression": "0 9 * * *"}
    headers = {"X-User-ID": "user-alice"}
    status, answer = await api.call("POST", "/schedule/", token=None, headers=headers, json=body)
    assert status == 201, answer
    schedule_id: str = answer["schedule_id"]
    return schedule_id


async def test_trigger_and_runs_of_another_agents_schedule_are_404(api: ApiHarness) -> None:
    schedule_id = await agentscope_schedule(api)
    not_found = {"detail": f"schedule '{schedule_id}' not found"}

    trigger = await api.call("POST", f"{BASE}/schedules/{schedule_id}/trigger")
    runs = await api.call("GET", f"{BASE}/schedules/{schedule_id}/runs")

    assert trigger == runs == (404, not_found)
    assert api.events.triggered == []
    assert (await api.store.list_runs(schedule_id, limit=10, offset=0)).total == 0


async def test_agents_all_triggers_and_lists_runs_of_every_schedule(api: ApiHarness) -> None:
    schedule_id = await agentscope_schedule(api)

    status, run = await api.call("POST", f"{BASE}/schedules/{schedule_id}/trigger?agents=all")
    assert (status, run["schedule_id"]) == (202, schedule_id)
    status, page = await api.call("GET", f"{BASE}/schedules/{schedule_id}/runs?agents=all")
    assert (status, [item["id"] for item in page["items"]]) == (200, [run["id"]])
    assert api.events.triggered == [schedule_id]
