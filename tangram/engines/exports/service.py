"""Export a list view — the records API's filter, sort, search and fields —
as a spreadsheet the viewer may see, streamed page by page.

    plan = plan_export(ctx, app="crm", form="lead", query=ListQuery(
        filter={"field": "status", "op": "eq", "value": "new"}, sort=["-budget"]),
        format="xlsx")                                   # permission checks here
    for chunk in stream_export(ctx, plan):               # any session, any time
        out.write(chunk)

Rows come in keyset pages (``build_select``), each read in a short
transaction of its own, so a long export neither holds rows in memory nor
blocks writers. The viewer's row scope for ``export`` applies, hidden fields
are left out (and may not be filtered or sorted on).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from tangram.db.stats import refresh_statistics
from tangram.engines.context import EngineContext
from tangram.engines.exports.values import (
    Env,
    Formatter,
    formatter_for,
    reference_of,
    wanted_ids,
)
from tangram.engines.exports.writers import EXPORT_FORMATS
from tangram.engines.forms import records
from tangram.engines.forms.query import MAX_LIMIT, ListQuery, build_select
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.forms.titles import load_titles
from tangram.errors import ErrorItem, PermissionDenied, ValidationFailed
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

PAGE_ROWS = MAX_LIMIT
_SYSTEM = {
    "id": ({"zh": "记录ID", "en": "Record id"}, None),
    "created_at": ({"zh": "创建时间", "en": "Created at"}, "datetime"),
    "updated_at": ({"zh": "更新时间", "en": "Updated at"}, "datetime"),
    "owner": ({"zh": "负责人", "en": "Owner"}, "user"),
    "created_by": ({"zh": "创建人", "en": "Created by"}, "user"),
    "updated_by": ({"zh": "更新人", "en": "Updated by"}, "user"),
}
NOT_EXPORTED_KINDS = frozenset({"sub_table"})
_SYSTEM_FIELDS = {kind: fm.FIELD_MODELS[kind].model_validate(
    {"key": "system", "type": kind, "label": {"en": kind}})
    for kind in ("text", "datetime", "user")}


@dataclass(frozen=True)
class ExportPlan:
    app: str
    form: str
    query: ListQuery
    columns: tuple[str, ...]  # field keys (and system columns), in order
    header: tuple[str, ...]  # their labels in the viewer's language
    format: str
    file_name: str
    media_type: str


def plan_export(ctx: EngineContext, *, app: str, form: str, query: ListQuery,
                format: str = "csv") -> ExportPlan:
    """Check that the viewer may export this view and fix its columns.

    Raises PermissionDenied (no ``export`` right, a hidden field named) or
    QueryInvalid (a bad filter/sort/field) before anything is streamed."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "export")
    fmt = EXPORT_FORMATS.get(format)
    if fmt is None:
        item = ErrorItem(code="format_invalid", field="format", message=(
            f"cannot export as {format!r}; formats: {', '.join(EXPORT_FORMATS)}"))
        raise ValidationFailed([item], item.message)
    hidden = _hidden(ctx, rt)
    # Paths too: a filter on account.code, hidden on the account form, would
    # give the code away by the rows it keeps.
    named = records.filter_paths(query.filter) | {s.lstrip("-") for s in query.sort} | set(
        query.fields or [])
    for path in sorted(named):
        if not records.path_visible(ctx, rt, path):
            raise PermissionDenied(f"you may not export, filter or sort on field {path!r}",
                                   details={"field": path})
    if query.fields:
        columns = [k for k in query.fields if k in _SYSTEM or rt.form.field(k) is not None]
        unknown = [k for k in query.fields if k not in columns]
        if unknown:
            item = ErrorItem(code="unknown_field", field="fields", message=(
                f"form {form!r} has no field(s) {', '.join(map(repr, unknown))}"))
            raise ValidationFailed([item], item.message)
    else:
        columns = [f.key for f in rt.form.fields if f.key not in hidden
                   and f.type not in NOT_EXPORTED_KINDS]  # type: ignore[attr-defined]
    columns = [k for k in columns if k in _SYSTEM or rt.form.field(k).type  # type: ignore[union-attr]
               not in NOT_EXPORTED_KINDS]
    page = replace(query, fields=[k for k in columns if k not in _SYSTEM], limit=PAGE_ROWS,
                   after=None, include_total=False, deleted=False)
    # Compile once now, so that a bad query fails before the response starts.
    build_select(page, tables=records.viewer_tables(ctx, rt),
                 qctx=records.query_context(ctx, app))
    header = tuple(_label(rt, k, ctx.language) for k in columns)
    stamp = ctx.now().astimezone(ZoneInfo(ctx.timezone)).strftime("%Y%m%d-%H%M")
    name = f"{localize(rt.form.label, ctx.language) or form}-{stamp}{fmt.extension}"
    return ExportPlan(app=app, form=form, query=page, columns=tuple(columns), header=header,
                      format=fmt.name, file_name=name, media_type=fmt.media_type)


