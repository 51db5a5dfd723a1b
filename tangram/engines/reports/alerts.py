"""Data alerts: a report measure checked on a schedule against a threshold or a
period-over-period change, notifying recipients once per crossing.

An alert is crossed while its condition holds. It *fires* — one row in
``report_alert_firings`` and a notification to every recipient through the
notification engine — when a check finds it crossed after a check that did
not (state ``normal`` → ``crossed``). While it stays crossed, later checks
stay silent; once a check finds it recovered the state returns to
``normal`` and the next crossing fires again. A check whose value cannot be
computed (no records, or no previous period to compare with) leaves the
state as it was.

The measure is computed by the report engine — the report's filter and
parameters, the alert's extra filter, no dimensions — as the alert's owner:
their row scope and field permissions apply, exactly as when they run the
report. The worker (``tangram.engines.flows.worker``) calls
:func:`run_due_alerts` on every pass; a due alert is claimed with
``FOR UPDATE SKIP LOCKED`` so it is checked once with any number of workers.

    create_alert(ctx, app="crm", body={
        "label": {"zh": "华东周赢单下降", "en": "East weekly drop"},
        "report": "won_weekly", "measure": "won",
        "filter": {"field": "account.region", "op": "eq", "value": "华东"},
        "condition": {"type": "change", "period": "week", "percent": "15"},
        "schedule": "0 9 * * 1", "recipients": [director_id]})

The notification is written in each recipient's language (the sentences are
``report_alert_*`` in :data:`tangram.i18n.TEXTS`), with the label's text in
that language; the firing keeps it in the owner's language.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from croniter import croniter
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from tangram import i18n
from tangram.clock import Clock, iso_utc
from tangram.db import metadata, new_id
from tangram.db.types import GUID, JSONValue, UTCDateTime
from tangram.engines.context import EngineContext
from tangram.engines.reports import kpi
from tangram.errors import (
    Conflict,
    DefinitionInvalid,
    ErrorItem,
    NotFound,
    PermissionDenied,
    TangramError,
)
from tangram.metamodel import reports as rm
from tangram.metamodel.common import json_path, localize

log = logging.getLogger(__name__)

alerts_table = sa.Table(
    "report_alerts", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("report", sa.String(63), nullable=False),
    sa.Column("definition", JSONValue, nullable=False),  # rm.Alert as JSON
    sa.Column("owner_id", GUID, nullable=False),  # checks run with this user's permissions
    # The key of the app's package alert this row is a holder's copy of (else a user's own).
    sa.Column("package_alert", sa.String(63), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("state", sa.String(20), nullable=False, server_default="normal"),
    sa.Column("last_value", sa.String(60), nullable=True),
    sa.Column("last_checked_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_check_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_report_alerts_due", "active", "next_check_at"),
    sa.Index("ix_report_alerts_app", "app", "report"),
    sa.Index("ux_report_alerts_package", "app", "package_alert", "owner_id", unique=True),
)

firings_table = sa.Table(
    "report_alert_firings", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("alert_id", GUID, sa.ForeignKey("report_alerts.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("fired_at", UTCDateTime(), nullable=False),
    sa.Column("value", sa.String(60), nullable=True),
    sa.Column("previous_value", sa.String(60), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("recipients", JSONValue, nullable=False),
    sa.Index("ix_report_alert_firings_alert", "alert_id", "fired_at"),
)

NORMAL, CROSSED = "normal", "crossed"
Row = Mapping[str, Any] | sa.RowMapping
# A firing's sentence in a language (each recipient reads it in theirs).
Message = Callable[[str], str]


# --------------------------------------------------------------------------- definitions

# The tags pydantic adds after a union field's name in an error's location.
_UNION_TAGS = {"condition": ("above", "below", "change"), "label": ("text", "texts")}


def parse_alert(body: Any) -> rm.Alert:
    try:
        alert = rm.Alert.model_validate(body)
    except ValidationError as exc:
        errors = [ErrorItem(code=e["type"], path=json_path(_written(e["loc"])),
                            message=e["msg"].removeprefix("Value error, "))
                  for e in exc.errors()]
        raise DefinitionInvalid(f"the alert is not valid: {errors[0].path}: "
                                f"{errors[0].message}", errors=errors) from None
    if not croniter.is_valid(alert.schedule):
        raise DefinitionInvalid(f"the alert is not valid: $.schedule: {alert.schedule!r} is "
                                "not a cron expression", errors=[ErrorItem(
                                    code="invalid_schedule", path="$.schedule", message=(
                                        f"{alert.schedule!r} is not a cron expression "
                                        "(minute hour day month weekday)"))])
    return alert


def _written(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for i, p in enumerate(loc)
                 if not (i and p in _UNION_TAGS.get(str(loc[i - 1]), ())))


def label_in(alert: rm.Alert, language: str) -> str:
    """The alert's label for a reader of ``language`` (a plain text: as written)."""
    return alert.label if isinstance(alert.label, str) else localize(alert.label, language)


