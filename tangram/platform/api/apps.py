"""Apps and their form definitions: drafts, publishing, versions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.engines.context import EngineContext
from tangram.engines.expressions import CompiledExpression
from tangram.engines.forms import publish
from tangram.engines.forms.query import system_fields
from tangram.engines.forms.records import filter_paths, form_actions, path_visible, viewer_tables
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.forms.validation import FieldPlan
from tangram.engines.printing import templates_for_viewer
from tangram.errors import DefinitionInvalid, NotFound
from tangram.metamodel import storage
from tangram.metamodel.fields import FieldBase, RelationField
from tangram.metamodel.forms import App
from tangram.platform.api.body import Body
from tangram.platform.dependents import DependentCheck
from tangram.platform.deps import AdminActor, BuilderActor, ContextDep, MemberContextDep

router = APIRouter(prefix="/api/apps", tags=["apps"])


@router.get("")
def list_apps(ctx: ContextDep) -> list[dict[str, Any]]:
    return [storage.dump(a) for a in storage.list_apps(ctx.session)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_app(app: App, ctx: ContextDep, _admin: AdminActor) -> dict[str, Any]:
    storage.create_app(ctx.session, app=app, user_id=ctx.actor.id, now=ctx.now())
    return storage.dump(app)


@router.get("/{app}")
def get_app(app: str, ctx: ContextDep) -> dict[str, Any]:
    return storage.dump(storage.get_app(ctx.session, app))


@router.put("/{app}")
def update_app(app: str, body: App, ctx: ContextDep, _builder: BuilderActor) -> dict[str, Any]:
    if body.key != app:
        raise NotFound(f"body key {body.key!r} does not match app {app!r}")
    storage.update_app(ctx.session, app=body, now=ctx.now())
    return storage.dump(body)


@router.get("/{app}/navigation")
def navigation(app: str, ctx: MemberContextDep) -> dict[str, Any]:
    """A member's home in the app, to build its menu: the forms they may open
    (with what they may do there), the reports and dashboards they may see,
    their open approval tasks in the app, and — for an app installed from a
    package — its menus as they may open them and the dashboard to show first."""
    from tangram.engines.flows.service import open_task_count
    from tangram.engines.reports import service as reports
    from tangram.platform.navigation import app_menu
    from tangram.platform.permissions import definitions

    meta = storage.dump(storage.get_app(ctx.session, app))
    forms = []
    for f in publish.list_forms(ctx, app=app):
        if not f["published"]:
            continue
        rt = get_runtime(ctx.session, app, f["key"])
        actions = form_actions(ctx, app, f["key"])
        if "read" in actions:
            forms.append({"key": f["key"], "label": rt.form.label, "icon": rt.form.icon,
                          "actions": actions})
    published = [r for r in reports.list_reports(ctx, app=app) if r["latest_version"]]
    dashboards = [d for d in reports.list_reports(ctx, app=app, kind="dashboard")
                  if d["latest_version"] and definitions.dashboard_visible(ctx, app, d["key"])]
    return {"app": meta, "forms": forms,
            "reports": [{"key": r["key"], "label": r["label"]}
                        for r in definitions.visible_reports(ctx, app, published)],
            "dashboards": [{"key": d["key"], "label": d["label"]} for d in dashboards],
            **app_menu(ctx, app),
            "tasks_open": open_task_count(ctx, app=app)}


@router.get("/{app}/forms")
def list_forms(app: str, ctx: ContextDep) -> list[dict[str, Any]]:
    storage.get_app(ctx.session, app)
    return publish.list_forms(ctx, app=app)


@router.get("/{app}/forms/{form}")
def get_form(app: str, form: str, ctx: ContextDep) -> dict[str, Any]:
    """Everything a client needs to render the form, its list and its filters:
    the published definition as this user may see it, its version, what this
    user may do and see, the system fields lists may show, and the print
    templates they may print with (for a print button)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    access = ctx.policy.field_access(ctx.actor, app, form)
    hidden = {k for k, v in access.items() if v == "hidden"}
    definition = _visible_definition(ctx, rt, hidden)
    actions = form_actions(ctx, app, form)
    writes = "create" in actions or "update" in actions
    return {"app": app, "key": form, "version": rt.version, "definition": definition,
            "field_access": {f["key"]: _field_access(rt, access, f["key"], writes)
                             for f in definition["fields"]},
            "actions": actions,
            "title_field": None if rt.title_field in hidden else rt.title_field,
            "system_fields": _system_fields(form),
            "print_templates": templates_for_viewer(ctx, app=app, form=form)}


