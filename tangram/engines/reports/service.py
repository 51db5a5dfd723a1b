"""Report and dashboard services: drafts, validation, publishing, running,
SQL preview, export and drill-down. The platform's routers call these; they
take an :class:`EngineContext` and raise domain errors.

>>> save_report_draft(ctx, app="crm", key="funnel", body={...})
>>> publish_report(ctx, app="crm", key="funnel")
>>> run_report(ctx, app="crm", key="funnel", parameters={"period": "this_quarter"})
{"columns": [...], "rows": [...], "totals": {...}, "chart": {...vega-lite...}}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.reports import cache, calculated
from tangram.engines.reports.charts import chart_spec, funnel_order
from tangram.engines.reports.compiler import (
    CompiledReport,
    calc_message,
    compile_report,
    validate_report,
)
from tangram.engines.reports.export import MEDIA_TYPES, export
from tangram.engines.reports.kpi import kpi_card, period_start, target_problem
from tangram.engines.reports.params import day_start
from tangram.engines.reports.results import ReportResult, execute, result_json
from tangram.errors import (
    DefinitionInvalid,
    ErrorItem,
    NotFound,
    TangramError,
    ValidationFailed,
)
from tangram.metamodel import reports as rm
from tangram.metamodel import storage
from tangram.metamodel.common import json_path

_MODELS: dict[str, type[BaseModel]] = {"report": rm.Report, "dashboard": rm.Dashboard}
_TAGS = set(rm.FIELD_AGGREGATES + rm.DERIVED_AGGREGATES) | {
    "value", "date", "bin", "table", "bar", "line", "area", "pie", "funnel", "kpi", "heatmap",
    "scatter", "leaderboard"}


def parse(kind: str, body: Any) -> Any:
    """Validate a report or dashboard body's shape; errors name JSON paths."""
    try:
        return _MODELS[kind].model_validate(body)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = err["loc"]
            # Discriminated unions (measures, dimensions, chart) put the tag
            # ("sum", "bar") in the location; a widget's "kpi" is a key.
            clean = tuple(p for i, p in enumerate(loc) if not (
                i > 0 and isinstance(p, str) and p in _TAGS and (
                    (isinstance(loc[i - 1], int) and i > 1
                     and loc[i - 2] in ("measures", "dimensions"))
                    or loc[i - 1] == "chart")))
            errors.append(ErrorItem(code=err["type"], path=json_path(clean),
                                    message=err["msg"].removeprefix("Value error, ")))
        raise DefinitionInvalid(f"the {kind} definition is not valid: {errors[0].path}: "
                                f"{errors[0].message}", errors=errors) from None


# --------------------------------------------------------------------------- reports

def check_expressions(report: rm.Report) -> list[ErrorItem]:
    """Problems of the calculated fields that need no form to find: syntax,
    and anything outside the SQL subset (``calculated.py``)."""
    errors = []
    items: list[tuple[str, Any]] = [*((f"$.dimensions[{i}]", d)
                                      for i, d in enumerate(report.dimensions)),
                                    *((f"$.measures[{i}]", m)
                                      for i, m in enumerate(report.measures))]
    for at, item in items:
        source = getattr(item, "expression", None)
        if source is None:
            continue
        problem = calculated.check_subset(source)
        if isinstance(problem, calculated.CalcProblem):
            errors.append(ErrorItem(code=problem.code, path=f"{at}.expression",
                                    message=calc_message(source, problem)))
        elif problem is not None:
            errors.append(problem.as_error_item(f"{at}.expression"))
    return errors


def save_report_draft(ctx: EngineContext, *, app: str, key: str, body: dict[str, Any]
                      ) -> dict[str, Any]:
    """Store the draft after checking its shape and its expressions (not yet its
    fields: those are checked against the published forms by validate and publish)."""
    report = parse("report", {**body, "key": key})
    errors = check_expressions(report)
    if errors:
        raise DefinitionInvalid(f"report {key!r} is not valid: {errors[0].path}: "
                                f"{errors[0].message}", errors=errors)
    row = storage.save_draft(ctx.session, app=app, kind="report", key=key, body=body,
                             user_id=ctx.actor.id, now=ctx.now())
    return {"key": key, "draft": row.draft, "latest_version": row.latest_version}


