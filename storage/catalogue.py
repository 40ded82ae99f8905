"""The schedule catalogue: every field of a schedule, declared once, in `Schedule`.

Each field of the `Schedule` dataclass states its name, Python type and default, and in
the markers of its `Annotated` type everything the other layers need to know about it:
which clients may set it (a Devin create or PATCH, an AgentScope create or PATCH, the
configuration file), under which name each of them sends and answers it when that is not
the field's own, whether a PATCH `null` clears it, the checked type clients send, whether
changing it moves the next fire, whether a webhook carries it. A field without markers is
internal: stored, never sent by a client. `CATALOGUE` reads them back as `Entry`s.

What is derived from it, so none of it is written out a second time:

- the `schedules` table (`storage.tables`): columns, types, nullability, defaults;
- the Devin façade's create and PATCH bodies and its schedule answer (`api.devin_models`),
  the PATCH `null` rule (`CLEARABLE`) and how a body becomes field changes
  (`api.schedules`), and the schedule list encoded straight from rows (`api.json_rows`);
- which AgentScope request keys become which fields (`api.agentscope`), and the
  defaults of that façade's create (`api.agentscope_models`);
- the `[[schedules]]` section of the configuration file and what bootstrap writes from it
  (`daemon.config_schedules`, `daemon.bootstrap`);
- the schedule in a webhook's body (`daemon.notify_messages`), and `storage.timing.TIMING_FIELDS`.

`tests/unit/test_catalogue.py` checks that each of them agrees with this module.

A new schedule field touches at most three files of code:

1. `storage/catalogue.py`: its line in `Schedule` (type, default, and the markers saying
   who sets, answers and clears it; a check its values need is its `Checked` type,
   written inline or taken from `storage.values`);
2. `storage/schema_steps.py`: the migration that adds its column to databases made before it
   (`MIGRATIONS`, `SCHEMA_VERSION`);
3. only when a façade shows it in a shape of its own, that façade's models module:
   `api/devin_models.py` (`DevinSchedule.of`, as it renders `playbook_id` as
   `playbook`), or `api/agentscope_models.py`, whose requests and record follow
   AgentScope's own API and are written out there.

Like any change a user sees, it is also documented (`config.example.toml`, which a test
holds to every key of the file, and the README) and pinned by the tests of the wire
contract.
"""

from __future__ import annotations

import secrets
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Final, Literal

from storage.enums import NotifyOn, Overlap, PermissionMode, PromptFormat, ScheduleType, Source
from storage.values import (
    Count,
    CronExpression,
    LauncherName,
    NonEmpty,
    Seconds,
    TimezoneName,
    UTCDatetime,
)

JSONObject = dict[str, Any]
Facade = Literal["devin", "agentscope"]
Operation = Literal["create", "patch", "answer"]


def new_schedule_id() -> str:
    return "sched-" + secrets.token_hex(16)


@dataclass(frozen=True)
class Wire:
    """A field on one façade: whether a create, a PATCH and the answer carry it, and how
    it is named there. `name` is its wire name when that is not the field's own; a str
    given as `create` or `answer` is that operation's own name for it."""

    name: str | None = None
    create: bool | str = True
    patch: bool = True
    answer: bool | str = False

    def name_in(self, operation: Operation, field_name: str) -> str | None:
        """The key `operation` uses for the field, or None when it does not carry it."""
        carried = getattr(self, operation)
        if isinstance(carried, str):
            return carried
        return (self.name or field_name) if carried else None


@dataclass(frozen=True)
class Devin(Wire):
    """On the Devin v3 façade: set by a create and a PATCH, and answered as stored."""

    answer: bool | str = True


@dataclass(frozen=True)
class Shown(Devin):
    """Answered by the Devin v3 façade, never set by a client."""

    create: bool | str = False
    patch: bool = False


@dataclass(frozen=True)
class AgentScope(Wire):
    """Set by an AgentScope create and PATCH (the façade renders its record whole)."""


@dataclass(frozen=True)
class ConfigKey:
    """Set by a `[[schedules]]` entry of the configuration file, under `key` when that
    is not the field's own name."""

    key: str | None = None