def _field_access(rt: FormRuntime, access: Mapping[str, str], key: str, writes: bool) -> str:
    """What the caller may do with a field: the role's rule, and read-only
    for fields nobody types into (formulas, rollups, autonumbers, read-only)
    and for every field when the caller may neither create nor update."""
    given = access.get(key, "editable")
    plan = rt.validator.fields.get(key)
    if given == "editable" and (not writes or plan is not None and plan.read_only):
        return "read_only"
    return given


def _visible_definition(ctx: EngineContext, rt: FormRuntime, hidden: set[str]
                        ) -> dict[str, Any]:
    """The published definition without what it would tell of the fields
    hidden from the caller: their fields, layout places, view columns, sort
    keys, search and lock fields; views that filter or sort on them (listing
    with such a view is refused); rules and field conditions or formulas
    that read them (the server still applies those) — in sub-tables too,
    whose rows read the record's fields as ``parent``; and ``fill_from``
    sources the caller may not see on the linked form (nothing is filled
    from them for the caller anyway)."""
    # The form as the caller's queries see it: without the hidden fields and
    # their sort, search and title places (records.viewer_tables).
    definition = storage.dump(viewer_tables(ctx, rt).form)
    for f in definition["fields"]:
        if f.get("fill_from") and not path_visible(ctx, rt, f["fill_from"]):
            f.pop("fill_from")
        if f["type"] == "sub_table":
            _visible_sub_table(ctx, rt, f, hidden)
    if not hidden:
        return definition

    def reads_hidden(expr: CompiledExpression | None) -> bool:
        return _reads(expr, ("record", "old"), hidden)

    def visible(keys: list[str]) -> list[str]:
        return [k for k in keys if k.lstrip("-").split(".")[0] not in hidden]

    for f in definition["fields"]:
        _drop_conditions(f, rt.validator.fields[f["key"]], reads_hidden)
    definition["rules"] = [
        {**rule, "fields": visible(rule.get("fields", []))}
        for rule, plan in zip(definition.get("rules", []), rt.validator.rules, strict=True)
        if not (reads_hidden(plan.check) or reads_hidden(plan.when))]
    for section in definition.get("layout", {}).get("sections", []):
        section["fields"] = visible(section.get("fields", []))
    definition["views"] = [
        {**view, "columns": visible(view.get("columns", []))}
        for view, model in zip(definition.get("views", []), rt.form.views, strict=True)
        if all(path_visible(ctx, rt, p) for p in
               filter_paths(model.filter) | {s.lstrip("-") for s in model.sort})]
    lock = definition.get("lock")
    if lock is not None:
        lock["editable"] = visible(lock.get("editable", []))
        if reads_hidden(rt.validator.lock_when):
            lock.pop("when")  # records still say whether they are locked (_locked)
    return definition


def _reads(expr: CompiledExpression | None, names: tuple[str, ...], keys: set[str]) -> bool:
    """Whether ``expr`` reads one of ``keys`` on one of the variables ``names``."""
    return expr is not None and any(expr.referenced_fields.get(n, set()) & keys for n in names)


def _drop_conditions(f: dict[str, Any], plan: FieldPlan,
                     reads_hidden: Callable[[CompiledExpression | None], bool]) -> None:
    for attr, expr in (("visible_when", plan.visible_when), ("required_when",
                       plan.required_when), ("default_expr", plan.default_expr),
                       ("expression", plan.formula)):
        if reads_hidden(expr):
            f.pop(attr, None)


def _visible_sub_table(ctx: EngineContext, rt: FormRuntime, f: dict[str, Any],
                       hidden: set[str]) -> None:
    """Sub-table ``f`` of the definition as the caller may see it. Its rows'
    expressions read the record as ``parent``: a formula column over a field
    hidden from the caller (or over such a column) is left out as a formula
    over it on the form is, and conditions and rules reading either lose
    what reads them; ``fill_from`` sources hidden on the linked form go."""
    plan = rt.validator.sub_tables[f["key"]]
    gone: set[str] = set()  # formula columns computed from what the caller may not see

    def reads_hidden(expr: CompiledExpression | None) -> bool:
        return _reads(expr, ("parent",), hidden) or _reads(expr, ("record", "row"), gone)

    changed = bool(hidden)
    while changed:  # a formula may read another formula
        changed = False
        for key, column in plan.fields.items():
            if key not in gone and reads_hidden(column.formula):
                gone.add(key)
                changed = True
    columns = {c.key: c for c in plan.definition.fields}
    f["fields"] = [sub for sub in f["fields"] if sub["key"] not in gone]
    for sub in f["fields"]:
        _drop_conditions(sub, plan.fields[sub["key"]], reads_hidden)
        if sub.get("fill_from") and not _fill_visible(ctx, rt, columns, sub["fill_from"]):
            sub.pop("fill_from")
    if "rules" in f:
        f["rules"] = [
            {**rule, "fields": [k for k in rule.get("fields", []) if k not in gone]}
            for rule, rule_plan in zip(f["rules"], plan.rules, strict=True)
            if not (reads_hidden(rule_plan.check) or reads_hidden(rule_plan.when))]


