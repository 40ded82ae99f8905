"""`agentcron schedules ...`: manage the schedules of a running daemon through its HTTP API.

    agentcron schedules list [--limit N] [--offset N]
    agentcron schedules get ID
    agentcron schedules create --name NAME --prompt TEXT (--frequency CRON | --scheduled-at ISO)
    agentcron schedules patch ID [--enabled | --disabled] [--frequency CRON] [--body JSON]
                             [--if-match VERSION] [...]
    agentcron schedules delete ID [--if-match VERSION]
    agentcron schedules trigger ID
    agentcron schedules backfill ID --start ISO --end ISO [--max-runs N]
    agentcron schedules preview ID
    agentcron schedules runs ID [--limit N] [--offset N]
    agentcron schedules history ID [--limit N] [--offset N]

Every command calls the Devin v3 API of the daemon at `--url` (default `$AGENTCRON_URL`, else
http://127.0.0.1:8787) for the org `--org` (default `$AGENTCRON_ORG`, else org-local), with
the service-user token in `$AGENTCRON_TOKEN` (never on the command line, where `ps` shows it).
It asks for every schedule of the org (`agents=all`), those of agents other than Devin's
(made through the AgentScope façade) too, which Devin clients are not shown.

Output is an aligned table (lists) or `key: value` lines (one object) for people; `--json`
prints the server's JSON unchanged, for scripts. On create and patch, `--body BODY` sends
BODY (a JSON object, or `-` to read it from standard input) as the request body; the field
flags given as well override its keys. `--json BODY`, where BODY starts with `{` or is `-`,
is short for `--json --body BODY`; any other argument after `--json` is left alone, so
`patch --json ID --enabled` works. On create, `--scheduled-at` without `--frequency` or
`--type` makes a one_time schedule.

`get`, `create` and `patch` end with a `version:` line, the schedule's ETag. Given it as
`--if-match VERSION`, `patch` and `delete` change the schedule only if nobody changed it
since (else HTTP 412, exit 1, nothing changed); `--if-match '*'` accepts any version.

Exit status: 0 done; 1 the server refused (its `detail` is printed) or could not be reached;
2 a usage error. The client is synchronous (`urllib`): one request per command, no event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias
from urllib.parse import quote, urlencode

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_URL: Final = "http://127.0.0.1:8787"
DEFAULT_ORG: Final = "org-local"
TOKEN_ENV: Final = "AGENTCRON_TOKEN"
TIMEOUT_S: Final = 30.0
EVERY_AGENT: Final = {"agents": "all"}
"""The query that shows the operator every schedule, whatever its agent."""

JSON = Any
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A command that cannot complete: the message is printed, the process exits `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True)
class Client:
    """The Devin v3 API of one org of one daemon."""

    base_url: str
    org: str
    token: str

    def call(
        self,
        method: str,
        path: str,
        *,
        body: JSON = None,
        query: Mapping[str, int | str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request under `/v3/organizations/{org}`; return the answer.

        Raises CliError with the server's `detail` for an error status, or the reason when
        the daemon cannot be reached.
        """
        url = f"{self.base_url.rstrip('/')}/v3/organizations/{quote(self.org, safe='')}{path}"
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        sent = self._headers() | dict(headers or {})
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return Reply(_parse_answer(response.read()), response.headers.get("ETag"))
        except urllib.error.HTTPError as error:
            raise CliError(f"HTTP {error.code}: {error_detail(error.read())}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach {self.base_url}: {reason}") from None

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: its parsed JSON, and its ETag when it carries one schedule."""

    body: JSON
    etag: str | None = None

    @property
    def version(self) -> str | None:
        """The schedule version the ETag names (`"3"` -> `3`), as `--if-match` takes it."""
        return None if self.etag is None else self.etag.strip('"')


def _parse_answer(raw: bytes) -> JSON:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise CliError(f"the server answered something that is not JSON: {raw[:200]!r}") from None


def error_detail(raw: bytes) -> str:
    """The readable message of an error answer: its `detail`, validation items joined."""
    try:
        detail = json.loads(raw)["detail"]
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace").strip()[:500] or "(empty answer)"
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail)
    return str(detail)


def _validation_item(item: JSON) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc", ()))
    return f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", ""))


# --------------------------------------------------------------------------- rendering


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


def _render_schedules(answer: JSON) -> str:
    return render_page(answer, SCHEDULE_COLUMNS, schedule_row)


def _render_runs(answer: JSON) -> str:
    return render_page(answer, RUN_COLUMNS, run_row)


def _render_deleted(answer: JSON) -> str:
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


def _render_history(answer: JSON) -> str:
    return render_page(answer, HISTORY_COLUMNS, history_row)


# --------------------------------------------------------------------------- request bodies

# Flag dest -> body key, shared by create and patch (run-as differs, see `_body`).
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


# --------------------------------------------------------------------------- commands

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


def _list(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", "/schedules", query=_page_query(args))


def _get(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args), query=EVERY_AGENT)


def _create(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("POST", "/schedules", body=create_body(args))


def _patch(client: Client, args: argparse.Namespace) -> Reply:
    body = request_body(args, run_as_key="run_as_user_id")
    return client.call(
        "PATCH", _schedule_path(args), body=body, query=EVERY_AGENT, headers=_if_match(args)
    )


def _delete(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("DELETE", _schedule_path(args), query=EVERY_AGENT, headers=_if_match(args))


def _trigger(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("POST", _schedule_path(args, "/trigger"), query=EVERY_AGENT)


def _backfill(client: Client, args: argparse.Namespace) -> Reply:
    body: dict[str, JSON] = {"start": args.start, "end": args.end}
    if args.max_runs is not None:
        body["max_runs"] = args.max_runs
    return client.call("POST", _schedule_path(args, "/backfill"), body=body, query=EVERY_AGENT)


def _preview(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/prompt-preview"), query=EVERY_AGENT)


def _runs(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/runs"), query=_page_query(args))


def _history(client: Client, args: argparse.Namespace) -> Reply:
    return client.call("GET", _schedule_path(args, "/history"), query=_page_query(args))


def _client(args: argparse.Namespace) -> Client:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise CliError(f"set {TOKEN_ENV} to a service-user token", EXIT_USAGE)
    return Client(base_url=args.url, org=args.org, token=token)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: one request, its answer printed; returns the exit status."""
    request: Request = args.request
    render: Callable[[JSON], str] = args.render
    try:
        reply = request(_client(args), args)
    except CliError as error:
        print(f"agentcron: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(json.dumps(reply.body, indent=2))
    elif args.shows_version and isinstance(reply.body, dict) and reply.version is not None:
        print(render(reply.body | {"version": reply.version}))
    else:
        print(render(reply.body))
    return 0


# --------------------------------------------------------------------------- argparse


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        default=os.environ.get("AGENTCRON_URL", DEFAULT_URL),
        help=f"the daemon's base URL (default $AGENTCRON_URL or {DEFAULT_URL})",
    )
    options.add_argument(
        "--org",
        default=os.environ.get("AGENTCRON_ORG", DEFAULT_ORG),
        help=f"the org id (default $AGENTCRON_ORG or {DEFAULT_ORG})",
    )
    return options


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return value


