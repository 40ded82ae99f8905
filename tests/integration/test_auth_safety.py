"""Authentication guarantees that hold for every route, including routes added later.

- A clear token is never kept: the configuration and the directory hold only its sha256.
- A token is never logged, good or bad, whatever the request does (checked on the
  structlog events of the app and on the whole log of a real `agentcron serve`).
- Every route except `/healthz`, `/readyz`, `/metrics` and `/openapi.json` refuses a caller
  without credentials; the routes are found by walking the app's router.
- A token of another org never reads or changes this org's objects.
- Run-as impersonation is checked when a schedule is written and again when it fires:
  a run-as user who loses UseDevinSessions in a reload fails the next run, unlaunched.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from api.keys import ApiSettings
from daemon.config import load_config
from daemon.identity import build_directory
from storage.identities import Directory, Org, ServiceUser, token_sha256
from storage.sqlite_store import SqliteStore
from tests.conftest import (
    ADMIN_TOKEN,
    ORG,
    OTHER_ORG,
    OTHER_TOKEN,
    SCHEDULER_TOKEN,
    ApiHarness,
    RecordingEvents,
)
from tests.e2e.conftest import ADMIN_TOKEN as E2E_ADMIN_TOKEN
from tests.e2e.conftest import (
    DaemonProcess,
    base_config,
    fired_lines,
    free_port,
    wait_until,
    write_config,
)

OPEN_ROUTES = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
SCHEDULE = {"name": "n", "prompt": "p", "frequency": "@daily"}
AGENTSCOPE_SCHEDULE = {"agent_id": "a", "name": "n", "cron_expression": "0 9 * * *"}
PLAYBOOK = {"title": "t", "body": "b"}


# -- helpers ---------------------------------------------------------------------------------


def strings_in(value: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Every string reachable from `value`: fields, items, keys, attributes, paths."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, str | bytes | Path | int | float | bool) or value is None:
        yield str(value)
        return
    yield repr(value)
    for child in children(value):
        yield from strings_in(child, seen)


def children(value: Any) -> list[Any]:
    """What `value` holds: items and keys of containers, fields of models and dataclasses."""
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if isinstance(value, BaseModel):
        return [getattr(value, name) for name in type(value).model_fields]
    if dataclasses.is_dataclass(value):
        return [getattr(value, field.name) for field in dataclasses.fields(value)]
    return list(getattr(value, "__dict__", {}).values())


def fill(template: str, ids: dict[str, str]) -> str:
    """A route template with real ids; `/schedule/{schedule_id}` is the AgentScope one."""
    if template.startswith("/schedule/"):
        ids = ids | {"schedule_id": ids["agentscope_id"]}
    return template.format(**ids)


def routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves."""
    return sorted(
        {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
        }
    )


def body_for(method: str, template: str) -> Any:
    """A valid body for the route, so only authentication or ownership can refuse it."""
    if method not in ("POST", "PUT", "PATCH") or template.endswith("/trigger"):
        return None
    if template.startswith("/schedule"):
        return AGENTSCOPE_SCHEDULE if method == "POST" else {"name": "hijacked"}
    if "/playbooks" in template:
        return PLAYBOOK | ({"title": "hijacked"} if method == "PUT" else {})
    return SCHEDULE if method == "POST" else {"name": "hijacked"}


@pytest.fixture
async def ids(api: ApiHarness) -> dict[str, str]:
    """One live object of each kind in ORG, made by the admin."""
    devin = f"/v3/organizations/{ORG}"
    _, schedule = await api.call("POST", f"{devin}/schedules", json=SCHEDULE)
    _, playbook = await api.call("POST", f"{devin}/playbooks", json=PLAYBOOK)
    _, agentscope = await api.call(
        "POST",
        "/schedule/",
        token=None,
        headers={"X-User-ID": "user-alice"},
        json=AGENTSCOPE_SCHEDULE,
    )
    return {
        "org_id": ORG,
        "schedule_id": schedule["scheduled_session_id"],
        "playbook_id": playbook["playbook_id"],
        "agentscope_id": agentscope["schedule_id"],
    }


