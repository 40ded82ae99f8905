"""How `agentcron schedules ...` shows answers to people: tables and `key: value` lines.

Lists are aligned tables (a count line when the page holds fewer than the total), one object
is `key: value` lines in the server's order; every cell is squeezed onto one line and
instants are shown in UTC. `--json` bypasses all of this and prints the server's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from daemon.operator_client import JSON


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, a header line first."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def render_fields(obj: dict[str, JSON]) -> str:
    """`key: value` lines in the server's order, values aligned; one line per key (text
    with line breaks is shown JSON-quoted)."""
    width = max((len(key) for key in obj), default=0) + 1
    return "\n".join(
        f"{(key + ':').ljust(width)} {_one_line(value)}".rstrip() for key, value in obj.items()
    )


def _one_line(value: JSON) -> str:
    text = _field_text(value)
    return json.dumps(text) if "\n" in text or "\r" in text else text


def _field_text(value: JSON) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _cell(value: JSON) -> str:
    """A value squeezed onto one line."""
    return " ".join(_field_text(value).split()) or "-"


def _instant(value: JSON) -> str:
    """An ISO-8601 answer field as `YYYY-MM-DDTHH:MM:SSZ` (UTC), or `-`."""
    if not isinstance(value, str):
        return "-"
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return value


def _truncated(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


SCHEDULE_COLUMNS: Final = (
    "ID",
    "NAME",
    "TYPE",
    "FREQUENCY/AT",
    "TIMEZONE",
    "ENABLED",
    "NEXT RUN",
    "FAILURES",
)
RUN_COLUMNS: Final = (
    "ID",
    "SCHEDULED FOR",
    "TRIGGER",
    "STATUS",
    "STARTED",
    "FINISHED",
    "SESSION",
    "ERROR",
)


def schedule_row(schedule: dict[str, JSON]) -> list[str]:
    """One line of `schedules list`."""
    recurring = schedule.get("schedule_type") == "recurring"
    when = _cell(schedule.get("frequency")) if recurring else _instant(schedule.get("scheduled_at"))
    return [
        _cell(schedule.get("scheduled_session_id")),
        _truncated(_cell(schedule.get("name")), 40),
        _cell(schedule.get("schedule_type")),
        when,
        _cell(schedule.get("timezone")),
        "yes" if schedule.get("enabled") else "no",
        _instant(schedule.get("next_run_at")),
        _cell(schedule.get("consecutive_failures")),
    ]


def run_row(run: dict[str, JSON]) -> list[str]:
    """One line of `schedules runs`."""
    return [
        _cell(run.get("id")),
        _instant(run.get("scheduled_for")),
        _cell(run.get("trigger")),
        _cell(run.get("status")),
        _instant(run.get("started_at")),
        _instant(run.get("finished_at")),
        _cell(run.get("session_id")),
        _truncated(_cell(run.get("error"))),
    ]


def render_page(answer: JSON, columns: Sequence[str], row: Callable[[JSON], list[str]]) -> str:
    """A list envelope (`items`, `total`) as a table, with a count line when paged."""
    items = answer.get("items", [])
    table = render_table(columns, [row(item) for item in items])
    total = answer.get("total", len(items))
    return table if total == len(items) else f"{table}\n({len(items)} shown of {total})"


def render_schedules(answer: JSON) -> str:
    return render_page(answer, SCHEDULE_COLUMNS, schedule_row)


def render_runs(answer: JSON) -> str:
    return render_page(answer, RUN_COLUMNS, run_row)


def render_deleted(answer: JSON) -> str:
    return f"deleted {answer.get('scheduled_session_id')} ({answer.get('name')})"


HISTORY_COLUMNS: Final = ("AT", "BY", "ACTION", "CHANGES")


def history_row(entry: dict[str, JSON]) -> list[str]:
    """One line of `schedules history`: each change as `field: before -> after`."""
    changes = entry.get("changes") or {}
    described = "; ".join(
        f"{name}: {_cell(pair[0])} -> {_cell(pair[1])}"
        for name, pair in changes.items()
        if isinstance(pair, list) and len(pair) == 2
    )
    return [
        _instant(entry.get("at")),
        _cell(entry.get("by")),
        _cell(entry.get("action")),
        _truncated(described or "-", 100),
    ]


def render_history(answer: JSON) -> str:
    return render_page(answer, HISTORY_COLUMNS, history_row)
