"""Tables of the permissions package: role assignments, app builders, record
shares, API tokens, login attempts and the security audit log."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

# A role of an app given to a user or to a department: its members and, when
# include_sub_departments is true (the default), members of the departments
# below it (grants.holds_assignment).
role_assignments_table = sa.Table(
    "role_assignments", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("role", sa.String(63), nullable=False),
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
              index=True),
    sa.Column("department_id", GUID, sa.ForeignKey("departments.id", ondelete="CASCADE"),
              nullable=True, index=True),
    sa.Column("include_sub_departments", sa.Boolean, nullable=False,
              server_default=sa.true()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", GUID, nullable=True),
    sa.CheckConstraint("(user_id IS NULL) <> (department_id IS NULL)", name="one_holder"),
    sa.UniqueConstraint("app", "role", "user_id", "department_id",
                        name="uq_role_assignments_holder"),
)

# Platform role "app builder": may edit the definitions of these apps.
app_builders_table = sa.Table(
    "app_builders", metadata,
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# A record shared with a user or a department, for read or edit. Shares widen
# the row scope of the form's actions (read; edit also update).
record_shares_table = sa.Table(
    "record_shares", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("record_id", GUID, nullable=False),
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sa.Column("department_id", GUID, sa.ForeignKey("departments.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("access", sa.String(10), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", GUID, nullable=True),
    sa.CheckConstraint("access IN ('read', 'edit')", name="access"),
    sa.CheckConstraint("(user_id IS NULL) <> (department_id IS NULL)", name="one_holder"),
    sa.Index("ix_record_shares_record", "app", "form", "record_id"),
    sa.Index("ix_record_shares_user", "user_id", "app", "form"),
    sa.Index("ix_record_shares_department", "department_id", "app", "form"),
)

# Tokens for integrations: shown once, stored as SHA-256, scoped to apps and actions.
api_tokens_table = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("apps", JSONValue, nullable=False),
    sa.Column("actions", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

# Failed sign-ins per username, for the lockout (kept in the database so that
# every API process sees the same count).
login_attempts_table = sa.Table(
    "login_attempts", metadata,
    sa.Column("username", sa.String(100), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("first_failure_at", UTCDateTime(), nullable=False),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
)

# Who changed which right when: roles, assignments, shares, tokens, users, org.
security_audit_table = sa.Table(
    "security_audit", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False, index=True),
    sa.Column("actor_id", GUID, nullable=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("details", JSONValue, nullable=False),
)