async def snapshot(store: SqliteStore, ids: dict[str, str]) -> tuple[Any, ...]:
    """Everything a refused call must leave alone."""
    schedules = await store.list_schedules(ORG, limit=100, offset=0)
    playbook = await store.get_playbook(ids["playbook_id"])
    runs = [
        (await store.list_runs(ids[key], limit=100, offset=0)).total
        for key in ("schedule_id", "agentscope_id")
    ]
    return tuple(schedules.items), playbook, tuple(runs)


# -- tokens are kept hashed and never logged ---------------------------------------------------

CLEAR_TOKEN = "cog_clear_token_4f7b0c2e"


def test_no_clear_token_is_kept_in_the_configuration_or_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCRON_TEST_ADMIN_TOKEN", CLEAR_TOKEN)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[[orgs]]\nid = "org-local"\nname = "Local"\n'
        '[[service_users]]\nid = "service-admin"\norg = "org-local"\n'
        'permissions = ["ManageOrgSchedules"]\ntoken_env = "AGENTCRON_TEST_ADMIN_TOKEN"\n',
        encoding="utf-8",
    )
    config = load_config(config_path)
    directory = build_directory(config)

    for held in (config, directory):
        leaks = [text for text in strings_in(held) if CLEAR_TOKEN in text]
        assert leaks == [], f"the clear token is kept in {type(held).__name__}"
        assert CLEAR_TOKEN not in repr(held)
    assert directory.service_user_for_token(CLEAR_TOKEN) is not None
    assert set(directory.service_users_by_hash) == {token_sha256(CLEAR_TOKEN)}


