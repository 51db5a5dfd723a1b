"""Tables of notifications and outbound webhooks. In-app notifications stay in
the flow engine's ``notifications`` table (one inbox for every source)."""

from __future__ import annotations

import sqlalchemy as sa

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

# Which channels a user wants personal notifications on; a missing row means
# the channel's default (in-app on, email off).
preferences_table = sa.Table(
    "notification_preferences", metadata,
    sa.Column("user_id", GUID, primary_key=True),
    sa.Column("channel", sa.String(30), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
)

# Group channels configured by administrators (a DingTalk or WeCom group
# robot), addressed by key from a flow's notify action.
group_channels_table = sa.Table(
    "notification_group_channels", metadata,
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("config", JSONValue, nullable=False),  # webhook URL, signing secret
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

webhook_subscriptions_table = sa.Table(
    "webhook_subscriptions", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("events", JSONValue, nullable=False),  # list of record event kinds
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    # The payload is what this user may read (row scope and field access).
    sa.Column("owner_id", GUID, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Only updates that change one of these fields (null: any change) …
    sa.Column("fields", JSONValue, nullable=True),
    # … and only events for which this expression (record, old) is true.
    sa.Column("condition", sa.Text, nullable=True),
    sa.Index("ix_webhook_subscriptions_form", "app", "form"),
)

# The outbox of everything sent to another system: webhook calls, emails and
# robot messages, written in the transaction of the change that caused them
# and sent by the worker (so a rolled-back change sends nothing).
deliveries_table = sa.Table(
    "outbound_deliveries", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("channel", sa.String(30), nullable=False),  # webhook email dingtalk wecom
    sa.Column("subscription_id", GUID, nullable=True),
    sa.Column("payload", JSONValue, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # queued sending done failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="5"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index("ix_outbound_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_outbound_deliveries_subscription", "subscription_id", "created_at"),
)

# The delivery log: one row per attempt, with the response code.
delivery_attempts_table = sa.Table(
    "outbound_delivery_attempts", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("delivery_id", GUID,
              sa.ForeignKey("outbound_deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_outbound_delivery_attempts_delivery", "delivery_id", "at"),
)
