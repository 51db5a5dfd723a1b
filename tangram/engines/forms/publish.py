"""Publishing a form: check the draft against its app, evolve the tables,
store the immutable version — one transaction, all or nothing.

Example::

    save_form_draft(ctx, app="crm", body={...})
    publish_form(ctx, app="crm", key="lead", dry_run=True)        # what would change
    publish_form(ctx, app="crm", key="lead", confirm_destructive=True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import SYSTEM_ACTOR, EngineContext
from tangram.engines.forms import evolution
from tangram.engines.forms.registry import FormRuntime, forget_session_runtimes, get_runtime
from tangram.engines.forms.validation import compile_validator
from tangram.errors import DefinitionInvalid, ErrorItem
from tangram.metamodel import fields as fm
from tangram.metamodel import storage
from tangram.metamodel.forms import SYSTEM_FIELDS, Form

NUMERIC_TYPES = {"integer", "decimal", "currency", "percent", "rollup"}
# What the ``user`` variable holds (id, name, roles…): nothing else is ever readable.
USER_ATTRIBUTES = frozenset(SYSTEM_ACTOR.as_variables())


def _is_numeric(f: fm.FieldBase | None) -> bool:
    if f is None:
        return False
    if isinstance(f, fm.FormulaField):
        return f.result_type in ("integer", "decimal")
    if isinstance(f, fm.RollupField):
        return f.result_type == "number"
    return f.type in NUMERIC_TYPES  # type: ignore[attr-defined]


def _date_type(f: fm.FieldBase | None) -> str | None:
    """"date" or "datetime" for a field holding dates (a formula or rollup by
    its result), else None."""
    kind: str | None = f.result_type if isinstance(f, (fm.FormulaField, fm.RollupField)) \
        else getattr(f, "type", None)
    return kind if kind in ("date", "datetime") else None


def _form_bodies(ctx: EngineContext, app: str) -> dict[str, dict[str, Any]]:
    """Every form of the app: latest published body, else the draft."""
    out = {}
    for d in storage.list_definitions(ctx.session, app=app, kind="form"):
        body = storage.latest_body(ctx.session, app=app, kind="form", key=d.key) or d.draft
        if body:
            out[d.key] = body
    return out


def check_form_in_app(ctx: EngineContext, app: str, form: Form) -> list[ErrorItem]:
    """Checks that need the rest of the app: relation targets, rollup sources,
    expressions and the fields they read."""
    errors: list[ErrorItem] = []
    try:
        compile_validator(form)
    except DefinitionInvalid as exc:
        errors.extend(exc.errors)
    others = _form_bodies(ctx, app)
    others[form.key] = form.model_dump(mode="json", by_alias=True)

    def target_form(key: str) -> Form | None:
        body = others.get(key)
        try:
            return Form.model_validate(body) if body else None
        except ValueError:
            return None

    for i, f in enumerate(form.fields):
        where = f"$.fields[{i}]"
        if isinstance(f, (fm.RelationField, fm.MultiRelationField)) and f.target not in others:
            errors.append(ErrorItem(code="unknown_form", path=f"{where}.target", message=(
                f"field {f.key!r} links to form {f.target!r}, which app {app!r} does not have; "
                f"forms: {', '.join(sorted(others))}")))
        if isinstance(f, fm.RollupField):
            errors.extend(_check_rollup(f, form, where, target_form))
        if f.fill_from:
            errors.extend(_check_fill_from(f, form.fields, where, target_form))
        if isinstance(f, fm.SubTableField):
            for j, sf in enumerate(f.fields):
                if sf.fill_from:
                    errors.extend(_check_fill_from(sf, f.fields, f"{where}.fields[{j}]",
                                                   target_form))
                if isinstance(sf, (fm.RelationField, fm.MultiRelationField)) \
                        and sf.target not in others:
                    errors.append(ErrorItem(code="unknown_form",
                                            path=f"{where}.fields[{j}].target",
                                            message=f"sub-field {sf.key!r} links to unknown "
                                            f"form {sf.target!r}"))
    errors.extend(_check_expression_fields(form))
    return errors


def _check_fill_from(f: fm.FieldBase, siblings: list[Any], where: str, target_form: Any
                     ) -> list[ErrorItem]:
    """``fill_from`` names a relation among the field's siblings and a field of
    its target form of the same type (numbers: any numeric type)."""
    via_key, source_key = (f.fill_from or "").split(".", 1)
    via = next((s for s in siblings if s.key == via_key), None)
    if not isinstance(via, fm.RelationField):
        return [ErrorItem(code="fill_from", path=f"{where}.fill_from", message=(
            f"{via_key!r} must be a relation field beside {f.key!r}"))]
    target = target_form(via.target)
    source = target.field(source_key) if target is not None else None
    if source is None:
        return [ErrorItem(code="fill_from", path=f"{where}.fill_from", message=(
            f"form {via.target!r} has no field {source_key!r}"))]
    numeric = _is_numeric(f) and _is_numeric(source)
    if source.type != f.type and not numeric and not (  # type: ignore[attr-defined]
            f.type == "text" and source.type in {"text", "select", "autonumber",  # type: ignore[attr-defined]
                                                "email", "phone", "url"}):
        return [ErrorItem(code="fill_from", path=f"{where}.fill_from", message=(
            f"{f.key!r} ({f.type}) cannot take {source_key!r} "  # type: ignore[attr-defined]
            f"({source.type}) of {via.target!r}"))]  # type: ignore[attr-defined]
    return []


def _check_rollup(f: fm.RollupField, form: Form, where: str, target_form: Any
                  ) -> list[ErrorItem]:
    src = f.source
    if src.sub_table:
        sub = form.field(src.sub_table)
        if not isinstance(sub, fm.SubTableField):
            return [ErrorItem(code="rollup_source", path=f"{where}.source.sub_table",
                              message=f"{src.sub_table!r} is not a sub-table of this form")]
        agg_field = next((x for x in sub.fields if x.key == f.field), None)
    else:
        assert src.form is not None
        child = target_form(src.form)
        if child is None:
            return [ErrorItem(code="rollup_source", path=f"{where}.source.form",
                              message=f"rollup source form {src.form!r} does not exist")]
        via = child.field(src.via or "")
        if not isinstance(via, fm.RelationField) or via.target != form.key:
            return [ErrorItem(code="rollup_source", path=f"{where}.source.via", message=(
                f"{src.via!r} must be a relation field of {src.form!r} that links to "
                f"{form.key!r}"))]
        agg_field = child.field(f.field) if f.field else None
    if f.aggregate == "count":
        return []
    dates = _date_type(agg_field)
    if dates and f.aggregate in ("min", "max"):
        if f.result_type != dates:
            return [ErrorItem(code="rollup_field", path=f"{where}.result_type", message=(
                f"rollup {f.aggregate} of {f.field!r} (a {dates} field) gives a {dates}: "
                f"set \"result_type\": \"{dates}\""))]
        return []
    if dates:
        return [ErrorItem(code="rollup_field", path=f"{where}.aggregate", message=(
            f"rollup {f.aggregate} cannot add up {f.field!r}, a {dates} field; min and max "
            "work on dates and date-times, sum and avg need a numeric field"))]
    if not _is_numeric(agg_field):
        return [ErrorItem(code="rollup_field", path=f"{where}.field", message=(
            f"rollup {f.aggregate} needs a numeric field (or, for min and max, a date or "
            f"date-time field); {f.field!r} is {getattr(agg_field, 'type', 'missing')}"))]
    if f.result_type != "number":
        return [ErrorItem(code="rollup_field", path=f"{where}.result_type", message=(
            f"rollup {f.aggregate} of {f.field!r} (a number) gives a number, not a "
            f"{f.result_type}: leave out result_type or set it to \"number\""))]
    return []


def _check_expression_fields(form: Form) -> list[ErrorItem]:
    """Expressions may only read fields the form has (typos are errors now,
    not None at run time)."""
    from tangram.engines.expressions import ExpressionError, compile_expression

    errors: list[ErrorItem] = []
    known = {f.key for f in form.fields} | set(SYSTEM_FIELDS)

    def check(source: str | None, path: str, scope: set[str], parent: set[str]) -> None:
        if not source:
            return
        try:
            expr = compile_expression(source, allowed_names=("record", "old", "user", "row",
                                                             "parent"))
        except ExpressionError:
            return  # reported by the validator compile
        refs = expr.referenced_fields
        for root, allowed in (("record", scope), ("old", scope), ("row", scope),
                              ("parent", parent)):
            for name in sorted(refs.get(root, set()) - allowed):
                errors.append(ErrorItem(code="unknown_field", path=path, message=(
                    f"expression reads {root}.{name}, but there is no field {name!r}")))
        for name in sorted(refs.get("user", set()) - USER_ATTRIBUTES):
            errors.append(ErrorItem(code="unknown_field", path=path, message=(
                f"expression reads user.{name}, but the user has no attribute {name!r}; "
                f"it has: {', '.join(sorted(USER_ATTRIBUTES))}")))

    for i, f in enumerate(form.fields):
        where = f"$.fields[{i}]"
        for attr in ("required_when", "visible_when", "default_expr", "expression"):
            check(getattr(f, attr, None), f"{where}.{attr}", known, known)
        if isinstance(f, fm.SubTableField):
            sub_known = {sf.key for sf in f.fields} | {"id"}
            for j, sf in enumerate(f.fields):
                for attr in ("required_when", "visible_when", "default_expr", "expression"):
                    check(getattr(sf, attr, None), f"{where}.fields[{j}].{attr}", sub_known,
                          known)
                errors.extend(_check_row_default(form, sf, f"{where}.fields[{j}].default_expr"))
            for j, rule in enumerate(f.rules):
                check(rule.assert_, f"{where}.rules[{j}].assert", sub_known, known)
    for i, rule in enumerate(form.rules):
        check(rule.assert_, f"$.rules[{i}].assert", known, known)
        check(rule.when, f"$.rules[{i}].when", known, known)
    if form.lock is not None:
        check(form.lock.when, "$.lock.when", known, known)
    return errors


def _check_row_default(form: Form, sf: fm.FieldBase, path: str) -> list[ErrorItem]:
    """A new row's default is filled before anything is computed in the save:
    it may read the record's stored and given fields (``parent.due_date``),
    not its formulas, sub-table rollups or sub-tables, which get their values
    of this save only later (nor ``parent`` as a whole, which may be any of them)."""
    from tangram.engines.expressions import ExpressionError, compile_expression

    if not sf.default_expr:
        return []
    try:
        expr = compile_expression(sf.default_expr, allowed_names=("record", "old", "user",
                                                                 "row", "parent"))
    except ExpressionError:
        return []  # reported by the validator compile
    if "parent" in expr.whole_variables:
        return [ErrorItem(code="default_reads_computed", path=path, message=(
            f"the default of sub-table column {sf.key!r} uses parent as a whole; name the "
            "record's fields it reads, e.g. parent.due_date"))]
    out = []
    for name in sorted(expr.referenced_fields.get("parent", set())):
        f = form.field(name)
        what = ("a formula" if isinstance(f, fm.FormulaField)
                else "a sub-table" if isinstance(f, fm.SubTableField)
                else "a rollup over a sub-table" if isinstance(f, fm.RollupField)
                and f.source.sub_table else None)
        if what:
            out.append(ErrorItem(code="default_reads_computed", path=path, message=(
                f"the default of sub-table column {sf.key!r} reads parent.{name}, {what}: a "
                "new row's default is filled before the record's formulas and rollups are "
                "computed; make the column a formula, or read the fields "
                f"{name!r} is computed from")))
    return out


def save_form_draft(ctx: EngineContext, *, app: str, key: str, body: dict[str, Any]
                    ) -> dict[str, Any]:
    """Validate the draft's shape (not yet its app references) and store it."""
    row = storage.save_draft(ctx.session, app=app, kind="form", key=key, body=body,
                             user_id=ctx.actor.id, now=ctx.now())
    return {"key": key, "draft": row.draft, "latest_version": row.latest_version}


