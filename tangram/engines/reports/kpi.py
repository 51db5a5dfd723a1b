"""Single values of a report measure over calendar periods: KPI cards with a
comparison to the previous period and to the same period last year, and the
values data alerts check (``alerts.py``).

A value is the report's measure over its records (its filter and parameters,
an optional extra filter, no dimensions) compiled by the report engine for
the viewer in ``ctx`` — so the viewer's row scope and field permissions
apply — restricted to a window of days of a date field in the
organization's time zone.

>>> kpi_card(ctx, app="crm", key="won_by_month", measure="won", period="month")
{"measure": "won", "label": {"zh": "赢单金额", "en": "Won"}, "type": "decimal",
 "scale": 2, "value": "120000.00", "previous": {"value": "100000.00", "delta": "20000.00",
 "percent": 20.0, ...}, "last_year": {...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tangram.engines.context import EngineContext
from tangram.engines.reports.params import day_start
from tangram.errors import DefinitionInvalid, ErrorItem, PermissionDenied, ValidationFailed
from tangram.metamodel import reports as rm

if TYPE_CHECKING:
    from tangram.engines.reports.compiler import OutputColumn

PERIODS = ("day", "week", "month", "quarter", "year")


def period_start(day: date, period: str) -> date:
    """The first day of the period holding ``day`` (ISO weeks start on Monday)."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def shift(start: date, period: str, n: int) -> date:
    """A period's first day moved by ``n`` whole periods."""
    if period == "day":
        return start + timedelta(days=n)
    if period == "week":
        return start + timedelta(days=7 * n)
    months = {"month": 1, "quarter": 3, "year": 12}[period] * n
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1, day=1)


def default_date_field(report: rm.Report, given: str | None, at: str) -> str:
    if given:
        return given
    for d in report.dimensions:
        if isinstance(d, rm.DateDimension) and d.field is not None:
            return d.field
    raise DefinitionInvalid(f"{at}: the report has no date dimension", errors=[ErrorItem(
        code="invalid_along", path=at, message="name a date or date-time field (date_field) "
        "when the report has no date dimension")])


def _is_datetime(ctx: EngineContext, app: str, report: rm.Report, path: str, at: str) -> bool:
    from tangram.engines.forms.registry import app_runtimes
    from tangram.engines.reports.paths import PathProblem, PathResolver

    runtimes = app_runtimes(ctx.session, app)

    def tables(key: str) -> Any:
        return runtimes[key].tables

    def hidden(form: str) -> set[str]:
        return {k for k, v in ctx.policy.field_access(ctx.actor, app, form).items()
                if v == "hidden"}

    try:
        ref = PathResolver(tables(report.form), tables, hidden=hidden).resolve(path)
    except (PathProblem, KeyError) as exc:
        message = getattr(exc, "message", f"form {exc} is not published")
        raise DefinitionInvalid(f"{at}: {message}", errors=[ErrorItem(
            code=getattr(exc, "code", "form_not_found"), path=at, message=message)]) from None
    # A field the viewer may not see is refused as such, before its type is told.
    for form, key in ref.fields_touched():
        if key in hidden(form):
            message = f"{path!r} reads field {form}.{key}, which you may not see"
            raise PermissionDenied(f"{at}: {message}", errors=[ErrorItem(
                code="field_hidden", path=at, message=message,
                details={"field": f"{form}.{key}"})])
    if ref.value_class not in ("date", "datetime") or ref.to_many_at is not None:
        raise DefinitionInvalid(f"{at}: not a date", errors=[ErrorItem(
            code="not_a_date", path=at,
            message=f"{path!r} is not a date or date-time field of the record")])
    return ref.value_class == "datetime"


def field_measure(report: rm.Report, key: str, at: str) -> rm.FieldMeasure:
    for m in report.measures:
        if m.key == key and isinstance(m, rm.FieldMeasure):
            return m
    keys = [m.key for m in report.measures if isinstance(m, rm.FieldMeasure)]
    raise DefinitionInvalid(f"{at}: report {report.key!r} has no field measure {key!r}",
                            errors=[ErrorItem(code="unknown_measure", path=at, message=(
                                f"measure must name a field measure of report "
                                f"{report.key!r}: {', '.join(keys)}"))])


def measure_report(ctx: EngineContext, *, app: str, report: rm.Report, measure: str,
                   extra_filter: dict[str, Any] | None = None,
                   window: tuple[str, date, date] | None = None,
                   date_field_at: str = "$.date_field") -> rm.Report:
    """The report computing one measure of ``report`` over its records, with no
    dimensions (and an extra filter, and a window ``(date_field, from,
    to_exclusive)``): what a KPI card and an alert check compile."""
    m = field_measure(report, measure, "$.measure")
    conditions = [c for c in (report.filter, extra_filter) if c]
    if window is not None:
        path, lo, hi = window
        instant = _is_datetime(ctx, app, report, path, date_field_at)
        conditions += [{"field": path, "op": op,
                        "value": day_start(day, timezone=ctx.timezone, instant=instant)}
                       for op, day in (("gte", lo), ("lt", hi))]
    return report.model_copy(update={
        "filter": {"and": conditions} if conditions else None, "dimensions": [],
        "measures": [m], "sort": [], "limit": None, "others": False, "pivot": None,
        "totals": False, "chart": rm.TableChart(type="table")})


