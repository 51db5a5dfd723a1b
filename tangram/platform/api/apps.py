"""Apps and their form definitions: drafts, publishing, versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.engines.context import EngineContext
from tangram.engines.forms import publish
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.printing import templates_for_viewer
from tangram.errors import DefinitionInvalid, NotFound, PermissionDenied
from tangram.metamodel import storage
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


FORM_ACTIONS = ("read", "create", "update", "delete", "restore", "export", "import", "print",
                "submit")


def form_actions(ctx: EngineContext, app: str, form: str) -> list[str]:
    """The role actions the caller has on the form (on some of its records)."""
    out = []
    for action in FORM_ACTIONS:
        try:
            ctx.policy.check_form_action(ctx.actor, app, form, action)  # type: ignore[arg-type]
        except PermissionDenied:
            continue
        out.append(action)
    return out


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
    the published definition, its version, what this user may do and see, and
    the print templates they may print with (for a print button)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    access = ctx.policy.field_access(ctx.actor, app, form)
    definition = storage.dump(rt.form)
    definition["fields"] = [f for f in definition["fields"]
                            if access.get(f["key"]) != "hidden"]
    actions = form_actions(ctx, app, form)
    return {"app": app, "key": form, "version": rt.version, "definition": definition,
            "field_access": {f["key"]: _field_access(rt, access, f["key"])
                             for f in definition["fields"]},
            "actions": actions, "title_field": rt.title_field,
            "print_templates": templates_for_viewer(ctx, app=app, form=form)}


def _field_access(rt: FormRuntime, access: Mapping[str, str], key: str) -> str:
    """What the caller may do with a field: the role's rule, and read-only
    for fields nobody types into (formulas, rollups, autonumbers, read-only)."""
    given = access.get(key, "editable")
    plan = rt.validator.fields.get(key)
    if given == "editable" and plan is not None and plan.read_only:
        return "read_only"
    return given


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
