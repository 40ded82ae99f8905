"""How long the dashboard's schedules page takes with 10,000 schedules in the org.

Run: python bench/ui.py [--schedules 10000] [--requests 50]

Seeds a database on the real disk (`common.seed`, the store's tables) with 10,000 cron
schedules of one org, a mix of expressions and zones, a quarter of them paused and one in ten
failing, and three finished runs each (30,000 runs). Serves the real app
(`api.app.create_app` with the dashboard) on loopback in this process, signs in through the
form, then asks for the schedules page `--requests` times: pages spread over the whole list
and over each state filter. Prints p50/p99 of the time on the server (a middleware around the
whole app, from the request reaching it to its answer being ready) and of the round trip, and
the same for the API's JSON list of the same 50 schedules (`GET .../schedules?limit=50`) as a
reference: the page also describes each cron in words, computes the next three fires and
reads the last run of each of its 50 schedules.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from common import ORG, SERVICE_USER, TOKEN, Workdir, bench_schedule, header, ms, percentile, seed

from api.app import create_app
from api.keys import ApiSettings
from storage.clock import SystemClock
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.identities import Directory, DirectoryRef, Org, ServiceUser, token_sha256
from storage.store import Store

CRONS = [
    ("0 9 * * MON-FRI", "Europe/Berlin"),
    ("*/15 * * * *", "UTC"),
    ("30 2 * * *", "America/New_York"),
    ("0 6 1,15 * *", "Asia/Tokyo"),
    ("0 17 * * FRI", "Australia/Sydney"),
]
PAGE = 50
NOW = datetime.now(UTC).replace(microsecond=0)


class NoEngine:
    async def changed(self, schedule: Schedule) -> None:
        return None

    async def trigger(self, schedule: Schedule, *, by: str) -> Run:
        raise NotImplementedError


class Serving:
    state = "serving"


def schedules(count: int) -> list[Schedule]:
    made = []
    for index in range(count):
        cron, zone = CRONS[index % len(CRONS)]
        made.append(
            bench_schedule(
                f"schedule {index:05}",
                now=NOW,
                cron=cron,
                timezone=zone,
                enabled=index % 4 != 0,
                paused_reason=None if index % 4 else "paused by hand",
                consecutive_failures=2 if index % 10 == 1 else 0,
            )
        )
    return made


def seed_runs(db_path: Path, made: Sequence[Schedule], per_schedule: int) -> None:
    """Finished runs of every schedule, an hour apart, with one Core executemany."""
    from sqlalchemy import create_engine, insert

    from storage.tables import RUNS

    rows = []
    for schedule in made:
        for hour in range(1, per_schedule + 1):
            at = NOW - timedelta(hours=hour)
            failed = schedule.consecutive_failures and hour == 1
            run = Run(
                schedule_id=schedule.id,
                scheduled_for=at,
                trigger=RunTrigger.CRON,
                started_at=at,
                status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
                finished_at=at + timedelta(seconds=2),
                attempts=1,
                error="session service answered HTTP 503" if failed else None,
            )
            rows.append({name: getattr(run, name) for name in run.__dataclass_fields__})
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(RUNS), rows[start : start + 5000])
    engine.dispose()


def directory() -> DirectoryRef:
    permissions = frozenset({"ManageOrgSchedules"})
    admin = ServiceUser(SERVICE_USER, ORG, permissions, token_sha256(TOKEN))
    return DirectoryRef(Directory.build([Org(ORG, "Bench")], [], [admin]))


def server_timer(seconds: list[float]) -> Any:
    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            seconds.append(time.perf_counter() - began)

    return timed


async def sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/ui/sign-in") as answer:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await answer.text())
    assert token is not None
    form = {"token": TOKEN, "csrf_token": token.group(1)}
    async with http.post(f"{base}/ui/sign-in", data=form) as answer:
        assert answer.status == 200 and "Schedules" in await answer.text()


def page_paths(count: int, requests: int) -> list[tuple[str, str]]:
    """(dashboard path, API path) pairs over the whole list and every state filter."""
    last = (count - 1) // PAGE + 1
    pages = [("all", 1), ("all", last // 2), ("all", last), ("enabled", last // 3),
             ("paused", 1), ("failing", 3)]  # fmt: skip
    pairs = []
    for index in range(requests):
        state, number = pages[index % len(pages)]
        ui = f"/ui/orgs/{ORG}/schedules?state={state}&page={max(number, 1)}"
        api = f"/v3/organizations/{ORG}/schedules?limit={PAGE}&offset={(max(number, 1) - 1) * PAGE}"
        pairs.append((ui, api))
    return pairs


async def measure(
    http: aiohttp.ClientSession, base: str, paths: list[str], server: list[float], **kw: Any
) -> tuple[list[float], list[float]]:
    for path in paths[:5]:  # warm the caches (templates, cron words, SQLite pages)
        async with http.get(base + path, **kw) as answer:
            await answer.read()
    server.clear()
    trips = []
    for path in paths:
        began = time.perf_counter()
        async with http.get(base + path, **kw) as answer:
            body = await answer.read()
            assert answer.status == 200, (path, answer.status, body[:200])
        trips.append(time.perf_counter() - began)
    return list(server), trips


def line(label: str, server: list[float], trips: list[float]) -> str:
    return (
        f"   {label:<34} server p50 {ms(percentile(server, 0.5))}  p99 "
        f"{ms(percentile(server, 0.99))}   round trip p50 {ms(percentile(trips, 0.5))}  "
        f"p99 {ms(percentile(trips, 0.99))}   ({len(trips)} requests)"
    )


def fill(count: int, db_path: Path) -> None:
    made = schedules(count)
    seconds = seed(db_path, made, now=NOW)
    seed_runs(db_path, made, per_schedule=3)
    print(f"   seeded {count:,} schedules and {count * 3:,} runs in {seconds:.1f} s")


async def run(count: int, requests: int, db_path: Path) -> None:
    store = await Store.open(db_path)
    server: list[float] = []
    app = create_app(
        store=store,
        events=NoEngine(),
        directory=directory(),
        clock=SystemClock(),
        lifecycle=Serving(),
        settings=ApiSettings(ui_enabled=True),
    )
    app.middlewares.insert(0, server_timer(server))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await sign_in(http, base)
            pairs = page_paths(count, requests)
            page = await measure(http, base, [ui for ui, _ in pairs], server)
            bearer = {"headers": {"Authorization": f"Bearer {TOKEN}"}}
            listing = await measure(http, base, [api for _, api in pairs], server, **bearer)
        print(line("dashboard schedules page (HTML)", *page))
        print(line("reference: API list of 50 (JSON)", *listing))
    finally:
        await runner.cleanup()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    header(f"dashboard schedules page, {args.schedules:,} schedules in the org")
    with Workdir("ui") as directory_path:
        db_path = directory_path / "agentcron.db"
        fill(args.schedules, db_path)
        asyncio.run(run(args.schedules, args.requests, db_path))


if __name__ == "__main__":
    main()