def _add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_page_size, default=50, help="1..100 (default 50)")
    parser.add_argument("--offset", type=_non_negative, default=0, help="items to skip")


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", metavar="ISO", required=True, help="first instant (included)")
    parser.add_argument("--end", metavar="ISO", required=True, help="end (excluded), not after now")
    parser.add_argument(
        "--max-runs", type=int, help="refuse a range of more instants (default 100, at most 1000)"
    )


def _version(text: str) -> str:
    if text != "*" and not text.strip('"').isdigit():
        raise argparse.ArgumentTypeError("must be a version number (as `get` shows it) or *")
    return text.strip('"')


def _add_if_match(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-match",
        metavar="VERSION",
        type=_version,
        help="only if the schedule is still at VERSION (the `version:` line of get); * for any",
    )


def _add_json_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the server's JSON")


def separate_json_body(argv: Sequence[str]) -> list[str]:
    """`argv` with `--json BODY` and `--json=BODY` spelt `--json --body BODY`.

    `--json` once took the request body as an optional value, which swallowed a schedule
    id after it. It is a flag now; the body's short form is kept only where it cannot be
    mistaken: BODY is taken if it is `-` or starts with `{` (a JSON object), which neither
    a schedule id nor a flag does.
    """
    separated: list[str] = []
    for index, arg in enumerate(argv):
        if arg.startswith("--json="):
            separated += ["--json", "--body", arg.removeprefix("--json=")]
        elif index > 0 and argv[index - 1] == "--json" and _is_body(arg):
            separated += ["--body", arg]
        else:
            separated.append(arg)
    return separated


