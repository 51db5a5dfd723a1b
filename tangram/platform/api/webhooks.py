"""Outbound webhooks: subscriptions per form and event, their delivery log,
and manual replay. Builders of an app (and administrators) manage them; the
payload is what the subscription's owner may read."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.engines.notify import deliveries, webhooks
from tangram.platform.api.body import Body
from tangram.platform.deps import BuilderActor, ContextDep, SignedInActor

router = APIRouter(tags=["webhooks"])


class SubscriptionBody(Body):
    events: list[str] = Field(description="created, updated, deleted, restored")
    url: str = Field(max_length=2000)
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="Omit to have one generated.")
    fields: list[str] | None = Field(None, max_length=100, description=(
        "Send an update only when it changed one of these fields."))
    condition: str | None = Field(None, max_length=2000, description=(
        "Send only events for which this expression over record and old is true, "
        "e.g. record.status == \"approved\" and old.status != \"approved\"."))


@router.get("/api/apps/{app}/forms/{form}/webhooks")
def list_webhooks(app: str, form: str, ctx: ContextDep,
                  _b: BuilderActor) -> dict[str, Any]:
    return {"items": webhooks.list_subscriptions(ctx, app=app, form=form)}


@router.post("/api/apps/{app}/forms/{form}/webhooks", status_code=status.HTTP_201_CREATED)
def create_webhook(app: str, form: str, body: SubscriptionBody, ctx: ContextDep,
                   _b: BuilderActor) -> dict[str, Any]:
    return webhooks.create_subscription(ctx, app=app, form=form, events=body.events,
                                        url=body.url, secret=body.secret, fields=body.fields,
                                        condition=body.condition)


@router.delete("/api/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: uuid.UUID, ctx: ContextDep, _u: SignedInActor) -> None:
    webhooks.delete_subscription(ctx, subscription_id=webhook_id)


@router.get("/api/webhooks/{webhook_id}/deliveries")
def list_deliveries(webhook_id: uuid.UUID, ctx: ContextDep,
                    _u: SignedInActor) -> dict[str, Any]:
    return {"items": webhooks.list_deliveries(ctx, subscription_id=webhook_id)}


@router.get("/api/deliveries/{delivery_id}")
def get_delivery(delivery_id: uuid.UUID, ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    """One delivery with its log: every attempt's time, response code and error."""
    return deliveries.get_delivery(ctx, delivery_id=delivery_id)


@router.post("/api/deliveries/{delivery_id}/replay")
def replay_delivery(delivery_id: uuid.UUID, ctx: ContextDep,
                    _u: SignedInActor) -> dict[str, Any]:
    """Queue the delivery again; the worker sends it on its next pass."""
    return deliveries.replay(ctx, delivery_id=delivery_id)
