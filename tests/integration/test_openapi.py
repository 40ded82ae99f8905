"""`/openapi.json`: a well-formed OpenAPI 3.1 document that lists every route the app serves
and whose schemas describe the answers the server really gives.

The checks walk the app's route table and the document, so a route added anywhere is held to
the same standard without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, NOPERM_TOKEN, ORG, OTHER_TOKEN, ApiHarness

REF = "#/components/schemas/"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DEVIN = f"/v3/organizations/{ORG}"


@pytest.fixture
async def doc(api: ApiHarness) -> dict[str, Any]:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    assert isinstance(document, dict)
    return document


# -- a minimal JSON Schema check, enough for what pydantic generates -------------------------


def _type_matches(instance: Any, name: str) -> bool:
    match name:
        case "null":
            return instance is None
        case "boolean":
            return isinstance(instance, bool)
        case "integer":
            return isinstance(instance, int) and not isinstance(instance, bool)
        case "number":
            return isinstance(instance, int | float) and not isinstance(instance, bool)
        case "string":
            return isinstance(instance, str)
        case "array":
            return isinstance(instance, list)
        case "object":
            return isinstance(instance, dict)
    raise AssertionError(f"unknown JSON Schema type {name!r}")


def validate(
    instance: Any, schema: dict[str, Any], components: dict[str, Any], at: str = "$"
) -> None:
    """Raise AssertionError, naming the place, unless `instance` matches `schema`."""
    if "$ref" in schema:
        validate(instance, components[schema["$ref"].removeprefix(REF)], components, at)
        return
    _validate_combinators(instance, schema, components, at)
    if "const" in schema:
        assert instance == schema["const"], f"{at}: {instance!r} is not {schema['const']!r}"
    if "enum" in schema:
        assert instance in schema["enum"], f"{at}: {instance!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(_type_matches(instance, t) for t in types), f"{at}: {instance!r} is not {types}"
    if isinstance(instance, dict):
        _validate_object(instance, schema, components, at)
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            validate(item, schema["items"], components, f"{at}[{index}]")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        assert instance >= schema.get("minimum", instance), f"{at}: below minimum"
        assert instance <= schema.get("maximum", instance), f"{at}: above maximum"
    if schema.get("format") == "date-time" and isinstance(instance, str):
        assert datetime.fromisoformat(instance).utcoffset() is not None, f"{at}: no offset"


def _validate_combinators(
    instance: Any, schema: dict[str, Any], components: dict[str, Any], at: str
) -> None:
    for part in schema.get("allOf", []):
        validate(instance, part, components, at)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        failures = []
        for option in options:
            try:
                validate(instance, option, components, at)
                return
            except AssertionError as failure:
                failures.append(str(failure))
        raise AssertionError(f"{at}: matches no option: {failures}")


def _validate_object(
    instance: dict[str, Any], schema: dict[str, Any], components: dict[str, Any], at: str
) -> None:
    properties = schema.get("properties", {})
    for key in schema.get("required", []):
        assert key in instance, f"{at}: missing {key!r}"
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        if key in properties:
            validate(value, properties[key], components, f"{at}.{key}")
        elif extra is False:
            raise AssertionError(f"{at}: undocumented key {key!r}")
        elif isinstance(extra, dict):
            validate(value, extra, components, f"{at}.{key}")


def test_the_validator_refuses_what_it_should() -> None:
    components = {
        "Thing": {
            "type": "object",
            "properties": {"at": {"type": "string", "format": "date-time"}},
            "required": ["at"],
            "additionalProperties": False,
        }
    }
    thing = {"$ref": REF + "Thing"}
    validate({"at": "2026-01-01T00:00:00Z"}, thing, components)
    for bad in (
        {},
        {"at": 5},
        {"at": "2026-01-01T00:00:00"},
        {"at": "2026-01-01T00:00:00Z", "x": 1},
        [],
    ):
        with pytest.raises(AssertionError):
            validate(bad, thing, components)
    with pytest.raises(AssertionError):
        validate(True, {"type": "integer"}, {})
    with pytest.raises(AssertionError):
        validate(None, {"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})


# -- the document's structure ---------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_document_is_openapi_3_1(doc: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    schemas = doc["components"]["schemas"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in schemas)
    for ref in set(_refs(doc)):
        assert ref.startswith(REF) and ref.removeprefix(REF) in schemas, ref
    schemes = doc["components"].get("securitySchemes", {})
    operation_ids = []
    for path, method, operation in _operations(doc):
        where = f"{method.upper()} {path}"
        assert path.startswith("/") and method in METHODS, where
        assert isinstance(operation["summary"], str) and operation["summary"], where
        operation_ids.append(operation["operationId"])
        _check_parameters(path, operation.get("parameters", []), where)
        _check_responses(operation["responses"], where)
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"]["schema"], where
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), where
    assert len(operation_ids) == len(set(operation_ids)), "operationId must be unique"


def _check_parameters(path: str, parameters: list[dict[str, Any]], where: str) -> None:
    placeholders = set(re.findall(r"{(\w+)}", path))
    declared = [(p["name"], p["in"]) for p in parameters]
    assert len(declared) == len(set(declared)), where
    for parameter in parameters:
        assert parameter["in"] in {"path", "query", "header", "cookie"}, where
        assert isinstance(parameter["schema"], dict), where
        if parameter["in"] == "path":
            assert parameter["required"] is True, where
    assert {name for name, where_in in declared if where_in == "path"} == placeholders, where


def _check_responses(responses: dict[str, Any], where: str) -> None:
    assert responses, where
    for code, response in responses.items():
        assert re.fullmatch(r"[1-5][0-9]{2}|default", code), where
        assert isinstance(response["description"], str) and response["description"], where
        for media in response.get("content", {}).values():
            assert isinstance(media["schema"], dict), where


async def test_every_route_is_documented_and_nothing_else(
    api: ApiHarness, doc: dict[str, Any]
) -> None:
    served = set()
    for route in api.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method != "HEAD" and path is not None:
            served.add((path, route.method.lower()))
    documented = {(path, method) for path, method, _ in _operations(doc)}
    assert served - documented == set(), "served but not in /openapi.json"
    assert documented - served == set(), "documented but not served"
    assert ("/v3/organizations/{org_id}/schedules/{schedule_id}", "patch") in documented


# -- the schemas describe real answers -----------------------------------------------------


async def call_documented(
    api: ApiHarness,
    doc: dict[str, Any],
    method: str,
    template: str,
    path_params: dict[str, str],
    *,
    token: str | None = ADMIN_TOKEN,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Call a documented operation; its status must be documented and its JSON body match."""
    operation = doc["paths"][template][method.lower()]
    url = api.url(template.format(**path_params))
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with api.http.request(method, url, headers=headers, **kwargs) as response:
        status = response.status
        body = await response.json() if response.content_type == "application/json" else None
    where = f"{method} {template} -> {status}"
    assert str(status) in operation["responses"], f"{where} is not documented"
    content = operation["responses"][str(status)].get("content", {})
    if "application/json" in content:
        validate(body, content["application/json"]["schema"], doc["components"]["schemas"], where)
    return status, body