def measure_value(ctx: EngineContext, *, app: str, report: rm.Report, measure: str,
                  parameters: Mapping[str, Any] | None = None,
                  extra_filter: dict[str, Any] | None = None,
                  window: tuple[str, date, date] | None = None,
                  date_field_at: str = "$.date_field") -> Any:
    """The measure over the report's records (see ``measure_report``), computed
    by the database for the viewer in ``ctx``."""
    derived = measure_report(ctx, app=app, report=report, measure=measure,
                             extra_filter=extra_filter, window=window,
                             date_field_at=date_field_at)
    return _computed(ctx, app, derived, parameters)[1]


def _computed(ctx: EngineContext, app: str, derived: rm.Report,
              parameters: Mapping[str, Any] | None) -> tuple[OutputColumn, Any]:
    """The one measure's result column (label, type) and value."""
    from tangram.engines.reports.compiler import compile_report
    from tangram.engines.reports.results import convert_value, fetch

    compiled = compile_report(ctx, app=app, report=derived, parameters=parameters)
    rows = fetch(ctx.session, compiled)
    row = rows[0] if rows else None
    column = compiled.measures[0]
    return column, convert_value(column, row[column.column] if row is not None else None)


def windows(today: date, period: str, *, complete: bool
            ) -> dict[str, tuple[date, date]]:
    """The current window and the ones it is compared with.

    ``complete``: the last complete period, the one before and the same period a
    year earlier. Otherwise the current period to date (today included) and the
    same number of days from the start of the previous period and of the period a
    year earlier (so a half month is compared with a half month)."""
    start = period_start(today, period)
    year_back = {"day": 364, "week": 52 * 7}.get(period)

    def last_year(d: date) -> date:
        if year_back is not None:
            return d - timedelta(days=year_back)
        return shift(d, "month", -12) if d.day == 1 else d.replace(year=d.year - 1)

    if complete:
        current = (shift(start, period, -1), start)
        previous = (shift(start, period, -2), current[0])
    else:
        days = (today - start).days + 1
        current = (start, start + timedelta(days=days))
        prev_start = shift(start, period, -1)
        previous = (prev_start, min(prev_start + timedelta(days=days), start))
    ly = (last_year(current[0]), last_year(current[0]) + (current[1] - current[0]))
    return {"current": current, "previous": previous, "last_year": ly}


def _comparison(value: Any, other: Any, window: tuple[date, date]) -> dict[str, Any]:
    out: dict[str, Any] = {"value": other, "from": window[0].isoformat(),
                           "to": (window[1] - timedelta(days=1)).isoformat(),
                           "delta": None, "percent": None}
    if value is not None and other is not None:
        now, before = Decimal(str(value)), Decimal(str(other))
        out["delta"] = value - other if type(value) is type(other) else now - before
        if before != 0:
            out["percent"] = float((now - before) / abs(before) * 100)
    return out


def target_problem(target: Decimal) -> str | None:
    """Why a KPI target is not a goal (None when it is one): a positive
    number in the range reports compute in."""
    from tangram.engines.reports.calculated import MAX_SCALE, fits, range_message

    if not target.is_finite() or target <= 0:
        return f"target {target} is not a goal: give a positive number such as \"500000\""
    exponent = target.as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    if decimals > MAX_SCALE:
        return f"target {target} has more than {MAX_SCALE} decimals"
    if not fits(target, decimals):
        return f"target {target} is out of range: {range_message(decimals)}"
    return None


def kpi_card(ctx: EngineContext, *, app: str, key: str, measure: str, period: str,
             complete: bool = False, date_field: str | None = None,
             parameters: Mapping[str, Any] | None = None,
             compare: tuple[str, ...] = ("previous", "last_year"),
             target: Decimal | None = None) -> dict[str, Any]:
    """A KPI card: the measure in the current period, with its value, delta and
    percent change against the previous period and the same period last year,
    and (with a ``target``) the share of the target it reaches."""
    from tangram.engines.reports.results import json_type, to_json
    from tangram.engines.reports.service import published_report

    problem = target_problem(target) if target is not None else None
    if problem is not None:
        raise ValidationFailed([ErrorItem(code="out_of_range", field="target",
                                          message=problem)])
    if period not in PERIODS:
        raise ValidationFailed([ErrorItem(code="invalid_value", field="period", message=(
            f"{period!r} is not a period; period is one of {', '.join(PERIODS)}"))])
    report, version = published_report(ctx, app=app, key=key)
    field_measure(report, measure, "$.measure")
    path = default_date_field(report, date_field, "$.date_field")
    spans = windows(ctx.today(), period, complete=complete)

    def measured(name: str) -> tuple[OutputColumn, Any]:
        lo, hi = spans[name]
        derived = measure_report(ctx, app=app, report=report, measure=measure,
                                 window=(path, lo, hi))
        return _computed(ctx, app, derived, parameters)

    column, value = measured("current")
    out: dict[str, Any] = {"report": key, "version": version, "measure": measure,
                           "label": column.label, **json_type(column),
                           "period": period, "complete": complete,
                           "from": spans["current"][0].isoformat(),
                           "to": (spans["current"][1] - timedelta(days=1)).isoformat(),
                           "value": to_json(value)}
    for name in compare:
        comparison = _comparison(value, measured(name)[1], spans[name])
        out[name] = {k: to_json(v) for k, v in comparison.items()}
    if target is not None:
        reached = None if value is None or target == 0 else float(
            Decimal(str(value)) / target * 100)
        out["target"] = {"value": to_json(target), "percent": reached,
                         "remaining": to_json(max(target - Decimal(str(value or 0)),
                                                  Decimal(0)))}
    return out
