"""The daemon's configuration: one TOML file, validated whole into frozen models.

`load_config` reads the file with tomllib, validates every key (an unknown key is an
error, and nothing is coerced: `"yes"` is not a boolean, `"5"` is not an integer),
cross-checks the sections against each other, and resolves relative paths against the
file's directory. Any problem raises `ConfigError`, whose text names the file line and
the key of every problem found, so the daemon never starts half-configured.

Secrets are never read from the file: a key such as `token_env` names an environment
variable or systemd credential (see `daemon.secrets`), and only the sha256 of a service
user's token is kept.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from daemon.secrets import is_secret_name, read_secret
from storage.cron import load_timezone, validate_cron
from storage.enums import NotifyOn, Overlap, Permission, PermissionMode, ScheduleType
from storage.identities import token_sha256

Loc = tuple[str | int, ...]

# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = "a duration is a string like '90s', '15m', '2h', '1d' or integer seconds"


def parse_duration(value: str | int) -> float:
    """Seconds in `value`: `'90s'`, `'15m'`, `'2h'`, `'1d'`, or an integer number of seconds.

    Raises ValueError for anything else (negative numbers, booleans, other units).
    """
    if isinstance(value, bool):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        return float(int(match[1]) * _UNIT_SECONDS[match[2]])
    raise ValueError(f"{_DURATION_HINT}, not {value!r}")


def _duration_input(value: object) -> object:
    """Durations from the file go through `parse_duration`; code may also pass float seconds."""
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return value
    if isinstance(value, str | int):
        return parse_duration(value)
    raise ValueError(_DURATION_HINT)


Duration = Annotated[float, BeforeValidator(_duration_input)]
"""Seconds (>= 0), written as `'90s'`, `'15m'`, `'2h'`, `'1d'` or integer seconds."""
PositiveDuration = Annotated[Duration, Field(gt=0)]

# --------------------------------------------------------------------------- value types


def _identifier(value: str) -> str:
    if not value or any(char.isspace() or char == "/" for char in value):
        raise ValueError("must be a non-empty identifier without spaces or '/'")
    return value


def _secret_name(value: str) -> str:
    if not is_secret_name(value):
        raise ValueError(
            "must be an environment variable or credential name "
            "(letters, digits, '_', '.', '-'; not starting with a digit)"
        )
    return value


def _sha256_hex_input(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _sha256_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 hexadecimal characters (the sha256 of the token)")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return value


def _path_input(value: object) -> object:
    if isinstance(value, str):
        if not value:
            raise ValueError("must be a non-empty path")
        return Path(value)
    return value


def _utc_datetime_input(value: object) -> object:
    """TOML datetimes or ISO-8601 strings; one without an offset is read as UTC."""
    if isinstance(value, str):
        value = _parse_iso_datetime(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        raise ValueError("needs a time of day too, e.g. 2030-01-01T09:00:00Z")
    return value


def _parse_iso_datetime(text: str) -> datetime:
    if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d", text):
        raise ValueError("must be an ISO-8601 date and time, e.g. 2030-01-01T09:00:00Z")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid ISO-8601 date and time") from None


Identifier = Annotated[str, AfterValidator(_identifier)]
SecretName = Annotated[str, AfterValidator(_secret_name)]
Sha256Hex = Annotated[str, BeforeValidator(_sha256_hex_input), AfterValidator(_sha256_hex)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ConfigPath = Annotated[Path, BeforeValidator(_path_input)]
UtcDatetime = Annotated[datetime, BeforeValidator(_utc_datetime_input)]
# The domain's string enums, accepted from their string values (and only those).
PermissionName = Annotated[Permission, Strict(False)]


def _conflict(message: str, key: str | None = None) -> PydanticCustomError:
    """A model-level error; `key` tells the loader which key of the model to point at."""
    return PydanticCustomError("config_value", message, {"config_key": key})


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --------------------------------------------------------------------------- sections


class ServerConfig(_Section):
    """The HTTP listener."""

    listen: str = "127.0.0.1:8787"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    request_timeout: PositiveDuration = 30.0

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def host(self) -> str:
        """The host part of `listen`, without the brackets of an IPv6 address."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


_LISTEN_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})")
_LISTEN_HOST = re.compile(r"([A-Za-z0-9.\-]+):(\d{1,5})")


def split_listen(listen: str) -> tuple[str, int]:
    """`'host:port'` or `'[v6addr]:port'` -> (host, port); ValueError if malformed."""
    match = _LISTEN_IPV6.fullmatch(listen) or _LISTEN_HOST.fullmatch(listen)
    if match is None:
        raise ValueError(f"must be host:port or [ipv6]:port, not {listen!r}")
    port = int(match[2])
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    return match[1], port


