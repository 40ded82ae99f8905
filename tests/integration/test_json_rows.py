"""The lists encoded from rows (`api.json_rows`) answer the bytes the wire models answer.

The reference is the encoder the lists used before: the domain values read by
`Store.list_schedules` / `list_runs`, rendered by the pydantic models, dumped by pydantic.
The schedules are made from the catalogue: every field of a type takes each of its
variants in turn (every enum member, null and set, unicode, floats pydantic and orjson
could write apart), so a field added to the catalogue is varied here without an edit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import typing
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from api import json_rows
from api.agentscope_models import ScheduleList, ScheduleRecord, SessionItem, SessionList
from api.devin_models import DevinSchedule, DevinScheduleList
from api.runs import RunList
from api.views import SLICE_BYTES, WHOLE_BYTES, send_encoded
from api.wire import run_json
from storage.catalogue import CATALOGUE, Entry
from storage.domain import Playbook, Run, Schedule
from storage.enums import RunStatus, RunTrigger, ScheduleType
from storage.store import Store
from tests.conftest import ADMIN_TOKEN, ApiHarness

ORG = "org-local"
OWNER = "user-alice"
NOW = datetime(2026, 12, 3, 7, 4, 5, 123456, tzinfo=UTC)
WHOLE_SECOND = datetime(2027, 1, 1, tzinfo=UTC)
SEEN = web.AppKey("seen", list[int])
TEXTS = ["plain", 'ünïcødé ✓ "quoted" \\ /\n\t\x01\x1f\u2028 😀 <&>', ""]
FLOATS = [0.0, 1.5, 1e-07, 1e16, 300.0, 0.1]
CHAT_MODELS = [
    {"type": "openai", "model": "gpt-x", "parameters": {"temperature": 0.2, "n": 1}},
    {"model": "m", "type": "t", "model_class": "Chat", "extra": [None, True, "ü", 2.5e-8]},
    {},
]
TIMINGS = [
    {"schedule_type": ScheduleType.RECURRING, "cron": "0 9 * * 1-5", "timezone": "UTC"},
    {"schedule_type": ScheduleType.RECURRING, "cron": "*/5 * * * *", "timezone": "Asia/Kolkata"},
    {"schedule_type": ScheduleType.ONE_TIME, "cron": None, "scheduled_at": WHOLE_SECOND},
    {"schedule_type": ScheduleType.RECURRING, "cron": None, "timezone": "Europe/Paris"},
]
"""Fields that move the next fire take values the store can compute a next fire from."""
FIXED = {"id", "org_id", "owner_user_id", "deleted_at", "playbook_id", *TIMINGS[0], *TIMINGS[2]}


def variants(entry: Entry) -> list[Any]:
    """The values a field of this type takes across the schedules."""
    kind = entry.value_type
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        found: list[Any] = list(kind)
    elif kind is str:
        found = list(TEXTS)
    elif kind is bool:
        found = [True, False]
    elif kind is int:
        found = [0, 7, 2**40]
    elif kind is float:
        found = list(FLOATS)
    elif kind is datetime:
        found = [NOW, WHOLE_SECOND, NOW - timedelta(days=400)]
    elif typing.get_origin(kind) is list:
        found = [[], ["triage", "ü😀"]]
    elif typing.get_origin(kind) is dict:
        found = list(CHAT_MODELS)
    else:
        raise AssertionError(f"no variants for {entry.name}: {kind!r}; add them here")
    return [None, *found] if entry.nullable else found


COUNT = 2 * max(len(variants(entry)) for entry in CATALOGUE if entry.name not in FIXED)


def varied_schedule(index: int, playbook_ids: list[str | None]) -> Schedule:
    fields = {
        entry.name: values[index % len(values)]
        for entry in CATALOGUE
        if entry.name not in FIXED and (values := variants(entry))
    }
    fields |= TIMINGS[index % len(TIMINGS)]
    fields["playbook_id"] = playbook_ids[index % len(playbook_ids)]
    return Schedule(org_id=ORG, owner_user_id=OWNER, **fields)


async def seed(store: Store) -> list[Schedule]:
    """`COUNT` varied schedules of OWNER (one disabled with a next fire), one of another
    owner, one deleted; playbooks live, deleted and missing."""
    live = await store.create_playbook(
        Playbook(org_id=ORG, title="Ünïcode ✓", body="b", created_at=NOW, updated_at=NOW)
    )
    gone = await store.create_playbook(
        Playbook(org_id=ORG, title="gone", body="b", created_at=NOW, updated_at=NOW)
    )
    await store.update_playbook(gone.id, {"deleted_at": NOW})
    playbook_ids = [None, live.id, gone.id, "playbook-missing"]
    made = [
        await store.create_schedule(varied_schedule(i, playbook_ids), now=NOW) for i in range(COUNT)
    ]
    # Stored by no path today, answered null all the same: a next fire kept while disabled.
    paused = next(schedule for schedule in made if not schedule.enabled)
    await store.update_schedule(paused.id, {"next_run_at": WHOLE_SECOND}, now=NOW)
    other = dataclasses.replace(varied_schedule(1, playbook_ids), owner_user_id="user-bob")
    await store.create_schedule(other, now=NOW)
    deleted = await store.create_schedule(varied_schedule(2, playbook_ids), now=NOW)
    await store.delete_schedule(deleted.id, now=NOW)
    return made


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


async def test_the_varied_schedules_take_every_variant_of_every_field(store: Store) -> None:
    made = await seed(store)
    for entry in CATALOGUE:
        if entry.name not in FIXED and entry.name != "next_run_at":  # next_run_at: computed
            seen = {_json(getattr(schedule, entry.name)) for schedule in made}
            assert seen == {_json(value) for value in variants(entry)}, entry.name
    assert {schedule.next_run_at is None for schedule in made} == {True, False}


@pytest.mark.parametrize("per_call", [1, 3, json_rows.ITEMS_PER_CALL])
async def test_the_agentscope_list_is_byte_for_byte_the_models_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch, per_call: int
) -> None:
    monkeypatch.setattr(json_rows, "ITEMS_PER_CALL", per_call)
    await seed(store)
    page = await store.list_schedules(ORG, limit=1000, offset=0, owner_user_id=OWNER)
    records = [ScheduleRecord.of(schedule) for schedule in page.items]
    expected = ScheduleList(schedules=records, total=len(records)).model_dump_json().encode()
    encoded = await store.encode_schedules(
        ORG,
        json_rows.AGENTSCOPE_SCHEDULE_FIELDS,
        json_rows.agentscope_schedule_list,
        limit=None,
        owner_user_id=OWNER,
    )
    assert len(page.items) == COUNT
    assert encoded == expected


@pytest.mark.parametrize(
    ("limit", "offset", "agents"),
    [(100, 0, None), (7, 0, None), (7, 7, None), (7, 14, None), (5, 1000, None), (100, 0, "d")],
)
async def test_a_devin_schedule_page_is_byte_for_byte_the_models_answer(
    store: Store, limit: int, offset: int, agents: str | None
) -> None:
    await seed(store)
    visible = None if agents is None else frozenset({"devin", "data_analyst", "advanced"})
    page = await store.list_schedules(ORG, limit=limit, offset=offset, agents=visible)
    titles = await store.playbook_titles(s.playbook_id for s in page.items if s.playbook_id)
    items = [DevinSchedule.of(schedule, titles) for schedule in page.items]
    expected = DevinScheduleList.of(items, offset=offset, total=page.total).model_dump_json()
    encoded = await store.encode_schedules(
        ORG,
        json_rows.DEVIN_SCHEDULE_FIELDS,
        json_rows.devin_schedule_page(offset),
        limit=limit,
        offset=offset,
        agents=visible,
    )
    assert encoded == expected.encode()


async def test_one_devin_schedule_is_byte_for_byte_the_models_answer(store: Store) -> None:
    made = await seed(store)
    deleted = await store.delete_schedule(made[0].id, now=NOW)
    paused = await store.get_schedule(next(s.id for s in made if not s.enabled))
    titles = await store.playbook_titles(s.playbook_id for s in made if s.playbook_id)
    assert titles and paused.next_run_at is not None
    for schedule in [*made[1:], deleted, paused]:
        for known in (titles, {}):
            expected = DevinSchedule.of(schedule, known).model_dump_json().encode()
            assert json_rows.devin_schedule(schedule, known) == expected, schedule.name


async def test_one_agentscope_schedule_is_byte_for_byte_the_models_answer(store: Store) -> None:
    made = await seed(store)
    deleted = await store.delete_schedule(made[0].id, now=NOW)
    for schedule in [*made[1:], deleted]:
        expected = ScheduleRecord.of(schedule).model_dump_json().encode()
        assert json_rows.agentscope_schedule(schedule) == expected, schedule.name


async def test_the_agentscope_answer_of_one_schedule_is_the_models(api: ApiHarness) -> None:
    body = {
        "name": "n",
        "agent_id": "a",
        "cron_expression": "0 9 * * 1-5",
        "timezone": "Asia/Kolkata",
    }
    headers = {"X-User-ID": OWNER}
    async with api.http.post(api.url("/schedule/"), json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        item = f"/schedule/{(await response.json())['schedule_id']}"
    for method, sent in (("GET", None), ("PATCH", {"description": "ü ✓"})):
        async with api.http.request(method, api.url(item), json=sent, headers=headers) as response:
            answer = await response.read()
            assert response.status == 200, answer
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        schedule = await api.store.get_schedule(orjson.loads(answer)["id"])
        assert answer == ScheduleRecord.of(schedule).model_dump_json().encode()


async def test_the_devin_answer_of_one_schedule_is_the_models(api: ApiHarness) -> None:
    body = {"name": "n", "prompt": "p", "frequency": "0 9 * * 1-5", "tags": ["ü"]}
    path = f"/v3/organizations/{ORG}/schedules"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with api.http.post(api.url(path), json=body, headers=headers) as response:
        created = await response.read()
        assert response.status == 200, created
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    schedule = await api.store.get_schedule(orjson.loads(created)["scheduled_session_id"])
    assert created == DevinSchedule.of(schedule, {}).model_dump_json().encode()


async def test_a_chat_model_config_orjson_cannot_write_falls_back_to_the_same_bytes(
    store: Store,
) -> None:
    config = {"type": "t", "model": "m", "parameters": {"seed": 2**70, "n": -(2**65)}}
    await store.create_schedule(
        Schedule(
            org_id=ORG,
            owner_user_id=OWNER,
            name="n",
            prompt="p",
            chat_model_config=config,
            created_at=NOW,
            updated_at=NOW,
        ),
        now=NOW,
    )
    page = await store.list_schedules(ORG, limit=10, offset=0, owner_user_id=OWNER)
    expected = ScheduleList(schedules=[ScheduleRecord.of(page.items[0])], total=1)
    encoded = await store.encode_schedules(
        ORG,
        json_rows.AGENTSCOPE_SCHEDULE_FIELDS,
        json_rows.agentscope_schedule_list,
        limit=None,
        owner_user_id=OWNER,
    )
    assert encoded == expected.model_dump_json().encode()
    assert b"1180591620717411303424" in encoded


def varied_runs(schedule_id: str) -> list[Run]:
    """Every status and trigger, optional fields set and unset, several instants."""
    pairs = itertools.product(RunStatus, RunTrigger)
    return [
        Run(
            schedule_id=schedule_id,
            scheduled_for=NOW - timedelta(minutes=index // 2),  # instants shared by two
            trigger=trigger,
            started_at=WHOLE_SECOND - timedelta(seconds=index, microseconds=index % 3),
            status=status,
            identity=None if index % 2 else "user-ü",
            finished_at=None if index % 3 else NOW,
            session_id=None if index % 4 else f"session-{index}",
            session_url=None if index % 4 else f"https://example.test/s/{index}?q=ü",
            attempts=index % 5,
            error=None if index % 2 == 0 else TEXTS[1],
        )
        for index, (status, trigger) in enumerate(pairs)
    ]


async def stored_runs(store: Store) -> str:
    schedule = await store.create_schedule(
        Schedule(org_id=ORG, name="runs", prompt="p", created_at=NOW, updated_at=NOW), now=NOW
    )
    runs = varied_runs(schedule.id)
    claimed = await store.claim_runs(runs)
    assert len(claimed) == len({run.scheduled_for for run in runs})  # some instants twice
    return schedule.id


@pytest.mark.parametrize(("limit", "offset"), [(100, 0), (4, 0), (4, 8), (3, 1000)])
async def test_run_pages_are_byte_for_byte_the_models_answers(
    store: Store, limit: int, offset: int
) -> None:
    schedule_id = await stored_runs(store)
    page = await store.list_runs(schedule_id, limit=limit, offset=offset)
    devin = RunList.of([run_json(run) for run in page.items], offset=offset, total=page.total)
    sessions = SessionList(sessions=[SessionItem.of(run) for run in page.items], total=page.total)
    window = {"limit": limit, "offset": offset}
    encoded_devin = await store.encode_runs(
        schedule_id, json_rows.RUN_FIELDS, json_rows.run_page(offset), **window
    )
    encoded_sessions = await store.encode_runs(
        schedule_id, json_rows.session_fields(), json_rows.agentscope_session_list, **window
    )
    assert encoded_devin == devin.model_dump_json().encode()
    assert encoded_sessions == sessions.model_dump_json().encode()


async def test_an_unknown_field_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="not schedules fields: \\['nope'\\]"):
        await store.encode_schedules(ORG, ("id", "nope"), json_rows.devin_schedule_page(0), limit=1)
    with pytest.raises(ValueError, match="not runs fields"):
        await store.encode_runs("s", ("id", "nope"), json_rows.run_page(0), limit=1, offset=0)


async def test_a_long_list_is_sent_in_slices_as_the_same_bytes(api: ApiHarness) -> None:
    prompt = "ü" * 4000 + "✓"  # 8 kB each: the answer is several slices long
    for index in range(2 * WHOLE_BYTES // 8000):
        schedule = Schedule(org_id=ORG, owner_user_id=OWNER, name=f"long-{index}", prompt=prompt,
                            created_at=NOW, updated_at=NOW)  # fmt: skip
        await api.store.create_schedule(schedule, now=NOW)
    page = await api.store.list_schedules(ORG, limit=1000, offset=0, owner_user_id=OWNER)
    records = [ScheduleRecord.of(schedule) for schedule in page.items]
    expected = ScheduleList(schedules=records, total=len(records)).model_dump_json().encode()
    headers = {"X-User-ID": OWNER}
    async with api.http.get(api.url("/schedule/"), headers=headers) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["Content-Length"] == str(len(expected))
    assert len(expected) > WHOLE_BYTES + 2 * SLICE_BYTES
    assert body == expected


async def test_a_long_answer_lets_the_loop_run_between_its_slices() -> None:
    """Each slice goes out in its own step of the loop, so timers and other requests run
    between them even when the socket takes every slice at once."""
    slices = 16
    body = b"[" + b"0," * (slices * SLICE_BYTES // 2 - 1) + b"0]"
    turns = 0

    async def count_turns(done: asyncio.Event) -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    async def handler(request: web.Request) -> web.StreamResponse:
        done = asyncio.Event()
        counter = asyncio.create_task(count_turns(done))
        await asyncio.sleep(0)  # the counter is running
        started = turns
        try:
            return await send_encoded(request, body)
        finally:
            request.app[SEEN].append(turns - started)
            done.set()
            await counter

    app = web.Application()
    app[SEEN] = []
    app.router.add_get("/long", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/long"
        async with aiohttp.ClientSession() as http, http.get(url) as got:
            assert await got.read() == body
        assert len(body) > (slices - 1) * SLICE_BYTES
        assert app[SEEN][0] >= slices - 1
    finally:
        await runner.cleanup()


async def test_a_client_gone_before_a_long_answer_is_sent_is_not_an_error() -> None:
    """The daemon lets a handler finish after its client left; sending then is no error."""
    gone, outcome = asyncio.Event(), asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        await gone.wait()
        try:
            outcome.set_result(await send_encoded(request, b"[" + b"0," * WHOLE_BYTES + b"0]"))
        except Exception as exc:
            outcome.set_exception(exc)
        return web.Response()

    app = web.Application()
    app.router.add_get("/long", handler)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /long HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # the server sees the connection closed
        gone.set()
        async with asyncio.timeout(5):
            response = await outcome
        assert not response.prepared or response.status == 200
    finally:
        await runner.cleanup()