def publish_form(ctx: EngineContext, *, app: str, key: str, confirm_destructive: bool = False,
                 dry_run: bool = False, note: str | None = None) -> dict[str, Any]:
    """Publish the draft of form ``key``. ``dry_run`` reports the evolution plan
    without changing anything; a destructive plan needs ``confirm_destructive``
    (else ConfirmationRequired carrying the plan)."""
    definition = storage.get_definition(ctx.session, app=app, kind="form", key=key, lock=True)
    if not definition.draft:
        raise DefinitionInvalid(f"form {key!r} has no draft to publish")
    form = Form.model_validate(definition.draft)
    errors = check_form_in_app(ctx, app, form)
    if errors:
        raise DefinitionInvalid(f"form {key!r} cannot be published", errors=errors)
    old_body = storage.latest_body(ctx.session, app=app, kind="form", key=key)
    old = Form.model_validate(old_body) if old_body else None
    conn = ctx.session.connection()
    state = evolution.load_state(conn, app=app, form=key)
    plan = evolution.plan_evolution(conn, app=app, old=old, new=form, state=state,
                                    time_zone=ctx.timezone, language=ctx.language)
    if dry_run:
        return {"dry_run": True, "version": definition.latest_version, "plan": plan.as_dict()}
    version = definition.latest_version + 1
    forget_session_runtimes(ctx.session)
    losses = evolution.apply_evolution(conn, plan, confirm_destructive=confirm_destructive,
                                       version=version)
    storage.record_version(ctx.session, definition=definition,
                           body=storage.dump(form), user_id=ctx.actor.id, now=ctx.now(),
                           note=note)
    if losses:
        _record_losses(ctx, get_runtime(ctx.session, app, form.key), losses)
    if form.views:
        from tangram.engines.forms.views import check_views

        check_views(ctx, get_runtime(ctx.session, app, form.key))  # refused: rolled back
    _backfill(ctx, app=app, form=form, old=old)
    return {"dry_run": False, "version": version, "plan": plan.as_dict()}