def next_check(schedule: str, after: datetime, timezone: str) -> datetime:
    zone = ZoneInfo(timezone)
    nxt: datetime = croniter(schedule, after.astimezone(zone)).get_next(datetime)
    return nxt.astimezone(ZoneInfo("UTC"))


def _public(row: Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "app": row["app"], **row["definition"],
            "owner_id": str(row["owner_id"]), "package_alert": row["package_alert"],
            "state": row["state"],
            "last_value": row["last_value"],
            "last_checked_at": iso_utc(row["last_checked_at"]), "last_error": row["last_error"],
            "next_check_at": iso_utc(row["next_check_at"]),
            "created_at": iso_utc(row["created_at"]), "updated_at": iso_utc(row["updated_at"])}


def _check_definition(ctx: EngineContext, app: str, alert: rm.Alert) -> None:
    """The report, measure and filter work for the alert's owner (compiled once),
    and every recipient may see what the alert reads."""
    from tangram.engines.forms.query import FilterInvalid
    from tangram.engines.reports.service import published_report

    report, _ = published_report(ctx, app=app, key=alert.report)
    _watched(report, alert)
    # A change alert is tried with a window, so a bad date field is refused now.
    try:
        _value_in(ctx, app, report, alert, _TRY_WINDOW)
    except FilterInvalid as exc:
        # The alert's own filter is the second condition after the report's.
        inner = f"$.filter.and[{1 if report.filter else 0}]"
        for e in exc.errors:
            if e.path and e.path.startswith(inner):
                e.path = "$.filter" + e.path[len(inner):]
        raise FilterInvalid(exc.errors, f"invalid alert filter: {exc.errors[0].path}: "
                            f"{exc.errors[0].message}") from None
    errors = [ErrorItem(code="recipient", path=f"$.recipients[{i}]", message=why)
              for i, why in _unseen(ctx, app, report, alert, owner_id=ctx.actor.id)]
    if errors:
        raise DefinitionInvalid(f"alert recipients must be able to see what it reads: "
                                f"{errors[0].message}", errors=errors)


# Days a change alert is tried with when saved (any window will do).
_TRY_WINDOW = (date(2000, 1, 1), date(2000, 1, 2))


def _unseen(ctx: EngineContext, app: str, report: rm.Report, alert: rm.Alert, *,
            owner_id: uuid.UUID | None) -> list[tuple[int, str]]:
    """(index, why) of each recipient other than the owner who may not see what
    a notification tells: the report's form, or a field the check reads (the
    measure, the report's and the alert's filters, a change's date field) — the
    checks a report run makes, as that user. Row scope is the owner's by design
    (docs/reports.md, "Data alerts"); an alert is not a way to put one's text
    in anyone's inbox either."""
    from tangram.engines.reports.compiler import validate_report

    reads = kpi.measure_report(ctx, app=app, report=report, measure=alert.measure,
                               extra_filter=alert.filter,
                               window=_span(report, alert, _TRY_WINDOW),
                               date_field_at="$.condition.date_field")
    out = []
    for i, raw in enumerate(alert.recipients):
        user_id = uuid.UUID(str(raw))
        if user_id == owner_id:
            continue  # the check itself runs as the owner
        as_user = _as_user(ctx, user_id)
        try:
            as_user.policy.check_form_action(as_user.actor, app, report.form, "read")
        except (PermissionDenied, NotFound):
            out.append((i, f"user {user_id} may not read form {report.form!r}, which the "
                        "report is built on"))
            continue
        hidden = [e for e in validate_report(as_user, app=app, report=reads)
                  if e.code == "field_hidden"]
        if hidden:
            out.append((i, f"user {user_id} may not see field "
                        f"{hidden[0].details.get('field', hidden[0].path)}, which the alert "
                        "reads"))
    return out


def _as_user(ctx: EngineContext, user_id: uuid.UUID) -> EngineContext:
    """``ctx`` with the permissions and language of another user (checks run as
    the owner; recipients are checked as themselves)."""
    from tangram.engines.notify.webhooks import act_as_owner

    actor, policy = act_as_owner(ctx, user_id)
    return EngineContext(session=ctx.session, actor=actor, clock=ctx.clock,
                         language=actor.language, timezone=ctx.timezone, policy=policy)


def _watched(report: rm.Report, alert: rm.Alert) -> rm.FieldMeasure:
    return kpi.field_measure(report, alert.measure, "$.measure")


def _span(report: rm.Report, alert: rm.Alert, window: tuple[date, date] | None
          ) -> tuple[str, date, date] | None:
    """A change alert's window on its date field (others: none)."""
    if not isinstance(alert.condition, rm.ChangeCondition) or window is None:
        return None
    path = kpi.default_date_field(report, alert.condition.date_field, "$.condition.date_field")
    return (path, *window)


def _value_in(ctx: EngineContext, app: str, report: rm.Report, alert: rm.Alert,
              window: tuple[date, date] | None) -> Any:
    return kpi.measure_value(ctx, app=app, report=report, measure=alert.measure,
                             parameters=alert.parameters, extra_filter=alert.filter,
                             window=_span(report, alert, window),
                             date_field_at="$.condition.date_field")


def _load(ctx: EngineContext, app: str, alert_id: uuid.UUID, *, lock: bool = False
          ) -> Row:
    t = alerts_table
    stmt = sa.select(t).where(t.c.id == alert_id, t.c.app == app)
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.execute(stmt).mappings().first()
    if row is None or not _may_manage(ctx, row):
        raise NotFound(f"alert {alert_id} does not exist in app {app!r}")
    return row


def _may_manage(ctx: EngineContext, row: Row) -> bool:
    return ctx.actor.is_admin or row["owner_id"] == ctx.actor.id