@dataclass(frozen=True)
class Checked:
    """The checked type clients send, where the field's Python type says too little (a
    non-empty text, a cron expression, a bounded duration)."""

    type: Any


class Trait(Enum):
    """What else is true of a field."""

    NULL_CLEARS = "a PATCH `null` clears it; on any other field `null` changes nothing"
    TIMING = "changing it moves the next fire (`next_run_at` is computed again)"
    WEBHOOK = "a webhook's body carries it in the schedule"
    PRIMARY_KEY = "the table's primary key"
    INDEXED = "the table indexes it"


DEVIN: Final = Devin()
SHOWN: Final = Shown()
AGENTSCOPE: Final = AgentScope()
CONFIG: Final = ConfigKey()
NULL_CLEARS: Final = Trait.NULL_CLEARS
TIMING: Final = Trait.TIMING
WEBHOOK: Final = Trait.WEBHOOK
PRIMARY_KEY: Final = Trait.PRIMARY_KEY
INDEXED: Final = Trait.INDEXED
_NOWHERE: Final = Wire(create=False, patch=False)


@dataclass(frozen=True, slots=True)
class Spec:
    """What the layers need to know about one field: its markers, gathered."""

    devin: Wire = _NOWHERE
    agentscope: Wire = _NOWHERE
    config: ConfigKey | None = None
    wire: Any = None
    traits: frozenset[Trait] = frozenset()

    @classmethod
    def of(cls, markers: Sequence[Any]) -> Spec:
        traits = frozenset(m for m in markers if isinstance(m, Trait))
        checked = [m.type for m in markers if isinstance(m, Checked)]
        return cls(
            devin=next((m for m in markers if isinstance(m, Devin)), _NOWHERE),
            agentscope=next((m for m in markers if isinstance(m, AgentScope)), _NOWHERE),
            config=next((m for m in markers if isinstance(m, ConfigKey)), None),
            wire=checked[0] if checked else None,
            traits=traits,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """One schedule, as both API façades and the engine see it. Immutable; every datetime
    is timezone-aware UTC. Fields are in the order of the table's columns.

    Each field's markers (in `Annotated`) say what the layers need to know about it: the
    façades that carry it (`DEVIN`, `SHOWN`, `AGENTSCOPE`, or one of them naming it
    otherwise), whether the configuration file sets it (`CONFIG`), its `Trait`s, and the
    `Checked` type clients send. A field without markers is internal.
    """

    id: Annotated[str, Shown("scheduled_session_id"), WEBHOOK, PRIMARY_KEY] = field(
        default_factory=new_schedule_id
    )
    org_id: Annotated[str, SHOWN, ConfigKey("org"), WEBHOOK, INDEXED]
    owner_user_id: str | None = None
    created_by: Annotated[str | None, SHOWN] = None
    last_edited_by: Annotated[str | None, SHOWN] = None
    name: Annotated[str, DEVIN, AGENTSCOPE, CONFIG, WEBHOOK, Checked(NonEmpty)]
    prompt: Annotated[str, DEVIN, AgentScope("description"), CONFIG, Checked(NonEmpty)]
    agent: Annotated[
        str, DEVIN, AgentScope("agent_id", patch=False), CONFIG, WEBHOOK, Checked(NonEmpty)
    ] = "devin"
    schedule_type: Annotated[ScheduleType, DEVIN, CONFIG, TIMING, WEBHOOK] = ScheduleType.RECURRING
    cron: Annotated[
        str | None,
        Devin("frequency"),
        AgentScope("cron_expression"),
        CONFIG,
        TIMING,
        WEBHOOK,
        Checked(CronExpression),
    ] = None
    timezone: Annotated[str, DEVIN, AGENTSCOPE, CONFIG, TIMING, WEBHOOK, Checked(TimezoneName)] = (
        "UTC"
    )
    scheduled_at: Annotated[datetime | None, DEVIN, CONFIG, NULL_CLEARS, TIMING, WEBHOOK] = None
    start_at: Annotated[datetime | None, DEVIN, CONFIG, NULL_CLEARS, TIMING] = None
    end_at: Annotated[datetime | None, DEVIN, CONFIG, NULL_CLEARS, TIMING] = None
    enabled: Annotated[bool, DEVIN, AGENTSCOPE, CONFIG, TIMING, WEBHOOK] = True
    notify_on: Annotated[NotifyOn, DEVIN, CONFIG, WEBHOOK] = NotifyOn.FAILURE
    run_as_user_id: Annotated[
        str | None, Devin(create="create_as_user_id"), CONFIG, NULL_CLEARS, WEBHOOK
    ] = None
    slack_channel_id: Annotated[str | None, DEVIN, CONFIG, NULL_CLEARS, WEBHOOK] = None
    slack_team_id: Annotated[str | None, DEVIN, CONFIG, NULL_CLEARS] = None
    playbook_id: Annotated[str | None, Devin(answer="playbook"), CONFIG, NULL_CLEARS] = None
    tags: Annotated[list[str] | None, DEVIN, CONFIG, NULL_CLEARS, WEBHOOK] = None
    bypass_approval: Annotated[bool, DEVIN, CONFIG] = False
    interval_count: Annotated[int | None, DEVIN, CONFIG, Checked(Count)] = None
    target_devin_id: Annotated[str | None, DEVIN, CONFIG, NULL_CLEARS] = None
    platform: Annotated[str | None, DEVIN, CONFIG, NULL_CLEARS] = None
    stateful: Annotated[bool, AGENTSCOPE, CONFIG] = False
    permission_mode: Annotated[PermissionMode, AGENTSCOPE, CONFIG] = PermissionMode.DONT_ASK
    chat_model_config: Annotated[JSONObject | None, AGENTSCOPE, CONFIG] = None
    source: Source = Source.USER
    source_session_id: str | None = None
    stateful_session_id: str | None = None
    overlap: Annotated[Overlap, DEVIN, CONFIG] = Overlap.SKIP
    catchup_window_s: Annotated[
        float | None, DEVIN, ConfigKey("catchup_window"), NULL_CLEARS, Checked(Seconds)
    ] = None
    jitter_s: Annotated[float, DEVIN, ConfigKey("jitter"), Checked(Seconds)] = 0.0
    launcher: Annotated[str | None, DEVIN, CONFIG, NULL_CLEARS, Checked(LauncherName)] = None
    """The configured launcher its runs go through; None: the default one."""
    consecutive_failures: Annotated[int, SHOWN, WEBHOOK] = 0
    last_error_at: Annotated[datetime | None, SHOWN, WEBHOOK] = None
    last_error_message: Annotated[str | None, SHOWN, WEBHOOK] = None
    last_executed_at: Annotated[datetime | None, SHOWN, WEBHOOK] = None
    next_run_at: Annotated[datetime | None, SHOWN, WEBHOOK, INDEXED] = None
    paused_reason: Annotated[str | None, SHOWN, WEBHOOK] = None
    from_config: Annotated[bool, Shown("managed_by")] = False
    deleted_at: Annotated[datetime | None, TIMING] = None
    created_at: Annotated[datetime, SHOWN]
    updated_at: Annotated[datetime, SHOWN]
    version: int = 1
    prompt_format: Annotated[PromptFormat, DEVIN, CONFIG] = PromptFormat.TEXT

    @property
    def is_stateful(self) -> bool:
        """Fires send the prompt to one long-lived session instead of creating a new one."""
        return self.stateful or self.target_devin_id is not None

    @property
    def is_active(self) -> bool:
        return self.enabled and self.deleted_at is None


# --------------------------------------------------------------------------- reading it


@dataclass(frozen=True, slots=True)
class Entry:
    """One field of the catalogue: its name, Python type, default and `Spec`.

    `default` is `dataclasses.MISSING` for a field without one, and for `id`, whose
    default is made by a factory (`has_factory`).
    """

    name: str
    type: Any
    default: Any
    has_factory: bool
    spec: Spec

    @property
    def required(self) -> bool:
        """No default: whoever makes a schedule must give it."""
        return self.default is MISSING and not self.has_factory

    @property
    def nullable(self) -> bool:
        return _is_optional(self.type)

    @property
    def value_type(self) -> Any:
        """The type without its `None`: `str` for `str | None`."""
        if not self.nullable:
            return self.type
        (value,) = (arg for arg in typing.get_args(self.type) if arg is not type(None))
        return value

    @property
    def wire(self) -> Any:
        """The checked type a client sends for it (never None: that is the caller's to add)."""
        if self.spec.wire is not None:
            return self.spec.wire
        return UTCDatetime if self.value_type is datetime else self.value_type

    @property
    def config_key(self) -> str | None:
        """Its key in a `[[schedules]]` entry of the configuration file, or None."""
        config = self.spec.config
        return None if config is None else (config.key or self.name)

    def has(self, trait: Trait) -> bool:
        return trait in self.spec.traits

    def wire_name(self, facade: Facade, operation: Operation) -> str | None:
        """Its key in `operation` on `facade`, or None when that does not carry it."""
        wire: Wire = getattr(self.spec, facade)
        return wire.name_in(operation, self.name)


def _is_optional(annotation: Any) -> bool:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    return union and type(None) in typing.get_args(annotation)


def _markers(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is not Annotated:
        return ()
    return tuple(annotation.__metadata__)


def _entries() -> tuple[Entry, ...]:
    hints = typing.get_type_hints(Schedule)
    annotated = typing.get_type_hints(Schedule, include_extras=True)
    return tuple(
        Entry(
            name=f.name,
            type=hints[f.name],
            default=f.default,
            has_factory=f.default_factory is not MISSING,
            spec=Spec.of(_markers(annotated[f.name])),
        )
        for f in fields(Schedule)
    )


CATALOGUE: Final = _entries()
"""Every schedule field, in the order of the table's columns."""
ENTRIES: Final[Mapping[str, Entry]] = {entry.name: entry for entry in CATALOGUE}

CLEARABLE: Final = frozenset(entry.name for entry in CATALOGUE if entry.has(NULL_CLEARS))
"""Fields a PATCH `null` clears; a `null` on any other field leaves it unchanged."""
RESCHEDULING: Final = frozenset(entry.name for entry in CATALOGUE if entry.has(TIMING))
"""Fields whose change moves the next fire (`next_run_at` is computed again)."""
WEBHOOK_FIELDS: Final = tuple(entry.name for entry in CATALOGUE if entry.has(WEBHOOK))
"""The fields a webhook receiver is sent to tell what happened to the schedule."""
ENUM_FIELDS: Final[Mapping[str, type[StrEnum]]] = {
    entry.name: entry.value_type
    for entry in CATALOGUE
    if isinstance(entry.value_type, type) and issubclass(entry.value_type, StrEnum)
}
"""Fields stored as the string value of an enumeration, and that enumeration."""


def wire_names(facade: Facade, operation: Operation) -> dict[str, str]:
    """{field: wire name} of the fields `operation` carries on `facade`, in catalogue order."""
    named = ((entry.name, entry.wire_name(facade, operation)) for entry in CATALOGUE)
    return {name: wire for name, wire in named if wire is not None}


def config_keys() -> dict[str, str]:
    """{field: key} of the fields a `[[schedules]]` entry sets, in catalogue order."""
    keyed = ((entry.name, entry.config_key) for entry in CATALOGUE)
    return {name: key for name, key in keyed if key is not None}


def default_of(name: str) -> Any:
    """The default of field `name` (a KeyError for a field that has none, or a factory)."""
    default = ENTRIES[name].default
    if default is MISSING:
        raise KeyError(f"schedule field {name!r} has no default")
    return default


def in_order(names: Mapping[str, str], first: Sequence[str]) -> dict[str, str]:
    """`names` (field -> wire name) with the fields of `first` first, in that order.

    A façade whose fields were published in an order of their own keeps it this way; a
    field added later follows them, in catalogue order. A name in `first` that `names`
    lacks is a ValueError: the published order would silently lose a field.
    """
    if missing := [name for name in first if name not in names]:
        raise ValueError(f"not carried by this operation: {', '.join(missing)}")
    leading = {name: names[name] for name in first}
    return leading | {name: wire for name, wire in names.items() if name not in leading}
