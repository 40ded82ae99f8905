"""Wire models of the Devin v3 façade: schedule and playbook bodies, answers and queries.

The schedule models are derived from `storage.catalogue`: which fields a create, a PATCH
and the answer carry, under which names, with which defaults. This module adds only what
is the Devin façade's own: the order its fields were published in, where it narrows a
type, and what its documentation says.

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

import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from api.wire import OffsetPage
from storage.catalogue import ENTRIES, Operation, default_of, in_order, wire_names
from storage.domain import Schedule
from storage.enums import DevinAgent
from storage.values import NonEmpty, TimezoneName, valid_cron

MAX_OFFSET = 2**63 - 1
"""The largest integer SQLite stores; a larger list offset could never match anything."""
DEVIN_AGENTS = frozenset(agent.value for agent in DevinAgent)
"""The agents of the schedules the Devin façade shows by default."""


def _frequency(expr: str) -> str:
    return valid_cron(expr, refusal="invalid cron expression: {reason}")


Frequency = Annotated[
    str,
    AfterValidator(_frequency),
    Field(description="Standard 5-field cron (0 and 7 are Sunday), read in `timezone`."),
]
Timezone = Annotated[TimezoneName, Field(description="IANA timezone name; default UTC.")]
Macro = Annotated[str, Field(pattern=r"^![A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlaybookInfo(_Answer):
    playbook_id: str
    title: str


# -- schedules: derived from `storage.catalogue` -----------------------------------------------

_REQUEST_ORDER = tuple(
    """name prompt schedule_type cron scheduled_at agent notify_on enabled playbook_id
    slack_channel_id slack_team_id tags bypass_approval interval_count target_devin_id
    platform timezone start_at end_at overlap catchup_window_s jitter_s run_as_user_id""".split()  # noqa: SIM905
)
"""The order the request fields were published in (the OpenAPI document and 422 answers
list them so); a field added since follows, in catalogue order."""
_ANSWER_ORDER = tuple(
    """id org_id name prompt agent schedule_type cron scheduled_at enabled notify_on
    playbook_id slack_channel_id slack_team_id consecutive_failures last_error_at
    last_error_message last_executed_at created_at created_by updated_at tags bypass_approval
    interval_count target_devin_id platform last_edited_by run_as_user_id timezone next_run_at
    paused_reason overlap catchup_window_s jitter_s start_at end_at from_config""".split()  # noqa: SIM905
)
"""The order of the answer's keys: Devin's own, then agentcron's; a field added since
follows, in catalogue order."""

_REQUEST_TYPES: dict[str, Any] = {"agent": DevinAgent, "cron": Frequency, "timezone": Timezone}
"""Where the Devin façade narrows the catalogue's type: only Devin's agents are accepted, and
the cron and timezone are documented in the request."""
_ANSWER_TYPES: dict[str, Any] = {
    "playbook_id": PlaybookInfo | None,
    "from_config": Literal["config"] | None,
}
"""The fields the answer renders in a shape of its own (see `DevinSchedule.of`)."""

_RUN_AS = "Run as this org member (needs ImpersonateOrgSessions)"
_DOCS: dict[Operation, dict[str, str]] = {
    "create": {
        **{
            name: f"Default {str(default_of(name)).lower()}."
            for name in ("schedule_type", "agent", "notify_on", "enabled", "overlap")
        },
        "run_as_user_id": f"{_RUN_AS}; default the bot.",
    },
    "patch": {"run_as_user_id": f"{_RUN_AS}; null: the bot."},
    "answer": {
        "id": "The schedule id.",
        "agent": "devin, data_analyst or advanced; any agent id (e.g. of a schedule made "
        "through the AgentScope façade) only when `agents=all` is asked for.",
        "cron": "The cron expression.",
        "run_as_user_id": "null: sessions run as the bot user.",
        "next_run_at": "null when disabled or fired (one_time).",
        "overlap": "What a fire does while the previous run launches.",
        "catchup_window_s": "Catch-up window after downtime; null: the daemon's default.",
        "jitter_s": "Upper bound of each fire's deterministic delay.",
        "start_at": "No fire before this; null: no bound.",
        "end_at": "No fire after this; null: no bound.",
        "from_config": "Read-only. config: declared in the configuration file, whose next "
        "reload reverts edits made through the API (their answers carry a Warning header); "
        "null: made through the API.",
    },
}
"""What the OpenAPI document says of a field, where its name and type do not say enough."""


def _request_field(name: str, operation: Operation) -> tuple[Any, Any]:
    """A create's required fields are required; any other may be omitted or null (the
    create then takes the default, the PATCH leaves or clears the field)."""
    entry = ENTRIES[name]
    kind = _REQUEST_TYPES.get(name, entry.wire)
    if operation == "create" and entry.required:
        return kind, ...
    return kind | None, Field(default=None, description=_DOCS[operation].get(name))


def _answer_field(name: str) -> tuple[Any, Any]:
    """Every field of the answer is required, so the document states exactly what it holds."""
    kind = _ANSWER_TYPES.get(name, ENTRIES[name].type)
    return kind, Field(description=_DOCS["answer"].get(name))


def _fields(operation: Operation) -> dict[str, Any]:
    """{wire name: pydantic field} of what `operation` carries, from the catalogue."""
    if operation == "answer":
        names = in_order(wire_names("devin", operation), _ANSWER_ORDER)
        return {wire: _answer_field(name) for name, wire in names.items()}
    names = in_order(wire_names("devin", operation), _REQUEST_ORDER)
    return {wire: _request_field(name, operation) for name, wire in names.items()}


def _schedule_model(operation: Operation, base: type[BaseModel]) -> type[BaseModel]:
    """The fields `operation` carries as a model to subclass (which names it)."""
    return create_model(f"_{operation.title()}Fields", __base__=base, **_fields(operation))


# The models' fields come from the catalogue, which mypy does not read: hence the ignores.


class ScheduleCreate(_schedule_model("create", _Strict)):  # type: ignore[misc]
    """POST `/schedules`. `frequency` is required for recurring schedules (the default type),
    `scheduled_at` (in the future) for one_time ones. An optional field sent as null takes
    its default."""


class ScheduleUpdate(_schedule_model("patch", _Strict)):  # type: ignore[misc]
    """PATCH `/schedules/{schedule_id}`: only the keys present change.

    `null` clears `playbook_id`, `run_as_user_id` (back to the bot user), `slack_channel_id`,
    `slack_team_id`, `tags`, `target_devin_id`, `platform`, `scheduled_at` (recurring
    schedules only), `start_at`, `end_at` and `catchup_window_s`; on any other field it
    leaves the value unchanged.
    """


_ANSWERED = wire_names("devin", "answer")
_KEYS = tuple(_ANSWERED.values())
_READ = operator.attrgetter(*_ANSWERED)  # one call reads them all: this runs per schedule


class DevinSchedule(_schedule_model("answer", _Answer)):  # type: ignore[misc]
    """A schedule as the Devin v3 API answers it, plus agentcron's extensions."""

    @classmethod
    def of(cls, schedule: Schedule, playbook_titles: Mapping[str, str]) -> DevinSchedule:
        """`schedule` on the wire; `playbook` is null unless its playbook is in
        `playbook_titles`.

        Every field goes out as it is stored, under its wire name, except three rendered
        here (their types are in `_ANSWER_TYPES`): `playbook` (id and title), `next_run_at`
        (null unless the schedule is active) and `managed_by` (`"config"` for a schedule the
        configuration file declares).
        """
        values = dict(zip(_KEYS, _READ(schedule), strict=True))
        values["playbook"] = _playbook_info(schedule.playbook_id, playbook_titles)
        values["next_run_at"] = schedule.next_run_at if schedule.is_active else None
        values["managed_by"] = "config" if schedule.from_config else None
        return cls(**values)


def _playbook_info(playbook_id: str | None, titles: Mapping[str, str]) -> PlaybookInfo | None:
    if playbook_id is None or playbook_id not in titles:
        return None
    return PlaybookInfo(playbook_id=playbook_id, title=titles[playbook_id])


class DevinScheduleList(OffsetPage[DevinSchedule]):
    pass


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
