"""`agentcron` command line: serve, check-config, backup, cron next, token new, --version
(and the operator CLI).

What only some commands need is imported when one of them runs: `agentcron serve` starts
without the operator CLI (and its HTTP client), the package metadata or `secrets`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.db_cli import add_db_commands
from storage import cron
from storage.identities import token_sha256

Command = Callable[[argparse.Namespace], int]
DAEMON_COMMANDS = frozenset({"serve", "check-config", "backup", "cron", "token"})
"""The commands of this module; any other first argument may be the operator CLI's."""


def _serve(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError
    from daemon.service import StartupError, serve
    from storage.errors import StoreError

    try:
        return serve(Path(args.config))
    except ConfigError as exc:
        print(f"agentcron: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # a foreign, newer or damaged database: left as it is
        print(f"agentcron: cannot use the database: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"agentcron: {exc}", file=sys.stderr)
        return 1


def _check_config(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_config
    from daemon.preflight import config_warnings

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    print(
        f"{args.config}: ok ({len(config.orgs)} orgs, {len(config.service_users)} service users, "
        f"{len(config.schedules)} schedules, {len(config.playbooks)} playbooks)"
    )
    for warning in config_warnings(config):  # valid, so still exit 0
        print(f"{args.config}: warning: {warning.message} [{warning.event}]", file=sys.stderr)
    return 0


def _backup(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_storage
    from storage.backup import BackupError, backup_database

    try:
        storage = load_storage(Path(args.config))
        if storage.url is not None:
            print(
                "agentcron: backup copies a SQLite file; the configuration names a PostgreSQL "
                "database ([storage] url): back it up with pg_dump",
                file=sys.stderr,
            )
            return 1
        source = storage.path
        backup_database(source, Path(args.path))
    except ConfigError as exc:
        print(f"agentcron: configuration error:\n{exc}", file=sys.stderr)
        return 1
    except BackupError as exc:
        print(f"agentcron: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {source} to {args.path}")
    return 0


def _parse_after(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    instant = datetime.fromisoformat(text)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _cron_next(args: argparse.Namespace) -> int:
    try:
        after = _parse_after(args.after)
    except ValueError:
        print(f"agentcron: invalid --after '{args.after}': expected ISO-8601", file=sys.stderr)
        return 1
    try:
        instants = cron.upcoming_fires(args.expr, args.timezone, after, args.n)
    except (cron.CronError, cron.TimezoneError) as exc:
        print(f"agentcron: {exc}", file=sys.stderr)
        return 1
    for instant in instants:
        print(instant.isoformat())
    if len(instants) < args.n:  # the search ran into the end of years 1 to 9999
        print(f"agentcron: {_out_of_range(args, after, len(instants))}", file=sys.stderr)
        return 1
    return 0


def _out_of_range(args: argparse.Namespace, after: datetime, found: int) -> str:
    which = "no fire instant" if found == 0 else f"only {found} of {args.n} fire instants"
    return (
        f"{which} of '{args.expr}' in {args.timezone} after {after.isoformat()} "
        "can be computed within years 1 to 9999"
    )


def _token_new(args: argparse.Namespace) -> int:
    import secrets

    token = args.prefix + secrets.token_urlsafe(32)
    print(f"token:  {token}")
    print(f"sha256: {token_sha256(token)}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("agentcron")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, reading the package metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"agentcron {_version()}")  # on stdout, as argparse's own version action
        parser.exit()


def build_parser(*, operator: bool = True) -> argparse.ArgumentParser:
    """The parser; without `operator`, only this module's commands."""
    parser = argparse.ArgumentParser(prog="agentcron", description="Cron for AI-agent sessions.")
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", required=True, help="path of the TOML configuration")
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("--config", required=True)
    check.set_defaults(func=_check_config)

    backup = commands.add_parser(
        "backup",
        help="copy the database to a new file, safely while the daemon runs",
        description="Copy the database the configuration names to PATH with SQLite's online "
        "backup API: a consistent copy, taken while the daemon keeps serving and writing. "
        "PATH must not exist; it is created readable by its owner only.",
    )
    backup.add_argument("path", metavar="PATH", help="the new file to write")
    backup.add_argument("--config", required=True, help="path of the TOML configuration")
    backup.set_defaults(func=_backup)

    cron_cmd = commands.add_parser("cron", help="cron expression tools")
    cron_sub = cron_cmd.add_subparsers(dest="cron_command", required=True)
    nxt = cron_sub.add_parser("next", help="print the next fire instants of an expression")
    nxt.add_argument("expr")
    nxt.add_argument("--timezone", default="UTC")
    nxt.add_argument("--after", help="ISO-8601 instant (default: now); naive means UTC")
    nxt.add_argument("-n", type=_positive, default=5, help="how many instants (default 5)")
    nxt.set_defaults(func=_cron_next)

    token = commands.add_parser("token", help="service-user tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="print a fresh token and its sha256")
    new.add_argument("--prefix", default="cog_")
    new.set_defaults(func=_token_new)

    add_db_commands(commands)
    if operator:
        from daemon.operator_cli import add_commands

        add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in DAEMON_COMMANDS:
        args = build_parser(operator=False).parse_args(given)
    else:
        from daemon.operator_cli import separate_json_body

        args = build_parser().parse_args(separate_json_body(given))
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
