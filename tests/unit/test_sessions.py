"""Devin v3 and AgentScope 2.x session statuses, as the follow loop reads them
(`daemon.sessions.devin_state`, `agentscope_state`)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sessions import PollFailed, SessionState, agentscope_state, devin_state

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def outcome(state: SessionState) -> str:
    if not state.terminal:
        return RUNNING
    return SUCCEEDED if state.succeeded else FAILED


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        ("new", None, RUNNING),
        ("creating", None, RUNNING),
        ("claimed", None, RUNNING),
        ("resuming", None, RUNNING),
        ("running", None, RUNNING),
        ("running", "working", RUNNING),
        ("running", "finished", SUCCEEDED),
        ("running", "waiting_for_user", FAILED),
        ("running", "waiting_for_approval", FAILED),
        ("exit", None, SUCCEEDED),
        ("error", None, FAILED),
        ("suspended", "inactivity", FAILED),
        ("suspended", "user_request", FAILED),
        ("suspended", "out_of_credits", FAILED),
        ("suspended", "usage_limit_exceeded", FAILED),
        ("suspended", "error", FAILED),
        ("suspended", None, FAILED),
        ("some_future_status", None, RUNNING),  # the follow timeout bounds it
    ],
)
def test_devin_statuses_map_to_run_outcomes(status: str, detail: str | None, expected: str) -> None:
    state = devin_state({"session_id": "devin-1", "status": status, "status_detail": detail})
    assert outcome(state) == expected
    assert state.status == (f"{status}/{detail}" if detail else status)
    if expected == FAILED:
        assert state.message


@pytest.mark.parametrize("body", [{}, {"status": ""}, {"status": 3}, [], "running", None])
def test_an_answer_without_a_status_cannot_be_followed(body: Any) -> None:
    with pytest.raises(PollFailed) as caught:
        devin_state(body)
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("running", RUNNING),
        ("idle", SUCCEEDED),
        ("awaiting_permission", FAILED),
        ("awaiting_external_result", FAILED),
        ("something_newer", RUNNING),  # unknown: the follow timeout bounds it
    ],
)
def test_agentscope_statuses_map_to_run_outcomes(status: str, expected: str) -> None:
    state = agentscope_state({"session_id": "s-1", "status": status})
    assert (outcome(state), state.status) == (expected, status)


@pytest.mark.parametrize("body", [{}, {"status": ""}, {"status": 3}, [], None])
def test_an_agentscope_answer_without_a_status_cannot_be_followed(body: Any) -> None:
    with pytest.raises(PollFailed) as raised:
        agentscope_state(body)
    assert not raised.value.transient
