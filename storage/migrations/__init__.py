"""Alembic's environment and the revision scripts of agentcron's schema (see
`storage.schema_versions`)."""
