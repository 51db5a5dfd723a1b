"""role assignments: include_sub_departments (a department's role reaches the
departments below it unless the assignment says otherwise)

Revision ID: 0008_role_assign_subdepts
Revises: 0007

The revision id is descriptive (alembic_version holds 32 characters), not a
bare number: another change may add its own 0008 at the same time; whichever
lands second re-points its down_revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_role_assign_subdepts"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("role_assignments") as batch:
        batch.add_column(sa.Column("include_sub_departments", sa.Boolean(),
                                   server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("role_assignments") as batch:
        batch.drop_column("include_sub_departments")
