"""The OpenAPI 3.1 document, generated from the routes and the pydantic models they declare.

Each handler is decorated with `@operation(...)` naming its request, query and response
models; `openapi_document(app)` walks the router, so a route cannot be served without
appearing in the document (a test walks the route table to check it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

_ATTRIBUTE = "__agentcron_operation__"
_REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """What the document says about one handler."""

    summary: str
    response: Any = None
    status: int = 200
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: str | None = "bearer"  # "bearer", "x-user-id", or None for open routes
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())
    headers: Mapping[str, str] = field(default_factory=dict)  # success answer: name -> meaning
    request_headers: Mapping[str, str] = field(default_factory=dict)  # optional: name -> meaning


def operation(summary: str, **details: Any) -> Callable[[H], H]:
    """Attach an `Operation` to a handler (see its fields for `details`)."""
    spec = Operation(summary=summary, **details)

    def attach(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, spec)
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    spec = getattr(handler, _ATTRIBUTE, None)
    return spec if isinstance(spec, Operation) else None


class _Schemas:
    """Collects component schemas so each model is defined once and referenced by `$ref`."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(
            ref_template=_REF_TEMPLATE, schema_generator=GenerateJsonSchema, mode="serialization"
        )
        return self._hoist(schema)

    def request_ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF_TEMPLATE, mode="validation")
        return self._hoist(schema)

    def _hoist(self, schema: dict[str, Any]) -> dict[str, Any]:
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        title = schema.get("title")
        if title and schema.get("type") == "object" and "properties" in schema:
            self._add(title, schema)
            return {"$ref": _REF_TEMPLATE.format(model=title)}
        return schema

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        """Define component `name`; two different models may not share a name."""
        known = self.components.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are named {name!r}; rename one model")


_ERROR = {
    "type": "object",
    "description": "Every error except 422.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "additionalProperties": False,
}
_VALIDATION_ERROR = {
    "type": "object",
    "description": "A 422: what was refused and why, one item per problem.",
    "properties": {
        "detail": {"type": "array", "items": {"$ref": _REF_TEMPLATE.format(model="ErrorItem")}}
    },
    "required": ["detail"],
    "additionalProperties": False,
}
_ERROR_ITEM = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
        "ctx": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["loc", "msg", "type"],
    "additionalProperties": False,
}
_ERROR_COMPONENTS = {
    "Error": _ERROR,
    "ValidationError": _VALIDATION_ERROR,
    "ErrorItem": _ERROR_ITEM,
}
_ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, malformed or unknown credentials",
    403: "The credentials do not allow this",
    404: "Not found",
    405: "Method not allowed",
    412: "If-Match does not match the schedule's current ETag; nothing changed",
    413: "Request body too large",
    422: "Validation error",
    503: "Unavailable",
}


def _error_response(code: int) -> dict[str, Any]:
    model = "ValidationError" if code == 422 else "Error"
    return {
        "description": _ERROR_DESCRIPTIONS.get(code, "Error"),
        "content": {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=model)}}},
    }


def _parameters(path: str, spec: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if spec.query is not None:
        schema = spec.query.model_json_schema(mode="validation")
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    for name, meaning in spec.request_headers.items():
        params.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": meaning,
                "schema": {"type": "string"},
            }
        )
    if spec.auth == "x-user-id":
        params.append(
            {"name": "X-User-ID", "in": "header", "required": True, "schema": {"type": "string"}}
        )
    return params


def _responses(spec: Operation, schemas: _Schemas) -> dict[str, Any]:
    success: dict[str, Any] = {"description": spec.summary}
    if spec.headers:
        success["headers"] = {
            name: {"description": meaning, "schema": {"type": "string"}}
            for name, meaning in spec.headers.items()
        }
    if spec.response is not None:
        success["content"] = {"application/json": {"schema": schemas.ref(spec.response)}}
    responses: dict[str, Any] = {str(spec.status): success}
    error_codes = set(spec.errors) | {422, 413} if spec.request is not None else set(spec.errors)
    if spec.auth == "bearer":
        error_codes |= {401, 403}
    if spec.query is not None:
        error_codes.add(422)
    for code in sorted(error_codes):
        responses[str(code)] = _error_response(code)
    return responses


def _operation_id(method: str, path: str) -> str:
    """The method and the path, each run of other characters as `_`: `get_schedule_id_`."""
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path)


def _operation_object(method: str, path: str, spec: Operation, schemas: _Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": spec.summary,
        "parameters": _parameters(path, spec, schemas),
        "responses": _responses(spec, schemas),
    }
    if spec.tags:
        doc["tags"] = list(spec.tags)
    if spec.request is not None:
        body_schema = schemas.request_ref(spec.request)
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        }
    if spec.auth == "bearer":
        doc["security"] = [{"bearer": []}]
    return doc


def openapi_document(app: web.Application, *, version: str) -> dict[str, Any]:
    """The whole API as an OpenAPI 3.1 document."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        spec = operation_of(route.handler)
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if spec is None or path is None or route.method == "HEAD":
            continue
        operations = paths.setdefault(path, {})
        operations[route.method.lower()] = _operation_object(route.method, path, spec, schemas)
    schemas.components.update(_ERROR_COMPONENTS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "agentcron", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@operation("This document", auth=None)
async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app, version=_version()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentcron")
    except PackageNotFoundError:
        return "0"
