"""Alembic's environment: run the revisions on the connection the store hands over.

The store opens the database, takes its locks and its transaction, and passes the
connection in `config.attributes["connection"]`; nothing here connects by itself.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():  # joins the caller's transaction
    context.run_migrations()
