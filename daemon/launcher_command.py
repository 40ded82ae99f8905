"""The `command` launcher: run a local program once per fire, the prompt on its stdin.

The program gets the run in its environment (`AGENTCRON_*`), runs in its own process group,
and is bounded by `launcher.timeout`: on timeout the whole group is terminated, so nothing
it started outlives the run. A JSON object on the last line of its stdout may name the
session it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from daemon.config import LauncherConfig
from daemon.launchers import LaunchRequest, LaunchResult, seconds_text
from daemon.sdnotify import SUPERVISION_ENVIRONMENT

STDERR_TAIL = 500
"""Characters of a command's stderr quoted in an error."""
_READ_LIMIT = 64 * 1024
"""Bytes of a command's stdout and stderr kept (the last ones)."""


RUN_ENVIRONMENT = (
    "AGENTCRON_PROMPT",
    "AGENTCRON_SCHEDULE_ID",
    "AGENTCRON_RUN_ID",
    "AGENTCRON_ORG_ID",
    "AGENTCRON_RUN_AS",
    "AGENTCRON_AGENT",
    "AGENTCRON_PLAYBOOK_ID",
    "AGENTCRON_PERMISSION_MODE",
    "AGENTCRON_SESSION_ID",
    "AGENTCRON_CHAT_MODEL_CONFIG",
)
"""Variables describing the run; inherited values of the same names are never passed on."""

TERM_GRACE = 1.0
"""Seconds a timed-out command's process group has between SIGTERM and SIGKILL."""


def command_environment(request: LaunchRequest, base: Mapping[str, str]) -> dict[str, str]:
    """`base` without the daemon's supervision variables, plus the run's variables."""
    hidden = set(SUPERVISION_ENVIRONMENT) | set(RUN_ENVIRONMENT)
    env = {name: value for name, value in base.items() if name not in hidden}
    schedule = request.schedule
    env |= {
        "AGENTCRON_PROMPT": schedule.prompt,
        "AGENTCRON_SCHEDULE_ID": schedule.id,
        "AGENTCRON_RUN_ID": request.run_id,
        "AGENTCRON_ORG_ID": schedule.org_id,
        "AGENTCRON_RUN_AS": request.identity,
        "AGENTCRON_AGENT": schedule.agent,
        "AGENTCRON_PLAYBOOK_ID": schedule.playbook_id or "",
        "AGENTCRON_PERMISSION_MODE": str(schedule.permission_mode),
    }
    if request.session_id is not None:
        env["AGENTCRON_SESSION_ID"] = request.session_id
    if schedule.chat_model_config is not None:
        env["AGENTCRON_CHAT_MODEL_CONFIG"] = json.dumps(schedule.chat_model_config)
    return env


def session_from_stdout(stdout: str) -> tuple[str | None, str | None]:
    """(session_id, url) from a JSON object on the last non-empty line of stdout, if any."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None, None
    try:
        answer = json.loads(lines[-1])
    except ValueError:
        return None, None
    if not isinstance(answer, dict):
        return None, None
    session_id, url = answer.get("session_id"), answer.get("url")
    return (
        session_id if isinstance(session_id, str) else None,
        url if isinstance(url, str) else None,
    )


class CommandLauncher:
    """Runs `launcher.command` (an argv list, no shell) once per fire, in its own process group.

    The working directory is `workdir` (the config file's directory); the prompt comes on
    stdin and in the environment. Exit status 0 is success. On timeout the whole process
    group gets SIGTERM, then SIGKILL, so nothing the command started outlives the run.
    """

    def __init__(self, config: LauncherConfig, *, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir

    @property
    def idempotent(self) -> bool:
        return self.config.idempotent

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        argv = list(self.config.command or [])
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                env=command_environment(request, os.environ),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return LaunchResult(
                attempts=1, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            )
        return await self._supervise(process, request.schedule.prompt)

    async def _supervise(self, process: asyncio.subprocess.Process, prompt: str) -> LaunchResult:
        try:
            async with asyncio.timeout(self.config.timeout):
                stdout, stderr = await _communicate(process, prompt.encode())
        except TimeoutError:
            await _terminate_group(process, TERM_GRACE)
            return LaunchResult(
                attempts=1, error=f"command timed out after {seconds_text(self.config.timeout)}"
            )
        except asyncio.CancelledError:
            _signal_group(process.pid, signal.SIGKILL)
            raise
        return _command_result(process.returncode, stdout, stderr)


def _command_result(returncode: int | None, stdout: str, stderr: str) -> LaunchResult:
    if returncode == 0:
        session_id, url = session_from_stdout(stdout)
        return LaunchResult(attempts=1, session_id=session_id, session_url=url)
    if returncode is not None and returncode < 0:
        cause = f"command was killed by signal {-returncode}"
    else:
        cause = f"command exited with status {returncode}"
    tail = stderr.strip()[-STDERR_TAIL:]
    return LaunchResult(attempts=1, error=f"{cause}: {tail}" if tail else cause)


async def _communicate(process: asyncio.subprocess.Process, data: bytes) -> tuple[str, str]:
    """Feed stdin, read the tails of stdout and stderr, wait for the exit."""
    assert process.stdin and process.stdout and process.stderr  # all three are pipes
    _, stdout, stderr, _ = await asyncio.gather(
        _feed(process.stdin, data),
        _tail(process.stdout),
        _tail(process.stderr),
        process.wait(),
    )
    return stdout, stderr


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    # A command that never reads its stdin (or exits early) is fine: drop what it refused.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.wait_closed()


async def _tail(stream: asyncio.StreamReader, limit: int = _READ_LIMIT) -> str:
    """Everything the stream says until EOF, keeping only its last `limit` bytes."""
    kept = b""
    while chunk := await stream.read(limit):
        kept = (kept + chunk)[-limit:]
    return kept.decode("utf-8", errors="replace")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _terminate_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the command's process group, SIGKILL it after `grace` s, reap the command."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
    # Always: children that ignored SIGTERM or outlived the leader are in the group too.
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()
