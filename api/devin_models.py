"""Wire models of the Devin v3 façade: schedule and playbook bodies, answers and queries.

Request bodies are strict: an unknown key is refused (a typo such as `frequncy` must not be
dropped silently) and nothing is coerced (`"yes"` is not a boolean, `"5"` not an integer).
A datetime sent without an offset is read as UTC. Cron expressions and timezone names are
checked here, so a body that parses is well-formed; rules that relate fields to each other
or to stored state (a one_time schedule needs a future `scheduled_at`...) live in
`api.schedules`.

Response models list every field as required and forbid others, so the OpenAPI document
states exactly what each answer holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from storage.cron import CronError, TimezoneError, load_timezone, validate_cron
from storage.enums import DevinAgent, NotifyOn, Overlap, ScheduleType

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
MAX_SECONDS = 10 * 366 * 86400.0
"""Upper bound of the duration fields (`catchup_window_s`, `jitter_s`): ten years."""
MAX_INT = 2**31 - 1
MAX_OFFSET = 2**63 - 1
"""The largest integer SQLite stores; a larger list offset could never match anything."""
DEVIN_AGENTS = frozenset(agent.value for agent in DevinAgent)
"""The agents of the schedules the Devin façade shows by default."""


def _as_utc(moment: datetime) -> datetime:
    """Naive means UTC; aware is converted to UTC; only 1970..9998 is accepted."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime is out of range") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError("datetime must be between 1970-01-01 and 9999-01-01 (UTC)")
    return moment


def _cron(expr: str) -> str:
    try:
        return validate_cron(expr)
    except CronError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None


def _timezone(name: str) -> str:
    try:
        load_timezone(name)
    except TimezoneError as exc:
        raise ValueError(str(exc)) from None
    return name


