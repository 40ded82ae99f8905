"""Schema version 2: runs record when their launch request was sent (`dispatched_at`)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    MIGRATIONS[1](op.get_bind())
