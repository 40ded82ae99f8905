"""The dashboard's side of optimistic concurrency and the edit history, over real HTTP: the
edit form carries the version it showed, a form left open while the schedule changed is
refused (412) with the visitor's input kept and nothing changed, and a schedule's page lists
its edit history."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from tests.conftest import ApiHarness
from tests.integration.test_dashboard import (
    DEVIN,
    FORM,
    UI,
    Visitor,
    clock,
    create,
    signed_in,
    snapshot,
    ui,
    visitor,
)

__all__ = ["clock", "signed_in", "ui", "visitor"]  # the fixtures these tests use


def shown_version(visitor: Visitor) -> str:
    found = re.search(r'name="version" value="(\d+)"', visitor.page)
    assert found, "no version in the edit form"
    return found.group(1)


async def test_a_form_left_open_while_the_schedule_changed_is_refused_keeping_the_input(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    assert shown_version(signed_in) == "1"
    # Meanwhile, someone else edits it through the API.
    status, _ = await ui.call("PATCH", f"{DEVIN}/schedules/{schedule_id}", json={"prompt": "new"})
    assert status == 200
    before = await snapshot(ui.store)
    edit = FORM | {"name": "my rename", "prompt": "my prompt", "version": "1"}
    assert await signed_in.post(page, edit) == 412
    text = signed_in.text()
    assert "Not saved: this schedule was changed since you opened the form" in text
    assert "by service-admin" in text
    assert 'value="my rename"' in signed_in.page and ">my prompt</textarea>" in signed_in.page
    assert shown_version(signed_in) == "2"  # saving again applies the kept input
    assert await snapshot(ui.store) == before

    assert await signed_in.post(page, edit | {"version": "2"}) == 200
    stored = await ui.store.get_schedule(schedule_id)
    assert (stored.name, stored.prompt, stored.version) == ("my rename", "my prompt", 3)


async def test_a_form_of_the_current_version_saves(ui: ApiHarness, signed_in: Visitor) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    assert await signed_in.post(page, FORM | {"version": shown_version(signed_in)}) == 200
    assert "Changes saved." in signed_in.text()


async def test_a_version_that_is_not_a_number_is_refused(
    ui: ApiHarness, signed_in: Visitor
) -> None:
    schedule_id = (await create(ui))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    before = await snapshot(ui.store)
    assert await signed_in.post(page, FORM | {"version": "v1"}) == 400
    assert await snapshot(ui.store) == before


async def test_the_schedule_page_lists_its_edit_history(ui: ApiHarness, signed_in: Visitor) -> None:
    schedule_id = (await create(ui, name="nightly"))["scheduled_session_id"]
    page = f"{UI}/schedules/{schedule_id}"
    await signed_in.get(page)
    await signed_in.post(page, FORM | {"name": "renamed", "version": shown_version(signed_in)})
    await signed_in.get(page)
    history = signed_in.page.split('id="edits-title"')[1].split("</section>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)[1:]
    assert len(rows) == 2
    newest = " ".join(re.sub(r"<[^>]+>", " ", rows[0]).split())
    assert "service-admin updated" in newest and "name : nightly → renamed" in newest
    oldest = " ".join(re.sub(r"<[^>]+>", " ", rows[1]).split())
    assert "created" in oldest and "slack_channel_id" not in oldest
    assert "enabled : — → true" in oldest


async def test_the_message_names_the_engine_when_it_changed_the_schedule(
    ui: ApiHarness, signed_in: Visitor, clock: Any
) -> None:
    at = (clock.now() + timedelta(hours=1)).isoformat()
    created = await create(ui, schedule_type="one_time", scheduled_at=at, frequency=None)
    page = f"{UI}/schedules/{created['scheduled_session_id']}"
    await signed_in.get(page)
    stored = await ui.store.get_schedule(created["scheduled_session_id"])
    assert stored.next_run_at is not None
    assert await ui.store.disable_if_due(stored.id, stored.next_run_at, now=clock.now())
    edit = FORM | {"frequency": "", "version": shown_version(signed_in)}
    assert await signed_in.post(page, edit) == 412
    assert "changed since you opened the form (by engine;" in signed_in.text()
