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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tangram.clock import iso_utc
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
from tangram.metamodel.common import localize

DEFAULT_LANGUAGE = "zh"
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


# A notification's title or body: one text, a text per language
# ({"zh": …, "en": …}), or a function of the language. Each recipient reads
# it in their own language; group robots in the language of the request.
Text = str | Mapping[str, str] | Callable[[str], str]


def text_in(text: Text, language: str) -> str:
    if isinstance(text, str):
        return text
    if callable(text):
        return text(language)
    return localize(dict(text), language)


def notify(ctx: EngineContext, *, user_ids: Iterable[uuid.UUID], title: Text, body: Text = "",
           kind: str = "notify", group_channels: Iterable[str] = (),
           instance_id: uuid.UUID | None = None, task_id: uuid.UUID | None = None,
           in_app_rows: list[dict[str, Any]] | None = None) -> None:
    """``in_app_rows``: append the in-app notifications there instead of
    inserting them (a caller that writes its rows in one batch inserts them
    with :data:`NOTIFICATION_INSERT`)."""
    users = list(dict.fromkeys(user_ids))
    now = ctx.now()
    rendered: dict[str, tuple[str, str]] = {}

    def texts(language: str) -> tuple[str, str]:
        if language not in rendered:
            rendered[language] = (text_in(title, language), text_in(body, language))
        return rendered[language]

    chosen = recipients(ctx, users)
    in_app = [u for u in users if "in_app" in chosen[u].channels]
    if in_app:
        rows = []
        for u in in_app:
            t, b = texts(chosen[u].language)
            rows.append({"id": new_id(), "user_id": u, "kind": kind, "title": t[:300],
                         "body": b, "instance_id": instance_id, "task_id": task_id,
                         "created_at": now, "read_at": None})
        if in_app_rows is not None:
            in_app_rows.extend(rows)
        else:
            NOTIFICATION_INSERT.executemany(ctx.session, rows)
    by_email = [u for u in users if "email" in chosen[u].channels]
    if by_email:
        ut = users_table
        for user_id, address in ctx.session.execute(
                sa.select(ut.c.id, ut.c.email).where(ut.c.id.in_(by_email),
                                                     ut.c.email.is_not(None),
                                                     ut.c.status == "active")):
            if address:
                t, b = texts(chosen[user_id].language)
                queue_delivery(ctx, channel="email", payload={"to": [address], "title": t,
                                                              "body": b})
    for key in dict.fromkeys(group_channels):
        channel = _group_channel(ctx, key)
        t, b = texts(ctx.language)
        queue_delivery(ctx, channel=channel["kind"], payload={
            "channel_key": key, "config": channel["config"], "title": t, "body": b})


# --------------------------------------------------------------------------- preferences

def _recipient_query(where: Any) -> Any:
    u, p = users_table, preferences_table
    return (sa.select(u.c.id.label("user_id"), u.c.language, p.c.channel, p.c.enabled)
            .select_from(u.outerjoin(p, p.c.user_id == u.c.id)).where(where))


_RECIPIENTS = _recipient_query(users_table.c.id.in_(sa.bindparam("users", expanding=True)))
_RECIPIENT = Prepared(_recipient_query(users_table.c.id == sa.bindparam("user")))
NOTIFICATION_INSERT = Prepared(notifications_table.insert(),
                               column_keys=[c.name for c in notifications_table.c])


@dataclass(frozen=True)
class Recipient:
    channels: frozenset[str]  # the personal channels the user receives notifications on
    language: str


def recipients(ctx: EngineContext, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Recipient]:
    """Each user's personal channels and language (one query, or none when a
    caller remembered them with the users it looked up)."""
    defaults = {k for k, c in CHANNELS.items() if c.personal and c.default_enabled}
    if not user_ids:
        return {}
    known = _remembered(ctx.session)
    if not all(u in known for u in user_ids):
        if len(user_ids) == 1:  # a task's assignee, the common case: a prepared statement
            rows: Iterable[Mapping[str, Any]] = _RECIPIENT.all(ctx.session,
                                                               {"user": user_ids[0]})
        else:
            rows = [dict(r) for r in ctx.session.execute(_RECIPIENTS, {"users": user_ids})
                    .mappings()]
        remember_users(ctx.session, rows)
    out = {}
    for u in user_ids:
        preferences, language = known.get(u, ({}, DEFAULT_LANGUAGE))
        channels = {c for c in defaults if preferences.get(c, True)}
        channels |= {c for c, on in preferences.items() if on}
        out[u] = Recipient(frozenset(channels), language)
    return out


def channels_of(ctx: EngineContext, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """The personal channels each user receives notifications on."""
    return {u: set(r.channels) for u, r in recipients(ctx, user_ids).items()}


_REMEMBERED = "tangram.notify.recipients"


def remember_users(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """Users' languages and preference rows (``user_id``, ``language``,
    ``channel``, ``enabled``; channel None: the defaults), as a caller read
    them with the users it looked up, so that notifying those users in the
    same transaction does not read them again."""
    known = _remembered(session)
    fresh: set[uuid.UUID] = set()
    for row in rows:
        user_id = row["user_id"]
        if user_id not in fresh:
            fresh.add(user_id)
            known[user_id] = ({}, row["language"] or DEFAULT_LANGUAGE)
        if row["channel"] is not None:
            known[user_id][0][row["channel"]] = bool(row["enabled"])


def _remembered(session: Session) -> dict[uuid.UUID, tuple[dict[str, bool], str]]:
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
            "created_at": iso_utc(row["created_at"]),
            "read_at": iso_utc(row["read_at"])}


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
            "created_at": iso_utc(row["created_at"])}


def list_group_channels(ctx: EngineContext) -> list[dict[str, Any]]:
    g = group_channels_table
    return [_public_channel(r) for r in
            ctx.session.execute(sa.select(g).order_by(g.c.key)).mappings()]


def delete_group_channel(ctx: EngineContext, *, key: str) -> None:
    _require_admin(ctx)
    _group_channel(ctx, key)
    g = group_channels_table
    ctx.session.execute(g.delete().where(g.c.key == key))
