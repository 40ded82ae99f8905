"""Schema version 1: the first release's tables (made whole by `create_all`, never by a
revision: a database at version 1 or later starts from here)."""

revision = "0001"
down_revision = None


def upgrade() -> None:
    return None
