"""The schedule catalogue and everything derived from it agree: the domain value, the table,
the Devin and AgentScope wire models, the configuration section, bootstrap and webhooks.

Every check walks `storage.catalogue.CATALOGUE`, so a field added there is held to all of
them without touching this file.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel

from api import agentscope, schedules
from api.agentscope_models import CreateScheduleRequest, UpdateScheduleRequest
from api.devin_models import DevinSchedule, ScheduleCreate, ScheduleUpdate
from daemon import bootstrap, notify_messages
from daemon.config import ScheduleConfig
from storage import catalogue, domain
from storage.catalogue import (
    CATALOGUE,
    CLEARABLE,
    ENTRIES,
    WEBHOOK_FIELDS,
    Schedule,
    config_keys,
    default_of,
    wire_names,
)
from storage.tables import SCHEDULES
from storage.timing import TIMING_FIELDS

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NAMES = [entry.name for entry in CATALOGUE]
OPERATIONS = [
    (facade, operation)
    for facade in ("devin", "agentscope")
    for operation in ("create", "patch", "answer")
]


def defaulted(names: dict[str, str]) -> list[str]:
    """The fields among `names` that have a plain default."""
    return [name for name in names if not ENTRIES[name].required and name != "id"]


def required_fields(model: type[BaseModel]) -> set[str]:
    return {key for key, field in model.model_fields.items() if field.is_required()}


SAMPLES: dict[str, Any] = {
    "agent": "advanced",
    "cron": "0 9 * * *",
    "timezone": "Asia/Tokyo",
    "chat_model_config": {"type": "t", "model": "m"},
}
"""Values of the fields whose type alone does not say what a valid value is."""


def a_value(name: str) -> Any:
    """A valid JSON value for field `name` that is not its default."""
    if name in SAMPLES:
        return SAMPLES[name]
    kind = ENTRIES[name].value_type
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return next(member.value for member in kind if member != ENTRIES[name].default)
    samples = {bool: not ENTRIES[name].default, int: 2, float: 1.5, datetime: "2031-01-01T00:00Z"}
    return samples.get(kind, ["t"] if typing.get_origin(kind) is list else "another")


def a_schedule(**changes: Any) -> Schedule:
    return Schedule(org_id="org-a", name="n", prompt="p", created_at=NOW, updated_at=NOW, **changes)


# --------------------------------------------------------------------------- storage


def test_the_domain_schedule_is_the_catalogue_and_keeps_its_defaults() -> None:
    assert domain.Schedule is catalogue.Schedule
    assert [field.name for field in dataclasses.fields(Schedule)] == NAMES
    made = a_schedule()
    for name in defaulted(ENTRIES):
        assert getattr(made, name) == default_of(name), name


def test_the_table_has_one_column_per_field_with_its_nullability_and_default() -> None:
    assert [column.name for column in SCHEDULES.columns] == NAMES
    assert [column.name for column in SCHEDULES.primary_key] == ["id"]
    for entry in CATALOGUE:
        column = SCHEDULES.c[entry.name]
        assert column.nullable == entry.nullable, entry.name
        stored = None if column.default is None else column.default.arg
        expected = None if entry.name == "id" or entry.required else default_of(entry.name)
        assert stored == expected, entry.name


def test_timing_fields_are_the_fields_that_move_the_next_fire() -> None:
    assert {"cron", "timezone", "start_at", "end_at", "enabled"} <= TIMING_FIELDS
    assert {entry.name for entry in CATALOGUE if entry.has(catalogue.TIMING)} == TIMING_FIELDS


@pytest.mark.parametrize(("facade", "operation"), OPERATIONS)
def test_no_two_fields_share_a_wire_name(facade: Any, operation: Any) -> None:
    keys = list(wire_names(facade, operation).values())
    assert len(keys) == len(set(keys))


def test_a_clearable_field_can_be_empty_and_is_patched_through_the_devin_facade() -> None:
    assert CLEARABLE
    for name in CLEARABLE:
        assert ENTRIES[name].nullable, name
        assert ENTRIES[name].wire_name("devin", "patch") is not None, name


# --------------------------------------------------------------------------- Devin façade


@pytest.mark.parametrize(
    ("model", "operation"),
    [(ScheduleCreate, "create"), (ScheduleUpdate, "patch"), (DevinSchedule, "answer")],
)
def test_devin_models_carry_exactly_the_catalogue_fields(
    model: type[BaseModel], operation: Any
) -> None:
    assert set(model.model_fields) == set(wire_names("devin", operation).values())


def test_a_devin_create_requires_what_the_catalogue_requires() -> None:
    create = wire_names("devin", "create")
    expected = {key for name, key in create.items() if ENTRIES[name].required}
    assert required_fields(ScheduleCreate) == expected == {"name", "prompt"}
    assert required_fields(ScheduleUpdate) == set()
    assert required_fields(DevinSchedule) == set(DevinSchedule.model_fields)


def test_a_devin_create_that_omits_a_field_gets_the_catalogue_default() -> None:
    body = ScheduleCreate.model_validate_json('{"name": "n", "prompt": "p"}')
    made = schedules.new_schedule(body, org_id="org-a", by="me", now=NOW)
    create = wire_names("devin", "create")
    for name in defaulted(create):
        assert getattr(made, name) == default_of(name), name


def test_a_devin_create_sets_every_field_it_carries() -> None:
    create = wire_names("devin", "create")
    sent = {key: a_value(name) for name, key in create.items()}
    body = ScheduleCreate.model_validate_json(json.dumps(sent))
    made = schedules.new_schedule(body, org_id="org-a", by="me", now=NOW)
    defaults = a_schedule()
    for name in create:
        assert getattr(made, name) != getattr(defaults, name), name


def test_a_patch_null_clears_exactly_the_clearable_fields() -> None:
    patch = wire_names("devin", "patch")
    body = ScheduleUpdate.model_validate_json(json.dumps(dict.fromkeys(patch.values())))
    changes = schedules.patch_changes(body)
    assert changes == dict.fromkeys(CLEARABLE)
    assert schedules.CLEARABLE == CLEARABLE


def test_a_devin_answer_carries_every_answered_field_under_its_wire_name() -> None:
    answered = wire_names("devin", "answer")
    answer = json.loads(DevinSchedule.of(a_schedule(tags=["t"]), {}).model_dump_json())
    assert list(answer) == list(DevinSchedule.model_fields)
    assert set(answer) == set(answered.values())
    assert answer["scheduled_session_id"].startswith("sched-")
    assert answer["tags"] == ["t"] and answer["managed_by"] is None


# --------------------------------------------------------------------------- AgentScope façade

AGENTSCOPE_OWN_DEFAULTS: dict[str, Any] = {"agent": ..., "cron": ..., "prompt": ""}
"""Where AgentScope's create differs from the catalogue: an agent and a cron are required,
and the task text defaults to empty."""


@pytest.mark.parametrize(
    ("model", "operation"), [(CreateScheduleRequest, "create"), (UpdateScheduleRequest, "patch")]
)
def test_agentscope_requests_carry_exactly_the_catalogue_fields(
    model: type[BaseModel], operation: Any
) -> None:
    assert set(model.model_fields) == set(wire_names("agentscope", operation).values())


def test_agentscope_create_defaults_are_the_catalogue_defaults() -> None:
    for name, key in wire_names("agentscope", "create").items():
        field = CreateScheduleRequest.model_fields[key]
        if name in AGENTSCOPE_OWN_DEFAULTS:
            expected = AGENTSCOPE_OWN_DEFAULTS[name]
            assert field.is_required() if expected is ... else field.default == expected, name
        elif ENTRIES[name].required:
            assert field.is_required(), name
        else:
            assert field.default == default_of(name), name
    assert required_fields(UpdateScheduleRequest) == set()


def test_an_agentscope_patch_changes_the_field_of_every_key_it_carries() -> None:
    patch = wire_names("agentscope", "patch")
    sent = {key: a_value(name) for name, key in patch.items()}
    changes = agentscope.schedule_changes(
        UpdateScheduleRequest.model_validate_json(json.dumps(sent))
    )
    assert set(changes) == set(patch)


# --------------------------------------------------------------------------- configuration


def test_the_config_section_carries_the_catalogue_fields_and_defaults() -> None:
    keys = config_keys()
    assert set(ScheduleConfig.model_fields) == set(keys.values())
    for name, key in keys.items():
        field = ScheduleConfig.model_fields[key]
        if ENTRIES[name].required:
            assert field.is_required(), key
        else:
            assert field.default == default_of(name), key


def test_bootstrap_writes_every_key_of_an_entry_to_its_schedule_field() -> None:
    entry = ScheduleConfig.model_validate(
        {"org": "org-a", "name": "n", "prompt": "p", "cron": "@daily"}
    )
    written = bootstrap.schedule_fields(entry)
    assert set(written) == set(config_keys()) - {"enabled"} | {"owner_user_id", "from_config"}
    made = bootstrap.new_schedule(entry, now=NOW)
    for name in defaulted(config_keys()):
        if name != "cron":
            assert getattr(made, name) == default_of(name), name


# --------------------------------------------------------------------------- notifications


def test_a_webhook_carries_the_catalogue_webhook_fields_in_catalogue_order() -> None:
    payload = notify_messages.schedule_json(a_schedule(last_error_at=NOW))
    assert list(payload) == list(WEBHOOK_FIELDS)
    assert payload["schedule_type"] == "recurring" and payload["last_error_at"] == NOW.isoformat()
