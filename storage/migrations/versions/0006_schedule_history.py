"""Schema version 6: each schedule's edit history (`schedule_history`)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    MIGRATIONS[5](op.get_bind())
