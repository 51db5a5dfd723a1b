"""Login sessions. A session is found by the SHA-256 of its token; the token
itself is only ever in the client's hands (cookie or Authorization header)."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, UTCDateTime

SESSION_KINDS = ("browser", "bearer")

auth_sessions_table = sa.Table(
    "auth_sessions", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("user_agent", sa.String(300), nullable=True),
    sa.CheckConstraint("kind IN ('browser', 'bearer')", name="kind"),
)
