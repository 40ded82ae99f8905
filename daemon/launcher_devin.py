"""The `devin` launcher: sessions on the Devin v3 API (DESIGN section 9).

Create: POST `{base_url}/v3/organizations/{org}/sessions` with only keys Devin's
create-session documents (`prompt`, `title`, `playbook_id`, `tags`, `bypass_approval`,
`create_as_user_id` for a user identity, `max_acu_limit` when the launcher sets it), keys
whose value is null left out. A stateful schedule (`target_devin_id`, or its stored session)
sends `{"message": prompt}` to `{…}/sessions/{devin_id}/messages` instead. The bearer token
is a `cog_` service user's, read from `token_env` at each launch. Retries, backoff and the
timeout are the `http` launcher's.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

from daemon.launcher_http import (
    Answer,
    HttpLauncher,
    bearer,
    created,
    documented_session_body,
    final_answer,
    json_object,
    refused,
)
from daemon.launchers import LaunchRequest, LaunchResult


def devin_session_body(request: LaunchRequest, *, max_acu_limit: int | None) -> dict[str, Any]:
    """Devin's create-session body for this run: only its documented keys, nulls left out."""
    body = documented_session_body(request) | {"max_acu_limit": max_acu_limit}
    return {key: value for key, value in body.items() if value is not None}


class DevinLauncher(HttpLauncher):
    """Creates Devin sessions, or messages the session a stateful schedule keeps."""

    @property
    def idempotent(self) -> bool:
        return False  # Devin documents no idempotency key: a resent request makes a second session

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        org = quote(self.config.org_id or request.schedule.org_id, safe="")
        sessions = f"{self.config.service_url}/v3/organizations/{org}/sessions"
        headers = functools.partial(bearer, self.config.token_secret)
        if request.session_id is None:
            made = devin_session_body(request, max_acu_limit=self.config.max_acu_limit)
            return await self.bounded(lambda t: self.send(t, sessions, made, headers, _new))
        session_id = request.session_id
        url = f"{sessions}/{quote(session_id, safe='')}/messages"
        message = {"message": request.schedule.prompt}

        def sent(status: int, text: str) -> Answer:
            return _messaged(status, text, session_id)

        return await self.bounded(lambda tries: self.send(tries, url, message, headers, sent))


def _new(status: int, text: str) -> Answer:
    if not 200 <= status < 300:
        return refused(status, text)
    return created(status, text)


def _messaged(status: int, text: str, session_id: str) -> Answer:
    """A message sent: the session is the one messaged; its `url` when Devin answers it."""
    if not 200 <= status < 300:
        return refused(status, text)
    body = json_object(status, text) if text.strip() else {}
    url = body.get("url") if isinstance(body, dict) else None
    return final_answer(session_id=session_id, session_url=url if isinstance(url, str) else None)