class StorageConfig(_Section):
    path: ConfigPath = Path("agentcron.db")
    """The SQLite database file; relative to the config file's directory."""


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SchedulerConfig(_Section):
    """Timing of the engine; durations are in seconds."""

    catchup_window: Duration = 3600.0
    catchup_rate: float = Field(default=5.0, gt=0)
    max_concurrent_launches: int = Field(default=100, ge=1)
    max_consecutive_failures: int = Field(default=0, ge=0)
    shutdown_grace: Duration = 20.0
    horizon: PositiveDuration = 300.0
    missed_run_grace: Duration = 2.0


class IdentityConfig(_Section):
    bot_user_id: Identifier = "bot"
    token_prefix: str = "cog_"


class OrgConfig(_Section):
    id: Identifier
    name: str


class UserConfig(_Section):
    id: Identifier
    orgs: list[Identifier]
    permissions: list[PermissionName]


class ServiceUserConfig(_Section):
    """An API client of one org, known by the sha256 of its bearer token.

    The file gives exactly one of `token_sha256` or `token_env`. With `token_env`, the
    token is read once at load time (`read_secret`) and only its sha256 is kept: after
    validation `token_sha256` always holds the hash, and `token_env` tells where it came from.
    """

    id: Identifier
    org: Identifier
    permissions: list[PermissionName]
    token_sha256: Sha256Hex
    token_env: SecretName | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_token(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        has_hash = data.get("token_sha256") is not None
        token_env = data.get("token_env")
        if has_hash == (token_env is not None):
            raise _conflict(
                "set exactly one of token_sha256 or token_env",
                "token_env" if has_hash else None,
            )
        if isinstance(token_env, str) and is_secret_name(token_env):
            return {**data, "token_sha256": token_sha256(_read_token(token_env))}
        return data


def _read_token(name: str) -> str:
    try:
        token = read_secret(name)
    except (OSError, ValueError) as error:
        raise _conflict(f"cannot read secret {name!r}: {error}", "token_env") from None
    if not token:
        raise _conflict(
            f"secret {name!r} is not set: no environment variable {name} "
            f"and no file $CREDENTIALS_DIRECTORY/{name}",
            "token_env",
        )
    return token


class LauncherConfig(_Section):
    """How a fire starts an agent session: an HTTP call or a local command."""

    type: Literal["http", "command"] = "http"
    url: HttpUrl = "http://127.0.0.1:9000/v3/organizations/{org_id}/sessions"
    token_env: SecretName = "SESSION_API_TOKEN"
    timeout: PositiveDuration = 60.0
    command: list[str] | None = None
    max_attempts: int = Field(default=5, ge=1)
    idempotent: bool = False

    @field_validator("url")
    @classmethod
    def _check_placeholders(cls, value: str) -> str:
        try:
            value.format(org_id="org")
        except (KeyError, IndexError, ValueError):
            raise ValueError("the only placeholder allowed in braces is {org_id}") from None
        return value

    @model_validator(mode="after")
    def _check_command(self) -> Self:
        if self.type == "command" and not self.command:
            raise _conflict('type = "command" needs a non-empty command (an argv list)', "command")
        if self.command is not None and (not self.command or not self.command[0]):
            raise _conflict("command must start with a program name", "command")
        return self


class NotifyConfig(_Section):
    slack_api_url: HttpUrl = "https://slack.com/api"
    slack_token_env: SecretName = "SLACK_BOT_TOKEN"
    webhook_url: str = ""
    webhook_secret_env: SecretName = "AGENTCRON_WEBHOOK_SECRET"
    queue_size: int = Field(default=1000, ge=1)
    max_attempts: int = Field(default=5, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str) -> str:
        return _http_url(value) if value else value


class AgentScopeConfig(_Section):
    enabled: bool = False
    org: Identifier = "org-local"
    require_token: bool = False


class UiConfig(_Section):
    """The web dashboard under /ui/."""

    enabled: bool = True
    session_idle: PositiveDuration = 43200.0


def _playbook_id(value: str) -> str:
    if not value.startswith("playbook-") or len(value) == len("playbook-"):
        raise ValueError("must start with 'playbook-' followed by a name")
    return _identifier(value)


def _macro(value: str) -> str:
    if not re.fullmatch(r"![^\s!]+", value):
        raise ValueError("must be '!' followed by a name, e.g. '!deploy'")
    return value


class PlaybookConfig(_Section):
    """A bootstrap playbook, upserted by id at start-up."""

    id: Annotated[str, AfterValidator(_playbook_id)]
    org: Identifier
    title: Annotated[str, Field(min_length=1)]
    body: str
    macro: Annotated[str, AfterValidator(_macro)] | None = None


def _cron(value: str) -> str:
    return validate_cron(value)


def _timezone(value: str) -> str:
    load_timezone(value)
    return value


class ScheduleConfig(_Section):
    """A bootstrap schedule, upserted by (org, name) at start-up: the file wins."""

    org: Identifier
    name: Annotated[str, Field(min_length=1)]
    prompt: Annotated[str, Field(min_length=1)]
    agent: Annotated[str, Field(min_length=1)] = "devin"
    schedule_type: Annotated[ScheduleType, Strict(False)] = ScheduleType.RECURRING
    cron: Annotated[str, AfterValidator(_cron)] | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    scheduled_at: UtcDatetime | None = None
    start_at: UtcDatetime | None = None
    end_at: UtcDatetime | None = None
    enabled: bool = True
    notify_on: Annotated[NotifyOn, Strict(False)] = NotifyOn.FAILURE
    slack_channel_id: str | None = None
    slack_team_id: str | None = None
    playbook_id: Annotated[str, AfterValidator(_playbook_id)] | None = None
    run_as_user_id: Identifier | None = None
    tags: list[str] | None = None
    bypass_approval: bool = False
    interval_count: int | None = None
    target_devin_id: str | None = None
    platform: str | None = None
    stateful: bool = False
    permission_mode: Annotated[PermissionMode, Strict(False)] = PermissionMode.DONT_ASK
    chat_model_config: dict[str, Any] | None = None
    overlap: Annotated[Overlap, Strict(False)] = Overlap.SKIP
    catchup_window: Duration | None = None
    jitter: Duration = 0.0

    @model_validator(mode="after")
    def _check_timing(self) -> Self:
        if self.schedule_type is ScheduleType.RECURRING:
            if self.cron is None:
                raise _conflict("a recurring schedule needs a cron expression", "cron")
            if self.scheduled_at is not None:
                raise _conflict("scheduled_at is only for one_time schedules", "scheduled_at")
        else:
            if self.scheduled_at is None:
                raise _conflict("a one_time schedule needs scheduled_at", "scheduled_at")
            if self.cron is not None:
                raise _conflict("cron is only for recurring schedules", "cron")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise _conflict("end_at must be after start_at", "end_at")
        return self


# --------------------------------------------------------------------------- the whole file


class Config(_Section):
    """Everything the daemon is configured with; every section is optional."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    orgs: list[OrgConfig] = Field(default_factory=list)
    users: list[UserConfig] = Field(default_factory=list)
    service_users: list[ServiceUserConfig] = Field(default_factory=list)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    agentscope: AgentScopeConfig = Field(default_factory=AgentScopeConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    playbooks: list[PlaybookConfig] = Field(default_factory=list)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    source_path: Path = Field(default=Path("agentcron.toml"), exclude=True)
    """The file this was loaded from (absolute after `load_config`); not a key of the file."""

    @property
    def base_dir(self) -> Path:
        """The config file's directory: relative paths and commands are taken from here."""
        return self.source_path.parent

    @model_validator(mode="before")
    @classmethod
    def _default_org(cls, data: Any) -> Any:
        """Playbooks and schedules without an `org` belong to the first configured org."""
        if not isinstance(data, dict) or (first := _first_org_id(data.get("orgs"))) is None:
            return data
        filled = {
            section: [_with_org(item, first) for item in data[section]]
            for section in ("playbooks", "schedules")
            if isinstance(data.get(section), list)
        }
        return {**data, **filled}

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems = tuple(_cross_problems(self))
        if problems:
            summary = "; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems)
            raise PydanticCustomError(
                "config_conflicts", "{summary}", {"summary": summary, "problems": problems}
            )
        return self


def _first_org_id(orgs: object) -> str | None:
    if not isinstance(orgs, list) or not orgs:
        return None
    first = orgs[0]
    org_id = first.get("id") if isinstance(first, dict) else getattr(first, "id", None)
    return org_id if isinstance(org_id, str) else None


def _with_org(item: object, org_id: str) -> object:
    if isinstance(item, dict) and "org" not in item:
        return {**item, "org": org_id}
    return item


# --------------------------------------------------------------------------- cross-checks

Problem = tuple[Loc, str]


def _cross_problems(config: Config) -> Iterator[Problem]:
    yield from _duplicates("org id", "orgs", [org.id for org in config.orgs])
    yield from _duplicates("user id", "users", [user.id for user in config.users])
    yield from _duplicates("service user id", "service_users", [s.id for s in config.service_users])
    yield from _duplicates("playbook id", "playbooks", [p.id for p in config.playbooks])
    yield from _unknown_orgs(config)
    yield from _duplicate_schedule_names(config.schedules)
    yield from _run_as_problems(config)
    yield from _duplicate_tokens(config.service_users)


def _duplicates(what: str, section: str, ids: Sequence[str]) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        first = first_seen.setdefault(value, i)
        if first != i:
            yield (
                (section, i, "id"),
                f"duplicate {what} {value!r} (already used by {section}[{first}])",
            )


def _duplicate_schedule_names(schedules: Sequence[ScheduleConfig]) -> Iterator[Problem]:
    first_seen: dict[tuple[str, str], int] = {}
    for i, schedule in enumerate(schedules):
        first = first_seen.setdefault((schedule.org, schedule.name), i)
        if first != i:
            yield (
                ("schedules", i, "name"),
                (
                    f"duplicate schedule name {schedule.name!r} in org {schedule.org!r} "
                    f"(already used by schedules[{first}])"
                ),
            )


def _org_references(config: Config) -> Iterator[tuple[Loc, str]]:
    for i, user in enumerate(config.users):
        for org in user.orgs:
            yield ("users", i, "orgs"), org
    for i, service_user in enumerate(config.service_users):
        yield ("service_users", i, "org"), service_user.org
    if config.agentscope.enabled:
        yield ("agentscope", "org"), config.agentscope.org
    for i, playbook in enumerate(config.playbooks):
        yield ("playbooks", i, "org"), playbook.org
    for i, schedule in enumerate(config.schedules):
        yield ("schedules", i, "org"), schedule.org


def _unknown_orgs(config: Config) -> Iterator[Problem]:
    known = {org.id for org in config.orgs}
    for loc, org in _org_references(config):
        if org not in known:
            yield loc, f"unknown org {org!r} (not an id of [[orgs]])"


def _run_as_problems(config: Config) -> Iterator[Problem]:
    users = {user.id: user for user in config.users}
    for i, schedule in enumerate(config.schedules):
        if schedule.run_as_user_id is None:
            continue
        loc: Loc = ("schedules", i, "run_as_user_id")
        user = users.get(schedule.run_as_user_id)
        if user is None:
            yield loc, f"unknown user {schedule.run_as_user_id!r} (not an id of [[users]])"
        elif schedule.org not in user.orgs:
            yield loc, f"user {user.id!r} is not a member of org {schedule.org!r}"
        elif Permission.USE_DEVIN_SESSIONS not in user.permissions:
            yield loc, f"user {user.id!r} lacks the UseDevinSessions permission"


def _duplicate_tokens(service_users: Sequence[ServiceUserConfig]) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    for i, service_user in enumerate(service_users):
        first = first_seen.setdefault(service_user.token_sha256, i)
        if first != i:
            key = "token_env" if service_user.token_env else "token_sha256"
            yield ("service_users", i, key), f"the same token as service_users[{first}]"


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file, located at a line and a key when they are known."""

    path: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """An unusable config file. `str()` is one line per problem:
    `'<file>:<line>: <dotted.key>: <message>'`; `problems` holds them one by one."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and cross-check the TOML file at `path`; raise ConfigError if unusable.

    Relative paths in the file are resolved against the file's directory, and the
    secrets named by `service_users.token_env` are read (and hashed) now.
    """
    source = Path(path).absolute()
    text = _read_text(source)
    data = _parse_toml(text, source)
    if "source_path" in data:
        raise ConfigError(_problems_at([(("source_path",), "unknown key")], text, source))
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(error, text, source)) from None
    return _anchored(config, source)


def _anchored(config: Config, source: Path) -> Config:
    storage = config.storage.model_copy(update={"path": source.parent / config.storage.path})
    return config.model_copy(update={"source_path": source, "storage": storage})


def _read_text(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(source, None, "", f"cannot read: {error.strerror}")]
        ) from None
    except UnicodeDecodeError as error:
        line = source.read_bytes()[: error.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(source, line, "", "the file is not UTF-8")]) from None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")


def _parse_toml(text: str, source: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_POSITION.search(message)
        line = int(match[1]) if match else text.count("\n") + 1
        detail = message[: match.start()] if match else message
        raise ConfigError([ConfigProblem(source, line, "", f"invalid TOML: {detail}")]) from None


def _problems(error: ValidationError, text: str, source: Path) -> list[ConfigProblem]:
    located: list[Problem] = []
    for detail in error.errors(include_url=False):
        ctx = detail.get("ctx", {})
        if detail["type"] == "config_conflicts":
            located.extend(ctx["problems"])
        else:
            key = ctx.get("config_key")
            located.append(((*detail["loc"], key) if key else detail["loc"], _message(detail)))
    return _problems_at(located, text, source)


def _problems_at(located: Iterable[Problem], text: str, source: Path) -> list[ConfigProblem]:
    lines = _KeyLines(text)
    problems = [
        ConfigProblem(source, lines.line_of(loc), _dotted(loc), msg) for loc, msg in located
    ]
    return sorted(problems, key=lambda problem: problem.line or 0)


def _message(detail: ErrorDetails) -> str:
    kind, loc = detail["type"], detail["loc"]
    if kind == "extra_forbidden":
        return "unknown key" + _suggestion(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    if kind == "config_value":
        return detail["msg"]
    got = detail["input"]
    if isinstance(got, str | int | float | bool | date) or got is None:
        return f"{detail['msg']} (got {_short_repr(got)})"
    return f"{detail['msg']} (got a {type(got).__name__})"


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggestion(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], _file_keys(model), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _file_keys(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if not field.exclude]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the value at `loc`, if one does."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    return model


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for argument in get_args(annotation):
            if model := _model_in(argument):
                return model
    return None


def _dotted(loc: Loc) -> str:
    """`('users', 1, 'orgs')` -> `'users[1].orgs'`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# --------------------------------------------------------------------------- key -> line

_SEGMENT = r"""(?:[A-Za-z0-9_\-]+|"[^"\n]*"|'[^'\n]*')"""
_DOTTED = rf"{_SEGMENT}(?:\s*\.\s*{_SEGMENT})*"
_HEADER = re.compile(rf"\s*\[(\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?")
_KEY = re.compile(rf"\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    return tuple(re.sub(r"\s+", "", part).strip("\"'") for part in re.findall(_SEGMENT, dotted))


