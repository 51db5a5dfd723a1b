"""import jobs: historical (past records start only flows that name "history")

Revision ID: 0010_import_historical
Revises: 0009_webhook_filters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_import_historical"
down_revision: str | Sequence[str] | None = "0009_webhook_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_jobs") as batch:
        batch.add_column(sa.Column("historical", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("import_jobs") as batch:
        batch.drop_column("historical")
