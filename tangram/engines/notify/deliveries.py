"""The outbox of outbound deliveries (webhook calls, emails, robot messages).

``queue_delivery`` writes a row in the caller's transaction; the worker calls
``run_due_deliveries``, which claims due rows, sends each outside any
transaction, logs the attempt with its response code and either finishes the
row or schedules the next attempt with exponential backoff. ``replay`` queues
a finished or failed delivery again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tangram.clock import Clock, iso_utc
from tangram.db import new_id
from tangram.engines.context import EngineContext
from tangram.engines.notify.channels import (
    CHANNELS,
    HTTP_TIMEOUT_SECONDS,
    DeliveryError,
    MailSettings,
    SendContext,
    Sender,
)
from tangram.engines.notify.tables import (
    deliveries_table,
    delivery_attempts_table,
    webhook_subscriptions_table,
)
from tangram.errors import NotFound, PermissionDenied

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=6)
LEASE = timedelta(minutes=5)
SIGNATURE_HEADER = "X-Tangram-Signature"
TIMESTAMP_HEADER = "X-Tangram-Timestamp"


def backoff(attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: 30 s, 1 min, 2 min, … at most 6 h."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def as_id(value: uuid.UUID | str, what: str) -> uuid.UUID:
    """An id from the API or a caller's dict (UUID or its text)."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} {value}") from None


