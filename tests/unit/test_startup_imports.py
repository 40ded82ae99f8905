"""What `agentcron serve` imports before it serves: nothing that only other commands, a
disabled façade, a prompt template, a dashboard page or a notification needs.

Each is imported when first used; a module-level import added back would cost every start
(`python -X importtime`, see bench/README.md). Checked in a fresh interpreter, since this
test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVE_IMPORTS = "import daemon.cli, daemon.service, api.ui.routes"
"""What serving imports with the default configuration (dashboard on, AgentScope off)."""
DEFERRED = {
    "daemon.operator_cli": "the operator CLI, for its own commands",
    "importlib.metadata": "the package metadata, for --version (pydantic may still load it)",
    "jinja2": "templates: the first prompt template or dashboard page",
    "aiohttp_jinja2": "no longer used by the dashboard",
    "api.agentscope": "the AgentScope façade, when enabled",
    "api.agentscope_models": "the AgentScope façade's models, when enabled",
    "daemon.notify_slack": "the Slack client, at the first Slack message",
    "daemon.notify_webhook": "the webhook client, at the first webhook event",
    "psycopg": "the PostgreSQL driver, for a fleet's store",
    "storage.postgres_store": "the PostgreSQL store, for a fleet",
}


def modules_after(statement: str) -> set[str]:
    probe = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def serving() -> set[str]:
    return modules_after(SERVE_IMPORTS)


@pytest.mark.parametrize("module", sorted(set(DEFERRED) - {"importlib.metadata"}))
def test_serving_does_not_import(serving: set[str], module: str) -> None:
    assert module not in serving, f"{module} is imported at start-up: {DEFERRED[module]}"


def test_the_cli_alone_imports_neither_the_operator_cli_nor_the_metadata() -> None:
    loaded = modules_after("import daemon.cli")
    assert not {"daemon.operator_cli", "importlib.metadata", "urllib.request"} & loaded


def test_the_probe_sees_a_module_that_is_imported() -> None:
    assert "jinja2" in modules_after(
        SERVE_IMPORTS + ", storage.prompts; storage.prompts.check_template('x')"
    )
