"""The import engine's platform tables: one row per import job, and the rows
that failed (which become the job's error file)."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

# A job's state is all here, so any process can report on it or resume it.
# ``position`` counts the data rows of the file whose outcome is committed:
# it moves in the same transaction as the records written for those rows, so
# a job that dies resumes after the last committed batch — no row twice, none
# lost. ``runner`` names the process running the job; every batch commits
# only while it still does (a stale runner that was taken over stops).
import_jobs_table = sa.Table(
    "import_jobs", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    # uploaded → running → succeeded | failed
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("phase", sa.String(20), nullable=True),  # checking | writing (all_or_nothing)
    sa.Column("mode", sa.String(20), nullable=False),  # valid_only | all_or_nothing
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("format", sa.String(10), nullable=False),  # csv | xlsx
    sa.Column("encoding", sa.String(20), nullable=True),
    sa.Column("source_file_id", GUID, nullable=False),
    sa.Column("error_file_id", GUID, nullable=True),
    sa.Column("header", JSONValue, nullable=False),  # the file's column titles
    sa.Column("mapping", JSONValue, nullable=False),  # field key (or null) per column
    sa.Column("dedup", JSONValue, nullable=True),  # {"fields": [...], "mode": "skip"}
    # Rows are history (old follow-ups from another system): written with source
    # "history", which starts only flows that name it in their sources.
    sa.Column("historical", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("total_rows", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("language", sa.String(10), nullable=False, server_default="zh"),
    sa.Column("created_by", GUID, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("runner", sa.String(40), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Index("ix_import_jobs_form", "app", "form", "created_at"),
    sa.Index("ix_import_jobs_status", "status"),
)

import_job_errors_table = sa.Table(
    "import_job_errors", metadata,
    sa.Column("job_id", GUID, primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),  # in the file; the header is 1
    sa.Column("cells", JSONValue, nullable=False),  # the row as read, as text
    sa.Column("errors", JSONValue, nullable=False),  # [{"field", "code", "message"}]
    sa.Column("reason", sa.Text, nullable=False),
)
