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

import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.engines.access import AccessPolicy, AllowAll
from tangram.engines.context import Actor, EngineContext
from tangram.engines.expressions import EvalContext, ExpressionError, compile_expression
from tangram.engines.forms import events
from tangram.engines.forms.events import EVENT_KINDS
from tangram.engines.forms.query import SYSTEM_COLUMNS
from tangram.engines.forms.registry import get_runtime
from tangram.engines.forms.typed import typed_values
from tangram.engines.notify.deliveries import as_id, public_delivery, queue_delivery
from tangram.engines.notify.tables import deliveries_table, webhook_subscriptions_table
from tangram.errors import (
    DefinitionInvalid,
    ErrorItem,
    NotFound,
    PermissionDenied,
    TangramError,
    ValidationFailed,
)

OwnerResolver = Callable[[EngineContext, uuid.UUID], tuple[Actor, AccessPolicy]]
log = logging.getLogger(__name__)


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
           "fields": row["fields"], "condition": row["condition"],
           "owner_id": str(row["owner_id"]), "created_at": iso_utc(row["created_at"])}
    if with_secret:
        out["secret"] = row["secret"]
    return out


def create_subscription(ctx: EngineContext, *, app: str, form: str, events: list[str],
                        url: str, secret: str | None = None, fields: list[str] | None = None,
                        condition: str | None = None) -> dict[str, Any]:
    """Subscribe ``url`` to events of a form; the answer shows the signing
    secret once (generated unless given). ``fields``: an update is sent only
    when it changed one of them; ``condition``: an expression over ``record``
    and ``old`` that must be true (e.g. ``record.status == "approved"``)."""
    if ctx.actor.id is None:
        raise PermissionDenied("a webhook belongs to a user")
    rt = get_runtime(ctx.session, app, form)  # the form exists and is published
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    _check_filters(rt, fields, condition)
    bad = [e for e in events if e not in EVENT_KINDS]
    if not events or bad:
        raise DefinitionInvalid(f"events must be some of {', '.join(EVENT_KINDS)}"
                                + (f"; {', '.join(bad)} is not" if bad else ""))
    if not url.startswith(("http://", "https://")):
        raise DefinitionInvalid(f"webhook url {url!r} must start with http:// or https://")
    row = {"id": new_id(), "app": app, "form": form, "events": list(dict.fromkeys(events)),
           "url": url, "secret": secret or secrets.token_urlsafe(32), "owner_id": ctx.actor.id,
           "active": True, "created_at": ctx.now(),
           "fields": list(dict.fromkeys(fields)) if fields else None,
           "condition": condition or None}
    ctx.session.execute(webhook_subscriptions_table.insert(), row)
    return _public(row, with_secret=True)


_NAMES = ("record", "old")


def _check_filters(rt: Any, fields: list[str] | None, condition: str | None) -> None:
    errors: list[ErrorItem] = []
    for i, key in enumerate(fields or []):
        if rt.field(key) is None and key not in SYSTEM_COLUMNS:
            errors.append(ErrorItem(code="unknown_field", field=f"fields[{i}]",
                                    message=f"form {rt.key!r} has no field {key!r}"))
    if condition:
        try:
            compiled = compile_expression(condition, allowed_names=_NAMES)
        except ExpressionError as exc:
            errors.append(ErrorItem(code="expression_invalid", field="condition",
                                    message=exc.message))
        else:
            for name in _NAMES:
                for key in sorted(compiled.referenced_fields.get(name, set())):
                    if rt.field(key) is None and key not in SYSTEM_COLUMNS:
                        errors.append(ErrorItem(
                            code="unknown_field", field="condition",
                            message=f"the condition reads {name}.{key}, which form "
                                    f"{rt.key!r} lacks"))
    if errors:
        raise ValidationFailed(errors)


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
        if sub["fields"] and evt.event == "updated" and not (
                set(sub["fields"]) & set(evt.changed_fields)):
            continue
        owner, policy = _resolver[0](ctx, sub["owner_id"])
        record = visible_record(ctx, owner=owner, policy=policy, app=evt.app, form=evt.form,
                                record=evt.record)
        if record is None:
            continue
        changed = [f for f in evt.changed_fields if f in record]
        if sub["fields"] and evt.event == "updated" and not set(sub["fields"]) & set(changed):
            continue  # what changed is hidden from the owner
        if sub["condition"] and not _holds(ctx, sub["condition"], evt, record, owner, policy):
            continue
        body = {"event": evt.event, "event_id": str(evt.id), "app": evt.app,
                "form": evt.form, "record_id": str(evt.record_id), "at": iso_utc(evt.at),
                "changed_fields": changed, "record": record}
        queue_delivery(ctx, channel="webhook", subscription_id=sub["id"],
                       payload={"url": sub["url"], "body": body})


def _holds(ctx: EngineContext, condition: str, evt: events.RecordEvent,
           record: Mapping[str, Any], owner: Actor, policy: AccessPolicy) -> bool:
    """The subscription's condition, over what its owner may read (a condition
    cannot learn a hidden field: it reads as none)."""
    old = visible_record(ctx, owner=owner, policy=policy, app=evt.app, form=evt.form,
                         record=evt.old) if evt.old else None
    try:
        value = compile_expression(condition, allowed_names=_NAMES).evaluate(
            {"record": typed_values(ctx, evt.app, evt.form, record),
             "old": typed_values(ctx, evt.app, evt.form, old) if old else {}},
            context=EvalContext(now=ctx.now(), timezone=ctx.timezone))
    except ExpressionError as exc:
        # A value the condition cannot compare: not a match (said in the log).
        log.warning("webhook condition %r on %s.%s record %s: %s", condition, evt.app,
                    evt.form, evt.record_id, exc.message)
        return False
    return value is True


events.subscribe(_on_record_event, interested=_interested)