UTCDatetime = Annotated[datetime, AfterValidator(_as_utc)]
NonEmpty = Annotated[str, Field(min_length=1)]
Frequency = Annotated[
    str,
    AfterValidator(_cron),
    Field(description="Standard 5-field cron (0 and 7 are Sunday), read in `timezone`."),
]
Timezone = Annotated[
    str, AfterValidator(_timezone), Field(description="IANA timezone name; default UTC.")
]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
IntervalCount = Annotated[int, Field(ge=1, le=MAX_INT)]
Macro = Annotated[str, Field(pattern=r"^![A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- schedules ------------------------------------------------------------------------------


class _ScheduleFields(_Strict):
    """The fields a create and an edit share, every one optional here; what a missing or
    null value means differs between the two (see each)."""

    name: NonEmpty | None = None
    prompt: NonEmpty | None = None
    schedule_type: ScheduleType | None = None
    frequency: Frequency | None = None
    scheduled_at: UTCDatetime | None = None
    agent: DevinAgent | None = None
    notify_on: NotifyOn | None = None
    enabled: bool | None = None
    playbook_id: str | None = None
    slack_channel_id: str | None = None
    slack_team_id: str | None = None
    tags: list[str] | None = None
    bypass_approval: bool | None = None
    interval_count: IntervalCount | None = None
    target_devin_id: str | None = None
    platform: str | None = None
    timezone: Timezone | None = None
    start_at: UTCDatetime | None = None
    end_at: UTCDatetime | None = None
    overlap: Overlap | None = None
    catchup_window_s: Seconds | None = None
    jitter_s: Seconds | None = None


class ScheduleCreate(_ScheduleFields):
    """POST `/schedules`. `frequency` is required for recurring schedules (the default type),
    `scheduled_at` (in the future) for one_time ones. An optional field sent as null takes
    its default."""

    name: NonEmpty
    prompt: NonEmpty
    schedule_type: ScheduleType | None = Field(default=None, description="Default recurring.")
    agent: DevinAgent | None = Field(default=None, description="Default devin.")
    notify_on: NotifyOn | None = Field(default=None, description="Default failure.")
    enabled: bool | None = Field(default=None, description="Default true.")
    overlap: Overlap | None = Field(default=None, description="Default skip.")
    create_as_user_id: str | None = Field(
        default=None,
        description="Run as this org member (needs ImpersonateOrgSessions); default the bot.",
    )


class ScheduleUpdate(_ScheduleFields):
    """PATCH `/schedules/{schedule_id}`: only the keys present change.

    `null` clears `playbook_id`, `run_as_user_id` (back to the bot user), `slack_channel_id`,
    `slack_team_id`, `tags`, `target_devin_id`, `platform`, `scheduled_at` (recurring
    schedules only), `start_at`, `end_at` and `catchup_window_s`; on any other field it
    leaves the value unchanged.
    """

    run_as_user_id: str | None = Field(
        default=None,
        description="Run as this org member (needs ImpersonateOrgSessions); null: the bot.",
    )


class PlaybookInfo(_Answer):
    playbook_id: str
    title: str


class DevinSchedule(_Answer):
    """A schedule as the Devin v3 API answers it, plus agentcron's extensions."""

    scheduled_session_id: str = Field(description="The schedule id.")
    org_id: str
    name: str
    prompt: str
    agent: str = Field(
        description="devin, data_analyst or advanced; any agent id (e.g. of a schedule made "
        "through the AgentScope façade) only when `agents=all` is asked for."
    )
    schedule_type: ScheduleType
    frequency: str | None = Field(description="The cron expression.")
    scheduled_at: datetime | None
    enabled: bool
    notify_on: NotifyOn
    playbook: PlaybookInfo | None
    slack_channel_id: str | None
    slack_team_id: str | None
    consecutive_failures: int
    last_error_at: datetime | None
    last_error_message: str | None
    last_executed_at: datetime | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    tags: list[str] | None
    bypass_approval: bool
    interval_count: int | None
    target_devin_id: str | None
    platform: str | None
    last_edited_by: str | None
    run_as_user_id: str | None = Field(description="null: sessions run as the bot user.")
    timezone: str
    next_run_at: datetime | None = Field(description="null when disabled or fired (one_time).")
    paused_reason: str | None
    overlap: Overlap = Field(description="What a fire does while the previous run launches.")
    catchup_window_s: float | None = Field(
        description="Catch-up window after downtime; null: the daemon's default."
    )
    jitter_s: float = Field(description="Upper bound of each fire's deterministic delay.")
    start_at: datetime | None = Field(description="No fire before this; null: no bound.")
    end_at: datetime | None = Field(description="No fire after this; null: no bound.")
    managed_by: Literal["config"] | None = Field(
        description="Read-only. config: declared in the configuration file, whose next "
        "reload reverts edits made through the API (their answers carry a Warning header); "
        "null: made through the API."
    )


class DevinScheduleList(_Answer):
    items: list[DevinSchedule]
    end_cursor: str | None = Field(description="The next page's offset, null on the last.")
    has_next_page: bool
    total: int


class PageQuery(BaseModel):
    """`limit` (1..100, default 50) and `offset` paging of a list."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class AgentsQuery(BaseModel):
    """Which schedules a request sees: agentcron's `agents` query parameter.

    Devin clients parse `agent` as Devin's enumeration, so by default they are shown only
    schedules of the Devin agents; a schedule of another agent (made through the AgentScope
    façade, or by the configuration file) is then answered 404, and not counted in lists.
    """

    model_config = ConfigDict(extra="ignore")

    agents: Literal["devin", "all"] = Field(
        default="devin",
        description="devin: only schedules whose agent is devin, data_analyst or advanced; "
        "all: every schedule of the org, whatever its agent (the operator CLI's view).",
    )

    @property
    def visible(self) -> frozenset[str] | None:
        """The agent ids to narrow the store's reads to; None for every agent."""
        return DEVIN_AGENTS if self.agents == "devin" else None


class ScheduleListQuery(PageQuery, AgentsQuery):
    """Paging of GET `/schedules`, oldest first."""


# -- playbooks ------------------------------------------------------------------------------


class PlaybookWrite(_Strict):
    """POST `/playbooks` and PUT `/playbooks/{playbook_id}` (which replaces all three)."""

    title: NonEmpty
    body: str
    macro: Macro | None = Field(default=None, description="e.g. `!deploy`; null for none.")


class DevinPlaybook(_Answer):
    """A playbook as the Devin v3 API answers it; times are integer Unix seconds."""

    playbook_id: str
    title: str
    body: str
    macro: str | None
    access_type: Literal["org"]
    org_id: str
    created_by: str | None
    updated_by: str | None
    created_at: int
    updated_at: int


class DevinPlaybookList(_Answer):
    items: list[DevinPlaybook]
    end_cursor: str | None = Field(
        description="Pass as `after` for the next page; null on the last."
    )
    has_next_page: bool
    total: int


class PlaybookListQuery(BaseModel):
    """Cursor paging of GET `/playbooks`."""

    model_config = ConfigDict(extra="ignore")

    first: int = Field(default=100, ge=1, le=200)
    after: str | None = Field(default=None, description="The previous page's `end_cursor`.")
