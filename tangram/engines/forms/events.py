"""Record events: written to the outbox table in the transaction of the
change, and handed to in-process subscribers (the flow engine) in that same
transaction, so a flow's first steps commit or roll back with the record."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
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
    record: Mapping[str, Any]  # JSON form of the record after the change (built lazily)
    old: Mapping[str, Any] | None  # JSON form before (updates, deletes)
    actor_id: uuid.UUID | None
    at: datetime
    source: str = "api"


Subscriber = Callable[[EngineContext, RecordEvent], None]
# Whether a subscriber cares about events of (app, form, event kind); asked
# once per write, so a bulk import nobody listens to builds no event objects.
Interest = Callable[[EngineContext, str, str, str], bool]
_subscribers: list[tuple[Subscriber, Interest | None]] = []


def subscribe(fn: Subscriber, *, interested: Interest | None = None) -> Subscriber:
    """Register ``fn`` to run inside the transaction of every record change
    (of the forms and events ``interested`` accepts, when given)."""
    if all(existing is not fn for existing, _ in _subscribers):
        _subscribers.append((fn, interested))
    return fn


def unsubscribe(fn: Subscriber) -> None:
    _subscribers[:] = [(f, i) for f, i in _subscribers if f is not fn]


def _listeners(ctx: EngineContext, app: str, form: str, event: str) -> list[Subscriber]:
    return [fn for fn, interested in _subscribers
            if interested is None or interested(ctx, app, form, event)]


def emit(ctx: EngineContext, *, app: str, form: str, record_id: uuid.UUID, event: str,
         changed_fields: list[str], record: Mapping[str, Any], old: Mapping[str, Any] | None,
         source: str) -> RecordEvent:
    return emit_many(ctx, app=app, form=form, event=event, source=source,
                     items=[(record_id, changed_fields, record, old)])[0]


EventItem = tuple[uuid.UUID, list[str], Mapping[str, Any], Mapping[str, Any] | None]


def emit_bulk(ctx: EngineContext, *, app: str, form: str, event: str, source: str,
              record_ids: Sequence[uuid.UUID], items: Callable[[], list[EventItem]]
              ) -> list[RecordEvent]:
    """:func:`emit_many` for a bulk write whose items (changed fields, record
    JSON) are built by ``items()`` only when a subscriber listens; otherwise
    the outbox row with ``record_ids`` is all that is written."""
    if len(record_ids) > 1 and not _listeners(ctx, app, form, event):
        _outbox_bulk(ctx, app=app, form=form, event=event, source=source,
                     record_ids=record_ids)
        return []
    return emit_many(ctx, app=app, form=form, event=event, source=source, items=items())


def _outbox_bulk(ctx: EngineContext, *, app: str, form: str, event: str, source: str,
                 record_ids: Sequence[uuid.UUID]) -> None:
    ctx.session.execute(record_events_table.insert(), {
        "id": new_id(), "app": app, "form": form, "record_id": None,
        "record_ids": [str(i) for i in record_ids], "event": event,
        "changed_fields": [], "payload": {"source": source, "changes": {}},
        "actor_id": ctx.actor.id, "at": ctx.now()})


def emit_many(ctx: EngineContext, *, app: str, form: str, event: str, source: str,
              items: list[EventItem]) -> list[RecordEvent]:
    """Write events of one kind in one statement (bulk writes), then notify
    subscribers in order.

    The outbox row keeps what a later consumer cannot read back from the
    record table: which fields changed and their old and new values. The
    record itself is read from its table (it is written in this transaction)."""
    assert event in EVENT_KINDS
    at = ctx.now()
    listeners = _listeners(ctx, app, form, event)
    if len(items) > 1 and not listeners:
        # Bulk writes nobody listens to in-process: the outbox row is all.
        _outbox_bulk(ctx, app=app, form=form, event=event, source=source,
                     record_ids=[item[0] for item in items])
        return []
    evts = [RecordEvent(id=new_id(), app=app, form=form, record_id=record_id, event=event,
                        changed_fields=tuple(changed), record=record, old=old,
                        actor_id=ctx.actor.id, at=at, source=source)
            for record_id, changed, record, old in items]
    if not evts:
        return []
    if len(evts) == 1:
        e = evts[0]
        ctx.session.execute(record_events_table.insert(), {
            "id": e.id, "app": app, "form": form, "record_id": e.record_id,
            "record_ids": None, "event": event, "changed_fields": list(e.changed_fields),
            "payload": {"source": source, "changes": {
                k: {"old": (e.old or {}).get(k), "new": e.record.get(k)}
                for k in e.changed_fields} if event == "updated" else {}},
            "actor_id": e.actor_id, "at": at})
    else:
        assert event != "updated", "bulk updates are emitted one by one"
        ctx.session.execute(record_events_table.insert(), {
            "id": evts[0].id, "app": app, "form": form, "record_id": None,
            "record_ids": [str(e.record_id) for e in evts], "event": event,
            "changed_fields": [], "payload": {"source": source, "changes": {}},
            "actor_id": ctx.actor.id, "at": at})
    for evt in evts:
        for fn in listeners:
            fn(ctx, evt)
    return evts
