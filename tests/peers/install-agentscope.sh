#!/usr/bin/env bash
# Creates a virtual environment holding a real AgentScope 2.0 server, for the opt-in peer
# tests (`pytest --peers`). Usage: tests/peers/install-agentscope.sh [VENV_DIR]
# (default .peers/agentscope-venv in the checkout).
# Then: export AGENTCRON_AGENTSCOPE_PYTHON=VENV_DIR/bin/python
#
# agentscope declares a certifi floor newer than some package indexes serve, so it is
# installed without its dependency resolution, then its core requirements and those of its
# `service` and `storage-sql` extras are installed by name, with aiosqlite for its SQL store.
set -euo pipefail
venv="${1:-$(cd "$(dirname "$0")/../.." && pwd)/.peers/agentscope-venv}"
python3 -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" --no-deps 'agentscope>=2.0,<2.1'
"${pip[@]}" \
  aioitertools anthropic certifi dashscope docstring_parser filetype json5 \
  'json_repair[schema]>=0.63.4' 'mcp>=2.0.0' httpx 'httpx2>=2.5.0' numpy openai python-datauri \
  'opentelemetry-api>=1.39.0' 'opentelemetry-sdk>=1.39.0' 'opentelemetry-exporter-otlp>=1.39.0' \
  'opentelemetry-semantic-conventions>=0.60b0' python-socketio rich shortuuid \
  python-frontmatter jinja2 aiofiles tree_sitter tree_sitter_bash jsonschema pypdf tzdata \
  fastapi uvicorn apscheduler 'ag-ui-protocol>=0.1.10' 'aiortc>=1.14' \
  'sqlalchemy[asyncio]>=2.0' 'alembic>=1.13' aiosqlite
"$venv/bin/python" -c 'import agentscope.app; print("agentscope", agentscope.__version__)'
