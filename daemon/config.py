"""The daemon's configuration: one TOML file, validated whole into frozen models.

`load_config` reads the file with tomllib, validates every key (an unknown key is an
error, and nothing is coerced: `"yes"` is not a boolean, `"5"` is not an integer),
cross-checks the sections against each other, and resolves relative paths against the
file's directory. Any problem raises `ConfigError`, whose text names the file line and
the key of every problem found, so the daemon never starts half-configured.

Secrets are never read from the file: a key such as `token_env` names an environment
variable or systemd credential (see `daemon.secrets`), and only the sha256 of a service
user's token is kept.

This module holds the whole file's model and its loading; the parts live beside it:
`daemon.config_types` (value types), `daemon.config_sections` (the sections),
`daemon.config_schedules` (`[[schedules]]`, derived from `storage.catalogue`),
`daemon.config_checks` (cross-checks) and `daemon.config_lines` (key -> line). The names
other modules use are importable from here.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Self, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from daemon.config_checks import cross_problems
from daemon.config_lines import KeyLines
from daemon.config_schedules import ScheduleConfig as ScheduleConfig
from daemon.config_sections import DEFAULT_DATABASE, FleetConfig
from daemon.config_sections import AgentScopeConfig as AgentScopeConfig
from daemon.config_sections import IdentityConfig as IdentityConfig
from daemon.config_sections import LauncherConfig as LauncherConfig
from daemon.config_sections import LoggingConfig as LoggingConfig
from daemon.config_sections import NotifyConfig as NotifyConfig
from daemon.config_sections import OrgConfig as OrgConfig
from daemon.config_sections import PlaybookConfig as PlaybookConfig
from daemon.config_sections import SchedulerConfig as SchedulerConfig
from daemon.config_sections import ServerConfig as ServerConfig
from daemon.config_sections import ServiceUserConfig as ServiceUserConfig
from daemon.config_sections import StorageConfig as StorageConfig
from daemon.config_sections import UiConfig as UiConfig
from daemon.config_sections import UserConfig as UserConfig
from daemon.config_sections import split_listen as split_listen
from daemon.config_types import Duration as Duration
from daemon.config_types import Loc, Problem, Section
from daemon.config_types import parse_duration as parse_duration
from storage.values import LauncherName

DEFAULT_LAUNCHER = "default"
"""The name of the launcher `[launcher]` declares."""

# --------------------------------------------------------------------------- the whole file


class Config(Section):
    """Everything the daemon is configured with; every section is optional."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=lambda: StorageConfig(path=DEFAULT_DATABASE))
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    orgs: list[OrgConfig] = Field(default_factory=list)
    users: list[UserConfig] = Field(default_factory=list)
    service_users: list[ServiceUserConfig] = Field(default_factory=list)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    launchers: dict[LauncherName, LauncherConfig] = Field(default_factory=dict)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    agentscope: AgentScopeConfig = Field(default_factory=AgentScopeConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    playbooks: list[PlaybookConfig] = Field(default_factory=list)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    source_path: Path = Field(default=Path("agentcron.toml"), exclude=True)
    """The file this was loaded from (absolute after `load_config`); not a key of the file."""

    @property
    def named_launchers(self) -> dict[str, LauncherConfig]:
        """Every launcher by name: `[launcher]` is `default`, then each `[launchers.NAME]`."""
        return {DEFAULT_LAUNCHER: self.launcher, **self.launchers}

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
        problems = tuple(cross_problems(self))
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


def load_storage_path(path: str | os.PathLike[str]) -> Path:
    """The SQLite file the configuration at `path` names (see `load_storage`)."""
    return load_storage(path).path


def load_storage(path: str | os.PathLike[str]) -> StorageConfig:
    """The `[storage]` section of the configuration at `path`, reading nothing else.

    For tools that need the database and nothing else (`agentcron backup`, `agentcron db`):
    the secrets that the rest of the file names need not be at hand. Raises ConfigError as
    `load_config` does.
    """
    source = Path(path).absolute()
    text = _read_text(source)
    data = _parse_toml(text, source)
    try:
        sections = {"storage": data["storage"]} if "storage" in data else {}
        config = Config.model_validate(sections)
    except ValidationError as error:
        raise ConfigError(_problems(error, text, source)) from None
    return _anchored(config, source).storage


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
    lines = KeyLines(text)
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
