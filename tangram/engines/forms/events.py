"""Record events: written to the outbox table in the transaction of the
change, and handed to in-process subscribers (the flow engine) in that same
transaction, so a flow's first steps commit or roll back with the record."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tangram.db import new_id
from tangram.engines.context import EngineContext
from tangram.engines.forms.systables import record_events_table

EVENT_KINDS = ("created", "updated", "deleted", "restored")


@dataclass(frozen=True)
class RecordEvent:
    id: uuid.UUID
    app: str
    form: str
    record_id: uuid.UUID
    event: str
    changed_fields: tuple[str, ...]
    record: dict[str, Any]  # JSON form of the record after the change
    old: dict[str, Any] | None  # JSON form before (updates, deletes)
    actor_id: uuid.UUID | None
    at: datetime
    source: str = "api"


Subscriber = Callable[[EngineContext, RecordEvent], None]
_subscribers: list[Subscriber] = []


def subscribe(fn: Subscriber) -> Subscriber:
    """Register ``fn`` to run inside the transaction of every record change."""
    if fn not in _subscribers:
        _subscribers.append(fn)
    return fn


def unsubscribe(fn: Subscriber) -> None:
    if fn in _subscribers:
        _subscribers.remove(fn)


def emit(ctx: EngineContext, *, app: str, form: str, record_id: uuid.UUID, event: str,
         changed_fields: list[str], record: dict[str, Any], old: dict[str, Any] | None,
         source: str) -> RecordEvent:
    assert event in EVENT_KINDS
    evt = RecordEvent(id=new_id(), app=app, form=form, record_id=record_id, event=event,
                      changed_fields=tuple(changed_fields), record=record, old=old,
                      actor_id=ctx.actor.id, at=ctx.now(), source=source)
    ctx.session.execute(record_events_table.insert().values(
        id=evt.id, app=app, form=form, record_id=record_id, event=event,
        changed_fields=list(changed_fields), payload={"record": record, "old": old,
                                                      "source": source},
        actor_id=evt.actor_id, at=evt.at))
    for fn in list(_subscribers):
        fn(ctx, evt)
    return evt
