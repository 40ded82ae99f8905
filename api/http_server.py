"""The HTTP server the app runs on, closing what aiohttp leaves open to a hostile client.

aiohttp bounds the request line and each header (8190 bytes) and, through the app's
`client_max_size`, the body. It does not bound how long a client may take to send them,
and a request it cannot parse is answered in plain text and logged with a traceback.
`start_http_server` adds:

- A whole-request deadline, `request_timeout`. The request line and headers must arrive
  within it of the connection opening (or of the previous answer, on a kept-alive
  connection), and the body within it of the headers. A client that trickles bytes is cut
  off (its connection closed) instead of holding a connection and its buffers forever; an
  idle kept-alive connection is closed after the same time. The head deadline is aiohttp's
  own keep-alive timer, which runs from the moment a connection opens until a whole
  request head has arrived; the body deadline is `request_body_deadline`, a middleware,
  because the handler is what reads the body.
- JSON for requests refused before they reach the app (a malformed request line, a
  header too long, too many headers): `{"detail": "<reason>"}` with aiohttp's status,
  logged as one warning without the request's bytes, so a token cannot leak into the log.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger("agentcron.http")


async def start_http_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    request_timeout: float,
    shutdown_timeout: float = 5.0,
) -> web.AppRunner:
    """Serve `app` on `host:port` with the limits above; stop it with `await runner.cleanup()`.

    Adds `request_body_deadline(request_timeout)` to `app`'s middlewares, so call it once per
    app, before the app is started. Raises OSError when the address cannot be bound.
    """
    app.middlewares.append(request_body_deadline(request_timeout))
    runner = _GuardedRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=request_timeout,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def request_body_deadline(timeout: float) -> Middleware:
    """A middleware cutting off a client whose body has not fully arrived `timeout` s after
    its headers. The handler then sees 408 Request Timeout instead of a reset connection.

    A client that goes away by itself while its body is being read is not an error of
    ours either: it is logged as `client_disconnected`, not as a failed request.
    """

    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = request.content
        if body.is_eof():  # no body, or all of it has arrived
            return await handler(request)
        deadline = _Deadline(request, timeout)
        body.on_eof(deadline.cancel)
        try:
            return await handler(request)
        except ConnectionResetError:
            if deadline.expired:
                raise web.HTTPRequestTimeout() from None
            if _disconnected(request):
                log.info("client_disconnected", method=request.method, path=request.path)
                raise web.HTTPBadRequest(reason="client disconnected") from None
            raise
        finally:
            deadline.cancel()

    return body_deadline


class _Deadline:
    """Closes the request's connection `timeout` s from now unless cancelled first."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self.expired = False
        self._request = request
        self._timer = asyncio.get_running_loop().call_later(timeout, self._expire)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        transport = self._request.transport
        log.warning("request_timed_out", method=self._request.method, path=self._request.path)
        if transport is not None:
            transport.close()  # aiohttp then fails the handler's pending body read


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it refuses in JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer is under way: nothing else can be sent
            raise ConnectionError("the response was already started; closing the connection")
        if status >= 500:
            log.error("http_request_failed", status=status, error=repr(exc))
            detail = "Internal Server Error"
        else:
            detail = _reason(exc, message)
            log.warning("http_request_refused", status=status, detail=detail)
        response = web.json_response({"detail": detail}, status=status)
        response.force_close()
        return response


def _reason(exc: BaseException | None, message: str | None) -> str:
    """Why aiohttp refused a request, without the request bytes its message may quote."""
    if isinstance(exc, LineTooLong):
        return f"Request line or header too long (the limit is {exc.args[1]} bytes)"
    reason = (message or "").split(":", 1)[0].strip()
    return reason[:200] or "Bad Request"


class _Server(web.Server):
    """aiohttp's low-level server, making `_JsonErrorRequestHandler`s."""

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a `_Server`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )
