"""Triggers: what starts an instance. One entry per kind in :data:`TRIGGER_KINDS`.

Record triggers run in the transaction of the record change (the form
engine hands every event to :func:`on_record_event`), so the instance and its
first steps commit or roll back with the record. Schedules and date-relative
triggers are ticked by the worker: each ``flow_triggers`` row holds its next
tick and is claimed with a row lock; missed ticks follow the trigger's rule
(run once on recovery, or skip) and never fire as a burst.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from croniter import croniter

from tangram.db.types import UTCDateTime
from tangram.engines.context import EngineContext
from tangram.engines.flows.runtime import (
    Loaded,
    load_version,
    start_instance,
    system_context,
)
from tangram.engines.flows.tables import instances_table, triggers_table
from tangram.engines.forms import events
from tangram.engines.forms.typed import typed_values
from tangram.errors import Conflict, ErrorItem, NotFound, PermissionDenied, ValidationFailed
from tangram.metamodel import flows as fl
from tangram.metamodel.common import localize

SCHEDULE_GRACE = timedelta(minutes=1)  # a tick this late still counts as on time


@dataclass(frozen=True)
class TriggerKindSpec:
    kind: str
    label: dict[str, str]
    model: type[Any]
    record_event: str | None = None  # the record event that fires it
    ticks: bool = False  # the worker ticks it (next_run_at)
    doc: str = ""


TRIGGER_KINDS: dict[str, TriggerKindSpec] = {spec.kind: spec for spec in (
    TriggerKindSpec("record_created", {"zh": "新建记录时", "en": "Record created"},
                    fl.RecordCreatedTrigger, record_event="created"),
    TriggerKindSpec("record_updated", {"zh": "修改记录时", "en": "Record updated"},
                    fl.RecordUpdatedTrigger, record_event="updated"),
    TriggerKindSpec("record_deleted", {"zh": "删除记录时", "en": "Record deleted"},
                    fl.RecordDeletedTrigger, record_event="deleted"),
    TriggerKindSpec("submitted", {"zh": "提交审批时", "en": "Submitted for approval"},
                    fl.SubmittedTrigger),
    TriggerKindSpec("schedule", {"zh": "定时", "en": "Schedule"}, fl.ScheduleTrigger,
                    ticks=True),
    TriggerKindSpec("date_relative", {"zh": "按日期字段", "en": "Relative to a date field"},
                    fl.DateRelativeTrigger, ticks=True),
    TriggerKindSpec("manual", {"zh": "手动发起", "en": "Manual"}, fl.ManualTrigger),
    TriggerKindSpec("webhook", {"zh": "收到 Webhook 时", "en": "Inbound webhook"},
                    fl.WebhookTrigger),
)}
_EVENT_KINDS = {s.record_event: k for k, s in TRIGGER_KINDS.items() if s.record_event}


# --- publishing --------------------------------------------------------------------------

def sync_trigger(ctx: EngineContext, loaded: Loaded) -> str | None:
    """Point the flow's trigger row at the newly published version. Returns a
    new webhook token the first time a webhook flow is published (shown once)."""
    start = loaded.flow.start
    assert start is not None
    trigger = start.trigger
    t = triggers_table
    s = ctx.session
    row = s.execute(sa.select(t).where(t.c.app == loaded.app, t.c.flow == loaded.key)
                    .with_for_update()).mappings().first()
    token = None
    values: dict[str, Any] = {"kind": trigger.kind, "form": loaded.flow.form,
                              "version": loaded.version, "active": True,
                              "next_run_at": next_tick(trigger, ctx.now(), ctx.timezone)}
    if trigger.kind == "webhook" and (row is None or not row["webhook_token_hash"]):
        token = secrets.token_urlsafe(32)
        values["webhook_token_hash"] = _hash(token)
    if row is None:
        s.execute(t.insert().values(app=loaded.app, flow=loaded.key, **values))
    else:
        s.execute(t.update().where(t.c.app == loaded.app, t.c.flow == loaded.key)
                  .values(**values))
    s.info.pop(_SESSION_KEY, None)
    return token


def rotate_webhook_token(ctx: EngineContext, *, app: str, flow: str) -> str:
    token = secrets.token_urlsafe(32)
    t = triggers_table
    res = ctx.session.execute(t.update().where(t.c.app == app, t.c.flow == flow,
                                               t.c.kind == "webhook")
                              .values(webhook_token_hash=_hash(token)))
    if not res.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"flow {flow!r} of app {app!r} is not a published webhook flow")
    return token


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def next_tick(trigger: Any, after: datetime, timezone: str) -> datetime | None:
    if isinstance(trigger, fl.ScheduleTrigger):
        zone = ZoneInfo(trigger.timezone or timezone)
        nxt = croniter(trigger.cron, after.astimezone(zone)).get_next(datetime)
        return nxt.astimezone(ZoneInfo("UTC"))
    if isinstance(trigger, fl.DateRelativeTrigger):
        zone = ZoneInfo(timezone)
        local = after.astimezone(zone)
        h, m = (int(x) for x in trigger.at.split(":"))
        candidate = local.replace(hour=h, minute=m, second=0, microsecond=0)
        if candidate <= local:
            candidate = (candidate + timedelta(days=1)).replace(hour=h, minute=m)
        return candidate.astimezone(ZoneInfo("UTC"))
    return None


# --- record events --------------------------------------------------------------------------

_SESSION_KEY = "tangram.flow_triggers"


def _record_triggers(ctx: EngineContext, app: str, form: str) -> list[Any]:
    """The published record triggers of one form, remembered for the rest of
    the transaction (a bulk import looks them up once, not per record)."""
    per_session = ctx.session.info.setdefault(_SESSION_KEY, {})
    key = (app, form)
    if key not in per_session:
        t = triggers_table
        per_session[key] = ctx.session.execute(
            sa.select(t.c.flow, t.c.kind, t.c.version)
            .where(t.c.app == app, t.c.form == form, t.c.active.is_(True),
                   t.c.kind.in_(list(_EVENT_KINDS.values())))).all()
    return list(per_session[key])


def on_record_event(ctx: EngineContext, evt: events.RecordEvent) -> None:
    """Start every flow whose record trigger matches, in this transaction."""
    kind = _EVENT_KINDS.get(evt.event)
    if kind is None or evt.source == "flow":
        # Changes made by flows do not start flows (no accidental loops).
        return
    rows = [r for r in _record_triggers(ctx, evt.app, evt.form) if r.kind == kind]
    if not rows:
        return
    sys = system_context(ctx)
    for row in rows:
        loaded = load_version(ctx.session, app=evt.app, flow=row.flow, version=row.version)
        start = loaded.flow.start
        assert start is not None
        trigger = start.trigger
        if isinstance(trigger, fl.RecordUpdatedTrigger) and trigger.fields and not (
                set(trigger.fields) & set(evt.changed_fields)):
            continue
        sources = getattr(trigger, "sources", None)
        # Without sources: every change but an import marked historical.
        if (evt.source == "history") if sources is None else (evt.source not in sources):
            continue
        condition = getattr(trigger, "condition", None)
        record = typed_values(sys, evt.app, evt.form, evt.record)
        old = typed_values(sys, evt.app, evt.form, evt.old) if evt.old else None
        if condition and not _holds(ctx, condition, record, old, evt.actor_id):
            continue
        start_instance(sys, app=evt.app, flow=row.flow, record_id=evt.record_id,
                       started_by=evt.actor_id, trigger=kind, old=old, loaded=loaded)


def condition_holds(ctx: EngineContext, condition: str, record: Any) -> bool:
    """Whether a start condition holds for the calling user now (a record
    page offers only the flows it may start)."""
    return _holds(ctx, condition, record, None, ctx.actor.id)


def _holds(ctx: EngineContext, condition: str, record: Any, old: Any,
           actor_id: uuid.UUID | None) -> bool:
    from tangram.engines.expressions import EvalContext, compile_expression
    from tangram.engines.flows.assignees import EXPRESSION_NAMES, actor_for

    actor = actor_for(ctx.session, actor_id)
    value = compile_expression(condition, allowed_names=EXPRESSION_NAMES).evaluate(
        {"record": record, "old": old or {}, "user": actor.as_variables() if actor else {},
         "vars": {}}, context=EvalContext(now=ctx.now(), timezone=ctx.timezone))
    return value is True


def has_record_triggers(ctx: EngineContext, app: str, form: str, event: str) -> bool:
    kind = _EVENT_KINDS.get(event)
    return kind is not None and any(r.kind == kind for r in _record_triggers(ctx, app, form))


events.subscribe(on_record_event, interested=has_record_triggers)


# --- starts by people and systems ---------------------------------------------------------------

def start_by_user(ctx: EngineContext, *, app: str, flow: str, record_id: Any = None,
                  variables: dict[str, Any] | None = None) -> uuid.UUID:
    """Submit a record for approval (``submitted``) or start a manual flow."""
    loaded = load_version(ctx.session, app=app, flow=flow)
    start = loaded.flow.start
    assert start is not None
    kind = start.trigger.kind
    if kind not in ("submitted", "manual"):
        raise PermissionDenied(f"flow {flow!r} starts on {kind}, not by a user")
    record = None
    if not loaded.flow.form and record_id is not None:
        # Stored, it would dangle: nothing reads it, and no record page lists it.
        raise ValidationFailed([ErrorItem(
            code="no_form", field="record_id",
            message=f"flow {flow!r} has no form, so it starts without a record: "
                    "leave out record_id (pass values in variables)")])
    if loaded.flow.form:
        if record_id is None:
            if kind == "submitted":
                raise NotFound("submitting for approval needs a record_id")
        else:
            from tangram.engines.forms.records import get_record

            # The submitter must be able to read the record they submit, and
            # a role must let them submit it (the ``submit`` action, in its scope).
            data = get_record(ctx, app=app, form=loaded.flow.form, record_id=record_id,
                              also="submit")
            record = typed_values(system_context(ctx), app, loaded.flow.form, data)
    condition = getattr(start.trigger, "condition", None)
    if condition and not _holds(ctx, condition, record, None, ctx.actor.id):
        refusal = getattr(start.trigger, "refusal", None)
        raise PermissionDenied(
            localize(refusal, ctx.language) if refusal else
            f"this record does not meet the start condition of flow {flow!r}: {condition}",
            details={"flow": flow, "reason": "start_condition"})
    if kind == "submitted" and record_id is not None and running_on(
            ctx, app=app, flow=flow, record_id=record_id, form=loaded.flow.form):
        raise Conflict(f"this record is already in approval ({flow}): withdraw that request "
                       "or wait for its decision before submitting it again")
    return start_instance(system_context(ctx), app=app, flow=flow, record_id=record_id,
                          variables=variables, started_by=ctx.actor.id, trigger=kind,
                          loaded=loaded)


def running_on(ctx: EngineContext, *, app: str, flow: str, record_id: Any,
               form: str | None = None) -> bool:
    """Whether an instance of ``flow`` about the record is still running.
    With ``form``, the record's row is locked first, so two submissions at
    the same moment cannot both find none (the second waits, then sees it)."""
    if form is not None:
        from tangram.engines.forms.registry import get_runtime

        table = get_runtime(ctx.session, app, form).table
        ctx.session.execute(sa.select(table.c.id).where(
            table.c.id == uuid.UUID(str(record_id))).with_for_update())
    i = instances_table
    return ctx.session.execute(sa.select(i.c.id).where(
        i.c.app == app, i.c.flow == flow, i.c.record_id == uuid.UUID(str(record_id)),
        i.c.status == "running").limit(1)).first() is not None


def start_by_webhook(ctx: EngineContext, *, app: str, flow: str, token: str,
                     payload: dict[str, Any]) -> uuid.UUID:
    t = triggers_table
    row = ctx.session.execute(sa.select(t.c.webhook_token_hash, t.c.active)
                              .where(t.c.app == app, t.c.flow == flow,
                                     t.c.kind == "webhook")).first()
    if row is None or not row.active or not row.webhook_token_hash or not secrets.compare_digest(
            row.webhook_token_hash, _hash(token or "")):
        # One answer for "no such hook" and "wrong token": probing learns nothing.
        raise PermissionDenied("unknown webhook or wrong token")
    return start_instance(system_context(ctx), app=app, flow=flow,
                          variables={"payload": payload}, started_by=None, trigger="webhook")


# --- ticks (worker) ------------------------------------------------------------------------------

TickFn = Callable[[EngineContext, Any, Loaded, datetime], int]


def tick_due_triggers(ctx: EngineContext, *, limit: int = 20) -> int:
    """Fire due schedules and date-relative triggers (one transaction, rows
    locked with SKIP LOCKED so another worker takes other rows). Returns how
    many instances started."""
    t = triggers_table
    now = ctx.now()
    rows = ctx.session.execute(
        sa.select(t).where(t.c.active.is_(True), t.c.next_run_at.is_not(None),
                           t.c.next_run_at <= now)
        .order_by(t.c.next_run_at).limit(limit).with_for_update(skip_locked=True)
    ).mappings().all()
    started = 0
    sys = system_context(ctx)
    for row in rows:
        loaded = load_version(ctx.session, app=row["app"], flow=row["flow"],
                              version=row["version"])
        start = loaded.flow.start
        assert start is not None
        trigger = start.trigger
        if isinstance(trigger, fl.ScheduleTrigger):
            started += _tick_schedule(sys, trigger, loaded, row["next_run_at"])
        elif isinstance(trigger, fl.DateRelativeTrigger):
            started += _tick_date(sys, trigger, loaded, row["next_run_at"])
        ctx.session.execute(t.update().where(t.c.app == row["app"], t.c.flow == row["flow"])
                            .values(last_run_at=now,
                                    next_run_at=next_tick(trigger, now, ctx.timezone)))
    return started


def _tick_schedule(ctx: EngineContext, trigger: fl.ScheduleTrigger, loaded: Loaded,
                   due: datetime) -> int:
    now = ctx.now()
    late = now - due > SCHEDULE_GRACE
    if late and trigger.missed == "skip":
        return 0
    # One instance for this tick (or, after an outage, one for all missed ticks).
    start_instance(ctx, app=loaded.app, flow=loaded.key, started_by=None, trigger="schedule",
                   variables={"scheduled_for": due.isoformat(), "late": late},
                   dedupe_key=f"{loaded.app}:{loaded.key}:schedule:{due.isoformat()}",
                   loaded=loaded)
    return 1


MAX_CATCH_UP_DAYS = 31


def _tick_date(ctx: EngineContext, trigger: fl.DateRelativeTrigger, loaded: Loaded,
               due: datetime) -> int:
    """Start one instance per record whose date (plus the offset) is today —
    and, after an outage (``missed: run_once``), per record a missed day
    matched, once: the dedupe key is the day the record was due."""
    from tangram.engines.forms.registry import get_runtime

    if not loaded.flow.form:
        return 0
    today = ctx.today()
    zone = ZoneInfo(ctx.timezone)
    first_day = today
    if trigger.missed == "run_once":
        first_day = min(today, max(due.astimezone(zone).date(),
                                   today - timedelta(days=MAX_CATCH_UP_DAYS)))
    offset = timedelta(days=trigger.offset_days)
    lo, hi = first_day - offset, today - offset  # the dates that fire, inclusive
    rt = get_runtime(ctx.session, loaded.app, loaded.flow.form)
    table = rt.table
    column = table.c[trigger.field]
    stmt = sa.select(table.c.id, column).where(table.c.deleted_at.is_(None), column.is_not(None))
    if not trigger.yearly:
        if isinstance(column.type, UTCDateTime):
            # A date-time field: the target days are days in the organization's zone.
            first = datetime.combine(lo, datetime.min.time(), zone)
            last = datetime.combine(hi + timedelta(days=1), datetime.min.time(), zone)
            stmt = stmt.where(column >= first, column < last)
        else:
            stmt = stmt.where(column >= lo, column <= hi)
    targets = [lo + timedelta(days=n) for n in range((hi - lo).days + 1)]
    due_rows: list[tuple[Any, date, date, str]] = []  # (record id, its date, fires, key)
    for rid, value in ctx.session.execute(stmt).all():
        day = value.astimezone(zone).date() if isinstance(value, datetime) else value
        if trigger.yearly:
            matched = next((t for t in targets if _same_day_of_year(day, t)), None)
            if matched is None:
                continue
            fires = matched + offset
        else:
            fires = day + offset
        due_rows.append((rid, day, fires, f"{loaded.app}:{loaded.key}:{rid}:{fires.isoformat()}"))
    # Already started (an earlier tick of the day, another worker): one query.
    keys = [row[3] for row in due_rows]
    done: set[str] = set()
    for i in range(0, len(keys), 500):
        done.update(ctx.session.execute(sa.select(instances_table.c.dedupe_key).where(
            instances_table.c.dedupe_key.in_(keys[i:i + 500]))).scalars())
    started = 0
    for rid, day, fires, key in due_rows:
        if key in done:
            continue
        if trigger.condition:
            from tangram.engines.flows.runtime import typed_record

            record = typed_record(ctx, loaded.app, loaded.flow.form, rid)
            if not _holds(ctx, trigger.condition, record, None, None):
                continue
        start_instance(ctx, app=loaded.app, flow=loaded.key, record_id=rid, started_by=None,
                       trigger="date_relative", dedupe_key=key, loaded=loaded,
                       variables={"date": day.isoformat(), "due": fires.isoformat(),
                                  "late": fires < today})
        started += 1
    return started


def _same_day_of_year(day: date, target: date) -> bool:
    if (day.month, day.day) == (target.month, target.day):
        return True
    # 29 February is celebrated on 28 February in common years.
    leap = target.year % 4 == 0 and (target.year % 100 != 0 or target.year % 400 == 0)
    return (day.month, day.day) == (2, 29) and not leap and (target.month, target.day) == (2, 28)
