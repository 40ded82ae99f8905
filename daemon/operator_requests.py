"""What each `agentcron schedules ...` command sends: its path, query, headers and body.

One function per command takes the client and the parsed arguments and sends one request.
On create and patch, `--body BODY` is the request body and the field flags override its
keys; `--if-match VERSION` becomes an `If-Match` header.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

from daemon.operator_client import EXIT_USAGE, JSON, Client, CliError, Reply

EVERY_AGENT: Final = {"agents": "all"}
"""The query that shows the operator every schedule, whatever its agent."""

# Flag dest -> body key, shared by create and patch (run-as differs, see `request_body`).
_BODY_FLAGS: Final = {
    "name": "name",
    "prompt": "prompt",
    "frequency": "frequency",
    "timezone": "timezone",
    "scheduled_at": "scheduled_at",
    "schedule_type": "schedule_type",
    "agent": "agent",
    "notify_on": "notify_on",
    "playbook_id": "playbook_id",
    "launcher": "launcher",
    "enabled": "enabled",
    "prompt_format": "prompt_format",
}


def json_body(text: str) -> dict[str, JSON]:
    """The JSON object in `text` (`-`: read standard input); CliError (usage) otherwise."""
    if text == "-":
        text = sys.stdin.read()
    try:
        body = json.loads(text)
    except ValueError as error:
        raise CliError(f"--body: not valid JSON: {error}", EXIT_USAGE) from None
    if not isinstance(body, dict):
        raise CliError("--body: the body must be a JSON object", EXIT_USAGE)
    return body


def request_body(args: argparse.Namespace, *, run_as_key: str) -> dict[str, JSON]:
    """The body of create/patch: `--body BODY` if given, overridden by the field flags."""
    body = json_body(args.body) if args.body is not None else {}
    for dest, key in _BODY_FLAGS.items():
        if (value := getattr(args, dest)) is not None:
            body[key] = value
    if args.run_as is not None:
        body[run_as_key] = args.run_as
    return body


def create_body(args: argparse.Namespace) -> dict[str, JSON]:
    """A create body; `scheduled_at` with neither a frequency nor a type means one_time."""
    body = request_body(args, run_as_key="create_as_user_id")
    if "scheduled_at" in body and not {"frequency", "schedule_type"} & body.keys():
        body["schedule_type"] = "one_time"
    return body


Request = Callable[[Client, argparse.Namespace], Reply]


def _schedule_path(args: argparse.Namespace, suffix: str = "") -> str:
    return f"/schedules/{quote(args.id, safe='')}{suffix}"


def _page_query(args: argparse.Namespace) -> dict[str, int | str]:
    return {"limit": args.limit, "offset": args.offset} | EVERY_AGENT


def _if_match(args: argparse.Namespace) -> dict[str, str]:
    """The `If-Match` header `--if-match VERSION` asks for (none without it)."""
    version = args.if_match
    if version is None:
        return {}
    return {"If-Match": version if version == "*" else f'"{version}"'}


def list_schedules(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", "/schedules", query=_page_query(args))


def get_schedule(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args), query=EVERY_AGENT)


def create_schedule(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("POST", "/schedules", body=create_body(args))


def patch_schedule(client: Client, args: argparse.Namespace) -> Reply:
    body = request_body(args, run_as_key="run_as_user_id")
    return client.call(
        "PATCH", _schedule_path(args), body=body, query=EVERY_AGENT, headers=_if_match(args)
    )


def delete_schedule(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("DELETE", _schedule_path(args), query=EVERY_AGENT, headers=_if_match(args))


def trigger_schedule(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("POST", _schedule_path(args, "/trigger"), query=EVERY_AGENT)


def backfill_schedule(client: Client, args: argparse.Namespace) -> Reply:
    body: dict[str, JSON] = {"start": args.start, "end": args.end}
    if args.max_runs is not None:
        body["max_runs"] = args.max_runs
    return client.call("POST", _schedule_path(args, "/backfill"), body=body, query=EVERY_AGENT)


def preview_prompt(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/prompt-preview"), query=EVERY_AGENT)


def list_runs(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/runs"), query=_page_query(args))


def list_history(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/history"), query=_page_query(args))
