"""Sending notifications and reading the in-app inbox.

    notify(ctx, user_ids=[u], title="新线索：张三", body="来自官网", kind="notify",
           group_channels=["sales-dingtalk"])

writes the in-app notification (unless the user turned in-app off), queues an
email for users who turned email on, and queues a message to each group robot
named — all in the caller's transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tangram.db import new_id
from tangram.db.prepared import Prepared
from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.flows.tables import notifications_table
from tangram.engines.notify.channels import CHANNELS
from tangram.engines.notify.deliveries import queue_delivery
from tangram.engines.notify.tables import group_channels_table, preferences_table
from tangram.errors import (
    Conflict,
    DefinitionInvalid,
    ErrorItem,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def notify(ctx: EngineContext, *, user_ids: Iterable[uuid.UUID], title: str, body: str = "",
           kind: str = "notify", group_channels: Iterable[str] = (),
           instance_id: uuid.UUID | None = None, task_id: uuid.UUID | None = None,
           in_app_rows: list[dict[str, Any]] | None = None) -> None:
    """``in_app_rows``: append the in-app notifications there instead of
    inserting them (a caller that writes its rows in one batch inserts them
    with :data:`NOTIFICATION_INSERT`)."""
    users = list(dict.fromkeys(user_ids))
    now = ctx.now()
    chosen = channels_of(ctx, users)
    in_app = [u for u in users if "in_app" in chosen[u]]
    if in_app:
        rows = [{"id": new_id(), "user_id": u, "kind": kind, "title": title[:300], "body": body,
                 "instance_id": instance_id, "task_id": task_id, "created_at": now,
                 "read_at": None} for u in in_app]
        if in_app_rows is not None:
            in_app_rows.extend(rows)
        else:
            NOTIFICATION_INSERT.executemany(ctx.session, rows)
    by_email = [u for u in users if "email" in chosen[u]]
    if by_email:
        u = users_table
        addresses = [e for e in ctx.session.execute(
            sa.select(u.c.email).where(u.c.id.in_(by_email), u.c.email.is_not(None),
                                       u.c.status == "active")).scalars() if e]
        for address in addresses:
            queue_delivery(ctx, channel="email",
                           payload={"to": [address], "title": title, "body": body})
    for key in dict.fromkeys(group_channels):
        channel = _group_channel(ctx, key)
        queue_delivery(ctx, channel=channel["kind"], payload={
            "channel_key": key, "config": channel["config"], "title": title, "body": body})


# --------------------------------------------------------------------------- preferences

_PREFERENCES = sa.select(preferences_table).where(
    preferences_table.c.user_id.in_(sa.bindparam("users", expanding=True)))
_USER_PREFERENCES = Prepared(sa.select(preferences_table).where(
    preferences_table.c.user_id == sa.bindparam("user")))
NOTIFICATION_INSERT = Prepared(notifications_table.insert(),
                               column_keys=[c.name for c in notifications_table.c])


def channels_of(ctx: EngineContext, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """The personal channels each user receives notifications on."""
    defaults = {k for k, c in CHANNELS.items() if c.personal and c.default_enabled}
    out = {u: set(defaults) for u in user_ids}
    if not user_ids:
        return out
    known = _remembered(ctx.session)
    if all(u in known for u in user_ids):
        rows: Iterable[Mapping[str, Any]] = [
            {"user_id": u, "channel": c, "enabled": on}
            for u in user_ids for c, on in known[u].items()]
    elif len(user_ids) == 1:  # a task's assignee, the common case: a prepared statement
        rows = _USER_PREFERENCES.all(ctx.session, {"user": user_ids[0]})
    else:
        rows = [dict(r) for r in ctx.session.execute(_PREFERENCES, {"users": user_ids})
                .mappings()]
    for row in rows:
        (out[row["user_id"]].add if row["enabled"] else
         out[row["user_id"]].discard)(row["channel"])
    return out


_REMEMBERED = "tangram.notify.preferences"


def remember_preferences(session: Session, preferences: Mapping[uuid.UUID, Mapping[str, bool]]
                         ) -> None:
    """Preference rows (channel → enabled; no entry: the default) a caller
    read anyway — e.g. with the users it looked up — so that notifying those
    users in the same transaction does not read them again."""
    _remembered(session).update({u: dict(p) for u, p in preferences.items()})


def _remembered(session: Session) -> dict[uuid.UUID, dict[str, bool]]:
    # Valid for the current transaction only (another one may see changes).
    transaction = session.get_transaction()
    holder = session.info.get(_REMEMBERED)
    if holder is None or holder[0] is not transaction:
        holder = session.info[_REMEMBERED] = (transaction, {})
    return holder[1]  # type: ignore[no-any-return]


def get_preferences(ctx: EngineContext) -> dict[str, Any]:
    assert ctx.actor.id is not None
    enabled = channels_of(ctx, [ctx.actor.id])[ctx.actor.id]
    return {"channels": [
        {"channel": k, "label": c.label, "enabled": k in enabled}
        for k, c in CHANNELS.items() if c.personal]}


def set_preferences(ctx: EngineContext, *, channels: Mapping[str, bool]) -> dict[str, Any]:
    """Turn personal channels on or off for the acting user."""
    if ctx.actor.id is None:
        raise PermissionDenied("only users have notification preferences")
    personal = [k for k, c in CHANNELS.items() if c.personal]
    unknown = [k for k in channels if k not in personal]
    if unknown:
        raise ValidationFailed([ErrorItem(
            code="channel_unknown", field=f"channels.{k}",
            message=f"{k!r} is not a personal channel; choose from {', '.join(personal)}")
            for k in unknown])
    p = preferences_table
    ctx.session.info.pop(_REMEMBERED, None)
    for key, enabled in channels.items():
        ctx.session.execute(p.delete().where(p.c.user_id == ctx.actor.id, p.c.channel == key))
        ctx.session.execute(p.insert(), {"user_id": ctx.actor.id, "channel": key,
                                         "enabled": bool(enabled)})
    return get_preferences(ctx)


# --------------------------------------------------------------------------- inbox

def _public(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    return {"id": str(row["id"]), "kind": row["kind"], "title": row["title"],
            "body": row["body"],
            "instance_id": str(row["instance_id"]) if row["instance_id"] else None,
            "task_id": str(row["task_id"]) if row["task_id"] else None,
            "created_at": row["created_at"].isoformat(),
            "read_at": row["read_at"].isoformat() if row["read_at"] else None}


def inbox(ctx: EngineContext, *, unread_only: bool = False, limit: int = 50) -> dict[str, Any]:
    n = notifications_table
    stmt = sa.select(n).where(n.c.user_id == ctx.actor.id)
    if unread_only:
        stmt = stmt.where(n.c.read_at.is_(None))
    rows = ctx.session.execute(stmt.order_by(n.c.created_at.desc(), n.c.id)
                               .limit(limit)).mappings()
    return {"items": [_public(r) for r in rows], "unread": unread_count(ctx)}


def unread_count(ctx: EngineContext) -> int:
    n = notifications_table
    return int(ctx.session.execute(
        sa.select(sa.func.count()).select_from(n)
        .where(n.c.user_id == ctx.actor.id, n.c.read_at.is_(None))).scalar_one())


def mark_read(ctx: EngineContext, *, ids: Iterable[uuid.UUID] | None = None) -> int:
    """Mark the actor's notifications read (``ids=None``: all of them); returns
    how many changed. Other users' notifications are never touched."""
    n = notifications_table
    stmt = n.update().where(n.c.user_id == ctx.actor.id, n.c.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(n.c.id.in_(list(ids)))
    return int(ctx.session.execute(stmt.values(read_at=ctx.now())).rowcount)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- group channels

def _require_admin(ctx: EngineContext) -> None:
    if not ctx.actor.is_admin:
        raise PermissionDenied("only administrators configure group channels")


def _group_channel(ctx: EngineContext, key: str) -> sa.RowMapping:
    g = group_channels_table
    row = ctx.session.execute(sa.select(g).where(g.c.key == key)).mappings().first()
    if row is None:
        raise NotFound(f"no group channel {key!r}; an administrator adds it under "
                       "/api/notifications/group-channels")
    return row


def create_group_channel(ctx: EngineContext, *, key: str, kind: str, label: str,
                         config: Mapping[str, Any]) -> dict[str, Any]:
    _require_admin(ctx)
    channel = CHANNELS.get(kind)
    if channel is None or channel.personal or channel.config_model is None:
        groups = [k for k, c in CHANNELS.items() if not c.personal]
        raise DefinitionInvalid(f"{kind!r} is not a group channel; choose from "
                                f"{', '.join(groups)}")
    if not KEY_PATTERN.match(key):
        raise DefinitionInvalid(f"channel key {key!r} must be lowercase letters, digits, "
                                "'-' or '_', starting with a letter")
    try:
        checked = channel.config_model.model_validate(config).model_dump()
    except ValidationError as exc:
        raise ValidationFailed([ErrorItem(code="config_invalid",
                                          field="config." + ".".join(map(str, e["loc"])),
                                          message=e["msg"]) for e in exc.errors()]) from None
    g = group_channels_table
    if ctx.session.execute(sa.select(g.c.key).where(g.c.key == key)).first():
        raise Conflict(f"group channel {key!r} already exists")
    ctx.session.execute(g.insert(), {"key": key, "kind": kind, "label": label,
                                     "config": checked, "created_at": ctx.now()})
    return _public_channel(_group_channel(ctx, key))


def _public_channel(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    # Robot URLs carry access tokens and secrets: never shown back.
    return {"key": row["key"], "kind": row["kind"], "label": row["label"],
            "created_at": row["created_at"].isoformat()}


def list_group_channels(ctx: EngineContext) -> list[dict[str, Any]]:
    g = group_channels_table
    return [_public_channel(r) for r in
            ctx.session.execute(sa.select(g).order_by(g.c.key)).mappings()]


def delete_group_channel(ctx: EngineContext, *, key: str) -> None:
    _require_admin(ctx)
    _group_channel(ctx, key)
    g = group_channels_table
    ctx.session.execute(g.delete().where(g.c.key == key))
