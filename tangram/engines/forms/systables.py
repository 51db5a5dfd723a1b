"""The form engine's own platform tables: physical layout of each form,
audit history, the record-event outbox, autonumber counters and files."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

# What exists in the database for each published form: its table, the column
# of each field (by stable field id) and removed fields whose data is kept
# until purged. Evolution diffs a new definition against this, never against
# a guess.
form_tables_table = sa.Table(
    "form_tables", metadata,
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("form", sa.String(63), primary_key=True),
    sa.Column("table_name", sa.String(63), nullable=False, unique=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("layout", JSONValue, nullable=False),
    sa.Column("retired", JSONValue, nullable=False),
    sa.Column("data_version", sa.BigInteger, nullable=False, server_default="0"),
)

audit_log_table = sa.Table(
    "audit_log", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("record_id", GUID, nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # create update delete restore purge
    sa.Column("changes", JSONValue, nullable=False),  # {field: {"old": .., "new": ..}}
    sa.Column("actor_id", GUID, nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(40), nullable=False, server_default="api"),
    sa.Column("form_version", sa.Integer, nullable=False),
    sa.Index("ix_audit_log_record", "app", "form", "record_id", "at"),
)

# Outbox of record events, written in the transaction of the change. The flow
# engine (and webhooks) consume it; a crash can neither lose nor invent one.
# One row per event; a bulk create writes one row naming all its records
# (``record_ids``), so an import does not double its writes.
record_events_table = sa.Table(
    "record_events", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("record_id", GUID, nullable=True),
    sa.Column("record_ids", JSONValue, nullable=True),
    sa.Column("event", sa.String(20), nullable=False),  # created updated deleted restored
    sa.Column("changed_fields", JSONValue, nullable=False),
    sa.Column("payload", JSONValue, nullable=False),  # {"record": .., "old": ..}
    sa.Column("actor_id", GUID, nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("processed_at", UTCDateTime(), nullable=True, index=True),
)

autonumber_counters_table = sa.Table(
    "autonumber_counters", metadata,
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("form", sa.String(63), primary_key=True),
    sa.Column("field_id", sa.String(40), primary_key=True),
    sa.Column("period", sa.String(16), primary_key=True),  # "2026", "202601", "" …
    sa.Column("value", sa.BigInteger, nullable=False),
)

files_table = sa.Table(
    "files", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(150), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("storage_key", sa.String(200), nullable=False),
    sa.Column("uploaded_by", GUID, nullable=True),
    sa.Column("uploaded_at", UTCDateTime(), nullable=False),
)

# Which records an uploaded file is attached to: a download is allowed to
# whoever may read one of those records (and see the attachment field).
file_links_table = sa.Table(
    "file_links", metadata,
    sa.Column("file_id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("form", sa.String(63), primary_key=True),
    sa.Column("record_id", GUID, primary_key=True),
    sa.Column("field", sa.String(63), primary_key=True),
)