def webhook_signature(secret: str, body: bytes) -> str:
    """The ``X-Tangram-Signature`` value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(payload: Mapping[str, Any], sc: SendContext) -> int:
    body = json.dumps(payload["body"], ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Tangram-Webhook/1",
        SIGNATURE_HEADER: webhook_signature(payload["secret"], body),
        TIMESTAMP_HEADER: str(int(sc.now.timestamp())),
        "X-Tangram-Event": str(payload["body"].get("event", "")),
        "X-Tangram-Delivery": str(payload["body"].get("delivery_id", "")),
    }
    try:
        response = httpx.post(payload["url"], content=body, headers=headers,
                              timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"could not reach {payload['url']}: {exc}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"the receiver answered HTTP {response.status_code}",
                            response.status_code)
    return response.status_code


SENDERS: dict[str, Sender] = {
    **{key: kind.send for key, kind in CHANNELS.items() if kind.send is not None},
    "webhook": send_webhook,
}


def queue_delivery(ctx: EngineContext, *, channel: str, payload: Mapping[str, Any],
                   subscription_id: uuid.UUID | None = None,
                   max_attempts: int = 5) -> uuid.UUID:
    assert channel in SENDERS, channel
    delivery_id = new_id()
    ctx.session.execute(deliveries_table.insert(), {
        "id": delivery_id, "channel": channel, "subscription_id": subscription_id,
        "payload": dict(payload), "status": "queued", "attempts": 0,
        "max_attempts": max_attempts, "next_attempt_at": ctx.now(), "lease_until": None,
        "last_status_code": None, "last_error": None, "created_at": ctx.now(),
        "finished_at": None})
    return delivery_id


def replay(ctx: EngineContext, *, delivery_id: uuid.UUID | str) -> dict[str, Any]:
    """Queue a delivery again (a fresh set of attempts), keeping its log."""
    delivery_id = as_id(delivery_id, "delivery")
    d = deliveries_table
    row = ctx.session.execute(sa.select(d).where(d.c.id == delivery_id)).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    _check_may_manage(ctx, row)
    ctx.session.execute(d.update().where(d.c.id == delivery_id).values(
        status="queued", attempts=0, next_attempt_at=ctx.now(), lease_until=None,
        finished_at=None))
    return get_delivery(ctx, delivery_id=delivery_id)


def _check_may_manage(ctx: EngineContext, row: Mapping[str, Any] | sa.RowMapping) -> None:
    if ctx.actor.is_admin:
        return
    if row["subscription_id"] is not None:
        s = webhook_subscriptions_table
        owner = ctx.session.execute(sa.select(s.c.owner_id).where(
            s.c.id == row["subscription_id"])).scalar()
        if owner is not None and owner == ctx.actor.id:
            return
    raise PermissionDenied("only administrators and the webhook's owner manage its "
                           "deliveries")


def get_delivery(ctx: EngineContext, *, delivery_id: uuid.UUID | str) -> dict[str, Any]:
    delivery_id = as_id(delivery_id, "delivery")
    d, a = deliveries_table, delivery_attempts_table
    row = ctx.session.execute(sa.select(d).where(d.c.id == delivery_id)).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    _check_may_manage(ctx, row)
    attempts = ctx.session.execute(sa.select(a).where(a.c.delivery_id == delivery_id)
                                   .order_by(a.c.at, a.c.id)).mappings()
    return {**public_delivery(row),
            "log": [{"at": iso_utc(r["at"]), "status_code": r["status_code"],
                     "error": r["error"], "duration_ms": r["duration_ms"]} for r in attempts]}


def public_delivery(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    payload = dict(row["payload"])
    payload.pop("secret", None)
    payload.pop("config", None)  # robot URLs and secrets stay with the channel
    return {
        "id": str(row["id"]), "channel": row["channel"],
        "subscription_id": str(row["subscription_id"]) if row["subscription_id"] else None,
        "status": row["status"], "attempts": row["attempts"],
        "max_attempts": row["max_attempts"], "last_status_code": row["last_status_code"],
        "last_error": row["last_error"], "created_at": iso_utc(row["created_at"]),
        "next_attempt_at": iso_utc(row["next_attempt_at"]),
        "finished_at": iso_utc(row["finished_at"]),
        "payload": payload,
    }


# --------------------------------------------------------------------------- worker

def _claim(sessions: sessionmaker[Session], clock: Clock, batch: int) -> list[uuid.UUID]:
    d = deliveries_table
    with sessions.begin() as s:
        now = clock.now()
        ready = sa.or_(d.c.status == "queued",
                       sa.and_(d.c.status == "sending", d.c.lease_until < now))
        ids = list(s.execute(sa.select(d.c.id).where(ready, d.c.next_attempt_at <= now)
                             .order_by(d.c.next_attempt_at).limit(batch)
                             .with_for_update(skip_locked=True)).scalars())
        if ids:
            # The lease lets another worker take over a delivery whose worker died.
            s.execute(d.update().where(d.c.id.in_(ids)).values(
                status="sending", lease_until=now + LEASE, attempts=d.c.attempts + 1))
        return ids


def _payload_to_send(s: Session, row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    payload = dict(row["payload"])
    if row["channel"] == "webhook":
        w = webhook_subscriptions_table
        secret = s.execute(sa.select(w.c.secret).where(
            w.c.id == row["subscription_id"])).scalar()
        if secret is None:
            raise DeliveryError("the webhook subscription was deleted")
        payload["secret"] = secret  # read at send time: a rotated secret applies
        payload["body"] = {**payload["body"], "delivery_id": str(row["id"])}
    return payload


def deliver_one(sessions: sessionmaker[Session], clock: Clock, delivery_id: uuid.UUID, *,
                mail: MailSettings | None) -> bool:
    d = deliveries_table
    with sessions.begin() as s:
        row = s.execute(sa.select(d).where(d.c.id == delivery_id)).mappings().first()
        if row is None or row["status"] != "sending":
            return False
        try:
            payload: dict[str, Any] | None = _payload_to_send(s, row)
        except DeliveryError as exc:
            payload, early_error = None, exc
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    if payload is None:
        error = str(early_error)
    else:
        try:
            status_code = SENDERS[row["channel"]](payload, SendContext(now=clock.now(),
                                                                       mail=mail))
        except DeliveryError as exc:
            status_code, error = exc.status_code, str(exc)
        except Exception as exc:  # a sender bug must not stop the worker
            error = f"{type(exc).__name__}: {exc}"
    duration = int((time.monotonic() - started) * 1000)
    now = clock.now()
    with sessions.begin() as s:
        s.execute(delivery_attempts_table.insert(), {
            "id": new_id(), "delivery_id": delivery_id, "at": now,
            "status_code": status_code, "error": error, "duration_ms": duration})
        values: dict[str, Any] = {"last_status_code": status_code, "last_error": error,
                                  "lease_until": None}
        if error is None:
            values.update(status="done", finished_at=now)
        elif row["attempts"] >= row["max_attempts"]:
            values.update(status="failed", finished_at=now)
        else:
            values.update(status="queued", next_attempt_at=now + backoff(row["attempts"]))
        s.execute(d.update().where(d.c.id == delivery_id).values(**values))
    return True


def run_due_deliveries(sessions: sessionmaker[Session], clock: Clock, *,
                       mail: MailSettings | None = None, batch: int = 50) -> int:
    """Send every due delivery once; returns how many were attempted. The worker
    calls it on each pass (``mail`` defaults to the SMTP settings)."""
    if mail is None:
        mail = mail_settings()
    done = 0
    for delivery_id in _claim(sessions, clock, batch):
        done += 1 if deliver_one(sessions, clock, delivery_id, mail=mail) else 0
    return done


def mail_settings() -> MailSettings | None:
    from tangram.settings import get_settings

    settings = get_settings()
    if not settings.smtp_host:
        return None
    return MailSettings(host=settings.smtp_host, port=settings.smtp_port,
                        user=settings.smtp_user, password=settings.smtp_password,
                        sender=settings.smtp_from, tls=settings.smtp_tls)
