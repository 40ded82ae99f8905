"""Tell systemd what the daemon is doing, over the sd_notify protocol.

The protocol is one datagram of newline-separated ``KEY=VALUE`` assignments sent to the
unix socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a
leading ``@``). systemd sets the variable for ``Type=notify`` services; anywhere else it
is absent and every call here does nothing, so the daemon runs the same way in a
terminal, in tests and under systemd.

Sending never raises: a scheduler must not die because its supervisor's socket went
away. Failures are logged as ``sd_notify_failed``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

import structlog

#: Environment variables that belong to this process's supervision. Processes the daemon
#: starts should not inherit them: a child that speaks sd_notify would otherwise talk to
#: systemd on the daemon's behalf.
SUPERVISION_ENVIRONMENT: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# Bounds how long a send may block the event loop when systemd is slow to drain its
# socket; the datagram is dropped (and logged) rather than stalling the scheduler.
_SEND_TIMEOUT_SECONDS: Final = 1.0


class SystemdNotifier:
    """Sends state changes and watchdog pings to systemd; a no-op when not under it."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """Notify ``address`` (a ``$NOTIFY_SOCKET`` value, or None for no-op).

        ``watchdog_usec`` is systemd's watchdog timeout in microseconds, or None when
        this process has no watchdog.
        """
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        """Build a notifier from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        The watchdog applies only when ``WATCHDOG_PID`` is unset or equals this
        process's pid (the variables may have been inherited from a parent). An
        unparsable value means no watchdog. Without ``NOTIFY_SOCKET`` every call is a
        no-op.
        """
        watchdog_usec = _parse_int(environ.get("WATCHDOG_USEC"))
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid is not None and _parse_int(watchdog_pid) != os.getpid():
            watchdog_usec = None
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half the watchdog timeout, as systemd
        recommends, or None when no watchdog is asked for (or notifications are off)."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *states: str) -> None:
        """Send ``states`` (``"READY=1"``, ``"STATUS=..."``, ...) in one datagram.

        Does nothing when disabled or given no states; never raises.
        """
        if self._address is None or not states:
            return
        payload = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT_SECONDS)
                sock.sendto(payload, self._address)
        except OSError as error:
            # Looked up here, not at import: the logging configuration may change after.
            structlog.get_logger(__name__).warning(
                "sd_notify_failed", states=list(states), error=str(error)
            )

    def ready(self, status: str = "serving") -> None:
        """Start-up (or a reload) is complete: ``READY=1`` with a status line."""
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """A reload has begun; call :meth:`ready` when it is done.

        Sends ``RELOADING=1`` with ``MONOTONIC_USEC``, the ``CLOCK_MONOTONIC`` time in
        microseconds, which ``Type=notify-reload`` requires to match the reload to the
        signal that asked for it.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading")

    def stopping(self) -> None:
        """Shutdown has begun: ``STOPPING=1``."""
        self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        """The daemon is alive: ``WATCHDOG=1``."""
        self.notify("WATCHDOG=1")


async def run_watchdog(notifier: SystemdNotifier, is_healthy: Callable[[], bool]) -> None:
    """Ping systemd's watchdog every ``notifier.watchdog_interval`` while healthy.

    Each tick sends ``WATCHDOG=1`` only if ``is_healthy()`` is true, so an unhealthy
    daemon misses its pings and systemd restarts it; pings resume if it recovers first.
    That this coroutine runs at all shows the event loop is not blocked. Returns at
    once when no watchdog is asked for; otherwise runs until cancelled.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    was_healthy = True
    while True:
        healthy = is_healthy()
        if healthy:
            notifier.watchdog()
        elif was_healthy:
            structlog.get_logger(__name__).warning("watchdog_ping_withheld")
        was_healthy = healthy
        await asyncio.sleep(interval)


def _socket_address(notify_socket: str) -> str:
    """The ``AF_UNIX`` address for a ``$NOTIFY_SOCKET`` value: ``@name`` is the
    abstract socket ``name`` (a leading NUL byte on Linux)."""
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    return notify_socket


def _parse_int(value: str | None) -> int | None:
    """``value`` as an integer, or None when absent or not a decimal integer."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
