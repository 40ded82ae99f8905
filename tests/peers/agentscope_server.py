"""Serve a real AgentScope 2.0 app on 127.0.0.1 for the opt-in peer tests.

Run with the Python of the AgentScope virtual environment (see install-agentscope.sh):
`python agentscope_server.py PORT DIRECTORY`. State (an SQLite database, workspaces) lives
in DIRECTORY; the message bus is in memory. Not imported by agentcron or its tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from agentscope.app import create_app
from agentscope.app.message_bus import InMemoryMessageBus
from agentscope.app.storage import AsyncSQLAlchemyStorage
from agentscope.app.workspace_manager import LocalWorkspaceManager


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    app = create_app(
        storage=AsyncSQLAlchemyStorage(f"sqlite+aiosqlite:///{directory / 'agentscope.db'}"),
        message_bus=InMemoryMessageBus(),
        workspace_manager=LocalWorkspaceManager(basedir=str(directory / "workspaces")),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
