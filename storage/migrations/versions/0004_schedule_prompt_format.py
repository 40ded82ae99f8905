"""Schema version 4: schedules say how their prompt is read (`prompt_format`)."""

from alembic import op

from storage.schema_steps import MIGRATIONS

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    MIGRATIONS[3](op.get_bind())
