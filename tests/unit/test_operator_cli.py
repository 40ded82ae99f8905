"""The operator CLI's argument parsing and rendering, without a daemon."""

from __future__ import annotations

import pytest

from daemon.cli import build_parser
from daemon.operator_cli import (
    create_body,
    history_row,
    render_fields,
    request_body,
    separate_json_body,
)

SCHED = "sched-0123456789abcdef"


def parse(*argv: str) -> tuple[str, bool, str | None, bool | None]:
    """(id, --json, --body, --enabled/--disabled) of `agentcron schedules patch ...`."""
    args = build_parser().parse_args(separate_json_body(["schedules", "patch", *argv]))
    return args.id, args.json, args.body, args.enabled


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (("--json", SCHED, "--enabled"), (SCHED, True, None, True)),
        ((SCHED, "--enabled", "--json"), (SCHED, True, None, True)),
        ((SCHED, "--json", '{"enabled": false}'), (SCHED, True, '{"enabled": false}', None)),
        ((SCHED, "--json", " {}"), (SCHED, True, " {}", None)),
        ((SCHED, "--json", "-"), (SCHED, True, "-", None)),
        ((SCHED, '--json={"name": "x"}'), (SCHED, True, '{"name": "x"}', None)),
        ((SCHED, "--body", "{}", "--disabled"), (SCHED, False, "{}", False)),
        (("--json", "--disabled", SCHED), (SCHED, True, None, False)),
    ],
    ids=[
        "json-before-the-id",
        "json-last",
        "json-object",
        "json-object-after-spaces",
        "json-stdin",
        "json-equals",
        "body-without-json",
        "json-before-a-flag",
    ],
)
def test_json_is_a_flag_and_takes_only_a_body_after_it(
    argv: tuple[str, ...], parsed: tuple[str, bool, str | None, bool | None]
) -> None:
    assert parse(*argv) == parsed


def test_an_argument_after_json_that_is_not_a_body_is_left_alone() -> None:
    assert separate_json_body(["patch", "--json", SCHED, "--name", "{x}"]) == [
        "patch",
        "--json",
        SCHED,
        "--name",
        "{x}",
    ]


def test_get_prints_key_colon_value_lines_with_values_aligned() -> None:
    shown = render_fields(
        {
            "name": "weekday triage",
            "scheduled_session_id": SCHED,
            "prompt": "line one\nline two",
            "tags": ["a", "b"],
            "playbook": None,
            "enabled": True,
        }
    )

    assert shown.splitlines() == [
        "name:                 weekday triage",
        f"scheduled_session_id: {SCHED}",
        'prompt:               "line one\\nline two"',
        'tags:                 ["a", "b"]',
        "playbook:             -",
        "enabled:              true",
    ]


def test_launcher_is_a_field_flag_of_create_and_patch() -> None:
    created = build_parser().parse_args(
        ["schedules", "create", "--name", "n", "--prompt", "p", "--launcher", "devin"]
    )
    assert create_body(created)["launcher"] == "devin"
    patched = build_parser().parse_args(["schedules", "patch", SCHED, "--launcher", "night"])
    assert request_body(patched, run_as_key="run_as_user_id") == {"launcher": "night"}


def test_a_history_line_shows_each_change_as_before_and_after() -> None:
    entry = {
        "at": "2026-11-23T12:00:00+00:00",
        "by": None,
        "action": "updated",
        "changes": {"tags": [None, ["a", "b"]], "prompt": ["two\nlines", "one"]},
    }
    assert history_row(entry) == [
        "2026-11-23T12:00:00Z",
        "-",
        "updated",
        'tags: - -> ["a", "b"]; prompt: two lines -> one',
    ]