def stream_export(ctx: EngineContext, plan: ExportPlan) -> Iterator[bytes]:
    """The file's bytes, produced page by page (re-checks the permission)."""
    return EXPORT_FORMATS[plan.format].write(list(plan.header), export_rows(ctx, plan))


def export_rows(ctx: EngineContext, plan: ExportPlan) -> Iterator[list[Any]]:
    """Display values of every row of the plan, one keyset page at a time."""
    rt = get_runtime(ctx.session, plan.app, plan.form)
    ctx.policy.check_form_action(ctx.actor, plan.app, plan.form, "export")
    hidden = _hidden(ctx, rt)
    columns = [k for k in plan.columns if k not in hidden]
    env = Env(language=ctx.language, zone=ZoneInfo(ctx.timezone))
    formatters, refs = _formatters(rt, columns, env)
    joins = [k for k in columns if k in rt.tables.joins]
    qctx = records.query_context(ctx, plan.app)
    query = plan.query
    refresh_statistics(ctx.session, rt.table)
    ctx.session.commit()
    while True:
        scope = ctx.policy.row_predicate(ctx.actor, plan.app, plan.form, rt.table, "export")
        # The viewer's tables: the search does not look in hidden fields.
        stmt, cursor_of = build_select(query, tables=records.viewer_tables(ctx, rt), qctx=qctx,
                                       scope=scope)
        rows = list(ctx.session.execute(stmt).mappings())
        page = rows[:query.limit]
        values = [{k: (rt.fields[k].kind.from_db(r[k]) if k in rt.fields else r[k])
                   for k in columns if k in r} for r in page]
        _add_links(ctx, rt, joins, page, values)
        titles = load_titles(ctx, rt.app, wanted_ids(refs, values))
        # End the read transaction between pages: writers are not held up
        # (SQLite), and no snapshot is kept open for the whole export.
        ctx.session.rollback()
        for rec in values:
            yield [formatters[k](rec.get(k), titles) for k in columns]
        if len(rows) <= query.limit:
            return
        query = replace(query, after=cursor_of(rows[query.limit - 1]))


def _formatters(rt: FormRuntime, columns: list[str], env: Env
                ) -> tuple[dict[str, Formatter], dict[str, str]]:
    formatters: dict[str, Formatter] = {}
    refs: dict[str, str] = {}
    for key in columns:
        f = rt.form.field(key)
        if f is None:  # a system column: described like the field it resembles
            kind = _SYSTEM[key][1]
            f = _SYSTEM_FIELDS[kind or "text"]
        formatters[key] = formatter_for(f, env)
        ref = reference_of(f)
        if ref is not None:
            refs[key] = ref
    return formatters, refs


def _add_links(ctx: EngineContext, rt: FormRuntime, joins: list[str],
               page: list[Any], values: list[dict[str, Any]]) -> None:
    if not joins or not page:
        return
    ids = [r["id"] for r in page]
    by_id = {r["id"]: rec for r, rec in zip(page, values, strict=True)}
    for rec in values:
        for key in joins:
            rec[key] = []
    for key in joins:
        table = rt.tables.joins[key]
        for link in ctx.session.execute(
                sa.select(table.c.source_id, table.c.target_id)
                .where(table.c.source_id.in_(ids))
                .order_by(table.c.source_id, table.c.position)):
            by_id[link.source_id][key].append(link.target_id)


def _hidden(ctx: EngineContext, rt: FormRuntime) -> set[str]:
    access = ctx.policy.field_access(ctx.actor, rt.app, rt.key)
    return {k for k, v in access.items() if v == "hidden"}


def _label(rt: FormRuntime, key: str, language: str) -> str:
    f = rt.form.field(key)
    return localize(f.label if f else _SYSTEM[key][0], language) or key