def validate_draft(ctx: EngineContext, *, app: str, key: str) -> dict[str, Any]:
    """Every problem of the draft against the app's published forms."""
    d = storage.get_definition(ctx.session, app=app, kind="report", key=key)
    if not d.draft:
        raise NotFound(f"report {key!r} has no draft")
    report = parse("report", d.draft)
    errors = validate_report(ctx, app=app, report=report)
    return {"valid": not errors, "errors": [e.as_dict() for e in errors]}


def publish_report(ctx: EngineContext, *, app: str, key: str, note: str | None = None
                   ) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="report", key=key, lock=True)
    if not d.draft:
        raise DefinitionInvalid(f"report {key!r} has no draft to publish")
    report = parse("report", d.draft)
    errors = validate_report(ctx, app=app, report=report)
    if errors:
        raise DefinitionInvalid(f"report {key!r} cannot be published: {errors[0].path}: "
                                f"{errors[0].message}", errors=errors)
    version = storage.record_version(ctx.session, definition=d, body=storage.dump(report),
                                     user_id=ctx.actor.id, now=ctx.now(), note=note)
    return {"key": key, "version": version}


def published_report(ctx: EngineContext, *, app: str, key: str) -> tuple[rm.Report, int]:
    d = storage.get_definition(ctx.session, app=app, kind="report", key=key)
    if d.latest_version == 0:
        raise NotFound(f"report {key!r} is not published")
    body = storage.get_version(ctx.session, d, d.latest_version)["body"]
    return rm.Report.model_validate(body), d.latest_version


def _load(ctx: EngineContext, app: str, key: str, draft: bool) -> tuple[rm.Report, Any]:
    if draft:
        d = storage.get_definition(ctx.session, app=app, kind="report", key=key)
        if not d.draft:
            raise NotFound(f"report {key!r} has no draft")
        return parse("report", d.draft), "draft"
    return published_report(ctx, app=app, key=key)


def run_definition(ctx: EngineContext, *, app: str, report: rm.Report, version: Any,
                   parameters: Mapping[str, Any] | None = None, use_cache: bool = True
                   ) -> tuple[ReportResult, dict[str, Any] | None]:
    """Compile, run (or take from the cache) and chart one report definition."""
    compiled = compile_report(ctx, app=app, report=report, parameters=parameters)
    key = None
    if use_cache:
        bind = ctx.session.get_bind()
        sql, params = compiled.sql(bind.dialect)
        key = cache.cache_key(
            sql=sql, params=params, version=(app, report.key, version),
            language=ctx.language, versions=cache.data_versions(ctx.session, app,
                                                                compiled.forms),
            database=str(bind.engine.url) if hasattr(bind, "engine") else str(bind))
        hit = cache.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
    result = execute(ctx.session, compiled, language=ctx.language)
    if report.pivot is not None:
        result.margins = pivot_margins(ctx, app=app, report=report, parameters=parameters)
    spec = chart_spec(result)
    if key is not None:
        cache.put(key, (result, spec))
    return result, spec


def pivot_margins(ctx: EngineContext, *, app: str, report: rm.Report,
                  parameters: Mapping[str, Any] | None = None) -> dict[str, ReportResult]:
    """The pivot's subtotals: its measures grouped by the row dimensions only
    (``rows``: one total per row, over every column) and by the column
    dimensions only (``columns``). Each is aggregated by the database from the
    records — an average subtotal is the average of the records, not of the
    cells' averages, and a distinct count counts each value once. Derived
    measures other than ratios have no subtotal."""
    assert report.pivot is not None
    keep = [m for m in report.measures if isinstance(m, rm.FieldMeasure | rm.RatioMeasure)]
    out = {}
    for axis, keys in (("rows", report.pivot.rows), ("columns", report.pivot.columns)):
        derived = report.model_copy(update={
            "dimensions": [d for d in report.dimensions if d.key in keys], "measures": keep,
            "sort": [], "limit": None, "others": False, "pivot": None, "totals": False,
            "chart": rm.TableChart(type="table")})
        compiled = compile_report(ctx, app=app, report=derived, parameters=parameters)
        out[axis] = execute(ctx.session, compiled, language=ctx.language)
    return out


