"""The sections of the configuration file other than `[[schedules]]`: the listener, the
database, logging, the engine's timing, identities, the launcher, notifications, the
AgentScope façade and the bootstrap playbooks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from daemon.config_types import (
    ConfigPath,
    Duration,
    HttpUrl,
    Identifier,
    PermissionName,
    PlaybookId,
    PositiveDuration,
    SecretName,
    Section,
    Sha256Hex,
    conflict,
    http_url,
)
from daemon.secrets import is_secret_name, read_secret
from storage.identities import token_sha256
from storage.values import LauncherName


class ServerConfig(Section):
    """The HTTP listener."""

    listen: str = "127.0.0.1:8787"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    request_timeout: PositiveDuration = 30.0
    max_connections: int = Field(default=4096, ge=1)

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


DEFAULT_DATABASE = Path("agentcron.db")
"""The SQLite file of a configuration without `[storage]`."""


class StorageConfig(Section):
    """Where the state is kept: a SQLite file (`path`, the default) or a PostgreSQL
    database (`url`), never both."""

    path: ConfigPath = DEFAULT_DATABASE
    """The SQLite database file; relative to the config file's directory."""
    url: str | None = None
    """A `postgresql://` URL: the database a fleet of daemons shares instead of a file."""

    @model_validator(mode="before")
    @classmethod
    def _one_place(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # None stands for absent (TOML has no null; a dumped configuration has them).
        has_path, has_url = data.get("path") is not None, data.get("url") is not None
        if has_path and has_url:
            raise conflict("set either path (SQLite) or url (PostgreSQL), not both", "url")
        if not has_path and not has_url:
            raise conflict("set path (a SQLite file) or url (a postgresql:// URL)", "path")
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @property
    def is_postgres(self) -> bool:
        return self.url is not None


class FleetConfig(Section):
    """Membership of a fleet of daemons sharing one PostgreSQL database."""

    heartbeat: PositiveDuration = 2.0
    """How often a member records that it is alive."""
    lease: PositiveDuration = 10.0
    """How long a member counts as alive after its last heartbeat."""

    @model_validator(mode="after")
    def _lease_outlasts_heartbeat(self) -> Self:
        if self.lease <= self.heartbeat:
            raise conflict("lease must be longer than heartbeat", "lease")
        return self


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SchedulerConfig(Section):
    """Timing of the engine; durations are in seconds."""

    catchup_window: Duration = 3600.0
    catchup_rate: float = Field(default=5.0, gt=0)
    max_concurrent_launches: int = Field(default=100, ge=1)
    max_concurrent_follows: int = Field(default=100, ge=1)
    """Session polls (of followed runs) in flight at once."""
    max_consecutive_failures: int = Field(default=0, ge=0)
    shutdown_grace: Duration = 20.0
    horizon: PositiveDuration = 300.0
    missed_run_grace: Duration = 2.0
    default_launcher: LauncherName = "default"
    """The launcher of schedules that name none (`[launcher]` is the one named `default`)."""


class IdentityConfig(Section):
    bot_user_id: Identifier = "bot"
    token_prefix: str = "cog_"


class OrgConfig(Section):
    """An org; its optional limits bound the sessions the engine starts for it."""

    id: Identifier
    name: str
    max_concurrent_sessions: int | None = Field(default=None, gt=0)
    max_sessions_per_hour: int | None = Field(default=None, gt=0)


class UserConfig(Section):
    id: Identifier
    orgs: list[Identifier]
    permissions: list[PermissionName]


class ServiceUserConfig(Section):
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
            raise conflict(
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
        raise conflict(f"cannot read secret {name!r}: {error}", "token_env") from None
    if not token:
        raise conflict(
            f"secret {name!r} is not set: no environment variable {name} "
            f"and no file $CREDENTIALS_DIRECTORY/{name}",
            "token_env",
        )
    return token


def _at_least_a_second(seconds: float) -> float:
    if seconds < 1:
        raise ValueError(
            f"must be at least 1s (polling faster only loads the agent service), not {seconds:g}s"
        )
    return seconds


LauncherType = Literal["http", "command", "devin", "agentscope"]
DEVIN_BASE_URL = "https://api.devin.ai"


class LauncherConfig(Section):
    """How a fire starts an agent session: an HTTP call, a local command, the Devin v3 API or
    an AgentScope server. `[launcher]` is the launcher named `default`; `[launchers.NAME]`
    declares more, with the same keys."""

    type: LauncherType = "http"
    url: HttpUrl = "http://127.0.0.1:9000/v3/organizations/{org_id}/sessions"
    token_env: SecretName = "SESSION_API_TOKEN"
    timeout: PositiveDuration = 60.0
    command: list[str] | None = None
    max_attempts: int = Field(default=5, ge=1)
    idempotent: bool = False
    base_url: HttpUrl | None = None
    """`devin` and `agentscope`: the service's root URL (`devin` defaults to Devin's API)."""
    org_id: Identifier | None = None
    """`devin`: the Devin organization sessions are made in; None: the schedule's org."""
    max_acu_limit: int | None = Field(default=None, gt=0)
    """`devin`: the ACU limit of each session made; None: Devin's own default."""
    follow: bool = False
    """Follow each launched session until it ends (`http`): the run is `running` meanwhile."""
    follow_interval: Annotated[Duration, AfterValidator(_at_least_a_second)] = 30.0
    follow_timeout: PositiveDuration = 21600.0
    status_url: str | None = None
    """Where a session's status is read: `{session_id}` (and `{org_id}`) are substituted;
    default `{url}/{session_id}`."""

    @field_validator("url")
    @classmethod
    def _check_placeholders(cls, value: str) -> str:
        try:
            value.format(org_id="org")
        except (KeyError, IndexError, ValueError):
            raise ValueError("the only placeholder allowed in braces is {org_id}") from None
        return value

    @field_validator("status_url")
    @classmethod
    def _check_status_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            filled = value.format(org_id="org", session_id="devin-1")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "the only placeholders allowed in braces are {org_id} and {session_id}"
            ) from None
        http_url(filled)
        return value

    @property
    def session_status_url(self) -> str:
        """The template of a session's status URL, `{org_id}` and `{session_id}` to fill
        (`devin`: Devin's GET session, in the launcher's org when it names one)."""
        if self.status_url is not None:
            return self.status_url
        if self.type == "devin":
            org = self.org_id or "{org_id}"
            return f"{self.service_url}/v3/organizations/{org}/sessions/{{session_id}}"
        return self.url.rstrip("/") + "/{session_id}"

    @model_validator(mode="after")
    def _check_command(self) -> Self:
        if self.type == "command" and not self.command:
            raise conflict('type = "command" needs a non-empty command (an argv list)', "command")
        if self.command is not None and (not self.command or not self.command[0]):
            raise conflict("command must start with a program name", "command")
        if self.type == "command" and self.follow:
            raise conflict('a "command" launcher always follows its process: drop follow', "follow")
        return self

    @model_validator(mode="after")
    def _check_service(self) -> Self:
        if self.type == "agentscope" and self.base_url is None:
            raise conflict('type = "agentscope" needs base_url (the AgentScope server)', "base_url")
        if self.type == "devin":
            if "token_env" not in self.model_fields_set:
                raise conflict(
                    'type = "devin" needs token_env (the secret holding a cog_ service-user token)',
                    "token_env",
                )
            _read_token(self.token_env)  # a Devin launcher without its token cannot start
        return self

    @property
    def service_url(self) -> str:
        """`base_url` without a trailing slash (`devin`: Devin's API unless set)."""
        return (self.base_url or DEVIN_BASE_URL).rstrip("/")

    @property
    def token_secret(self) -> str | None:
        """The secret holding the bearer token sent, or None when none is sent: `http` and
        `devin` always send one; `agentscope` only when `token_env` is written."""
        if self.type == "agentscope" and "token_env" not in self.model_fields_set:
            return None
        return self.token_env


class NotifyConfig(Section):
    slack_api_url: HttpUrl = "https://slack.com/api"
    slack_token_env: SecretName = "SLACK_BOT_TOKEN"
    webhook_url: str = ""
    webhook_secret_env: SecretName = "AGENTCRON_WEBHOOK_SECRET"
    queue_size: int = Field(default=1000, ge=1)
    max_attempts: int = Field(default=5, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str) -> str:
        return http_url(value) if value else value


class AgentScopeConfig(Section):
    enabled: bool = False
    org: Identifier = "org-local"
    require_token: bool = False
    launcher: LauncherName | None = None
    """The launcher of schedules made through this façade; None: the default launcher."""


class UiConfig(Section):
    """The web dashboard under /ui/."""

    enabled: bool = True
    session_idle: PositiveDuration = 43200.0


def _macro(value: str) -> str:
    if not re.fullmatch(r"![^\s!]+", value):
        raise ValueError("must be '!' followed by a name, e.g. '!deploy'")
    return value


class PlaybookConfig(Section):
    """A bootstrap playbook, upserted by id at start-up."""

    id: PlaybookId
    org: Identifier
    title: Annotated[str, Field(min_length=1)]
    body: str
    macro: Annotated[str, AfterValidator(_macro)] | None = None
