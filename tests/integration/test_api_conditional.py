"""ETag and If-Match on both façades, over a real server and a real SQLite store: every
schedule answer carries its version as a strong ETag, and an edit or delete with a stale
If-Match is refused 412 with nothing changed (history included)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from tests.conftest import ApiHarness, FakeClock
from tests.integration.test_api_schedules import NOW, SCHEDULES, create

Answer = tuple[int, Any, CIMultiDictProxy[str]]


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> ApiHarness:
    harness: ApiHarness = await api_factory(clock=FakeClock(NOW))
    return harness


async def call(api: ApiHarness, method: str, path: str, **kwargs: Any) -> Answer:
    """One request as the admin service user: (status, JSON body or None, headers)."""
    headers = {"Authorization": "Bearer cog_admin_token"} | kwargs.pop("headers", {})
    async with api.http.request(method, api.url(path), headers=headers, **kwargs) as response:
        body = await response.json(content_type=None) if await response.read() else None
        return response.status, body, response.headers


def if_match(tag: str) -> dict[str, str]:
    return {"If-Match": tag}


async def history_total(api: ApiHarness, schedule_id: str) -> int:
    page = await api.store.schedule_history(schedule_id, limit=1, offset=0)
    return page.total


async def test_every_schedule_answer_carries_its_version_as_a_strong_etag(
    api: ApiHarness,
) -> None:
    body = {"name": "triage", "prompt": "triage", "frequency": "0 9 * * *"}
    status, created, headers = await call(api, "POST", SCHEDULES, json=body)
    assert (status, headers["ETag"]) == (200, '"1"')
    item = f"{SCHEDULES}/{created['scheduled_session_id']}"
    assert (await call(api, "GET", item))[2]["ETag"] == '"1"'
    status, _, headers = await call(api, "PATCH", item, json={"name": "renamed"})
    assert (status, headers["ETag"]) == (200, '"2"')
    assert (await call(api, "GET", item))[2]["ETag"] == '"2"'
    status, _, headers = await call(api, "DELETE", item)
    assert (status, headers["ETag"]) == (200, '"3"')


async def test_a_patch_with_the_current_etag_is_made(api: ApiHarness) -> None:
    item = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"
    etag = (await call(api, "GET", item))[2]["ETag"]
    status, answer, headers = await call(
        api, "PATCH", item, json={"prompt": "new"}, headers=if_match(etag)
    )
    assert (status, answer["prompt"], headers["ETag"]) == (200, "new", '"2"')


@pytest.mark.parametrize(
    "tag", ['"1"', "1", '"9", "1"', "*"], ids=["quoted", "bare", "in a list", "any"]
)
async def test_if_match_forms_that_match(api: ApiHarness, tag: str) -> None:
    item = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"
    status, _, _ = await call(api, "PATCH", item, json={"name": "x"}, headers=if_match(tag))
    assert status == 200


@pytest.mark.parametrize("tag", ['"2"', 'W/"1"', '"abc"'], ids=["stale", "weak", "foreign"])
async def test_a_patch_with_another_etag_is_412_and_changes_nothing(
    api: ApiHarness, tag: str
) -> None:
    created = await create(api)
    item = f"{SCHEDULES}/{created['scheduled_session_id']}"
    stored = await api.store.get_schedule(created["scheduled_session_id"])
    status, answer, _ = await call(api, "PATCH", item, json={"name": "lost"}, headers=if_match(tag))
    assert status == 412
    assert isinstance(answer["detail"], str) and '"1"' in answer["detail"]
    assert await api.store.get_schedule(stored.id) == stored
    assert await history_total(api, stored.id) == 1  # its creation only


async def test_an_empty_patch_honours_if_match_too(api: ApiHarness) -> None:
    item = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"
    assert (await call(api, "PATCH", item, json={}, headers=if_match('"7"')))[0] == 412
    status, _, headers = await call(api, "PATCH", item, json={}, headers=if_match('"1"'))
    assert (status, headers["ETag"]) == (200, '"1"')


async def test_a_delete_with_a_stale_etag_is_412_and_deletes_nothing(api: ApiHarness) -> None:
    created = await create(api)
    item = f"{SCHEDULES}/{created['scheduled_session_id']}"
    await call(api, "PATCH", item, json={"prompt": "edited meanwhile"})
    status, answer, _ = await call(api, "DELETE", item, headers=if_match('"1"'))
    assert status == 412 and "changed since it was read" in answer["detail"]
    assert (await call(api, "GET", item))[0] == 200
    assert await history_total(api, created["scheduled_session_id"]) == 2
    assert (await call(api, "DELETE", item, headers=if_match('"2"')))[0] == 200


async def test_if_match_on_a_missing_schedule_is_404(api: ApiHarness) -> None:
    status, _, _ = await call(
        api, "PATCH", f"{SCHEDULES}/sched-none", json={"name": "x"}, headers=if_match("*")
    )
    assert status == 404


async def test_an_empty_if_match_is_a_clear_400(api: ApiHarness) -> None:
    item = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"
    status, answer, _ = await call(api, "PATCH", item, json={"name": "x"}, headers=if_match(" "))
    assert status == 400 and "If-Match" in answer["detail"]
    assert (await call(api, "GET", item))[1]["name"] == "triage"


async def test_two_patches_with_one_etag_at_once_make_one_change(api: ApiHarness) -> None:
    created = await create(api)
    item = f"{SCHEDULES}/{created['scheduled_session_id']}"
    answers = await asyncio.gather(
        *(
            call(api, "PATCH", item, json={"prompt": prompt}, headers=if_match('"1"'))
            for prompt in ("first", "second")
        )
    )
    assert sorted(status for status, _, _ in answers) == [200, 412]
    (winner,) = [body for status, body, _ in answers if status == 200]
    now = await call(api, "GET", item)
    assert now[1] == winner and now[2]["ETag"] == '"2"'
    stored = await api.store.get_schedule(created["scheduled_session_id"])
    assert (stored.prompt, stored.version) == (winner["prompt"], 2)
    assert await history_total(api, stored.id) == 2


async def test_no_answer_is_409(api: ApiHarness) -> None:
    item = f"{SCHEDULES}/{(await create(api))['scheduled_session_id']}"
    answers = await asyncio.gather(
        *(
            call(api, "PATCH", item, json={"name": f"n{i}"}, headers=if_match('"1"'))
            for i in range(5)
        )
    )
    assert sorted(status for status, _, _ in answers) == [200, 412, 412, 412, 412]


# -- the AgentScope façade ----------------------------------------------------------------

USER = {"X-User-ID": "user-alice"}


async def scope_call(api: ApiHarness, method: str, path: str, **kwargs: Any) -> Answer:
    headers = USER | kwargs.pop("headers", {})
    async with api.http.request(method, api.url(path), headers=headers, **kwargs) as response:
        body = await response.json(content_type=None) if await response.read() else None
        return response.status, body, response.headers


async def scope_schedule(api: ApiHarness) -> str:
    body = {"name": "digest", "agent_id": "reporter", "cron_expression": "0 8 * * *"}
    status, answer, headers = await scope_call(api, "POST", "/schedule/", json=body)
    assert status == 201, answer
    assert headers["ETag"] == '"1"'
    return f"/schedule/{answer['schedule_id']}"


async def test_the_agentscope_facade_answers_etags_and_honours_if_match(
    api: ApiHarness,
) -> None:
    item = await scope_schedule(api)
    assert (await scope_call(api, "GET", item))[2]["ETag"] == '"1"'
    status, _, headers = await scope_call(
        api, "PATCH", item, json={"name": "renamed"}, headers=if_match('"1"')
    )
    assert (status, headers["ETag"]) == (200, '"2"')
    stale = await scope_call(api, "PATCH", item, json={"name": "lost"}, headers=if_match('"1"'))
    assert stale[0] == 412 and isinstance(stale[1]["detail"], str)
    assert (await scope_call(api, "GET", item))[1]["data"]["name"] == "renamed"
    assert (await scope_call(api, "DELETE", item, headers=if_match('"1"')))[0] == 412
    assert (await scope_call(api, "DELETE", item, headers=if_match('"2"')))[0] == 204


async def test_another_users_schedule_is_404_on_the_agentscope_facade_whatever_if_match(
    api: ApiHarness,
) -> None:
    """The owner is part of finding the schedule, before its version is compared: a
    schedule of someone else is not there, stale If-Match or not, invalid body or not."""
    item = await scope_schedule(api)
    bob = {"X-User-ID": "user-bob"}
    for headers in (bob, bob | if_match('"7"'), bob | if_match('"1"')):
        renamed = await scope_call(api, "PATCH", item, json={"name": "b"}, headers=headers)
        assert renamed[0] == 404, renamed
        assert (await scope_call(api, "DELETE", item, headers=headers))[0] == 404
    bad_cron = {"cron_expression": "not a cron"}
    assert (await scope_call(api, "PATCH", item, json=bad_cron, headers=bob))[0] == 404
    assert (await scope_call(api, "PATCH", item, json=bad_cron))[0] == 422
    status, answer, headers = await scope_call(api, "GET", item)
    assert (status, answer["data"]["name"], headers["ETag"]) == (200, "digest", '"1"')
