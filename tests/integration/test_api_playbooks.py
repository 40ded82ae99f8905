"""The Devin v3 playbooks API over a real server and a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import (
    ADMIN_TOKEN,
    ORG,
    OTHER_ORG,
    OTHER_TOKEN,
    PLAYBOOKS_TOKEN,
    SCHEDULER_TOKEN,
    ApiHarness,
    FakeClock,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EPOCH_NOW = int(NOW.timestamp())
BASE = f"/v3/organizations/{ORG}"
PLAYBOOKS = f"{BASE}/playbooks"
PLAYBOOK_KEYS = {
    "playbook_id",
    "title",
    "body",
    "macro",
    "access_type",
    "org_id",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def api(api_factory: Callable[..., Any], clock: FakeClock) -> ApiHarness:
    harness: ApiHarness = await api_factory(clock=clock)
    return harness


async def create(api: ApiHarness, token: str = ADMIN_TOKEN, **fields: Any) -> dict[str, Any]:
    body = {"title": "Deploy", "body": "1. build\n2. ship"} | fields
    status, answer = await api.call("POST", PLAYBOOKS, token=token, json=body)
    assert status == 200, answer
    return dict(answer)


async def test_create_answers_the_playbook(api: ApiHarness) -> None:
    answer = await create(api, token=PLAYBOOKS_TOKEN, macro="!deploy")
    assert set(answer) == PLAYBOOK_KEYS
    assert answer["playbook_id"].startswith("playbook-")
    assert answer | {"playbook_id": None} == {
        "playbook_id": None,
        "title": "Deploy",
        "body": "1. build\n2. ship",
        "macro": "!deploy",
        "access_type": "org",
        "org_id": ORG,
        "created_by": "service-playbooks",
        "updated_by": "service-playbooks",
        "created_at": EPOCH_NOW,
        "updated_at": EPOCH_NOW,
    }
    status, fetched = await api.call("GET", f"{PLAYBOOKS}/{answer['playbook_id']}")
    assert (status, fetched) == (200, answer)


async def test_macro_is_optional(api: ApiHarness) -> None:
    assert (await create(api))["macro"] is None
    assert (await create(api, macro=None))["macro"] is None


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"macro": "deploy"}, ["body", "macro"]),
        ({"macro": "!"}, ["body", "macro"]),
        ({"macro": "!has space"}, ["body", "macro"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": None}, ["body", "title"]),
        ({"body": 5}, ["body", "body"]),
        ({"tittle": "typo"}, ["body", "tittle"]),
    ],
)
async def test_create_refuses_invalid_bodies(
    api: ApiHarness, fields: dict[str, Any], loc: list[Any]
) -> None:
    body = {"title": "Deploy", "body": "steps"} | fields
    status, answer = await api.call("POST", PLAYBOOKS, json=body)
    assert status == 422
    assert loc in [item["loc"] for item in answer["detail"]]
    assert await api.store.count_playbooks(ORG) == 0


async def test_put_replaces_title_body_and_macro(api: ApiHarness, clock: FakeClock) -> None:
    created = await create(api, macro="!deploy")
    clock.advance(90)
    path = f"{PLAYBOOKS}/{created['playbook_id']}"
    status, answer = await api.call(
        "PUT", path, token=PLAYBOOKS_TOKEN, json={"title": "Release", "body": "new steps"}
    )
    assert status == 200
    assert answer == created | {
        "title": "Release",
        "body": "new steps",
        "macro": None,
        "updated_by": "service-playbooks",
        "updated_at": EPOCH_NOW + 90,
    }
    assert (await api.call("GET", path))[1] == answer


async def test_put_refuses_a_partial_body(api: ApiHarness) -> None:
    created = await create(api)
    path = f"{PLAYBOOKS}/{created['playbook_id']}"
    status, answer = await api.call("PUT", path, json={"title": "only the title"})
    assert status == 422
    assert ["body", "body"] in [item["loc"] for item in answer["detail"]]
    assert (await api.call("GET", path))[1] == created


async def test_delete_answers_the_playbook_then_it_is_gone(api: ApiHarness) -> None:
    created = await create(api)
    kept = await create(api, title="Kept")
    path = f"{PLAYBOOKS}/{created['playbook_id']}"
    status, answer = await api.call("DELETE", path, headers={"Content-Type": "application/json"})
    assert (status, answer) == (200, created)
    for method, body in (("GET", None), ("PUT", {"title": "t", "body": "b"}), ("DELETE", None)):
        status, answer = await api.call(method, path, json=body)
        assert status == 404
        assert isinstance(answer["detail"], str)
    status, page = await api.call("GET", PLAYBOOKS)
    assert (page["items"], page["total"]) == ([kept], 1)


async def test_a_deleted_playbook_drops_out_of_schedules_and_cannot_be_attached(
    api: ApiHarness,
) -> None:
    playbook = await create(api)
    body = {
        "name": "n",
        "prompt": "p",
        "frequency": "@daily",
        "playbook_id": playbook["playbook_id"],
    }
    status, schedule = await api.call("POST", f"{BASE}/schedules", json=body)
    assert status == 200 and schedule["playbook"]["title"] == "Deploy"
    await api.call("DELETE", f"{PLAYBOOKS}/{playbook['playbook_id']}")
    status, schedule = await api.call("GET", f"{BASE}/schedules/{schedule['scheduled_session_id']}")
    assert (status, schedule["playbook"]) == (200, None)
    status, _ = await api.call("POST", f"{BASE}/schedules", json=body)
    assert status == 404


async def test_list_pages_by_cursor(api: ApiHarness) -> None:
    ids = {(await create(api, title=f"p{n}"))["playbook_id"] for n in range(5)}
    seen: list[str] = []
    after = ""
    for _ in range(10):
        status, page = await api.call("GET", f"{PLAYBOOKS}?first=2&after={after}")
        assert status == 200
        assert set(page) == {"items", "end_cursor", "has_next_page", "total"}
        assert page["total"] == 5
        assert len(page["items"]) <= 2
        seen += [item["playbook_id"] for item in page["items"]]
        if not page["has_next_page"]:
            assert page["end_cursor"] is None
            break
        assert isinstance(page["end_cursor"], str)
        after = page["end_cursor"]
    assert len(seen) == 5 and set(seen) == ids


async def test_list_defaults(api: ApiHarness) -> None:
    created = await create(api)
    status, page = await api.call("GET", PLAYBOOKS)
    assert (status, page) == (
        200,
        {"items": [created], "end_cursor": None, "has_next_page": False, "total": 1},
    )


@pytest.mark.parametrize("query", ["first=0", "first=201", "first=many", "first=-3"])
async def test_list_refuses_bad_paging(api: ApiHarness, query: str) -> None:
    status, answer = await api.call("GET", f"{PLAYBOOKS}?{query}")
    assert status == 422
    assert [item["loc"] for item in answer["detail"]] == [["query", "first"]]


async def test_playbooks_are_per_org(api: ApiHarness) -> None:
    mine = await create(api)
    other = f"/v3/organizations/{OTHER_ORG}/playbooks"
    status, foreign = await api.call(
        "POST", other, token=OTHER_TOKEN, json={"title": "Theirs", "body": "b"}
    )
    assert status == 200 and foreign["org_id"] == OTHER_ORG
    status, page = await api.call("GET", PLAYBOOKS)
    assert page["items"] == [mine]
    for method in ("GET", "PUT", "DELETE"):
        body = {"title": "t", "body": "b"} if method == "PUT" else None
        status, _ = await api.call(method, f"{PLAYBOOKS}/{foreign['playbook_id']}", json=body)
        assert status == 404
    status, still = await api.call("GET", f"{other}/{foreign['playbook_id']}", token=OTHER_TOKEN)
    assert (status, still) == (200, foreign)


async def test_the_scheduler_token_cannot_manage_playbooks(api: ApiHarness) -> None:
    created = await create(api)
    for method, path in (
        ("GET", PLAYBOOKS),
        ("POST", PLAYBOOKS),
        ("GET", f"{PLAYBOOKS}/{created['playbook_id']}"),
        ("PUT", f"{PLAYBOOKS}/{created['playbook_id']}"),
        ("DELETE", f"{PLAYBOOKS}/{created['playbook_id']}"),
    ):
        status, answer = await api.call(method, path, token=SCHEDULER_TOKEN, json={})
        assert status == 403, (method, path)
        assert "ManageOrgPlaybooks" in answer["detail"]