def _record_losses(ctx: EngineContext, rt: FormRuntime, losses: evolution.Losses) -> None:
    """Values a confirmed publish cleared stay in each record's history (source
    "publish"), and the record's version moves, so a client holding the old
    copy gets a conflict instead of writing over the change unawares."""
    from tangram.engines.forms.records import audit_change, bump_data_version

    ids = list(losses)
    t = rt.table
    for start in range(0, len(ids), 500):
        ctx.session.execute(t.update().where(t.c.id.in_(ids[start:start + 500]))
                            .values(version=t.c.version + 1))
    for record_id, changes in losses.items():
        audit_change(ctx, rt, record_id, "update", changes, "publish")
    bump_data_version(ctx, rt)


def _changed_row_formulas(form: Form, old_fields: Mapping[str | None, fm.FieldBase]) -> bool:
    """Whether a sub-table gained a formula column or one changed."""
    for f in form.fields:
        if not isinstance(f, fm.SubTableField):
            continue
        before = old_fields.get(f.id)
        old_columns = ({c.id: c.model_dump() for c in before.fields}
                       if isinstance(before, fm.SubTableField) else {})
        if any(isinstance(c, fm.FormulaField) and old_columns.get(c.id) != c.model_dump()
               for c in f.fields):
            return True
    return False


