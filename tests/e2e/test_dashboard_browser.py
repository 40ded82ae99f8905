"""The dashboard in a real headless Chromium, against a real `agentcron serve`.

Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright. These tests are never
skipped: without the browser they fail saying how to install it (`.ci/run` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    DaemonProcess,
    base_config,
    fired_lines,
    free_port,
    wait_until,
    write_config,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard's browser tests need Debian's Chromium "
            "(apt-get install -y chromium); .ci/run installs it"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def daemon(tmp_path: Path, start_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return start_daemon(write_config(tmp_path / "config.toml", base_config(free_port())))


@pytest.fixture
def page(browser: Any, daemon: DaemonProcess) -> Iterator[Any]:
    """A tab in London time: local times differ from the server's UTC in summer, and from
    Berlin's always by one hour (both zones change at the same instants)."""
    context = browser.new_context(timezone_id="Europe/London", locale="en-GB")
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()


def sign_in(page: Any, daemon: DaemonProcess) -> None:
    page.goto(daemon.url("/ui/"))
    page.get_by_label("Service-user token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/orgs/org-local/schedules")


def test_a_schedule_from_sign_in_to_sign_out(page: Any, daemon: DaemonProcess) -> None:
    from playwright.sync_api import expect

    sign_in(page, daemon)
    expect(page.get_by_role("heading", name="Schedules", exact=True)).to_be_visible()

    # Create through the form; the cron is described while it is typed.
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Name").fill("weekday triage")
    page.get_by_label("Prompt").fill("Triage the new issues")
    page.get_by_label("Frequency (cron)").fill("0 9 * * MON-FRI")
    page.get_by_label("Timezone (IANA)").fill("Europe/Berlin")
    preview = page.locator("#cron-preview")
    expect(preview).to_contain_text("At 09:00, Monday through Friday (Europe/Berlin)")
    expect(preview.locator("time")).to_have_count(3)
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule 'weekday triage' created.")
    schedule_url = page.url
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("At 09:00, Monday through Friday")
    # Next fires, in the viewer's time: 09:00 in Berlin is 08:00 in London.
    fires = facts.locator("ul.fires time")
    expect(fires).to_have_count(3)
    for index in range(3):
        expect(fires.nth(index)).to_contain_text(re.compile(r"08:00 (GMT|BST)$"))

    # Trigger it and watch the run appear, then finish.
    page.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_role("status")).to_contain_text(re.compile(r"Run run-[0-9a-f]+ started"))
    history = page.locator("#history")
    expect(history.locator("td[data-label=Trigger]")).to_have_text(["manual"])
    expect(history.locator(".status").first).to_have_text("succeeded", timeout=WAIT_MS)
    wait_until(lambda: fired_lines(daemon.config_path.parent), "the run's launch")

    # Pause it: the schedules list says so, and the paused filter lists it.
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("weekday triage: paused.")
    page.goto(daemon.url("/ui/orgs/org-local/schedules?state=paused"))
    row = page.get_by_role("row", name=re.compile("weekday triage"))
    expect(row.locator(".status-paused")).to_be_visible()

    # Edit the cron: the live preview shows the new instants before saving.
    page.goto(schedule_url)
    page.get_by_label("Frequency (cron)").fill("30 7 * * *")
    expect(preview).to_contain_text("At 07:30 (Europe/Berlin)")
    expect(preview.locator("time").first).to_contain_text(re.compile(r"06:30 (GMT|BST)$"))
    page.get_by_label("Enabled").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Changes saved.")
    expect(facts).to_contain_text("At 07:30")

    # A cron that never fires: refused beside its field, nothing stored.
    page.get_by_label("Frequency (cron)").fill("0 0 30 2 *")
    expect(preview.locator(".preview-error")).to_contain_text("never fires")
    page.get_by_role("button", name="Save changes").click()
    error = page.locator("#frequency-error")
    expect(error).to_contain_text("never fires: day-of-month '30' never occurs in month '2'")
    expect(page.get_by_label("Frequency (cron)")).to_have_attribute("aria-invalid", "true")
    schedule_id = schedule_url.rsplit("/", 1)[1]
    status, stored = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}"))
    assert (status, stored["frequency"], stored["enabled"]) == (200, "30 7 * * *", True)

    # Sign out: the pages ask for a token again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(schedule_url)
    expect(page.get_by_label("Service-user token")).to_be_visible()


def test_pages_read_without_javascript_at_phone_width(browser: Any, daemon: DaemonProcess) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        sign_in(page, daemon)
        page.get_by_role("link", name="New schedule").click()
        page.get_by_label("Name").fill("no script")
        page.get_by_label("Prompt").fill("p")
        page.get_by_label("Frequency (cron)").fill("0 9 * * *")
        page.get_by_role("button", name="Create schedule").click()
        expect(page.locator("dl.facts")).to_contain_text("At 09:00")
        # Without the script, times stay in UTC as the server wrote them.
        expect(page.locator("ul.fires time").first).to_contain_text(re.compile(r" 09:00:00 UTC$"))
        page.get_by_role("link", name="Schedules", exact=True).first.click()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the schedules page is {width} px wide on a 390 px screen"
    finally:
        context.close()


def test_a_stale_edit_form_keeps_the_input_and_says_why(page: Any, daemon: DaemonProcess) -> None:
    from playwright.sync_api import expect

    body = {"name": "stale form", "prompt": "p", "frequency": "0 9 * * *"}
    status, created = daemon.call("POST", daemon.devin("/schedules"), body=body)
    assert status == 200
    schedule_id = created["scheduled_session_id"]
    sign_in(page, daemon)
    page.goto(daemon.url(f"/ui/orgs/org-local/schedules/{schedule_id}"))
    page.get_by_label("Prompt").fill("typed in the form")
    # Someone else saves first.
    edit = {"prompt": "api"}
    status, _ = daemon.call("PATCH", daemon.devin(f"/schedules/{schedule_id}"), body=edit)
    assert status == 200
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("changed since you opened the form")
    expect(page.get_by_label("Prompt")).to_have_value("typed in the form")
    expect(page.locator("table.edits tbody tr")).to_have_count(2)
    # Saving again applies the kept input over the newer version.
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Changes saved.")
    status, stored = daemon.call("GET", daemon.devin(f"/schedules/{schedule_id}"))
    assert (status, stored["prompt"]) == (200, "typed in the form")