async def test_no_clear_token_reaches_the_database(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    admin = ServiceUser(
        "service-admin", ORG, frozenset({"ManageOrgSchedules"}), token_sha256(CLEAR_TOKEN)
    )
    await store.replace_identities(
        Directory.build(orgs=[Org(ORG, "Local")], users=[], service_users=[admin])
    )
    await store.close()
    stored = b"".join(path.read_bytes() for path in db_path.parent.glob(db_path.name + "*"))
    assert token_sha256(CLEAR_TOKEN).encode() in stored  # the scan does see the identities
    assert CLEAR_TOKEN.encode() not in stored


# -- every route needs credentials -------------------------------------------------------------


async def test_every_route_but_the_operational_ones_refuses_a_caller_without_credentials(
    api: ApiHarness, ids: dict[str, str]
) -> None:
    served = routes(api.server.app)
    assert {template for _, template in served} >= OPEN_ROUTES
    before = await snapshot(api.store, ids)
    checked = 0
    for method, template in served:
        if template in OPEN_ROUTES:
            continue
        path, body = fill(template, ids), body_for(method, template)
        status, answer = await api.call(method, path, token=None, json=body)
        expected = 422 if template.startswith("/schedule") else 401  # X-User-ID is missing
        assert status == expected, (method, path, status, answer)
        status, _ = await api.call(method, path, token=None, headers={"X-User-ID": ""}, json=body)
        assert status == 401, (method, path, status)
        checked += 1
    assert checked >= 20, "the walk found too few routes"
    assert await snapshot(api.store, ids) == before
    assert isinstance(api.events, RecordingEvents) and api.events.triggered == []


async def test_the_operational_routes_answer_without_credentials(api: ApiHarness) -> None:
    for path in sorted(OPEN_ROUTES):
        async with api.http.get(api.url(path)) as response:
            assert response.status == 200, path


async def test_with_require_token_every_agentscope_route_needs_a_token_too(
    api_factory: Any, ids: dict[str, str]
) -> None:
    strict: ApiHarness = await api_factory(
        settings=ApiSettings(agentscope_enabled=True, agentscope_require_token=True)
    )
    agentscope = [(m, t) for m, t in routes(strict.server.app) if t.startswith("/schedule")]
    assert len(agentscope) >= 6
    for method, template in agentscope:
        path, body = fill(template, ids), body_for(method, template)
        status, _ = await strict.call(
            method, path, token=None, headers={"X-User-ID": "user-alice"}, json=body
        )
        assert status == 401, (method, path, status)


# -- another org -------------------------------------------------------------------------------


async def test_another_orgs_token_never_reads_or_changes_this_orgs_objects(
    api: ApiHarness, ids: dict[str, str]
) -> None:
    devin_routes = [(m, t) for m, t in routes(api.server.app) if "{org_id}" in t]
    assert len(devin_routes) >= 20
    before = await snapshot(api.store, ids)
    local_ids = [ids["schedule_id"], ids["playbook_id"], ids["agentscope_id"]]
    for method, template in devin_routes:
        body = body_for(method, template)
        # This org's paths: refused outright.
        status, answer = await api.call(method, fill(template, ids), token=OTHER_TOKEN, json=body)
        assert status == 403, (method, template, status, answer)
        # Its own org's paths naming this org's objects: as if they did not exist.
        own_path = fill(template, ids | {"org_id": OTHER_ORG})
        status, answer = await api.call(method, own_path, token=OTHER_TOKEN, json=body)
        names_an_object = "{schedule_id}" in template or "{playbook_id}" in template
        if names_an_object:
            assert status == 404, (method, own_path, status, answer)
        else:  # its own lists, creations and previews: nothing of this org in them
            assert status < 500, (method, own_path, status, answer)
            assert not any(object_id in json.dumps(answer) for object_id in local_ids), own_path
    assert await snapshot(api.store, ids) == before
    assert isinstance(api.events, RecordingEvents) and api.events.triggered == []


# -- run-as impersonation at write time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "user_id", "status"),
    [
        (SCHEDULER_TOKEN, "user-alice", 403),  # lacks ImpersonateOrgSessions
        (ADMIN_TOKEN, "user-bob", 422),  # a member without UseDevinSessions
        (ADMIN_TOKEN, "user-carol", 422),  # a member of another org only
        (ADMIN_TOKEN, "user-nobody", 422),  # nobody at all
    ],
)
async def test_run_as_is_refused_at_write_time_and_nothing_changes(
    api: ApiHarness, ids: dict[str, str], token: str, user_id: str, status: int
) -> None:
    devin = f"/v3/organizations/{ORG}"
    before = await snapshot(api.store, ids)
    create = SCHEDULE | {"create_as_user_id": user_id}
    assert (await api.call("POST", f"{devin}/schedules", token=token, json=create))[0] == status
    patch = {"name": "renamed", "run_as_user_id": user_id}
    path = f"{devin}/schedules/{ids['schedule_id']}"
    answered, answer = await api.call("PATCH", path, token=token, json=patch)
    assert answered == status
    if status == 422:
        assert answer["detail"][0]["loc"] == ["body", "run_as_user_id"]
    else:
        assert "ImpersonateOrgSessions" in answer["detail"]
    assert await snapshot(api.store, ids) == before


async def test_an_agentscope_user_who_cannot_run_sessions_cannot_create(
    api: ApiHarness, ids: dict[str, str]
) -> None:
    before = await snapshot(api.store, ids)
    status, _ = await api.call(
        "POST",
        "/schedule/",
        token=None,
        headers={"X-User-ID": "user-bob"},
        json=AGENTSCOPE_SCHEDULE,
    )
    assert status == 422
    assert await snapshot(api.store, ids) == before


# -- a real daemon: its whole log, and run-as re-checked after a reload --------------------------

ENV_TOKEN = "cog_e2e_token_from_env_51c3"
E2E_WRONG_TOKEN = "cog_e2e_wrong_token_77aa"


