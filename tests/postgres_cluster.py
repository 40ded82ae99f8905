"""A throwaway PostgreSQL cluster for the tests: one per test session, a database per test.

`initdb` into a temporary directory, `pg_ctl start` with the server's unix socket in that
directory (no TCP), trust authentication. PostgreSQL refuses to run as root, so when the
tests run as root the cluster runs as the `postgres` system user (Debian's package makes
it), which then owns the directory. The binaries come from Debian's `postgresql` package
(`/usr/lib/postgresql/<major>/bin`). A cluster that cannot start fails the tests that need
it: never a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

_START_TIMEOUT_S = 60


class ClusterError(RuntimeError):
    """The cluster could not be made or started; the message carries the server's words."""


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise ClusterError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
            "apt-get install -y postgresql"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One running cluster; `new_database()` makes an empty database and returns its URL."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.root = Path(tempfile.mkdtemp(prefix="agentcron-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._names = itertools.count(1)
        self._run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._run_as is not None:
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", self.data, "-U", self.user, "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w",
                  "-t", str(_START_TIMEOUT_S), "start")  # fmt: skip
        return self

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(ClusterError):  # not running: nothing to stop
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@/{database}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database's `postgresql://` URL."""
        name = f"agentcron_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, tool: str, *args: object) -> None:
        command = [str(self.bin / tool), *map(str, args)]
        user = self._run_as.pw_name if self._run_as is not None else None
        done = subprocess.run(
            command, user=user, capture_output=True, text=True, cwd=self.root, check=False
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            server = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{server}".strip()
            )


_CLUSTER: PostgresCluster | None = None


def cluster() -> PostgresCluster:
    """The session's cluster, started on first use (`stop_cluster` ends it)."""
    global _CLUSTER
    if _CLUSTER is None:
        started = PostgresCluster()
        try:
            _CLUSTER = started.start()
        except BaseException:
            started.stop()
            raise
    return _CLUSTER


def stop_cluster() -> None:
    global _CLUSTER
    if _CLUSTER is not None:
        _CLUSTER.stop()
        _CLUSTER = None
