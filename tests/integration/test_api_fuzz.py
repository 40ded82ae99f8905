"""Random JSON bodies against create and PATCH: never a 5xx, and a refused PATCH changes nothing.

The bodies mix the real keys with unknown ones, and sensible values (cron expressions, zones,
datetimes near now) with wrong types, nulls, huge numbers and NUL characters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import ORG, ApiHarness

SCHEDULES = f"/v3/organizations/{ORG}/schedules"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NOW = datetime.now(UTC)

near_now = st.datetimes(
    min_value=(NOW - timedelta(days=2)).replace(tzinfo=None),
    max_value=(NOW + timedelta(days=400)).replace(tzinfo=None),
).map(datetime.isoformat)
optional_text = st.none() | st.text(max_size=10)
durations = st.none() | st.floats(min_value=0, max_value=1e6)

VALID = {
    "name": st.text(min_size=1, max_size=20),
    "prompt": st.text(min_size=1, max_size=20),
    "schedule_type": st.sampled_from(["recurring", "one_time"]),
    "frequency": st.sampled_from(["0 9 * * *", "@daily", "*/5 * * * *", "0 9 * * MON-FRI"]),
    "scheduled_at": near_now,
    "agent": st.sampled_from(["devin", "data_analyst", "advanced"]),
    "notify_on": st.sampled_from(["always", "failure", "never"]),
    "enabled": st.booleans(),
    "playbook_id": st.none(),
    "create_as_user_id": st.sampled_from([None, "user-alice"]),
    "run_as_user_id": st.sampled_from([None, "user-alice"]),
    "slack_channel_id": optional_text,
    "slack_team_id": optional_text,
    "tags": st.none() | st.lists(st.text(max_size=5), max_size=3),
    "bypass_approval": st.booleans(),
    "interval_count": st.integers(min_value=1, max_value=1000),
    "target_devin_id": optional_text,
    "platform": optional_text,
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    "start_at": st.none() | near_now,
    "end_at": st.none() | near_now,
    "overlap": st.sampled_from(["skip", "buffer_one", "allow"]),
    "catchup_window_s": durations,
    "jitter_s": durations,
}
"""Values each key accepts (though combinations may still be refused)."""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.sampled_from("\x00a@*/ -:T\u2603")),
    st.sampled_from(["0 0 30 2 *", "61 * * * *", "Nowhere/Else", "user-bob", "playbook-nope"]),
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _entries(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    # Two valid values for one wrong: most bodies are close to acceptable.
    return st.fixed_dictionaries({key: VALID[key] | VALID[key] | garbage for key in keys})


known = st.lists(st.sampled_from(sorted(VALID)), max_size=4, unique=True).flatmap(_entries)
unknown = st.dictionaries(st.text(max_size=12), garbage, max_size=2)


@st.composite
def bodies(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with some keys dropped, then known keys set, sometimes unknown keys added."""
    body = {k: v for k, v in base.items() if draw(st.integers(0, 5)) > 0}
    body |= draw(known)
    if draw(st.integers(0, 4)) == 0:
        body |= draw(unknown)
    return body


CREATE_BASE = {"name": "n", "prompt": "p", "frequency": "0 9 * * *"}


def encode(body: dict[str, Any]) -> bytes:
    # allow_nan: NaN and Infinity are what a sloppy client sends; the server must refuse them.
    return json.dumps(body, allow_nan=True).encode()


async def send(api: ApiHarness, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    return await api.call(method, path, data=encode(body), headers=headers)


@FUZZ
@given(body=bodies(CREATE_BASE))
async def test_create_never_answers_5xx(api: ApiHarness, body: dict[str, Any]) -> None:
    status, answer = await send(api, "POST", SCHEDULES, body)
    event(f"status {status}")
    assert status in (200, 403, 404, 422), answer
    if status == 200:
        schedule_id = answer["scheduled_session_id"]
        assert (await api.call("GET", f"{SCHEDULES}/{schedule_id}")) == (200, answer)
    elif status == 422:
        assert isinstance(answer["detail"], list) and answer["detail"]
    else:
        assert isinstance(answer["detail"], str)


@FUZZ
@given(body=bodies({}), one_time=st.booleans())
async def test_patch_never_answers_5xx_and_a_refusal_changes_nothing(
    api: ApiHarness, body: dict[str, Any], one_time: bool
) -> None:
    fields: dict[str, Any] = {"name": "n", "prompt": "p", "frequency": "0 9 * * *"}
    if one_time:
        scheduled_at = (NOW + timedelta(days=3)).isoformat()
        fields |= {"schedule_type": "one_time", "scheduled_at": scheduled_at, "frequency": None}
    status, created = await api.call("POST", SCHEDULES, json=fields)
    assert status == 200
    path = f"{SCHEDULES}/{created['scheduled_session_id']}"
    before = await api.store.get_schedule(created["scheduled_session_id"])
    status, answer = await send(api, "PATCH", path, body)
    event(f"status {status}")
    assert status in (200, 403, 404, 422), answer
    if status == 200:
        assert (await api.call("GET", path)) == (200, answer)
    else:
        assert (await api.call("GET", path)) == (200, created)
        assert await api.store.get_schedule(created["scheduled_session_id"]) == before
