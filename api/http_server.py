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
- A bound on open client connections, `max_connections`. A connection beyond it is closed
  as soon as it is accepted, never queued: idle clients cannot take every file descriptor
  and starve the store, the launchers and the notifiers of theirs. Refusals are logged as
  `connections_refused`, at most once per `LOG_INTERVAL` seconds with their count.
- Accept errors (out of file descriptors or memory) as one `accept_failed` event at most
  once per `LOG_INTERVAL` seconds, with the count of those not logged. asyncio retries a
  failed accept every second and reports each of up to a backlog's worth of failures per
  retry to the loop's exception handler, whose default logs each with a traceback: tens of
  megabytes of log a minute while descriptors are short.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any, TypeGuard, cast

import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger("agentcron.http")

LOG_INTERVAL = 10.0
"""Seconds between two `connections_refused` (or two `accept_failed`) events at most."""
_ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


async def start_http_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    request_timeout: float,
    max_connections: int = 4096,
    shutdown_timeout: float = 5.0,
) -> web.AppRunner:
    """Serve `app` on `host:port` with the limits above; stop it with `await runner.cleanup()`.

    Adds `request_body_deadline(request_timeout)` to `app`'s middlewares, so call it once per
    app, before the app is started, and handles accept errors in the running loop until
    the runner is cleaned up. Raises OSError when the address cannot be bound.
    """
    app.middlewares.append(request_body_deadline(request_timeout))
    runner = _GuardedRunner(
        app,
        max_connections=max_connections,
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
    """aiohttp's connection handler, answering requests it refuses in JSON, and serving a
    connection only if its `gate` admits it."""

    gate: _Server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A refused connection is never registered and never starts a request loop; its
        # connection_lost then finds nothing to undo.
        if self.gate.admits(cast(asyncio.Transport, transport)):
            super().connection_made(transport)

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


class _Throttled:
    """A warning logged at most once per `interval` seconds.

    The first occurrence is logged at once; those within the next `interval` seconds are
    counted, and their count (`suppressed`) is logged when the interval ends, which starts
    another interval. A storm therefore costs one line per interval, and none is lost.
    """

    def __init__(self, event: str, interval: float = LOG_INTERVAL) -> None:
        self.event = event
        self.interval = interval
        self._suppressed = 0
        self._fields: dict[str, Any] = {}
        self._window: asyncio.TimerHandle | None = None

    def record(self, **fields: Any) -> None:
        self._fields = fields
        if self._window is not None:
            self._suppressed += 1
            return
        self._emit(0)

    def close(self) -> None:
        """Stop the interval timer (logging what it still counted)."""
        if self._window is not None:
            self._window.cancel()
            self._window = None
            if self._suppressed:
                log.warning(self.event, suppressed=self._suppressed, **self._fields)

    def _emit(self, suppressed: int) -> None:
        log.warning(self.event, suppressed=suppressed, **self._fields)
        self._suppressed = 0
        self._window = asyncio.get_running_loop().call_later(self.interval, self._end_window)

    def _end_window(self) -> None:
        self._window = None
        if self._suppressed:
            self._emit(self._suppressed)


class _AcceptErrors:
    """A loop exception handler turning asyncio's accept errors into `accept_failed` events;
    every other error goes to the handler that was there before (or the default one)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._throttled = _Throttled("accept_failed")
        loop.set_exception_handler(self._handle)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == _ACCEPT_FAILED and _out_of_resources(error):
            code = errno.errorcode.get(error.errno or 0, str(error.errno))
            self._throttled.record(error=f"{code}: {error.strerror}", retry_in_s=1)
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def uninstall(self) -> None:
        self._throttled.close()
        if self._loop.get_exception_handler() == self._handle:
            self._loop.set_exception_handler(self._previous)


def _out_of_resources(error: object) -> TypeGuard[OSError]:
    return isinstance(error, OSError) and error.errno in _OUT_OF_RESOURCES


class _Server(web.Server):
    """aiohttp's low-level server, making `_JsonErrorRequestHandler`s, and closing each
    connection beyond `max_connections` as soon as it is made."""

    def __init__(
        self, *args: Any, max_connections: int, refused: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._refused = refused

    def __call__(self) -> RequestHandler:
        handler = _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.gate = self
        return handler

    def admits(self, transport: asyncio.Transport) -> bool:
        """Whether a connection just made may be served; if not, it is closed at once.

        Asked as each connection is made, not as its handler is: asyncio makes the handlers
        of a whole batch of accepted sockets before it connects any of them, so only here
        does the count include every connection before this one.
        """
        if len(self.connections) < self.max_connections:
            return True
        transport.abort()
        self._refused()
        return False


class _GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a `_Server`, and which handles accept errors while set up."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections
        self._refusals = _Throttled("connections_refused")
        self._accept_errors: _AcceptErrors | None = None

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        loop = asyncio.get_running_loop()
        self._accept_errors = _AcceptErrors(loop)
        return _Server(
            made.request_handler,
            max_connections=self.max_connections,
            refused=self._refused,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=loop,
            **made._kwargs,
        )

    def _refused(self) -> None:
        self._refusals.record(max_connections=self.max_connections)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self._refusals.close()
            if self._accept_errors is not None:
                self._accept_errors.uninstall()
                self._accept_errors = None
