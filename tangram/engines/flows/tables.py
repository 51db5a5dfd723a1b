"""State of running flows, all in tables: nothing a worker or API process
needs lives only in memory, so an instance survives a killed process."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

# One row per run of a flow. ``row_version`` is bumped by every step; steps
# lock the row first (SELECT … FOR UPDATE), which serializes everything that
# happens to one instance across API and worker processes.
instances_table = sa.Table(
    "flow_instances", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("flow", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("form", sa.String(63), nullable=True),
    sa.Column("record_id", GUID, nullable=True),
    # running | completed | failed | cancelled | withdrawn
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("outcome", sa.String(40), nullable=True),
    sa.Column("variables", JSONValue, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_by", GUID, nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("row_version", sa.Integer, nullable=False, server_default="1"),
    # A date-relative or scheduled start names its occurrence, so it starts once.
    sa.Column("dedupe_key", sa.String(200), nullable=True, unique=True),
    sa.Index("ix_flow_instances_record", "app", "form", "record_id"),
    sa.Index("ix_flow_instances_status", "status"),
    sa.Index("ix_flow_instances_started_by", "started_by"),
)

# A token at a node: active while the node waits (approval, delay, join, a
# queued action), completed or cancelled afterwards.
executions_table = sa.Table(
    "flow_node_executions", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("instance_id", GUID, sa.ForeignKey("flow_instances.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("node", sa.String(63), nullable=False),
    sa.Column("node_type", sa.String(30), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # active completed cancelled
    sa.Column("scope_id", GUID, nullable=True),  # the parallel split execution it runs under
    sa.Column("data", JSONValue, nullable=False),
    sa.Column("decision", sa.String(20), nullable=True),
    sa.Column("entered_at", UTCDateTime(), nullable=False),
    sa.Column("left_at", UTCDateTime(), nullable=True),
    sa.Index("ix_flow_node_executions_instance", "instance_id", "status"),
)

tasks_table = sa.Table(
    "flow_tasks", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("instance_id", GUID, sa.ForeignKey("flow_instances.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("execution_id", GUID, sa.ForeignKey("flow_node_executions.id",
                                                  ondelete="CASCADE"), nullable=False),
    sa.Column("node", sa.String(63), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # approve | cc
    sa.Column("assignee_id", GUID, nullable=False),
    # open | queued | approved | rejected | returned | transferred | cancelled | cc
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waits_for", GUID, nullable=True),  # a task added before/after this one
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("decision", sa.String(20), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("acted_by", GUID, nullable=True),
    sa.Column("acted_at", UTCDateTime(), nullable=True),
    sa.Column("read_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index("ix_flow_tasks_assignee", "assignee_id", "status"),
    sa.Index("ix_flow_tasks_execution", "execution_id", "status"),
)

# Timers (timeout stages, delays) and jobs (queued actions such as HTTP
# calls) share one shape: due time, status, attempts and a lease. A worker
# claims due rows with FOR UPDATE SKIP LOCKED and holds a lease; finishing
# is a conditional UPDATE on (claimed_by, lease_until), so a worker whose
# lease ran out cannot complete what another worker has since claimed.
timers_table = sa.Table(
    "flow_timers", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("instance_id", GUID, sa.ForeignKey("flow_instances.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("execution_id", GUID, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # timeout | delay
    sa.Column("payload", JSONValue, nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending fired cancelled
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("fired_at", UTCDateTime(), nullable=True),
    sa.Index("ix_flow_timers_due", "status", "due_at"),
    sa.Index("ix_flow_timers_execution", "execution_id"),
)

jobs_table = sa.Table(
    "flow_jobs", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("instance_id", GUID, sa.ForeignKey("flow_instances.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("execution_id", GUID, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),  # action
    sa.Column("payload", JSONValue, nullable=False),
    sa.Column("run_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # queued running done failed cancelled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="4"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index("ix_flow_jobs_due", "status", "run_at"),
)

history_table = sa.Table(
    "flow_history", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("instance_id", GUID, sa.ForeignKey("flow_instances.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor_id", GUID, nullable=True),
    sa.Column("node", sa.String(63), nullable=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("details", JSONValue, nullable=False),
    sa.Index("ix_flow_history_instance", "instance_id", "at"),
)

# Published flows that start by themselves: record triggers (looked up per
# record event), schedules and date-relative triggers (their next tick, a
# lease for the worker that fires it) and webhooks (the token's hash).
triggers_table = sa.Table(
    "flow_triggers", metadata,
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("flow", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("form", sa.String(63), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("next_run_at", UTCDateTime(), nullable=True),
    sa.Column("last_run_at", UTCDateTime(), nullable=True),
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("webhook_token_hash", sa.String(64), nullable=True),
    sa.Index("ix_flow_triggers_form", "app", "form", "kind"),
    sa.Index("ix_flow_triggers_due", "next_run_at"),
)

# Plain in-app notifications (reminders, CCs, escalations, notify actions).
notifications_table = sa.Table(
    "notifications", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("user_id", GUID, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("instance_id", GUID, nullable=True),
    sa.Column("task_id", GUID, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("read_at", UTCDateTime(), nullable=True),
    sa.Index("ix_notifications_user", "user_id", "created_at"),
)

# Round-robin positions of assign-owner actions.
counters_table = sa.Table(
    "flow_counters", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