async def test_devin_answers_match_their_schemas(api: ApiHarness, doc: dict[str, Any]) -> None:
    base = "/v3/organizations/{org_id}"
    schedules, schedule = f"{base}/schedules", f"{base}/schedules/{{schedule_id}}"
    playbooks, playbook = f"{base}/playbooks", f"{base}/playbooks/{{playbook_id}}"
    org = {"org_id": ORG}

    async def call(
        method: str, template: str, expected: int, ids: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        path_params = org | (ids or {})
        status, body = await call_documented(api, doc, method, template, path_params, **kwargs)
        assert status == expected, (method, template, body)
        return body

    made = await call("POST", playbooks, 200, json={"title": "T", "body": "b", "macro": "!t"})
    ids = {"playbook_id": made["playbook_id"]}
    await call("GET", playbooks, 200)
    await call("GET", playbooks, 422, params={"first": "0"})
    await call("GET", playbook, 200, ids=ids)
    await call("PUT", playbook, 200, ids=ids, json={"title": "T2", "body": "b"})
    await call("PUT", playbook, 422, ids=ids, json={"title": 1})
    body = {
        "name": "n",
        "prompt": "p",
        "frequency": "0 9 * * *",
        "playbook_id": made["playbook_id"],
        "create_as_user_id": "user-alice",
        "tags": ["t"],
        "scheduled_at": "2030-01-01T00:00:00",
    }
    created = await call("POST", schedules, 200, json=body)
    ids["schedule_id"] = created["scheduled_session_id"]
    await call("POST", schedules, 422, json={"frequncy": "@daily"})
    await call("POST", schedules, 404, json=body | {"playbook_id": "playbook-nope"})
    await call("POST", schedules, 401, json=body, token=None)
    await call("POST", schedules, 403, json=body, token=OTHER_TOKEN)
    await call("GET", schedules, 200)
    await call("GET", schedules, 422, params={"limit": "many"})
    await call("GET", schedule, 200, ids=ids)
    await call("GET", schedule, 404, ids={"schedule_id": "sched-nope"})
    await call("GET", schedule, 403, ids=ids, token=NOPERM_TOKEN)
    await call("PATCH", schedule, 200, ids=ids, json={"enabled": False})
    await call("PATCH", schedule, 422, ids=ids, json={"enabled": "no"})
    await call("DELETE", schedule, 200, ids=ids)
    await call("DELETE", schedule, 404, ids=ids)
    await call("DELETE", playbook, 200, ids=ids)
    await call("GET", playbook, 404, ids=ids)


async def test_every_get_answers_as_documented(api: ApiHarness, doc: dict[str, Any]) -> None:
    """Each documented GET, called with real ids, answers a documented status and shape."""
    status, schedule = await api.call(
        "POST", f"{DEVIN}/schedules", json={"name": "n", "prompt": "p", "frequency": "@daily"}
    )
    assert status == 200
    status, playbook = await api.call(
        "POST", f"{DEVIN}/playbooks", json={"title": "t", "body": "b"}
    )
    assert status == 200
    params = {
        "org_id": ORG,
        "schedule_id": schedule["scheduled_session_id"],
        "playbook_id": playbook["playbook_id"],
    }
    for path, method, operation in _operations(doc):
        if method != "get":
            continue
        names = re.findall(r"{(\w+)}", path)
        headers = {
            p["name"]: "user-alice" for p in operation.get("parameters", []) if p["in"] == "header"
        }
        values = {name: params.get(name, "unknown") for name in names}
        await call_documented(api, doc, "GET", path, values, headers=headers)


async def test_the_agents_parameter_is_documented_on_every_schedule_route(
    doc: dict[str, Any],
) -> None:
    base = "/v3/organizations/{org_id}/schedules"
    item = f"{base}/{{schedule_id}}"
    routes = [
        (base, "get"),
        (item, "get"),
        (item, "patch"),
        (item, "delete"),
        (f"{item}/trigger", "post"),
        (f"{item}/runs", "get"),
        (f"{item}/backfill", "post"),
        (f"{item}/prompt-preview", "get"),
        (f"{item}/history", "get"),
    ]
    for path, method in routes:
        parameters = doc["paths"][path][method]["parameters"]
        (agents,) = [p for p in parameters if p["name"] == "agents"]
        assert agents["in"] == "query" and agents["required"] is False, (path, method)
        assert agents["schema"]["enum"] == ["devin", "all"], (path, method)
        assert agents["schema"]["default"] == "devin", (path, method)
        assert "422" in doc["paths"][path][method]["responses"], (path, method)


def test_edits_and_deletes_document_the_warning_header(doc: dict[str, Any]) -> None:
    routes = [
        ("/v3/organizations/{org_id}/schedules/{schedule_id}", "patch", "200"),
        ("/v3/organizations/{org_id}/schedules/{schedule_id}", "delete", "200"),
        ("/schedule/{schedule_id}", "patch", "200"),
        ("/schedule/{schedule_id}", "delete", "204"),
    ]
    for path, method, status in routes:
        headers = doc["paths"][path][method]["responses"][status]["headers"]
        assert "configuration file" in headers["Warning"]["description"], (path, method)
    schema = doc["components"]["schemas"]["DevinSchedule"]
    assert "managed_by" in schema["required"]


def test_a_schedules_launcher_is_documented_where_it_is_sent_and_answered(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]
    for name in ("ScheduleCreate", "ScheduleUpdate", "DevinSchedule"):
        assert "launcher" in schemas[name]["properties"], name
    assert "launcher" in schemas["DevinSchedule"]["required"]


def test_backfill_templates_and_prompt_format_are_documented(doc: dict[str, Any]) -> None:
    item = "/v3/organizations/{org_id}/schedules/{schedule_id}"
    backfill = doc["paths"][f"{item}/backfill"]["post"]
    assert set(backfill["responses"]) >= {"202", "404", "422"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["BackfillRequest"]["properties"]) == {"start", "end", "max_runs"}
    assert schemas["BackfillRequest"]["properties"]["max_runs"]["maximum"] == 1000
    assert set(schemas["BackfillAnswer"]["properties"]) == {"count", "first", "last"}
    preview = doc["paths"][f"{item}/prompt-preview"]["get"]["responses"]["200"]
    assert preview["content"]["application/json"]["schema"]["$ref"].endswith("PromptPreview")
    for model in ("DevinSchedule", "ScheduleCreate", "ScheduleUpdate"):
        assert "prompt_format" in schemas[model]["properties"], model
    assert "backfill" in schemas["RunTrigger"]["enum"]


def test_schedule_answers_document_the_etag_and_edits_the_if_match(doc: dict[str, Any]) -> None:
    item = "/v3/organizations/{org_id}/schedules/{schedule_id}"
    answers = [
        ("/v3/organizations/{org_id}/schedules", "post", "200"),
        (item, "get", "200"),
        (item, "patch", "200"),
        ("/schedule/{schedule_id}", "get", "200"),
        ("/schedule/{schedule_id}", "patch", "200"),
    ]
    for path, method, status in answers:
        headers = doc["paths"][path][method]["responses"][status]["headers"]
        assert "If-Match" in headers["ETag"]["description"], (path, method)
    for path, method in [(item, "patch"), (item, "delete"), ("/schedule/{schedule_id}", "delete")]:
        operation = doc["paths"][path][method]
        (header,) = [p for p in operation["parameters"] if p["name"] == "If-Match"]
        assert (header["in"], header["required"]) == ("header", False), (path, method)
        assert "412" in operation["responses"], (path, method)


def test_the_history_is_documented(doc: dict[str, Any]) -> None:
    operation = doc["paths"]["/v3/organizations/{org_id}/schedules/{schedule_id}/history"]["get"]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    schema = doc["components"]["schemas"]["HistoryEntryJson"]
    assert set(schema["required"]) == {"at", "by", "action", "changes"}
    assert schema["properties"]["action"]["$ref"].endswith("/HistoryAction")
