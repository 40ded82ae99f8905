"""Schema version 5: runs keep the agent service's last word (`session_status`)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    MIGRATIONS[4](op.get_bind())