@dataclass
class _Table:
    """A table of the file: its header's dotted name, line, and the lines of its keys."""

    name: tuple[str, ...]
    is_array: bool
    line: int
    keys: dict[str, int]


class _KeyLines:
    """Finds the line of a key in TOML text, which tomllib does not report.

    A location such as `('users', 1, 'orgs')` is looked up as the `orgs =` line under the
    second `[[users]]` header; failing that, the header line; failing that, a top-level
    `users =` line; failing that, line 1.
    """

    def __init__(self, text: str) -> None:
        self.tables = [_Table((), False, 1, {})]
        for number, line in _lines_outside_strings(text):
            self._read_line(number, line)

    def _read_line(self, number: int, line: str) -> None:
        if header := _HEADER.fullmatch(line):
            self.tables.append(_Table(_split_dotted(header[2]), bool(header[1]), number, {}))
        elif key := _KEY.match(line):
            parts = _split_dotted(key[1])
            for length in range(len(parts), 0, -1):
                self.tables[-1].keys.setdefault(".".join(parts[:length]), number)

    def line_of(self, loc: Loc) -> int:
        if not loc or not isinstance(loc[0], str):
            return 1
        section, rest = loc[0], loc[1:]
        index = rest[0] if rest and isinstance(rest[0], int) else None
        rest = rest[1:] if index is not None else rest
        key = rest[0] if rest and isinstance(rest[0], str) else None
        tables = self._tables_of(section, index)
        if tables:
            return self._key_line(tables, key) or tables[0].line
        root = self.tables[0].keys
        return root.get(f"{section}.{key}") or root.get(section) or 1

    def _tables_of(self, section: str, index: int | None) -> list[_Table]:
        """The header table of `section` (its `index`-th one if an array) and its sub-tables."""
        found: list[_Table] = []
        seen = -1
        for table in self.tables:
            if table.name == (section,):
                seen += 1 if table.is_array else 0
                if found:
                    break
                if table.is_array == (index is not None) and (index is None or seen == index):
                    found.append(table)
            elif found and table.name[:1] == (section,):
                found.append(table)
            elif found:
                break
        return found

    @staticmethod
    def _key_line(tables: list[_Table], key: str | None) -> int | None:
        if key is None:
            return None
        for table in tables:
            if key in table.keys:
                return table.keys[key]
            if table.name[1:2] == (key,):
                return table.line
        return None


def _lines_outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines of `text`, skipping those inside multi-line strings."""
    open_quote: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_quote is None:
            yield number, line
        for quote in ('"""', "'''"):
            if (open_quote in (None, quote)) and line.count(quote) % 2 == 1:
                open_quote = None if open_quote else quote
