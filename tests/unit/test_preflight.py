"""Start-up warnings: valid settings that are probably a mistake, found by `config_warnings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.config import Config
from daemon.preflight import config_warnings, is_loopback, log_config_warnings

TOKEN = "AGENTCRON_TEST_SESSION_TOKEN"
ORGS = [{"id": "org-local", "name": "Local"}]
COMMAND = {"type": "command", "command": ["true"]}


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv(TOKEN, raising=False)


def config(**sections: Any) -> Config:
    return Config.model_validate({"orgs": ORGS, "launcher": COMMAND, **sections})


def events(config: Config) -> list[str]:
    return [warning.event for warning in config_warnings(config)]


@pytest.mark.parametrize(
    ("listen", "agentscope", "warned"),
    [
        ("0.0.0.0:8787", {"enabled": True}, True),
        ("[::]:8787", {"enabled": True}, True),
        ("10.1.2.3:8787", {"enabled": True}, True),
        ("scheduler.internal:8787", {"enabled": True}, True),
        ("127.0.0.1:8787", {"enabled": True}, False),
        ("127.0.0.2:8787", {"enabled": True}, False),
        ("[::1]:8787", {"enabled": True}, False),
        ("localhost:8787", {"enabled": True}, False),
        ("0.0.0.0:8787", {"enabled": True, "require_token": True}, False),
        ("0.0.0.0:8787", {"enabled": False}, False),
    ],
)
def test_agentscope_without_a_token_off_loopback_is_a_warning(
    listen: str, agentscope: dict[str, bool], warned: bool
) -> None:
    found = events(config(server={"listen": listen}, agentscope=agentscope))

    assert found == (["agentscope_unauthenticated"] if warned else [])


def test_the_agentscope_warning_names_the_address_and_the_risk() -> None:
    (warning,) = config_warnings(
        config(server={"listen": "0.0.0.0:9"}, agentscope={"enabled": True})
    )

    assert warning.fields == {"listen": "0.0.0.0:9"}
    assert "0.0.0.0:9" in warning.message and "X-User-ID" in warning.message
    assert "require_token" in warning.message


def http_launcher() -> dict[str, str]:
    return {"type": "http", "url": "http://127.0.0.1:9/sessions", "token_env": TOKEN}


def test_an_http_launcher_whose_token_is_nowhere_is_a_warning() -> None:
    (warning,) = config_warnings(config(launcher=http_launcher()))

    assert (warning.event, warning.fields) == ("launcher_token_missing", {"token_env": TOKEN})
    assert TOKEN in warning.message and "without an Authorization header" in warning.message


def test_a_token_in_the_environment_or_a_credential_is_no_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN, "cog_from_env")
    from_env = events(config(launcher=http_launcher()))
    monkeypatch.delenv(TOKEN)
    (tmp_path / TOKEN).write_text("cog_from_credential\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    from_credential = events(config(launcher=http_launcher()))

    assert (from_env, from_credential) == ([], [])


def test_an_unreadable_credential_is_a_warning_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / TOKEN).write_bytes(b"\xff\xfe not UTF-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    (warning,) = config_warnings(config(launcher=http_launcher()))

    assert warning.event == "launcher_token_missing" and "cannot be read" in warning.message


def test_each_named_launcher_with_a_token_is_checked() -> None:
    named = config(
        launchers={
            "gateway": http_launcher(),
            "scope": {"type": "agentscope", "base_url": "http://127.0.0.1:8000"},
            "scope_token": {
                "type": "agentscope",
                "base_url": "http://127.0.0.1:8000",
                "token_env": TOKEN,
            },
        }
    )

    warnings = [w.message.split(":")[0] for w in config_warnings(named)]

    assert warnings == ["launchers.gateway.token_env", "launchers.scope_token.token_env"]


def test_a_command_launcher_needs_no_token() -> None:
    assert events(config(launcher=COMMAND | {"token_env": TOKEN})) == []


def test_both_warnings_are_logged_as_their_events() -> None:
    risky = config(server={"listen": "0.0.0.0:9"}, agentscope={"enabled": True})
    risky = risky.model_copy(update={"launcher": config(launcher=http_launcher()).launcher})

    with capture_logs() as logs:
        log_config_warnings(risky)

    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("agentscope_unauthenticated", "warning"),
        ("launcher_token_missing", "warning"),
    ]
    assert logs[1]["token_env"] == TOKEN and TOKEN in logs[1]["reason"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
