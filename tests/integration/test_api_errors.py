"""Authentication, permissions and the error shapes of the Devin v3 façade.

Every error is `{"detail": "<message>"}`, except 422, which lists `{loc, msg, type}` items.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from api.keys import ApiSettings
from storage.identities import DirectoryRef, ServiceUser, token_sha256
from tests.conftest import (
    ADMIN_TOKEN,
    NOPERM_TOKEN,
    ORG,
    OTHER_TOKEN,
    PLAYBOOKS_TOKEN,
    SCHEDULER_TOKEN,
    ApiHarness,
)

BASES = (f"/v3/organizations/{ORG}", f"/v3beta1/organizations/{ORG}")
SCHEDULE_BODY = {"name": "n", "prompt": "p", "frequency": "@daily"}
PLAYBOOK_BODY = {"title": "t", "body": "b"}

SCHEDULE_ROUTES = [
    ("POST", "/schedules", SCHEDULE_BODY),
    ("GET", "/schedules", None),
    ("GET", "/schedules/{schedule_id}", None),
    ("PATCH", "/schedules/{schedule_id}", {"name": "x"}),
    ("DELETE", "/schedules/{schedule_id}", None),
]
PLAYBOOK_ROUTES = [
    ("POST", "/playbooks", PLAYBOOK_BODY),
    ("GET", "/playbooks", None),
    ("GET", "/playbooks/{playbook_id}", None),
    ("PUT", "/playbooks/{playbook_id}", PLAYBOOK_BODY),
    ("DELETE", "/playbooks/{playbook_id}", None),
]
ROUTES = SCHEDULE_ROUTES + PLAYBOOK_ROUTES
BODY_ROUTES = [(method, path) for method, path, body in ROUTES if body is not None]

# A service user of the right org with every permission, whose token lacks the `cog_` prefix.
UNPREFIXED_TOKEN = "sk_admin_token"


@pytest.fixture
async def ids(api: ApiHarness) -> dict[str, str]:
    """A live schedule and playbook of the org, so only authorization can refuse a call."""
    status, schedule = await api.call("POST", f"{BASES[0]}/schedules", json=SCHEDULE_BODY)
    assert status == 200
    status, playbook = await api.call("POST", f"{BASES[0]}/playbooks", json=PLAYBOOK_BODY)
    assert status == 200
    return {"schedule_id": schedule["scheduled_session_id"], "playbook_id": playbook["playbook_id"]}


@pytest.fixture
def unprefixed_admin(directory: DirectoryRef) -> None:
    admin = next(
        su for su in directory.current.service_users_by_hash.values() if su.id == "service-admin"
    )
    impostor = ServiceUser(
        "service-unprefixed", ORG, admin.permissions, token_sha256(UNPREFIXED_TOKEN)
    )
    users = directory.current.service_users_by_hash | {impostor.token_hash: impostor}
    directory.current = dataclasses.replace(directory.current, service_users_by_hash=users)


def assert_detail_string(answer: Any) -> str:
    assert isinstance(answer, dict) and set(answer) == {"detail"}, answer
    assert isinstance(answer["detail"], str) and answer["detail"]
    return str(answer["detail"])


def assert_validation_list(answer: Any) -> list[dict[str, Any]]:
    assert isinstance(answer, dict) and set(answer) == {"detail"}, answer
    items = answer["detail"]
    assert isinstance(items, list) and items
    for item in items:
        assert isinstance(item["loc"], list)
        assert isinstance(item["msg"], str) and item["msg"]
        assert isinstance(item["type"], str) and item["type"]
    return list(items)


# -- authentication and permissions --------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cog_unknown_token"},
        {"Authorization": f"Bearer {UNPREFIXED_TOKEN}"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": ADMIN_TOKEN},
    ],
    ids=["missing", "unknown", "wrong-prefix", "not-bearer", "empty", "no-scheme"],
)
@pytest.mark.usefixtures("unprefixed_admin")
async def test_unauthenticated_calls_are_401(
    api: ApiHarness,
    ids: dict[str, str],
    base: str,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    url = base + path.format(**ids)
    status, answer = await api.call(method, url, token=None, headers=headers, json=body)
    assert status == 401
    assert_detail_string(answer)
    assert api.events.changed_ids == [ids["schedule_id"]]


async def test_the_unprefixed_token_is_known_but_refused(
    api: ApiHarness, unprefixed_admin: None, directory: DirectoryRef
) -> None:
    assert directory.current.service_users_by_hash[token_sha256(UNPREFIXED_TOKEN)]
    status, _ = await api.call("GET", f"{BASES[0]}/schedules", token=UNPREFIXED_TOKEN)
    assert status == 401


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_another_orgs_token_is_403(
    api: ApiHarness, ids: dict[str, str], method: str, path: str, body: Any
) -> None:
    url = BASES[0] + path.format(**ids)
    status, answer = await api.call(method, url, token=OTHER_TOKEN, json=body)
    assert status == 403
    assert ORG in assert_detail_string(answer)


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "permission"),
    [
        (*route, token, "ManageOrgSchedules")
        for route in SCHEDULE_ROUTES
        for token in (NOPERM_TOKEN, PLAYBOOKS_TOKEN)
    ]
    + [
        (*route, token, "ManageOrgPlaybooks")
        for route in PLAYBOOK_ROUTES
        for token in (NOPERM_TOKEN, SCHEDULER_TOKEN)
    ],
)
async def test_a_token_lacking_the_permission_is_403(
    api: ApiHarness,
    ids: dict[str, str],
    method: str,
    path: str,
    body: Any,
    token: str,
    permission: str,
) -> None:
    url = BASES[0] + path.format(**ids)
    status, answer = await api.call(method, url, token=token, json=body)
    assert status == 403
    assert permission in assert_detail_string(answer)


async def test_authorization_comes_before_lookups_and_bodies(api: ApiHarness) -> None:
    path = f"{BASES[0]}/schedules/sched-nope"
    assert (await api.call("GET", path, token=None))[0] == 401
    assert (await api.call("GET", path, token=OTHER_TOKEN))[0] == 403
    assert (await api.call("PATCH", path, token=None, data=b"{oops"))[0] == 401
    assert (await api.call("PATCH", path, token=NOPERM_TOKEN, data=b"{oops"))[0] == 403


async def test_an_unknown_org_is_403(api: ApiHarness) -> None:
    status, answer = await api.call("GET", "/v3/organizations/org-nope/schedules")
    assert status == 403
    assert_detail_string(answer)


# -- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v3/nothing", f"{BASES[0]}/schedule", f"{BASES[0]}/schedules/a/b/c", "/v2/organizations/x"],
)
async def test_an_unknown_route_is_a_json_404(api: ApiHarness, path: str) -> None:
    status, answer = await api.call("GET", path)
    assert status == 404
    assert_detail_string(answer)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/schedules"),
        ("DELETE", "/schedules"),
        ("POST", "/schedules/sched-x"),
        ("PUT", "/schedules/sched-x"),
        ("PATCH", "/playbooks"),
        ("PATCH", "/playbooks/playbook-x"),
    ],
)
async def test_a_wrong_method_is_a_json_405(api: ApiHarness, method: str, path: str) -> None:
    async with api.http.request(method, api.url(BASES[0] + path)) as response:
        assert response.status == 405
        assert response.headers.get("Allow")
        assert_detail_string(await response.json())


# -- bodies ---------------------------------------------------------------------------------

MALFORMED = {
    "truncated": b'{"name": "n", "prompt":',
    "empty": b"",
    "not-json": b"name=n&prompt=p",
    "not-utf8": b"\xff\xfe{}",
    "not-utf8-in-a-string": b'{"name": "\xff", "prompt": "p", "frequency": "@daily"}',
    "lone-surrogate": b'{"name": "\\ud800", "prompt": "p", "frequency": "@daily"}',
    "deep-array": b"[" * 100_000,
    "deep-object": b'{"a":' * 100_000,
    "trailing-garbage": b'{"name": "n"} x',
}


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_body_is_422_json_invalid(
    api: ApiHarness, ids: dict[str, str], method: str, path: str, raw: bytes
) -> None:
    url = BASES[0] + path.format(**ids)
    headers = {"Content-Type": "application/json"}
    async with api.http.request(
        method, api.url(url), data=raw, headers=headers | {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        text = await response.text()
        assert response.status == 422, text
    assert "Traceback" not in text
    items = assert_validation_list(json.loads(text))
    assert [item["type"] for item in items] == ["json_invalid"]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("raw", [b"null", b"[]", b"42", b'"text"'])
async def test_a_body_that_is_not_an_object_is_422(
    api: ApiHarness, ids: dict[str, str], method: str, path: str, raw: bytes
) -> None:
    url = BASES[0] + path.format(**ids)
    status, answer = await api.call(
        method, url, data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 422
    assert assert_validation_list(answer)[0]["loc"] == ["body"]


async def test_a_body_over_the_limit_is_413(api_factory: Callable[..., Any]) -> None:
    small: ApiHarness = await api_factory(
        settings=ApiSettings(max_body_bytes=1024, agentscope_enabled=True)
    )
    url = f"{BASES[0]}/schedules"
    fits = SCHEDULE_BODY | {"prompt": "p" * 900}
    status, created = await small.call("POST", url, json=fits)
    assert status == 200
    too_big = SCHEDULE_BODY | {"prompt": "p" * 2000}
    status, answer = await small.call("POST", url, json=too_big)
    assert status == 413
    assert_detail_string(answer)
    status, answer = await small.call(
        "PATCH", f"{url}/{created['scheduled_session_id']}", json=too_big
    )
    assert status == 413
    assert_detail_string(answer)
    status, answer = await small.call(
        "POST", f"{BASES[0]}/playbooks", json={"title": "t", "body": "b" * 4096}
    )
    assert status == 413
    assert (await small.store.list_schedules(ORG, limit=10, offset=0)).total == 1


async def test_a_validation_error_lists_every_problem(api: ApiHarness) -> None:
    body = {"name": 1, "prompt": None, "enabled": "yes", "frequncy": "@daily"}
    status, answer = await api.call("POST", f"{BASES[0]}/schedules", json=body)
    assert status == 422
    items = assert_validation_list(answer)
    assert {tuple(item["loc"]) for item in items} >= {
        ("body", "name"),
        ("body", "prompt"),
        ("body", "enabled"),
        ("body", "frequncy"),
    }
    assert "Traceback" not in json.dumps(answer)
