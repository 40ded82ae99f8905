"""Unauthenticated operational endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import prometheus_client
from aiohttp import web

from api.keys import FLEET, LIFECYCLE
from api.openapi import operation


@operation("Liveness", auth=None)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@operation(
    "Readiness: 200 once the store is open and the scheduler started; names the fleet's "
    "member, its live members and the share this member owns",
    auth=None,
    errors=(503,),
)
async def readyz(request: web.Request) -> web.Response:
    state = request.app[LIFECYCLE].state
    status = 200 if state == "serving" else 503
    body: dict[str, object] = {"status": state}
    fleet = request.app.get(FLEET)
    if fleet is not None:
        body["fleet"] = fleet.describe()
    return web.json_response(body, status=status)


@operation("Prometheus metrics", auth=None)
async def metrics(request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    response = web.Response(body=body)
    response.content_type = "text/plain"
    response.charset = "utf-8"
    response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
