"""Running the real `agentcron serve` as a child process: for the e2e tests and the benchmarks.

Only the standard library (and `storage.identities` for a token's hash): the benchmarks in
`bench/` import this module without pytest. Every wait has a deadline and raises
`TimeoutError` (or `DaemonExited`, with the end of the daemon's log) when it passes.

Configuration
    `toml_text(config)` / `write_config(path, config)`: a config dict (sections as dicts,
        arrays of tables as lists of dicts, inline values) as TOML, written atomically.
    `listen_port(config_path)`: the port in `[server] listen`.
The process
    `daemon_environment(extra)`: this environment without the variables that would make the
        daemon talk to the real systemd or a proxy, with this checkout on PYTHONPATH.
    `spawn_serve(config_path, log_path, ...)`: start `python -m daemon.cli serve --config`
        (or another argv) with stdout and stderr appended to `log_path`.
    `wait_ready(process, base_url, log_path)`: poll `/readyz` until it answers 200.
    `stop_process(process, timeout)`: SIGTERM, then SIGKILL if it outlives `timeout`.
Small pieces
    `free_port()`, `wait_until(predicate, what, timeout)`, `http_call(url, ...)` (status,
    parsed JSON), ignoring proxies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRUBBED_ENV = (
    # supervision: the daemon would talk to the real systemd instead of the test's
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    # proxies: loopback requests must not leave the machine
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


class DaemonExited(RuntimeError):
    """The process exited while it was waited for."""


# --------------------------------------------------------------------------- small pieces


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy (returned); TimeoutError after
    `timeout` seconds, naming `what` was waited for."""
    deadline = time.monotonic() + timeout
    while True:
        if result := predicate():
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http_call(
    url: str,
    method: str = "GET",
    *,
    token: str | None = None,
    body: Any = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One request with a JSON `body` (if any), proxies ignored; (status, the answer parsed:
    JSON, else its text, None when empty)."""
    import urllib.error  # here, not above: the start-up benchmark's daemon imports this module
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with no_proxy.open(request, timeout=timeout) as response:
            return response.status, _json_or_none(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json_or_none(error.read())


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------- configuration


def toml_value(value: Any) -> str:
    """`value` as a TOML value: strings, booleans, numbers, datetimes, arrays, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid in TOML basic strings
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def toml_text(config: Mapping[str, Any]) -> str:
    """A config dict as TOML: dicts become [sections], lists of dicts [[arrays of tables]]."""
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not _is_table(v)]
    for key, value in config.items():
        tables = [value] if isinstance(value, dict) else value if _is_table(value) else []
        header = f"[{key}]" if isinstance(value, dict) else f"[[{key}]]"
        for table in tables:
            lines += ["", header, *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    is_array_of_tables = isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    return isinstance(value, dict) or is_array_of_tables


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write `config` as TOML to `path` (atomically: a reload never reads half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(toml_text(config), encoding="utf-8")
    partial.replace(path)
    return path


def listen_port(config_path: Path) -> int:
    import tomllib  # here, not above: the start-up benchmark's daemon imports this module

    listen = tomllib.loads(config_path.read_text(encoding="utf-8"))["server"]["listen"]
    return int(listen.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- the process


def daemon_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without supervision or proxy variables, this checkout on
    PYTHONPATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env | dict(extra or {})


def spawn_serve(
    config_path: Path,
    log_path: Path,
    *,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    start_new_session: bool = False,
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `python ARGV` (default: `-m daemon.cli serve --config CONFIG`), its stdout and
    stderr appended to `log_path`, in `cwd` (default: the config file's directory)."""
    argv = argv or ["-m", "daemon.cli", "serve", "--config", str(config_path)]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else daemon_environment(),
            cwd=cwd or config_path.parent,
            start_new_session=start_new_session,
            preexec_fn=preexec_fn,
        )


def log_tail(log_path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log ("" if there is none yet)."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    log_path: Path,
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> None:
    """Poll `base_url/readyz` until it answers 200: DaemonExited if the process exits
    first, TimeoutError after `timeout` s (both with the end of the log)."""

    def ready() -> bool:
        if process.poll() is not None:
            tail = log_tail(log_path)
            raise DaemonExited(f"agentcron exited with {process.returncode}:\n{tail}")
        try:
            return http_call(base_url + "/readyz", timeout=1.0)[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, f"/readyz = 200 from {base_url}", timeout, interval)
    except TimeoutError as error:
        raise TimeoutError(f"{error}:\n{log_tail(log_path)}") from None


def wait_for_line(path: Path, process: subprocess.Popen[bytes], what: str, timeout: float) -> str:
    """The first non-empty text written to `path` (a port file); DaemonExited if `process`
    exits first."""

    def written() -> str:
        if process.poll() is not None:
            raise DaemonExited(f"{what} exited with {process.returncode}")
        return path.read_text().strip() if path.exists() else ""

    text: str = wait_until(written, f"{what} to start", timeout, interval=0.01)
    return text


def stop_process(process: subprocess.Popen[Any], timeout: float, *, group: bool = False) -> int:
    """SIGTERM (if still running), the exit code; SIGKILL (the whole process group when
    `group`) if it has not exited within `timeout` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(process, group=group)
        return process.wait()


def kill(process: subprocess.Popen[Any], *, group: bool = False) -> None:
    """SIGKILL the process (and its process group when `group`), if still running."""
    if process.poll() is not None:
        return
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait()