def create_alert(ctx: EngineContext, *, app: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A new alert owned by the actor; checked first at the schedule's next tick."""
    if ctx.actor.id is None:
        raise PermissionDenied("an alert belongs to a user")
    alert = parse_alert(body)
    _check_definition(ctx, app, alert)
    now = ctx.now()
    alert_id = new_id()
    values = {"id": alert_id, "app": app, "report": alert.report,
              "definition": alert.model_dump(mode="json"), "owner_id": ctx.actor.id,
              "active": alert.active, "state": NORMAL, "created_at": now, "updated_at": now,
              "next_check_at": next_check(alert.schedule, now, ctx.timezone)
              if alert.active else None}
    ctx.session.execute(alerts_table.insert().values(**values))
    return get_alert(ctx, app=app, alert_id=alert_id)


def update_alert(ctx: EngineContext, *, app: str, alert_id: uuid.UUID,
                 body: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the alert's definition. A changed condition, measure or filter
    starts over from ``normal``."""
    row = _load(ctx, app, alert_id, lock=True)
    _not_a_copy(row)
    alert = parse_alert(body)
    _check_definition(ctx, app, alert)
    now = ctx.now()
    old = row["definition"]
    new = alert.model_dump(mode="json")
    same_watch = all(old.get(k) == new.get(k) for k in ("report", "measure", "parameters",
                                                        "filter", "condition"))
    ctx.session.execute(alerts_table.update().where(alerts_table.c.id == alert_id).values(
        definition=new, report=alert.report, active=alert.active, updated_at=now,
        state=row["state"] if same_watch else NORMAL,
        next_check_at=next_check(alert.schedule, now, ctx.timezone) if alert.active else None))
    return get_alert(ctx, app=app, alert_id=alert_id)


def get_alert(ctx: EngineContext, *, app: str, alert_id: uuid.UUID) -> dict[str, Any]:
    return _public(_load(ctx, app, alert_id))


def list_alerts(ctx: EngineContext, *, app: str) -> list[dict[str, Any]]:
    """The actor's alerts (an administrator: every alert of the app)."""
    t = alerts_table
    stmt = sa.select(t).where(t.c.app == app).order_by(t.c.created_at, t.c.id)
    if not ctx.actor.is_admin:
        stmt = stmt.where(t.c.owner_id == ctx.actor.id)
    return [_public(r) for r in ctx.session.execute(stmt).mappings()]


def _not_a_copy(row: Row) -> None:
    if row["package_alert"] is not None:
        raise Conflict(f"alert {row['id']} is a copy of the app's package alert "
                       f"{row['package_alert']!r} for one holder of its role; change that "
                       "package alert (or the role's holders) instead")


def delete_alert(ctx: EngineContext, *, app: str, alert_id: uuid.UUID) -> None:
    row = _load(ctx, app, alert_id, lock=True)
    _not_a_copy(row)
    ctx.session.execute(firings_table.delete().where(firings_table.c.alert_id == alert_id))
    ctx.session.execute(alerts_table.delete().where(alerts_table.c.id == alert_id))


def list_firings(ctx: EngineContext, *, app: str, alert_id: uuid.UUID,
                 limit: int = 100) -> list[dict[str, Any]]:
    """The alert's firings, newest first."""
    _load(ctx, app, alert_id)
    f = firings_table
    rows = ctx.session.execute(sa.select(f).where(f.c.alert_id == alert_id)
                               .order_by(f.c.fired_at.desc(), f.c.id.desc()).limit(limit))
    return [{"id": str(r["id"]), "fired_at": r["fired_at"].isoformat(), "value": r["value"],
             "previous_value": r["previous_value"], "message": r["message"],
             "recipients": r["recipients"]} for r in rows.mappings()]


# --------------------------------------------------------------------------- evaluation

def evaluate(ctx: EngineContext, *, app: str, alert: rm.Alert
             ) -> tuple[bool | None, Any, Any, Message | None]:
    """(crossed — None when it cannot be told, value, previous value, the
    sentence a firing sends — None when it cannot be told).

    >>> crossed, value, _, message = evaluate(ctx, app="crm", alert=alert)
    >>> message("en"), message("zh")
    ('Big week: 1100.00 is above 1000', 'Big week：当前值1100.00，高于1000')
    """
    from tangram.engines.reports.service import published_report

    report, _ = published_report(ctx, app=app, key=alert.report)
    cond = alert.condition
    if isinstance(cond, rm.ThresholdCondition):
        value = _value_in(ctx, app, report, alert, None)
        if value is None:
            return None, None, None, None
        number = Decimal(str(value))
        crossed = number > cond.threshold if cond.type == "above" else number < cond.threshold
        return crossed, value, None, _message(alert, f"report_alert_{cond.type}",
                                              value=value, threshold=cond.threshold)
    current = kpi.period_start(ctx.today(), cond.period)
    last = (kpi.shift(current, cond.period, -1), current)
    before = (kpi.shift(current, cond.period, -2), last[0])
    value = _value_in(ctx, app, report, alert, last)
    previous = _value_in(ctx, app, report, alert, before)
    if value is None or previous is None or Decimal(str(previous)) == 0:
        return None, value, previous, None
    now_n, prev_n = Decimal(str(value)), Decimal(str(previous))
    change = (now_n - prev_n) / abs(prev_n) * 100
    crossed = (-change > cond.percent) if cond.direction == "down" else change > cond.percent
    return crossed, value, previous, _message(
        alert, "report_alert_down" if change < 0 else "report_alert_up", value=value,
        previous=previous, start=last[0].isoformat(), percent=f"{abs(change):.1f}",
        period=f"report_alert_{cond.period}")


def _message(alert: rm.Alert, code: str, *, period: str | None = None, **params: Any
             ) -> Message:
    """Text ``code`` of :data:`tangram.i18n.TEXTS` with the alert's label, in the
    reader's language; ``period``: the code of the period's word."""
    def render(language: str) -> str:
        words = {"period": i18n.text(period, language)} if period else {}
        return i18n.text(code, language, label=label_in(alert, language), **words, **params)
    return render


def check_alert(ctx: EngineContext, row: Row) -> bool:
    """Check one alert now (its row locked by the caller) as its owner; fire when it
    became crossed. Returns whether it fired."""
    from tangram.engines.notify.service import notify
    from tangram.engines.reports.service import published_report

    alert = rm.Alert.model_validate(row["definition"])
    as_owner = _as_user(ctx, row["owner_id"])
    owner = as_owner.actor
    now = ctx.now()
    t = alerts_table
    values: dict[str, Any] = {"last_checked_at": now, "last_error": None,
                              "next_check_at": next_check(alert.schedule, now, ctx.timezone)}
    fired = False
    message: Message | None
    unseen: list[tuple[int, str]] = []
    try:
        with ctx.session.begin_nested():
            crossed, value, previous, message = evaluate(as_owner, app=row["app"], alert=alert)
            if crossed is True and message is not None and row["state"] != CROSSED:
                # A recipient who lost access since the alert was saved is left out.
                report, _ = published_report(as_owner, app=row["app"], key=alert.report)
                unseen = _unseen(as_owner, row["app"], report, alert,
                                 owner_id=row["owner_id"])
    except TangramError as exc:  # the report changed or the owner lost access: say so
        values["last_error"] = exc.message[:2000]
        crossed, value, previous, message = None, None, None, None
    if unseen:
        values["last_error"] = ("not notified: " + "; ".join(why for _, why in unseen))[:2000]
    if value is not None:
        values["last_value"] = _text(value)
    if crossed is True and message is not None and row["state"] != CROSSED:
        values["state"] = CROSSED
        left_out = {i for i, _ in unseen}
        recipients = [uuid.UUID(str(u)) for i, u in enumerate(alert.recipients)
                      if i not in left_out]
        # The firing keeps one text: in the language of the owner, who reads the
        # alert's firings; each recipient is notified in their own language.
        ctx.session.execute(firings_table.insert().values(
            id=new_id(), alert_id=row["id"], fired_at=now, value=_text(value),
            previous_value=_text(previous), message=message(owner.language),
            recipients=[str(u) for u in recipients]))
        notify(ctx, user_ids=recipients, title=lambda language: message(language)[:300],
               body=message, kind="report_alert")
        fired = True
    elif crossed is False:
        values["state"] = NORMAL
    ctx.session.execute(t.update().where(t.c.id == row["id"]).values(**values))
    return fired


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def check_now(ctx: EngineContext, *, app: str, alert_id: uuid.UUID) -> dict[str, Any]:
    """Check the alert at once (the designer's "test" button); fires like a scheduled check."""
    row = _load(ctx, app, alert_id, lock=True)
    fired = check_alert(ctx, row)
    return {**get_alert(ctx, app=app, alert_id=alert_id), "fired": fired}


# --------------------------------------------------------------------------- package alerts

def _role_holders(session: Session, app: str, role: str) -> list[uuid.UUID]:
    # Role membership lives in the platform, which installs one resolver for the
    # engines (engines do not import the platform); flows' role assignees use it too.
    from tangram.engines.flows import assignees

    return assignees.role_members(session, app, role)


def sync_package_alerts(ctx: EngineContext, *, app: str | None = None) -> int:
    """Give every holder of a package alert's role their own copy (owned by and
    notifying them); update copies whose package alert changed (a changed watch
    starts over from ``normal``) and delete copies of users who lost the role
    and of package alerts that no longer exist. ``app``: only that app.
    Returns how many copies were created, changed or deleted.

    >>> sync_package_alerts(ctx, app="crm")   # after install, a role change, …
    3
    """
    from tangram.metamodel import storage

    d = storage.definitions_table
    stmt = sa.select(d.c.app, d.c.key, d.c.id, d.c.latest_version).where(
        d.c.kind == "alert", d.c.latest_version > 0).with_for_update()
    # The lock on the package alerts' definitions makes concurrent syncs (several
    # workers) take turns, so a copy is created once.
    rows_stmt = sa.select(alerts_table).where(alerts_table.c.package_alert.is_not(None))
    if app is not None:
        stmt = stmt.where(d.c.app == app)
        rows_stmt = rows_stmt.where(alerts_table.c.app == app)
    wanted: dict[tuple[str, str, uuid.UUID], dict[str, Any]] = {}
    for r in ctx.session.execute(stmt).all():
        body = storage.get_version(ctx.session, storage.DefinitionRow(
            id=r.id, app=r.app, kind="alert", key=r.key, draft=None,
            latest_version=r.latest_version), r.latest_version)["body"]
        tpl = rm.PackageAlert.model_validate(body)
        for uid in _role_holders(ctx.session, r.app, tpl.role):
            wanted[(r.app, r.key, uid)] = rm.Alert(
                label=tpl.label, report=tpl.report, measure=tpl.measure,
                parameters=tpl.parameters, filter=tpl.filter, condition=tpl.condition,
                schedule=tpl.schedule, recipients=[uid], active=tpl.active,
            ).model_dump(mode="json")
    t = alerts_table
    now = ctx.now()
    changed = 0
    for row in ctx.session.execute(rows_stmt).mappings().all():
        new = wanted.pop((row["app"], row["package_alert"], row["owner_id"]), None)
        if new is None:
            ctx.session.execute(firings_table.delete().where(firings_table.c.alert_id
                                                             == row["id"]))
            ctx.session.execute(t.delete().where(t.c.id == row["id"]))
            changed += 1
        elif new != row["definition"]:
            old = row["definition"]
            same_watch = all(old.get(k) == new.get(k) for k in (
                "report", "measure", "parameters", "filter", "condition"))
            ctx.session.execute(t.update().where(t.c.id == row["id"]).values(
                definition=new, report=new["report"], active=new["active"], updated_at=now,
                state=row["state"] if same_watch else NORMAL,
                next_check_at=next_check(new["schedule"], now, ctx.timezone)
                if new["active"] else None))
            changed += 1
    for (app_key, key, uid), new in wanted.items():
        ctx.session.execute(t.insert().values(
            id=new_id(), app=app_key, report=new["report"], definition=new, owner_id=uid,
            package_alert=key, active=new["active"], state=NORMAL, created_at=now,
            updated_at=now, next_check_at=next_check(new["schedule"], now, ctx.timezone)
            if new["active"] else None))
        changed += 1
    return changed


def run_due_alerts(sessions: sessionmaker[Session], clock: Clock, *,
                   timezone: str = "Asia/Shanghai", limit: int = 20) -> int:
    """Check every active alert whose time has come (the worker, each pass).
    Returns how many were checked. Package alerts' copies are brought up to date
    with their roles' holders first."""
    t = alerts_table
    with sessions.begin() as s:
        ctx = EngineContext(session=s, clock=clock, timezone=timezone)
        sync_package_alerts(ctx)
        rows = s.execute(sa.select(t).where(t.c.active.is_(True), t.c.next_check_at.is_not(None),
                                            t.c.next_check_at <= clock.now())
                         .order_by(t.c.next_check_at).limit(limit)
                         .with_for_update(skip_locked=True)).mappings().all()
        for row in rows:
            check_alert(ctx, row)
        return len(rows)