def _backfill(ctx: EngineContext, *, app: str, form: Form, old: Form | None) -> None:
    """New or changed computed fields get values for existing records (and
    their sub-table rows)."""
    from tangram.engines.forms.records import (
        backfill_autonumbers,
        backfill_dependent_rollups,
        bump_data_version,
        recompute_all_rollups,
        recompute_formulas,
    )

    if old is None:
        return
    old_fields = {f.id: f for f in old.fields}
    changed = [f for f in form.fields
               if isinstance(f, (fm.FormulaField, fm.RollupField, fm.AutonumberField))
               and (f.id not in old_fields
                    or old_fields[f.id].model_dump() != f.model_dump())]
    rows_changed = _changed_row_formulas(form, old_fields)
    if not changed and not rows_changed:
        return
    runtime = get_runtime(ctx.session, app, form.key)
    moved: set[str] = set()  # fields whose stored values the backfill changed
    # Rollups over other forms first: the formulas computed next may read them.
    if any(isinstance(f, fm.RollupField) and f.source.form for f in changed) \
            and recompute_all_rollups(ctx, app=app, form=form.key, changed=moved):
        bump_data_version(ctx, runtime)
    if rows_changed or any(isinstance(f, (fm.FormulaField, fm.RollupField)) for f in changed):
        # Both levels at once, in the validator's order: a row formula, the
        # rollup over it, the record formula over that rollup (and row
        # formulas reading ``parent.…``).
        recompute_formulas(ctx, runtime, changed=moved)
    if moved:
        # Rollups of other forms over the changed values, and what reads them.
        backfill_dependent_rollups(ctx, runtime, moved)
    new_numbers = [f.key for f in changed
                   if isinstance(f, fm.AutonumberField) and f.id not in old_fields]
    if new_numbers:
        backfill_autonumbers(ctx, runtime, new_numbers)


def purge_field(ctx: EngineContext, *, app: str, form: str, field_id: str) -> int:
    """Drop a removed field's kept data for good; returns the rows that had data."""
    return evolution.purge_field(ctx.session.connection(), app=app, form=form, field_id=field_id)


def list_forms(ctx: EngineContext, *, app: str) -> list[dict[str, Any]]:
    from tangram.engines.forms.systables import form_tables_table

    published = {r.form: r.version for r in ctx.session.execute(
        sa.select(form_tables_table.c.form, form_tables_table.c.version)
        .where(form_tables_table.c.app == app))}
    out = []
    for d in storage.list_definitions(ctx.session, app=app, kind="form"):
        body = storage.latest_body(ctx.session, app=app, kind="form", key=d.key) or d.draft or {}
        out.append({"key": d.key, "label": body.get("label"), "latest_version": d.latest_version,
                    "published": d.key in published, "has_draft": d.draft is not None})
    return out
