"""Screenshots of the dashboard for the README: `python docs/screenshots.py`.

Starts a real `agentcron serve` on a loopback port in a temporary directory, gives it a few
schedules and runs through the API, then signs in with headless Chromium (Debian's
`/usr/bin/chromium`, driven by Playwright) and saves the schedules, a schedule, runs and
health pages at desktop (1280 px) and phone (390 px) width in `docs/screenshots/`.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
TOKEN = "cog_screenshot_token"
ORG = "org-local"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = {"desktop": 1280, "phone": 390}
# A launcher that fails prompts mentioning "flaky" every other time, and succeeds otherwise.
LAUNCHER = (
    "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; "
    'case "$AGENTCRON_PROMPT" in *flaky*) [ $((n % 2)) = 0 ] && '
    '{ echo "session service answered HTTP 503: over capacity" >&2; exit 1; };; esac; '
    'sleep 0.$((n % 7)); echo "{\\"session_id\\": \\"sess-$AGENTCRON_RUN_ID\\", '
    '\\"url\\": \\"https://sessions.example/$AGENTCRON_RUN_ID\\"}"'
)
SCHEDULES = [
    (
        "weekday triage",
        "Triage the new GitHub issues and label them.",
        "0 9 * * MON-FRI",
        "Europe/Berlin",
    ),
    (
        "nightly report",
        "Summarise yesterday's merged pull requests (flaky).",
        "30 2 * * *",
        "America/New_York",
    ),
    ("dependency bumps", "Open pull requests for outdated dependencies.", "0 6 1,15 * *", "UTC"),
    ("on-call handover", "Write the on-call handover note.", "0 17 * * FRI", "Asia/Tokyo"),
    ("health check", "Check the staging deploy is green.", "*/15 * * * *", "UTC"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int) -> Path:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    config = directory / "config.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[logging]\nformat = "json"\n'
        f"[scheduler]\nmax_consecutive_failures = 0\n"
        f'[[orgs]]\nid = "{ORG}"\nname = "Local"\n'
        f'[[service_users]]\nid = "service-user-admin"\norg = "{ORG}"\n'
        f'permissions = ["ManageOrgSchedules", "ImpersonateOrgSessions"]\n'
        f'token_sha256 = "{digest}"\n'
        f'[launcher]\ntype = "command"\ncommand = ["sh", "-c", {json.dumps(LAUNCHER)}]\n',
        encoding="utf-8",
    )
    return config


def call(base: str, method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        return json.loads(answer.read())


def wait_ready(base: str, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"agentcron exited with {daemon.returncode}")
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                base + "/readyz", timeout=2
            )
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("agentcron did not become ready in 20 s")


def fill(base: str) -> str:
    """Create the example schedules, pause one, run two a few times; the flaky one's id."""
    devin = f"/v3/organizations/{ORG}"
    ids: list[str] = []
    for name, prompt, frequency, zone in SCHEDULES:
        body = {"name": name, "prompt": prompt, "frequency": frequency, "timezone": zone}
        created = call(base, "POST", f"{devin}/schedules", body)
        ids.append(created["scheduled_session_id"])
    call(base, "PATCH", f"{devin}/schedules/{ids[3]}", {"enabled": False})
    for schedule_id in (ids[0], ids[1]) * 6 + (ids[1],) * 6:
        call(base, "POST", f"{devin}/schedules/{schedule_id}/trigger")
        time.sleep(0.15)  # one launch at a time: the launcher's counter file is not locked
    for schedule_id in ids[:2]:
        wait_finished(base, f"{devin}/schedules/{schedule_id}/runs")
    return ids[1]


def wait_finished(base: str, runs_path: str) -> None:
    """Wait (20 s at most) until no run of the schedule is still launching."""
    deadline = time.monotonic() + 20
    while any(run["status"] == "launching" for run in call(base, "GET", runs_path)["items"]):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs still launching after 20 s: {runs_path}")
        time.sleep(0.1)


def sign_in(browser: Browser, base: str, width: int) -> Page:
    page = browser.new_page(
        viewport={"width": width, "height": 900}, timezone_id="Europe/Berlin", locale="en-GB"
    )
    page.goto(base + "/ui/sign-in")
    page.get_by_label("Service-user token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/schedules")
    return page


def shoot(browser: Browser, base: str, schedule_id: str) -> list[Path]:
    pages = {
        "schedules": f"/ui/orgs/{ORG}/schedules",
        "schedule": f"/ui/orgs/{ORG}/schedules/{schedule_id}",
        "runs": f"/ui/orgs/{ORG}/runs?failures=first",
        "health": f"/ui/orgs/{ORG}/health",
    }
    saved = []
    for kind, width in WIDTHS.items():
        page = sign_in(browser, base, width)
        for name, path in pages.items():
            page.goto(base + path)
            target = OUT / f"{name}-{kind}.png"
            page.screenshot(path=str(target), full_page=True)
            saved.append(target)
        page.close()
    return saved


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="agentcron-shots-") as workdir:
        port = free_port()
        config = write_config(Path(workdir), port)
        base = f"http://127.0.0.1:{port}"
        with (Path(workdir) / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "serve", "--config", str(config)],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            )
        try:
            wait_ready(base, daemon)
            flaky = fill(base)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for path in shoot(browser, base, flaky):
                    print(path.relative_to(REPO))
                browser.close()
        finally:
            daemon.terminate()
            daemon.wait(20)


if __name__ == "__main__":
    main()
