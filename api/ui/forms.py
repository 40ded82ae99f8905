"""The schedule form: its fields, the API body it stands for, and its errors by field.

A form is turned into the JSON body the Devin API would receive and validated by the API's
own model, so a form is refused for exactly what the API refuses, with the same message,
shown beside the field it names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api.errors import Unprocessable, validation_items
from api.ui.guard import Form, text
from storage.domain import Schedule

M = TypeVar("M", bound=BaseModel)

REQUIRED_TEXT = ("name", "prompt", "frequency")
"""Sent as typed: an empty one is refused by the model, beside its field."""
OPTIONAL_TEXT = ("timezone", "notify_on", "overlap", "slack_channel_id")
"""Sent as null when left blank: the default on create; on an edit, unchanged (a timezone)
or cleared (a Slack channel), as a PATCH's null is."""
FIELDS = (*REQUIRED_TEXT, *OPTIONAL_TEXT, "enabled")


@dataclass(frozen=True, slots=True)
class ScheduleForm:
    """What the form shows: its values, and the problems found, by field name."""

    values: Mapping[str, Any]
    errors: Mapping[str, str] = field(default_factory=dict)
    problems: Sequence[str] = ()
    """Problems that name no field of the form."""

    @classmethod
    def blank(cls) -> ScheduleForm:
        return cls({"timezone": "UTC", "notify_on": "failure", "overlap": "skip", "enabled": True})

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleForm:
        values = {name: getattr(schedule, name, None) for name in FIELDS}
        return cls(values | {"frequency": schedule.cron or ""})


def body_of(form: Form) -> dict[str, Any]:
    """The API body the posted form stands for (every field present)."""
    body: dict[str, Any] = {name: text(form, name) for name in REQUIRED_TEXT}
    body |= {name: text(form, name).strip() or None for name in OPTIONAL_TEXT}
    body["enabled"] = text(form, "enabled") == "on"
    return body


def validated(model: type[M], body: Mapping[str, Any]) -> M:
    """`body` as the API reads it (JSON, strict); raises Unprocessable as the API answers."""
    try:
        return model.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        raise Unprocessable(validation_items(exc)) from None


def with_errors(body: Mapping[str, Any], refusal: Unprocessable) -> ScheduleForm:
    """The form as posted, with each problem of `refusal` beside its field."""
    errors: dict[str, str] = {}
    problems: list[str] = []
    for item in refusal.items:
        loc = [str(part) for part in item["loc"]]
        name = loc[1] if len(loc) > 1 and loc[0] == "body" else ""
        if name in FIELDS and name not in errors:
            errors[name] = item["msg"]
        else:
            problems.append(f"{'.'.join(loc)}: {item['msg']}")
    return ScheduleForm(body, errors, problems)