def _fill_visible(ctx: EngineContext, rt: FormRuntime, columns: Mapping[str, FieldBase],
                  fill_from: str) -> bool:
    """Whether the caller may see the source of a sub-table column's
    ``fill_from`` (``product.price``: price on the form the row links to)."""
    via, source = fill_from.split(".", 1)
    link = columns.get(via)
    if not isinstance(link, RelationField):
        return True  # publishing checked it; nothing of another form is named
    target = rt if link.target == rt.key else get_runtime(ctx.session, rt.app, link.target)
    return path_visible(ctx, target, source)


def _system_fields(form: str) -> list[dict[str, Any]]:
    """The system fields a list may show, sort and filter on (views and sorts
    name them): key, type, label and — for ``id`` — the form it identifies."""
    return [{"key": key, "type": f.type, "label": f.label,  # type: ignore[attr-defined]
             **({"target": form} if key == "id" else {}), "sortable": True, "filterable": True}
            for key, f in system_fields(form).items()]


class DraftBody(Body):
    definition: dict[str, Any] = Field(description="The form definition (see the form schema).")


@router.get("/{app}/forms/{form}/draft")
def get_draft(app: str, form: str, ctx: ContextDep, _builder: BuilderActor) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="form", key=form)
    return {"key": form, "draft": d.draft, "latest_version": d.latest_version}


@router.put("/{app}/forms/{form}/draft")
def save_draft(app: str, form: str, body: DraftBody, ctx: ContextDep,
               _builder: BuilderActor) -> dict[str, Any]:
    return publish.save_form_draft(ctx, app=app, key=form, body=body.definition)


class PublishBody(Body):
    dry_run: bool = Field(False, description="Only report what publishing would change.")
    confirm_destructive: bool = Field(False, description="Apply a destructive change "
                                      "(removed field, narrowing type change) after a dry run.")
    note: str | None = Field(None, max_length=2000)
    allow_breaking: bool = Field(False, description=(
        "Publish although other definitions of the app (flows, reports, print templates, "
        "roles, forms) no longer fit the form — e.g. they name a renamed field."))


@router.post("/{app}/forms/{form}/publish")
def publish_form(app: str, form: str, body: PublishBody, ctx: ContextDep,
                 _builder: BuilderActor) -> dict[str, Any]:
    """Publish the draft. Other definitions of the app that the change breaks
    (a flow template reading a renamed field) are named, and the publish is
    refused unless ``allow_breaking``."""
    if body.dry_run:
        return publish.publish_form(ctx, app=app, key=form, dry_run=True,
                                    confirm_destructive=body.confirm_destructive,
                                    note=body.note)
    dependents = DependentCheck(ctx, app=app, form=form)
    result = publish.publish_form(ctx, app=app, key=form, dry_run=False,
                                  confirm_destructive=body.confirm_destructive, note=body.note)
    broken = dependents.new_errors()
    if broken and not body.allow_breaking:
        raise DefinitionInvalid(
            f"publishing form {form!r} would break {len(broken)} place(s) in other "
            f"definitions of the app — first: {broken[0].message}; update them first, or "
            "publish with allow_breaking", errors=broken)
    return {**result, "broken": [e.as_dict() for e in broken]}


@router.get("/{app}/forms/{form}/versions")
def list_versions(app: str, form: str, ctx: ContextDep,
                  _builder: BuilderActor) -> list[dict[str, Any]]:
    """Published versions with their diffs (for the app's builders: a version
    holds every field, including those some roles may not see)."""
    d = storage.get_definition(ctx.session, app=app, kind="form", key=form)
    return storage.list_versions(ctx.session, d)


@router.get("/{app}/forms/{form}/versions/{version}")
def get_version(app: str, form: str, version: int, ctx: ContextDep,
                _builder: BuilderActor) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="form", key=form)
    return storage.get_version(ctx.session, d, version)


@router.post("/{app}/forms/{form}/fields/{field_id}/purge")
def purge_field(app: str, form: str, field_id: str, ctx: ContextDep,
                _builder: BuilderActor) -> dict[str, Any]:
    """Drop the kept data of a removed field for good."""
    rows = publish.purge_field(ctx, app=app, form=form, field_id=field_id)
    return {"purged": field_id, "rows_with_data": rows}
