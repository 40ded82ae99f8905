"""Named launchers in the configuration file: `[launchers.NAME]`, the defaults that name
them, the `devin` and `agentscope` types' keys, and every reference checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from tests.unit.test_config import BASE, load_error, write_config

DEVIN_ENV = "AGENTCRON_TEST_DEVIN_TOKEN"


@pytest.fixture(autouse=True)
def _no_devin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVIN_ENV, raising=False)


def problems(error: ConfigError) -> dict[str, str]:
    return {problem.key: problem.message for problem in error.problems}


def test_named_launchers_sit_beside_the_default_and_are_picked_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEVIN_ENV, "cog_x")
    config = load_config(
        write_config(
            tmp_path,
            BASE
            + f"""
            [scheduler]
            default_launcher = "devin"
            [agentscope]
            launcher = "scope"
            [launchers.devin]
            type = "devin"
            token_env = "{DEVIN_ENV}"
            org_id = "org-devin"
            max_acu_limit = 5
            [launchers.scope]
            type = "agentscope"
            base_url = "http://127.0.0.1:8000/"
            [[schedules]]
            name = "on the default"
            prompt = "p"
            cron = "@daily"
            launcher = "default"
            """,
        )
    )
    assert list(config.named_launchers) == ["default", "devin", "scope"]
    devin = config.launchers["devin"]
    assert (devin.service_url, devin.org_id, devin.max_acu_limit) == (
        "https://api.devin.ai",
        "org-devin",
        5,
    )
    assert devin.token_secret == DEVIN_ENV
    scope = config.launchers["scope"]
    assert (scope.service_url, scope.token_secret) == ("http://127.0.0.1:8000", None)
    assert config.schedules[0].launcher == "default"


def test_every_reference_to_a_missing_launcher_is_named_with_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        BASE
        + """
        [scheduler]
        default_launcher = "nightly"
        [agentscope]
        launcher = "scope"
        [[schedules]]
        name = "report"
        prompt = "p"
        cron = "@daily"
        launcher = "devin"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    found = problems(caught.value)
    assert found["scheduler.default_launcher"].startswith("unknown launcher 'nightly'")
    assert found["agentscope.launcher"].startswith("unknown launcher 'scope'")
    assert found["schedules[0].launcher"] == "unknown launcher 'devin' (configured: default)"
    lines = {problem.key: problem.line for problem in caught.value.problems}
    assert (
        lines["schedules[0].launcher"]
        == path.read_text().splitlines().index('        launcher = "devin"') + 1
    )


def test_a_devin_launcher_needs_its_token_env_and_the_secret_set(tmp_path: Path) -> None:
    without = load_error(tmp_path, BASE + '[launchers.devin]\ntype = "devin"\n')
    assert "needs token_env" in problems(without)["launchers.devin.token_env"]

    unset = load_error(
        tmp_path, BASE + f'[launchers.devin]\ntype = "devin"\ntoken_env = "{DEVIN_ENV}"\n'
    )
    assert f"secret '{DEVIN_ENV}' is not set" in problems(unset)["launchers.devin.token_env"]


def test_the_default_launcher_can_be_devin_too(tmp_path: Path) -> None:
    error = load_error(tmp_path, BASE + '[launcher]\ntype = "devin"\n')
    assert "needs token_env" in problems(error)["launcher.token_env"]


def test_an_agentscope_launcher_needs_its_server(tmp_path: Path) -> None:
    error = load_error(tmp_path, BASE + '[launchers.scope]\ntype = "agentscope"\n')
    assert "needs base_url" in problems(error)["launchers.scope.base_url"]


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('[launchers.default]\ntype = "http"\n', "launchers.default", "is [launcher]"),
        ('[launchers."a b"]\ntype = "http"\n', "launchers.a b.[key]", "should match pattern"),
        ('[launchers.x]\ntype = "devin"\nmax_acu_limit = 0\n', "launchers.x.max_acu_limit", ""),
        ('[launchers.x]\ntype = "ssh"\n', "launchers.x.type", "'agentscope'"),
    ],
)
def test_bad_launcher_tables_are_config_errors(
    tmp_path: Path, table: str, key: str, message: str
) -> None:
    found = problems(load_error(tmp_path, BASE + table))
    assert any(k.startswith(key) and message in m for k, m in found.items()), found
