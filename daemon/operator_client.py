"""The HTTP client of `agentcron schedules ...`: one org's Devin v3 API on a running daemon.

Synchronous (`urllib`): the CLI sends one request per command and needs no event loop. The
service-user token comes from `$AGENTCRON_TOKEN`, never the command line, where `ps` shows
it. A failed request raises `CliError` with the server's `detail`, or why the daemon could
not be reached.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_URL: Final = "http://127.0.0.1:8787"
DEFAULT_ORG: Final = "org-local"
TOKEN_ENV: Final = "AGENTCRON_TOKEN"
TIMEOUT_S: Final = 30.0

JSON = Any
"""A parsed JSON value, as the server answered it."""


class CliError(Exception):
    """A command that cannot complete: the message is printed, the process exits `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Client:
    """The Devin v3 API of one org of one daemon."""

    base_url: str
    org: str
    token: str

    def call(
        self,
        method: str,
        path: str,
        *,
        body: JSON = None,
        query: Mapping[str, int | str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request under `/v3/organizations/{org}`; return the answer.

        Raises CliError with the server's `detail` for an error status, or the reason when
        the daemon cannot be reached.
        """
        url = f"{self.base_url.rstrip('/')}/v3/organizations/{quote(self.org, safe='')}{path}"
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        sent = self._headers() | dict(headers or {})
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return Reply(_parse_answer(response.read()), response.headers.get("ETag"))
        except urllib.error.HTTPError as error:
            raise CliError(f"HTTP {error.code}: {error_detail(error.read())}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach {self.base_url}: {reason}") from None

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: its parsed JSON, and its ETag when it carries one schedule."""

    body: JSON
    etag: str | None = None

    @property
    def version(self) -> str | None:
        """The schedule version the ETag names (`"3"` -> `3`), as `--if-match` takes it."""
        return None if self.etag is None else self.etag.strip('"')


def _parse_answer(raw: bytes) -> JSON:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise CliError(f"the server answered something that is not JSON: {raw[:200]!r}") from None


def error_detail(raw: bytes) -> str:
    """The readable message of an error answer: its `detail`, validation items joined."""
    try:
        detail = json.loads(raw)["detail"]
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace").strip()[:500] or "(empty answer)"
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail)
    return str(detail)


def _validation_item(item: JSON) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc", ()))
    return f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", ""))


def environment_client(base_url: str, org: str) -> Client:
    """A client carrying the token in `$AGENTCRON_TOKEN`; CliError (usage) when it is unset."""
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise CliError(f"set {TOKEN_ENV} to a service-user token", EXIT_USAGE)
    return Client(base_url=base_url, org=org, token=token)