def _is_body(arg: str) -> bool:
    return arg == "-" or arg.lstrip().startswith("{")


def _add_field_flags(parser: argparse.ArgumentParser) -> None:
    _add_json_output(parser)
    parser.add_argument(
        "--body",
        metavar="BODY",
        help="send BODY, a JSON object (- reads it from stdin), as the request body; the "
        "flags below override its keys. `--json BODY` (BODY is - or starts with {) is "
        "short for `--json --body BODY`",
    )
    parser.add_argument("--name")
    parser.add_argument("--prompt")
    parser.add_argument("--frequency", metavar="CRON", help="5-field cron expression")
    parser.add_argument("--timezone", metavar="TZ", help="IANA timezone of the cron")
    parser.add_argument("--scheduled-at", metavar="ISO", help="fire once at this instant")
    parser.add_argument("--type", dest="schedule_type", choices=("recurring", "one_time"))
    parser.add_argument("--agent", choices=("devin", "data_analyst", "advanced"))
    parser.add_argument("--notify-on", choices=("always", "failure", "never"))
    parser.add_argument("--playbook-id")
    parser.add_argument("--run-as", metavar="USER_ID", help="run sessions as this org member")
    parser.add_argument(
        "--launcher", metavar="NAME", help="the configured launcher its runs go through"
    )
    parser.add_argument(
        "--prompt-format",
        choices=("text", "template"),
        help="template: the prompt is a Jinja2 template rendered at each fire",
    )
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disabled", dest="enabled", action="store_const", const=False)


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    help: str
    request: Request
    render: Callable[[JSON], str]
    takes_id: bool = False
    paged: bool = False
    fields: bool = False
    ranged: bool = False
    conditional: bool = False
    shows_version: bool = False


_COMMANDS: Final = (
    _Command("list", "list the org's schedules", _list, _render_schedules, paged=True),
    _Command("get", "show one schedule", _get, render_fields, takes_id=True, shows_version=True),
    _Command(
        "create", "create a schedule", _create, render_fields, fields=True, shows_version=True
    ),
    _Command(
        "patch",
        "change a schedule",
        _patch,
        render_fields,
        takes_id=True,
        fields=True,
        conditional=True,
        shows_version=True,
    ),
    _Command(
        "delete", "delete a schedule", _delete, _render_deleted, takes_id=True, conditional=True
    ),
    _Command("trigger", "fire a schedule now", _trigger, render_fields, takes_id=True),
    _Command(
        "backfill",
        "fire the past cron instants of [--start, --end) that have no run, paced",
        _backfill,
        render_fields,
        takes_id=True,
        ranged=True,
    ),
    _Command(
        "preview",
        "the prompt the next fire sends (templates rendered)",
        _preview,
        render_fields,
        takes_id=True,
    ),
    _Command(
        "runs", "a schedule's runs, newest first", _runs, _render_runs, takes_id=True, paged=True
    ),
    _Command(
        "history",
        "a schedule's edit history, newest first",
        _history,
        _render_history,
        takes_id=True,
        paged=True,
    ),
)


def _add_command(commands: Subparsers, command: _Command, parent: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(command.name, help=command.help, parents=[parent])
    if command.takes_id:
        parser.add_argument("id", help="the schedule id (sched-...)")
    if command.paged:
        _add_paging(parser)
    if command.ranged:
        _add_range(parser)
    if command.fields:
        _add_field_flags(parser)
    else:
        _add_json_output(parser)
    if command.conditional:
        _add_if_match(parser)
    parser.set_defaults(
        func=run_command,
        request=command.request,
        render=command.render,
        shows_version=command.shows_version,
    )


def add_commands(subparsers: Subparsers) -> None:
    """Register `agentcron schedules <command>` on the CLI's subcommands."""
    schedules = subparsers.add_parser(
        "schedules",
        help="manage schedules of a running daemon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = schedules.add_subparsers(dest="schedules_command", required=True)
    parent = _connection_options()
    for command in _COMMANDS:
        _add_command(commands, command, parent)
