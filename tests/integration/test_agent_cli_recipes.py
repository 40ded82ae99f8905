"""The README's recipes for local agent CLIs, run through the `command` launcher by the real
engine, with stand-ins for `claude`, `codex` and `aider` (`tests/standins/`) first on PATH.

Each stand-in accepts the real tool's flags (an unknown one is a usage error) and prints
the real tool's output shape. Each recipe is taken from README.md as written there, so the
README cannot drift from what is tested.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.config import LauncherConfig
from daemon.launchers import CommandLauncher
from storage.domain import Run
from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.engine_harness import EngineHarness
from tests.session_service import SessionService

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def recipe(tool: str) -> LauncherConfig:
    """The `[launchers.TOOL]` table of the README's recipe for `tool`."""
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [text for text in blocks if text.startswith(f"[launchers.{tool}]")]
    return LauncherConfig.model_validate(tomllib.loads(block)["launchers"][tool])


@pytest.fixture
async def harness(
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[EngineHarness]:
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    started = EngineHarness(store, directory, service, http)
    await started.engine.start()
    yield started
    await started.engine.stop(0.5)


async def fire_on(harness: EngineHarness, tool: str, prompt: str, **fields: Any) -> Run:
    # The daemon runs commands in its config file's directory: here, the test's own.
    harness.engine.set_launcher(CommandLauncher(recipe(tool), workdir=Path.cwd()))
    schedule = await harness.create(prompt=prompt, **fields)
    await harness.engine.trigger(schedule, by="test")
    (run,) = await harness.finished_runs(schedule.id, 1, within=15.0)
    return run


async def test_claude_code_reports_its_session_id(harness: EngineHarness) -> None:
    run = await fire_on(harness, "claude", "Summarise yesterday's commits")

    assert (run.status, run.error) == (RunStatus.SUCCEEDED, None)
    assert run.session_id is not None and UUID.fullmatch(run.session_id)
    stored = await harness.store.get_schedule(run.schedule_id)
    assert (stored.consecutive_failures, stored.last_error_message) == (0, None)


async def test_a_failed_claude_code_run_is_a_failed_run(harness: EngineHarness) -> None:
    run = await fire_on(harness, "claude", "FAIL on purpose")

    assert run.status == RunStatus.FAILED
    assert run.error == "command exited with status 1"
    stored = await harness.store.get_schedule(run.schedule_id)
    assert (stored.consecutive_failures, stored.last_error_message) == (1, run.error)


async def test_codex_exec_succeeds_by_its_exit_status(harness: EngineHarness) -> None:
    run = await fire_on(harness, "codex", "Fix the flaky test")

    assert (run.status, run.error, run.session_id) == (RunStatus.SUCCEEDED, None, None)


async def test_aider_takes_the_prompt_as_its_message(harness: EngineHarness) -> None:
    prompt = "Rename 'x' to \"count\"; then $HOME `stays`"

    run = await fire_on(harness, "aider", prompt)

    assert (run.status, run.error, run.session_id) == (RunStatus.SUCCEEDED, None, None)
    history = Path.cwd() / ".aider.chat.history.md"
    assert history.read_text(encoding="utf-8") == f"#### {prompt}\n"  # the shell left it whole


async def test_aider_without_its_model_key_fails_with_its_stderr(
    harness: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")

    run = await fire_on(harness, "aider", "Add type hints")

    assert run.status == RunStatus.FAILED
    assert run.error == (
        "command exited with status 1: Missing OPENAI_API_KEY: set it in the environment or .env"
    )
