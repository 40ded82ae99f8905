"""Schema version 7: indexes of the live schedules of an owner and of an org, in creation
order (the unpaged lists)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    MIGRATIONS[6](op.get_bind())
