"""One delivery attempt over HTTP: the POST, and what a peer's answer means.

A failed attempt raises `DeliveryError`, which says whether another attempt may succeed and
how long the peer asked to wait (`Retry-After`, read when the answer arrived, in either of
its forms); the notifier decides whether to retry under its `daemon.retry.RetryPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from daemon.retry import retry_after_seconds
from storage.clock import Clock

USER_AGENT = "agentcron-notify/1"


class DeliveryError(Exception):
    """One attempt failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """What a peer answered: status, the seconds its Retry-After asked for, and the body."""

    status: int
    retry_after: float | None
    body: bytes


def check_http_answer(answer: Answer, peer: str) -> None:
    """Raise DeliveryError unless `answer` is a 2xx; 408, 429 and 5xx are retryable."""
    if 200 <= answer.status < 300:
        return
    reason = f"{peer} answered HTTP {answer.status}"
    retryable = answer.status in (408, 429) or answer.status >= 500
    retry_after = answer.retry_after if retryable else None
    raise DeliveryError(reason, retryable=retryable, retry_after=retry_after)


class Transport:
    """POSTs JSON bodies over the daemon's HTTP session, each bounded by `request_timeout`."""

    def __init__(self, http: aiohttp.ClientSession, clock: Clock, request_timeout: float) -> None:
        self._http = http
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST JSON `body`; network errors and timeouts become retryable DeliveryErrors."""
        all_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            **headers,
        }
        try:
            async with self._http.post(
                url, data=body, headers=all_headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                payload = await response.read()
                retry_after = retry_after_seconds(
                    response.headers.get("Retry-After"), self._clock.now()
                )
                return Answer(response.status, retry_after, payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = f"network error: {str(error) or type(error).__name__}"
            raise DeliveryError(reason, retryable=True) from error