@pytest.fixture
def daemon_config(tmp_path: Path) -> dict[str, Any]:
    config = base_config(free_port())
    config["logging"]["level"] = "debug"
    config["service_users"].append(
        {
            "id": "service-user-env",
            "org": ORG,
            "permissions": ["ManageOrgSchedules"],
            "token_env": "AGENTCRON_E2E_ENV_TOKEN",
        }
    )
    return config


@pytest.fixture
def daemon(tmp_path: Path, daemon_config: dict[str, Any]) -> Iterator[DaemonProcess]:
    process = DaemonProcess(
        write_config(tmp_path / "config.toml", daemon_config),
        {"AGENTCRON_E2E_ENV_TOKEN": ENV_TOKEN},
    )
    try:
        process.wait_ready()
        yield process
    finally:
        if process.process.poll() is None:
            process.stop()


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_tokens_never_reach_the_daemon_log(daemon: DaemonProcess) -> None:
    tokens = [E2E_ADMIN_TOKEN, ENV_TOKEN, E2E_WRONG_TOKEN]
    created = daemon.call("POST", daemon.devin("/schedules"), body=SCHEDULE)[1]
    schedule_path = daemon.devin(f"/schedules/{created['scheduled_session_id']}")
    for token in tokens:
        daemon.call("GET", daemon.devin("/schedules"), token=token)
        daemon.call("POST", f"{schedule_path}/trigger", token=token)
        daemon.call("PATCH", schedule_path, token=token, body={"frequency": "never"})
        daemon.call("GET", "/v3/organizations/org-nope/schedules", token=token)
        port = int(daemon.base_url.rsplit(":", 1)[1])
        for header in (f"Bearer {token}\x01", f"Bearer {token}" + "x" * 9000, f"Basic {token}"):
            request = (
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Authorization: {header}\r\n\r\n"
            )
            assert raw_request(port, request.encode("latin-1"))[:12] in (
                b"HTTP/1.0 400",
                b"HTTP/1.1 200",
            )
    wait_until(lambda: len(fired_lines(daemon.config_path.parent)) >= 1, "the triggered launch")
    mark = daemon.mark()
    daemon.send(signal.SIGHUP)
    daemon.wait_for_event("config_reloaded", since=mark)
    assert daemon.stop() == 0

    log = daemon.log_text()
    assert "http_request_refused" in log and "schedule_fired" in log  # the log saw all that
    for token in tokens:
        assert token not in log


def test_a_run_as_user_who_loses_sessions_in_a_reload_fails_the_next_run_unlaunched(
    daemon: DaemonProcess, daemon_config: dict[str, Any]
) -> None:
    body = SCHEDULE | {"create_as_user_id": "user-alice"}
    status, created = daemon.call("POST", daemon.devin("/schedules"), body=body)
    assert status == 200, created
    schedule_path = daemon.devin(f"/schedules/{created['scheduled_session_id']}")
    assert daemon.call("POST", f"{schedule_path}/trigger")[0] == 202
    wait_until(lambda: len(fired_lines(daemon.config_path.parent)) == 1, "the first launch")

    daemon_config["users"][0]["permissions"] = []
    write_config(daemon.config_path, daemon_config)
    mark = daemon.mark()
    daemon.send(signal.SIGHUP)
    daemon.wait_for_event("config_reloaded", since=mark)
    status, run = daemon.call("POST", f"{schedule_path}/trigger")
    assert status == 202, run

    def finished() -> dict[str, Any] | None:
        runs = daemon.call("GET", f"{schedule_path}/runs")[1]["items"]
        latest = next(item for item in runs if item["id"] == run["id"])
        return latest if latest["status"] != "launching" else None

    failed = wait_until(finished, "the second run to finish")
    assert failed["status"] == "failed" and failed["attempts"] == 0
    assert "lacks the UseDevinSessions permission" in failed["error"]
    assert len(fired_lines(daemon.config_path.parent)) == 1  # nothing was launched
    schedule = daemon.call("GET", schedule_path)[1]
    assert schedule["consecutive_failures"] == 1
    assert schedule["last_error_message"] == failed["error"]
