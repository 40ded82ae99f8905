"""The daemon's file-descriptor budget: the soft RLIMIT_NOFILE raised to the hard limit.

Every client connection, launch, notification and database connection costs a descriptor.
Shells and service managers often start processes with a soft limit of 1024 under a much
higher hard limit; a process may raise its own soft limit up to the hard one, so the daemon
does, once, at start. Under systemd the unit's `LimitNOFILE=` sets both: the limit is then
already where it should be and is left alone. A refusal (a system call filter, a sandbox)
is logged, never fatal.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import structlog

log = structlog.get_logger("agentcron.daemon")

RESERVED_FDS = 256
"""Descriptors kept for everything but client connections (store, launches, notifications,
a batch of sockets accepted at once) when comparing the limit with `max_connections`."""


@dataclass(frozen=True, slots=True)
class FdLimit:
    """The soft limit before and after start-up, and the hard limit."""

    before: int
    soft: int
    hard: int


def raise_fd_limit(max_connections: int) -> FdLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit; log what changed and what is short.

    Never raises: a limit that cannot be raised is logged (`fd_limit_not_raised`) and kept.
    """
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = before
    if before != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("fd_limit_not_raised", soft=before, hard=hard, error=str(exc))
        else:
            soft = hard
            log.info("fd_limit_raised", previous=before, soft=soft)
    if soft != resource.RLIM_INFINITY and max_connections + RESERVED_FDS > soft:
        log.warning(
            "fd_limit_low",
            soft=soft,
            max_connections=max_connections,
            reason=f"server.max_connections needs about {RESERVED_FDS} descriptors more "
            "than it allows connections; raise LimitNOFILE= or lower max_connections",
        )
    return FdLimit(before=before, soft=soft, hard=hard)
