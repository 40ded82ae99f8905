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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from daemon.operator_client import (
    DEFAULT_ORG,
    DEFAULT_URL,
    JSON,
    Client,
    CliError,
    environment_client,
)
from daemon.operator_render import (
    render_deleted,
    render_fields,
    render_history,
    render_runs,
    render_schedules,
)
from daemon.operator_requests import (
    Request,
    backfill_schedule,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_history,
    list_runs,
    list_schedules,
    patch_schedule,
    preview_prompt,
    trigger_schedule,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _client(args: argparse.Namespace) -> Client:
    return environment_client(args.url, args.org)


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
    _Command("list", "list the org's schedules", list_schedules, render_schedules, paged=True),
    _Command(
        "get", "show one schedule", get_schedule, render_fields, takes_id=True, shows_version=True
    ),
    _Command(
        "create",
        "create a schedule",
        create_schedule,
        render_fields,
        fields=True,
        shows_version=True,
    ),
    _Command(
        "patch",
        "change a schedule",
        patch_schedule,
        render_fields,
        takes_id=True,
        fields=True,
        conditional=True,
        shows_version=True,
    ),
    _Command(
        "delete",
        "delete a schedule",
        delete_schedule,
        render_deleted,
        takes_id=True,
        conditional=True,
    ),
    _Command("trigger", "fire a schedule now", trigger_schedule, render_fields, takes_id=True),
    _Command(
        "backfill",
        "fire the past cron instants of [--start, --end) that have no run, paced",
        backfill_schedule,
        render_fields,
        takes_id=True,
        ranged=True,
    ),
    _Command(
        "preview",
        "the prompt the next fire sends (templates rendered)",
        preview_prompt,
        render_fields,
        takes_id=True,
    ),
    _Command(
        "runs", "a schedule's runs, newest first", list_runs, render_runs, takes_id=True, paged=True
    ),
    _Command(
        "history",
        "a schedule's edit history, newest first",
        list_history,
        render_history,
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
