"""Schema version 3: schedules name their launcher (`launcher`; NULL, the default)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    MIGRATIONS[2](op.get_bind())
