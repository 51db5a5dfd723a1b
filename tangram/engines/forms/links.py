"""Which records a relation field may link to, for writes and for pickers.

A link must point to a live record of the target form that the actor may
read — unless the field says ``link_outside_scope``: then any live record of
the target form will do (a contract may name any customer as its referrer,
even one the rep cannot open). The same rule decides what a write accepts
(``narrow_refused``) and what the picker offers (``picker``), so a user is
never offered a record a save then refuses, nor refused one the picker showed.

    page = picker(ctx, app="crm", form="contract", field="account", search="华")
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.forms.query import ListQuery, QueryContext, build_select
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.errors import NotFound, PermissionDenied
from tangram.metamodel import fields as fm

RelationDef = fm.RelationField | fm.MultiRelationField


def relation_field(rt: FormRuntime, path: str) -> RelationDef | None:
    """The relation field an error path or picker path names: ``account``,
    ``lines[2].product``, ``rows[3].account`` (bulk) or ``lines.product``."""
    path = re.sub(r"^rows\[\d+\]\.", "", path)
    match = re.fullmatch(r"(\w+)(?:\[\d+\])?\.(\w+)", path)
    found: fm.FieldBase | None
    if match:
        sub = rt.form.field(match.group(1))
        found = next((f for f in sub.fields if f.key == match.group(2)), None) \
            if isinstance(sub, fm.SubTableField) else None
    else:
        found = rt.form.field(path)
    return found if isinstance(found, (fm.RelationField, fm.MultiRelationField)) else None


def _allows_outside(rt: FormRuntime, path: str) -> bool:
    f = relation_field(rt, path)
    return f is not None and f.link_outside_scope


def narrow_refused(ctx: EngineContext, rt: FormRuntime, target: FormRuntime | None,
                   by_id: Mapping[uuid.UUID, list[str]]
                   ) -> tuple[set[uuid.UUID], dict[uuid.UUID, list[str]]]:
    """(ids that may be linked, the field paths per id) for the links of a
    write to ``target``: in the actor's read scope, or live and named only
    by fields with ``link_outside_scope``. Out-of-scope ids keep only the
    paths of fields that refuse them, so each refusal names its own field."""
    if target is None:
        return set(), dict(by_id)
    tt = target.table
    ids = set(by_id)
    live = sa.select(tt.c.id).where(tt.c.id.in_(ids), tt.c.deleted_at.is_(None))
    scope = ctx.policy.row_predicate(ctx.actor, rt.app, target.key, tt, "read")
    if scope is None:
        return {r.id for r in ctx.session.execute(live)}, dict(by_id)
    in_scope = {r.id for r in ctx.session.execute(live.where(scope))}
    open_ids = {i for i in ids - in_scope if any(_allows_outside(rt, p) for p in by_id[i])}
    if not open_ids:
        return in_scope, dict(by_id)
    existing = {r.id for r in ctx.session.execute(
        sa.select(tt.c.id).where(tt.c.id.in_(open_ids), tt.c.deleted_at.is_(None)))}
    narrowed = dict(by_id)
    found = set(in_scope)
    for ident in existing:
        refusing = [p for p in by_id[ident] if not _allows_outside(rt, p)]
        if refusing:
            narrowed[ident] = refusing
        else:
            found.add(ident)
    return found, narrowed


def picker(ctx: EngineContext, *, app: str, form: str, field: str, search: str | None = None,
           limit: int = 20, after: str | None = None) -> dict[str, Any]:
    """Records a relation field of ``form`` may link to: id and title only,
    the target's search fields searched, in the target's list order — both
    without the target's fields hidden from the actor (finding or ordering
    records by a hidden value would give it away). Needs the create or
    update right on ``form`` and a field the actor may set."""
    rt = get_runtime(ctx.session, app, form)
    f = relation_field(rt, field)
    if f is None:
        raise NotFound(f"form {form!r} has no relation field {field!r}")
    # The same rights as the user and department pickers (records imports
    # this module, hence the late import).
    from tangram.engines.forms.records import check_settable, viewer_tables

    check_settable(ctx, rt, field)
    target = rt if f.target == rt.key else get_runtime(ctx.session, app, f.target)
    title = target.title_field
    if title is not None and ctx.policy.field_access(ctx.actor, app, target.key).get(
            title) == "hidden":
        if search:
            raise PermissionDenied(f"the title field {title!r} of form {target.key!r} is "
                                   "hidden from you: search is not available",
                                   details={"field": title})
        title = None
    scope = None if f.link_outside_scope else ctx.policy.row_predicate(
        ctx.actor, app, target.key, target.table, "read")
    # Relation paths in the target's search stay in the actor's scope.
    qctx = QueryContext(
        resolve=lambda key: get_runtime(ctx.session, app, key).tables, today=ctx.today(),
        timezone=ctx.timezone, now=ctx.now(),
        scope=lambda tables, alias: ctx.policy.row_predicate(
            ctx.actor, app, tables.form.key, alias, "read"))  # type: ignore[arg-type]
    stmt, cursor_of = build_select(
        ListQuery(search=search or None, limit=limit, after=after,
                  fields=[title] if title else []),
        tables=viewer_tables(ctx, target), qctx=qctx, scope=scope)
    rows = list(ctx.session.execute(stmt).mappings())
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {"target": target.key, "link_outside_scope": f.link_outside_scope,
            "items": [{"id": str(r["id"]), "title": None if title is None else
                       _text(r.get(title))} for r in rows],
            "next_cursor": cursor_of(rows[-1]) if has_more and rows else None}


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
