"""Tables of public forms and of their submissions per IP (the rate limit)."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

public_forms_table = sa.Table(
    "public_forms", metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("fields", JSONValue, nullable=False),  # field keys shown and accepted
    sa.Column("utm_fields", JSONValue, nullable=False),  # utm parameter -> field key
    sa.Column("honeypot", sa.String(63), nullable=False),
    sa.Column("max_per_hour", sa.Integer, nullable=False),
    sa.Column("owner_id", GUID, nullable=False),  # owns the records submitted
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_public_forms_form", "app", "form"),
)

# One row per accepted or refused submission attempt; counted per IP over the
# last hour (old rows are deleted as new ones come).
public_form_hits_table = sa.Table(
    "public_form_hits", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_public_form_hits_ip", "token", "ip", "at"),
)
