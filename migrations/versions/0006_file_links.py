"""file links: which records an uploaded file is attached to

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_links",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("form", sa.String(length=63), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "app", "form", "record_id", "field",
                                name=op.f("pk_file_links")),
    )


def downgrade() -> None:
    op.drop_table("file_links")
