"""Outbound webhooks: subscriptions per form and record event, and the record
event subscriber that queues one signed delivery per matching subscription.

The payload is what the subscription's owner may read: nothing when the
record is outside the owner's scope, and without the fields hidden from the
owner. The platform tells this module how to build the owner's actor and
policy (``set_owner_resolver``); engine tests use everyone-may-read.

    create_subscription(ctx, app="crm", form="lead", events=["created"],
                        url="https://erp.example.com/hooks/lead")
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from tangram.db import new_id
from tangram.engines.access import AccessPolicy, AllowAll
from tangram.engines.context import Actor, EngineContext
from tangram.engines.forms import events
from tangram.engines.forms.events import EVENT_KINDS
from tangram.engines.forms.registry import get_runtime
from tangram.engines.notify.deliveries import as_id, public_delivery, queue_delivery
from tangram.engines.notify.tables import deliveries_table, webhook_subscriptions_table
from tangram.errors import DefinitionInvalid, NotFound, PermissionDenied, TangramError

OwnerResolver = Callable[[EngineContext, uuid.UUID], tuple[Actor, AccessPolicy]]


def _default_resolver(ctx: EngineContext, owner_id: uuid.UUID) -> tuple[Actor, AccessPolicy]:
    return Actor(id=owner_id), AllowAll()


_resolver: list[OwnerResolver] = [_default_resolver]


def set_owner_resolver(resolver: OwnerResolver | None) -> None:
    """How to act as a subscription's owner (the platform: its user and role policy)."""
    _resolver[0] = resolver or _default_resolver


def act_as_owner(ctx: EngineContext, owner_id: uuid.UUID) -> tuple[Actor, AccessPolicy]:
    """The actor and access policy of a user on whose behalf background work runs
    (a webhook subscription's payloads, a report alert's checks)."""
    return _resolver[0](ctx, owner_id)


# --------------------------------------------------------------------------- subscriptions

def _public(row: Mapping[str, Any] | sa.RowMapping, *, with_secret: bool = False) -> dict[str, Any]:
    out = {"id": str(row["id"]), "app": row["app"], "form": row["form"],
           "events": list(row["events"]), "url": row["url"], "active": row["active"],
           "owner_id": str(row["owner_id"]), "created_at": row["created_at"].isoformat()}
    if with_secret:
        out["secret"] = row["secret"]
    return out


def create_subscription(ctx: EngineContext, *, app: str, form: str, events: list[str],
                        url: str, secret: str | None = None) -> dict[str, Any]:
    """Subscribe ``url`` to events of a form; the answer shows the signing
    secret once (generated unless given)."""
    if ctx.actor.id is None:
        raise PermissionDenied("a webhook belongs to a user")
    get_runtime(ctx.session, app, form)  # the form exists and is published
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    bad = [e for e in events if e not in EVENT_KINDS]
    if not events or bad:
        raise DefinitionInvalid(f"events must be some of {', '.join(EVENT_KINDS)}"
                                + (f"; {', '.join(bad)} is not" if bad else ""))
    if not url.startswith(("http://", "https://")):
        raise DefinitionInvalid(f"webhook url {url!r} must start with http:// or https://")
    row = {"id": new_id(), "app": app, "form": form, "events": list(dict.fromkeys(events)),
           "url": url, "secret": secret or secrets.token_urlsafe(32), "owner_id": ctx.actor.id,
           "active": True, "created_at": ctx.now()}
    ctx.session.execute(webhook_subscriptions_table.insert(), row)
    return _public(row, with_secret=True)


def _load(ctx: EngineContext, subscription_id: uuid.UUID | str) -> sa.RowMapping:
    subscription_id = as_id(subscription_id, "webhook")
    w = webhook_subscriptions_table
    row = ctx.session.execute(sa.select(w).where(w.c.id == subscription_id)).mappings().first()
    if row is None or not (ctx.actor.is_admin or row["owner_id"] == ctx.actor.id):
        raise NotFound(f"no webhook {subscription_id}")
    return row


def list_subscriptions(ctx: EngineContext, *, app: str, form: str) -> list[dict[str, Any]]:
    w = webhook_subscriptions_table
    stmt = sa.select(w).where(w.c.app == app, w.c.form == form)
    if not ctx.actor.is_admin:
        stmt = stmt.where(w.c.owner_id == ctx.actor.id)
    return [_public(r) for r in ctx.session.execute(stmt.order_by(w.c.created_at)).mappings()]


def delete_subscription(ctx: EngineContext, *, subscription_id: uuid.UUID | str) -> None:
    row = _load(ctx, subscription_id)
    w = webhook_subscriptions_table
    ctx.session.execute(w.delete().where(w.c.id == row["id"]))


def list_deliveries(ctx: EngineContext, *, subscription_id: uuid.UUID | str,
                    limit: int = 50) -> list[dict[str, Any]]:
    sub = _load(ctx, subscription_id)
    d = deliveries_table
    rows = ctx.session.execute(sa.select(d).where(d.c.subscription_id == sub["id"])
                               .order_by(d.c.created_at.desc(), d.c.id).limit(limit)).mappings()
    return [public_delivery(r) for r in rows]


# --------------------------------------------------------------------------- the subscriber

def _matching(ctx: EngineContext, app: str, form: str, event: str) -> list[sa.RowMapping]:
    w = webhook_subscriptions_table
    rows = ctx.session.execute(sa.select(w).where(w.c.app == app, w.c.form == form,
                                                  w.c.active.is_(True))).mappings()
    return [r for r in rows if event in r["events"]]


def _interested(ctx: EngineContext, app: str, form: str, event: str) -> bool:
    return bool(_matching(ctx, app, form, event))


def visible_record(ctx: EngineContext, *, owner: Actor, policy: AccessPolicy, app: str,
                   form: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record as ``owner`` may read it, or None when it is out of their sight."""
    try:
        policy.check_form_action(owner, app, form, "read")
        policy.check_row(owner, app, form, dict(record), "read")
    except TangramError:
        return None
    hidden = {k for k, a in policy.field_access(owner, app, form).items() if a == "hidden"}
    return {k: v for k, v in record.items() if k not in hidden}


def _on_record_event(ctx: EngineContext, evt: events.RecordEvent) -> None:
    for sub in _matching(ctx, evt.app, evt.form, evt.event):
        owner, policy = _resolver[0](ctx, sub["owner_id"])
        record = visible_record(ctx, owner=owner, policy=policy, app=evt.app, form=evt.form,
                                record=evt.record)
        if record is None:
            continue
        changed = [f for f in evt.changed_fields if f in record]
        body = {"event": evt.event, "event_id": str(evt.id), "app": evt.app,
                "form": evt.form, "record_id": str(evt.record_id), "at": evt.at.isoformat(),
                "changed_fields": changed, "record": record}
        queue_delivery(ctx, channel="webhook", subscription_id=sub["id"],
                       payload={"url": sub["url"], "body": body})


events.subscribe(_on_record_event, interested=_interested)
