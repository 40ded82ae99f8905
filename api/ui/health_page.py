"""The health page: version, run state, launchers, and key figures of the org and process."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import prometheus_client
from aiohttp import web

from api.ui.context import dashboard
from api.ui.render import page
from storage.enums import RunStatus

_FINAL = [status for status in RunStatus if status.is_final]


async def health_page(request: web.Request) -> web.Response:
    board = dashboard(request)
    in_flight = _sample("agentcron_launches_in_flight")
    context = {
        "version": _version(),
        "state": board.lifecycle.state,
        "launchers": list(board.facts.launchers) if board.facts else [],
        "counts": await board.store.count_schedules_by_state(request.match_info["org_id"]),
        "runs_by_status": {status: _runs(status, in_flight is not None) for status in _FINAL},
        "in_flight": in_flight,
        "sessions": len(board.sessions),
    }
    return page(request, "health.html", context)


def _runs(status: RunStatus, recorded: bool) -> int | None:
    """Runs ended with `status` since start; 0 for a status not seen yet where the engine's
    metrics are recorded at all (in the daemon), None where they are not."""
    count = _sample("agentcron_runs_total", status)
    return 0 if count is None and recorded else count


def _sample(name: str, status: str | None = None) -> int | None:
    """A figure of the process's Prometheus registry (every org's); None if not recorded."""
    labels = {"status": status} if status else None
    value = prometheus_client.REGISTRY.get_sample_value(name, labels)
    return None if value is None else int(value)


def _version() -> str:
    try:
        return version("agentcron")
    except PackageNotFoundError:
        return "unknown"
