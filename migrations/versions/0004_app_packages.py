"""app packages: installed versions and the packages' base definitions

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tangram.db.types  # noqa: F401  (autogenerate renders our column types by module path)

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_packages",
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("manifest", tangram.db.types.JSONValue, nullable=False),
        sa.Column("files", tangram.db.types.JSONValue, nullable=False),
        sa.Column("installed_at", tangram.db.types.UTCDateTime(), nullable=False),
        sa.Column("installed_by", sa.Uuid(), nullable=True),
        sa.Column("upgraded_at", tangram.db.types.UTCDateTime(), nullable=True),
        sa.Column("previous_version", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("app", name=op.f("pk_app_packages")),
    )
    op.create_table(
        "package_definitions",
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("body", tangram.db.types.JSONValue, nullable=False),
        sa.ForeignKeyConstraint(
            ["app"],
            ["app_packages.app"],
            name=op.f("fk_package_definitions_app_app_packages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app", "kind", "key", name=op.f("pk_package_definitions")),
    )


def downgrade() -> None:
    op.drop_table("package_definitions")
    op.drop_table("app_packages")