def run_report(ctx: EngineContext, *, app: str, key: str,
               parameters: Mapping[str, Any] | None = None, draft: bool = False
               ) -> dict[str, Any]:
    """Rows, columns, totals and the chart spec of a published report (or its draft)."""
    report, version = _load(ctx, app, key, draft)
    result, spec = run_definition(ctx, app=app, report=report, version=version,
                                  parameters=parameters)
    out = result_json(result, chart=spec)
    out["version"] = version
    return out


def report_sql(ctx: EngineContext, *, app: str, key: str,
               parameters: Mapping[str, Any] | None = None, draft: bool = False
               ) -> dict[str, Any]:
    """The SQL the report runs for this viewer, with its parameters apart."""
    report, _ = _load(ctx, app, key, draft)
    compiled: CompiledReport = compile_report(ctx, app=app, report=report,
                                              parameters=parameters)
    sql, params = compiled.sql(ctx.session.get_bind().dialect)
    return {"sql": sql, "params": {k: _jsonable(v) for k, v in params.items()},
            "dialect": compiled.dialect_name, "forms": list(compiled.forms)}


def _jsonable(value: Any) -> Any:
    from tangram.engines.reports.results import to_json

    return to_json(value)


def export_report(ctx: EngineContext, *, app: str, key: str, fmt: str,
                  parameters: Mapping[str, Any] | None = None) -> tuple[bytes, str, str]:
    """(content, media type, file name) of the report as csv, xlsx, png or svg."""
    report, version = _load(ctx, app, key, False)
    ctx.policy.check_form_action(ctx.actor, app, report.form, "export")
    result, spec = run_definition(ctx, app=app, report=report, version=version,
                                  parameters=parameters)
    if fmt not in MEDIA_TYPES:
        raise ValidationFailed([ErrorItem(code="invalid_format", field="format", message=(
            f"unknown export format {fmt!r}; formats: {', '.join(MEDIA_TYPES)}"))])
    return export(result, spec, fmt), MEDIA_TYPES[fmt], f"{key}.{fmt}"


def list_reports(ctx: EngineContext, *, app: str, kind: str = "report") -> list[dict[str, Any]]:
    out = []
    for d in storage.list_definitions(ctx.session, app=app, kind=kind):
        body = d.draft or {}
        out.append({"key": d.key, "label": body.get("label"),
                    "latest_version": d.latest_version, "has_draft": d.draft is not None})
    return out


# --------------------------------------------------------------------------- drill-down

