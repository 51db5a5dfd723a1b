"""report data alerts and their firings

Revision ID: 0008_report_alerts
Revises: 0008_role_assign_subdepts
Create Date: 2026-12-02 10:00:00.000000

Another change added its own 0008 (0008_role_assign_subdepts) at the same
time; this one follows it. If that one does not land, point down_revision
back at "0007".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tangram.db.types  # noqa: F401  (autogenerate renders our column types by module path)


# revision identifiers, used by Alembic.
revision: str = "0008_report_alerts"
down_revision: str | Sequence[str] | None = "0008_role_assign_subdepts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("report", sa.String(length=63), nullable=False),
        sa.Column("definition", tangram.db.types.JSONValue, nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("package_alert", sa.String(length=63), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("state", sa.String(length=20), server_default="normal", nullable=False),
        sa.Column("last_value", sa.String(length=60), nullable=True),
        sa.Column("last_checked_at", tangram.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_check_at", tangram.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", tangram.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tangram.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_alerts")),
    )
    with op.batch_alter_table("report_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_report_alerts_app", ["app", "report"], unique=False)
        batch_op.create_index("ix_report_alerts_due", ["active", "next_check_at"], unique=False)
        batch_op.create_index("ux_report_alerts_package", ["app", "package_alert", "owner_id"],
                              unique=True)

    op.create_table(
        "report_alert_firings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("fired_at", tangram.db.types.UTCDateTime(), nullable=False),
        sa.Column("value", sa.String(length=60), nullable=True),
        sa.Column("previous_value", sa.String(length=60), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recipients", tangram.db.types.JSONValue, nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["report_alerts.id"],
            name=op.f("fk_report_alert_firings_alert_id_report_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_alert_firings")),
    )
    with op.batch_alter_table("report_alert_firings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_alert_firings_alert", ["alert_id", "fired_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("report_alert_firings", schema=None) as batch_op:
        batch_op.drop_index("ix_report_alert_firings_alert")
    op.drop_table("report_alert_firings")
    with op.batch_alter_table("report_alerts", schema=None) as batch_op:
        batch_op.drop_index("ux_report_alerts_package")
        batch_op.drop_index("ix_report_alerts_due")
        batch_op.drop_index("ix_report_alerts_app")
    op.drop_table("report_alerts")
