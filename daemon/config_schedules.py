"""The `[[schedules]]` section: the schedules the file declares (see `daemon.bootstrap`).

Its keys are derived from `storage.catalogue`: every field the catalogue lets the file set,
under the key it names (`org`, `catchup_window`, `jitter`), with the catalogue's default.
What is the file's own is here: how a TOML value is read (durations such as `'15m'`,
enumerations from their string values, ISO-8601 strings as instants) and the ids the
file checks more closely than a client's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Strict, create_model, model_validator

from daemon.config_types import Duration, Identifier, PlaybookId, Section, UtcDatetime, conflict
from storage.catalogue import ENTRIES, Entry, config_keys
from storage.enums import PromptFormat, ScheduleType
from storage.prompts import PromptError, check_template
from storage.values import Seconds, UTCDatetime

_TYPES: dict[str, Any] = {
    "org_id": Identifier,
    "run_as_user_id": Identifier,
    "playbook_id": PlaybookId,
    "interval_count": int,
}
"""Where the file checks a field otherwise than the catalogue: the ids it cross-checks, and
`interval_count`, which the file has never bounded."""


def _file_type(entry: Entry) -> Any:
    kind = _TYPES.get(entry.name, entry.wire)
    if kind is Seconds:
        kind = Duration
    elif kind is UTCDatetime:
        kind = UtcDatetime
    elif isinstance(kind, type) and issubclass(kind, StrEnum):
        kind = Annotated[kind, Strict(False)]  # the file holds the value, not the member
    return kind | None if entry.nullable else kind


def _file_fields() -> dict[str, Any]:
    """{key: pydantic field} of every catalogue field the file sets."""
    fields: dict[str, Any] = {}
    for name, key in config_keys().items():
        entry = ENTRIES[name]
        fields[key] = (_file_type(entry), ... if entry.required else entry.default)
    return fields


# The fields come from the catalogue, which mypy does not read: hence the ignore.
class ScheduleConfig(create_model("_ScheduleFields", __base__=Section, **_file_fields())):  # type: ignore[misc]
    """A bootstrap schedule, upserted by (org, name) at start-up: the file wins."""

    @model_validator(mode="after")
    def _check_timing(self) -> Self:
        if self.schedule_type is ScheduleType.RECURRING:
            if self.cron is None:
                raise conflict("a recurring schedule needs a cron expression", "cron")
            if self.scheduled_at is not None:
                raise conflict("scheduled_at is only for one_time schedules", "scheduled_at")
        else:
            if self.scheduled_at is None:
                raise conflict("a one_time schedule needs scheduled_at", "scheduled_at")
            if self.cron is not None:
                raise conflict("cron is only for recurring schedules", "cron")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise conflict("end_at must be after start_at", "end_at")
        return self

    @model_validator(mode="after")
    def _check_template(self) -> Self:
        if self.prompt_format is PromptFormat.TEMPLATE:
            try:
                check_template(self.prompt)
            except PromptError as error:
                raise conflict(str(error), "prompt") from None
        return self
