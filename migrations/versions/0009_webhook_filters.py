"""webhook subscriptions: fields and condition (send only the events that matter)

Revision ID: 0009_webhook_filters
Revises: 0008_report_alerts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tangram.db.types

revision: str = "0009_webhook_filters"
down_revision: str | Sequence[str] | None = "0008_report_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("fields", tangram.db.types.JSONValue, nullable=True))
        batch.add_column(sa.Column("condition", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("condition")
        batch.drop_column("fields")
