"""Settings that are valid but probably not what was meant, said before the daemon serves.

`config_warnings` is the one list of such checks: `agentcron serve` logs each warning as a
structlog event at start-up (`log_config_warnings`), and `agentcron check-config` prints it
as a line. Neither refuses the file: a warning never stops the daemon.

- `agentscope_unauthenticated`: the AgentScope façade trusts `X-User-ID` as given; served
  without `require_token` on an address other than loopback, anyone who reaches the port
  can act as any configured user.
- `launcher_token_missing`: an `http` launcher's `token_env` (or an `agentscope` launcher's,
  when written) names a secret that is in neither the environment nor
  `$CREDENTIALS_DIRECTORY`, so sessions would be requested without an `Authorization`
  header (or, if it cannot be read, not at all). One warning per launcher. (A `devin`
  launcher without its token is a config error instead.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from daemon.config import Config
from daemon.secrets import read_secret

log = structlog.get_logger("agentcron.config")


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """One warning: its log event name, a line for people, and the event's fields."""

    event: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)


def config_warnings(config: Config) -> list[ConfigWarning]:
    """Every warning `config` deserves, in a stable order; empty when all looks intended."""
    return [*_agentscope_unauthenticated(config), *_launcher_token_missing(config)]


def log_config_warnings(config: Config) -> None:
    """Log each of `config`'s warnings as its event, with the line for people as `reason`."""
    for warning in config_warnings(config):
        log.warning(warning.event, **warning.fields, reason=warning.message)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) only accepts connections from this machine.

    Any other name is not known to be loopback (it may resolve to a public address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _agentscope_unauthenticated(config: Config) -> Iterator[ConfigWarning]:
    agentscope, listen = config.agentscope, config.server.listen
    if not agentscope.enabled or agentscope.require_token or is_loopback(config.server.host):
        return
    yield ConfigWarning(
        "agentscope_unauthenticated",
        f"[agentscope] is enabled without require_token on {listen}, which is not a loopback "
        "address: anyone who can reach it can act as any configured user by sending X-User-ID "
        "(set require_token = true, or let only a proxy that sets X-User-ID reach the port)",
        {"listen": listen},
    )


def _launcher_token_missing(config: Config) -> Iterator[ConfigWarning]:
    for launcher_name, launcher in config.named_launchers.items():
        key = "launcher" if launcher_name == "default" else f"launchers.{launcher_name}"
        name = launcher.token_secret
        if launcher.type in ("http", "agentscope") and name is not None:
            yield from _token_missing(key, name)


def _token_missing(key: str, name: str) -> Iterator[ConfigWarning]:
    try:
        if read_secret(name):
            return
        problem = (
            f"is not set (no environment variable {name}, no file $CREDENTIALS_DIRECTORY/{name})"
            ": sessions will be requested without an Authorization header"
        )
    except (OSError, ValueError) as error:
        problem = f"cannot be read ({error}): launches will fail until it can"
    yield ConfigWarning(
        "launcher_token_missing",
        f"{key}.token_env: the secret {name} {problem}",
        {"token_env": name},
    )