def drilldown_filter(ctx: EngineContext, *, app: str, key: str, element: Mapping[str, Any],
                     parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The records-API filter (on the report's form) matching one chart element:
    the report's filter with its parameters, and each dimension at the
    element's value. ``element`` maps dimension keys to row values as the run
    returned them."""
    report, _ = published_report(ctx, app=app, key=key)
    if report.rows is not None:
        raise ValidationFailed([ErrorItem(code="not_drillable", field="element", message=(
            f"report {key!r} aggregates rows of sub-table {report.rows!r}; the records "
            f"filter of form {report.form!r} cannot select single rows"))])
    compiled = compile_report(ctx, app=app, report=report, parameters=parameters)
    conditions: list[Any] = []
    base = compiled.filter
    if base:
        conditions.append(base)
    dimensions = {c.key for c in compiled.dimensions}
    # An element names dimensions of the report (null: the empty group); one
    # left out is a subtotal's or total's (every value of it). A key that is
    # no dimension is refused: a typo must not drill into all the records.
    errors = [ErrorItem(code="unknown_key", field=f"element.{k}", message=(
        f"report {key!r} has no dimension {k!r}; dimensions: "
        f"{', '.join(sorted(dimensions)) or 'none'}")) for k in element if k not in dimensions]
    if errors:
        raise ValidationFailed(errors)
    chart = report.chart
    for col in compiled.dimensions:
        if col.key not in element:
            continue
        value = element[col.key]
        d = col.definition
        at = f"element.{col.key}"
        if d.expression is not None:
            errors.append(ErrorItem(code="not_drillable", field=at, message=(
                f"{col.key!r} is a calculated dimension; the records filter language cannot "
                "express it, so drill down by the other dimensions")))
            continue
        if getattr(d, "by", None) == "department":
            # The users whose primary department it is, as they are now.
            if value is None:
                errors.append(ErrorItem(code="not_drillable", field=at, message=(
                    f"{col.key!r} groups users without a department; drill down by the "
                    "other dimensions")))
                continue
            users = [str(u) for u in ctx.session.execute(
                sa.select(users_table.c.id).where(
                    users_table.c.primary_department_id == uuid.UUID(str(value)))).scalars()]
            conditions.append({"field": d.field, "op": "in", "value": users})
        elif value is None:
            conditions.append({"field": d.field, "op": "is_empty"})
        elif isinstance(d, rm.DateDimension):
            try:
                start = date.fromisoformat(str(value))
            except ValueError:
                errors.append(ErrorItem(code="invalid_value", field=at,
                                        message="a date bucket value is YYYY-MM-DD"))
                continue
            if period_start(start, d.bucket) != start:
                # Refused rather than snapped: the value must be one the run returned.
                errors.append(ErrorItem(code="invalid_value", field=at, message=(
                    f"{start} is not the first day of a {d.bucket}: the {d.bucket} holding "
                    f"it starts {period_start(start, d.bucket)}")))
                continue
            end = _next_period(start, d.bucket)
            instant = col.ref is not None and col.ref.value_class == "datetime"
            lo, hi = (day_start(day, timezone=ctx.timezone, instant=instant)
                      for day in (start, end))
            conditions += [{"field": d.field, "op": "gte", "value": lo},
                           {"field": d.field, "op": "lt", "value": hi}]
        elif isinstance(d, rm.BinDimension):
            from decimal import Decimal

            lo_dec = Decimal(str(value))
            conditions += [{"field": d.field, "op": "gte", "value": str(lo_dec)},
                           {"field": d.field, "op": "lt", "value": str(lo_dec + d.width)}]
        elif (isinstance(chart, rm.FunnelChart) and chart.cumulative
              and chart.stage == col.key and value in (order := funnel_order(col, chart) or [])):
            # A cumulative funnel's bar counts the records in its stage and
            # every later one: those are the records behind it.
            later = order[order.index(value):]
            conditions.append({"field": d.field, "op": "in", "value": later})
        else:
            conditions.append({"field": d.field, "op": "eq", "value": value})
    if errors:
        raise ValidationFailed(errors)
    found = _without_empty({"and": conditions})
    return {"form": report.form, "filter": found or None}


def _without_empty(spec: Any) -> Any:
    """A filter without the empty conditions (``{}``: a parameter given no
    value) of its ``and`` groups, where they change nothing; a group left
    empty is itself empty. (In ``or`` and ``not`` an empty condition does
    change the result, so it stays.)"""
    if not isinstance(spec, dict):
        return spec
    if set(spec) == {"and"} and isinstance(spec["and"], list):
        kept = [c for c in (_without_empty(c) for c in spec["and"]) if c != {}]
        return {"and": kept} if kept else {}
    return {k: ([_without_empty(c) for c in v] if isinstance(v, list) else _without_empty(v))
            for k, v in spec.items()}


def _next_period(start: Any, bucket: str) -> Any:
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[bucket]
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1, day=1)


# --------------------------------------------------------------------------- dashboards

def save_dashboard(ctx: EngineContext, *, app: str, key: str, body: dict[str, Any]
                   ) -> dict[str, Any]:
    """Create or replace a dashboard (stored and published as one version)."""
    dashboard = parse("dashboard", {**body, "key": key})
    errors = [ErrorItem(code="unknown_role", path=f"$.roles[{i}]",
                        message=f"app {app!r} has no role {role!r}")
              for i, role in enumerate(dashboard.roles)
              if storage.find_definition(ctx.session, app=app, kind="role", key=role) is None]
    for i, w in enumerate(dashboard.widgets):
        if storage.find_definition(ctx.session, app=app, kind="report", key=w.report) is None:
            errors.append(ErrorItem(code="unknown_report", path=f"$.widgets[{i}].report",
                                    message=f"report {w.report!r} does not exist"))
        elif w.kpi is not None:
            problem = target_problem(w.kpi.target) if w.kpi.target is not None else None
            if problem is not None:
                errors.append(ErrorItem(code="out_of_range", path=f"$.widgets[{i}].kpi.target",
                                        message=problem))
            body_of = storage.latest_body(ctx.session, app=app, kind="report", key=w.report)
            measures = {m["key"] for m in (body_of or {}).get("measures", [])
                        if m.get("agg") in rm.FIELD_AGGREGATES}
            if body_of is not None and w.kpi.measure not in measures:
                errors.append(ErrorItem(code="unknown_measure",
                                        path=f"$.widgets[{i}].kpi.measure", message=(
                                            f"report {w.report!r} has no field measure "
                                            f"{w.kpi.measure!r}")))
    if errors:
        raise DefinitionInvalid(f"dashboard {key!r} is not valid: {errors[0].message}",
                                errors=errors)
    storage.save_draft(ctx.session, app=app, kind="dashboard", key=key, body=body,
                       user_id=ctx.actor.id, now=ctx.now())
    d = storage.get_definition(ctx.session, app=app, kind="dashboard", key=key, lock=True)
    version = storage.record_version(ctx.session, definition=d, body=storage.dump(dashboard),
                                     user_id=ctx.actor.id, now=ctx.now())
    return {"key": key, "version": version, "definition": storage.dump(dashboard)}


def get_dashboard(ctx: EngineContext, *, app: str, key: str) -> rm.Dashboard:
    body = storage.latest_body(ctx.session, app=app, kind="dashboard", key=key)
    if body is None:
        raise NotFound(f"dashboard {key!r} does not exist in app {app!r}")
    return rm.Dashboard.model_validate(body)


def delete_dashboard(ctx: EngineContext, *, app: str, key: str) -> None:
    d = storage.get_definition(ctx.session, app=app, kind="dashboard", key=key, lock=True)
    v, t = storage.definition_versions_table, storage.definitions_table
    ctx.session.execute(sa.delete(v).where(v.c.definition_id == d.id))
    ctx.session.execute(sa.delete(t).where(t.c.id == d.id))


def run_dashboard(ctx: EngineContext, *, app: str, key: str,
                  filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every widget's result. A dashboard filter's value goes to each widget's
    report parameter of the same key (when the report declares one); a
    widget's own fixed parameters come first. A failing widget (e.g. fields
    the viewer may not see) reports its error without failing the others."""
    dashboard = get_dashboard(ctx, app=app, key=key)
    given = dict(filters or {})
    unknown = sorted(set(given) - {f.key for f in dashboard.filters})
    if unknown:
        raise ValidationFailed([ErrorItem(code="unknown_parameter", field=f"filters.{k}",
                                          message=f"the dashboard has no filter {k!r}")
                                for k in unknown])
    values = {f.key: given.get(f.key, f.default) for f in dashboard.filters}
    widgets = []
    for w in dashboard.widgets:
        entry: dict[str, Any] = {"key": w.key, "report": w.report, "x": w.x, "y": w.y,
                                 "w": w.w, "h": w.h, "title": w.title}
        try:
            report, version = published_report(ctx, app=app, key=w.report)
            declared = {p.key for p in report.parameters}
            params = {k: v for k, v in values.items() if k in declared and v is not None}
            params.update(w.parameters)
            entry["parameters"] = params
            if w.kpi is not None:
                k = w.kpi
                entry["kpi"] = kpi_card(ctx, app=app, key=w.report, measure=k.measure,
                                        period=k.period, complete=k.complete,
                                        date_field=k.date_field, parameters=params,
                                        compare=tuple(k.compare), target=k.target)
            else:
                result, spec = run_definition(ctx, app=app, report=report, version=version,
                                              parameters=params)
                entry["result"] = result_json(result, chart=spec)
        except TangramError as exc:  # refused (hidden field, bad parameter): this widget only
            entry["error"] = exc.as_dict()
        widgets.append(entry)
    return {"key": key, "label": dashboard.label, "filters": values, "widgets": widgets}
