"""Which definition kinds a package carries, in which folder, and how each is
installed — one entry per kind, read by the loader, the installer, export,
the JSON Schema list and docs/packages.md.

The kinds themselves come from ``storage.DEFINITION_KINDS`` (each engine's
metamodel module registers its kind on import). A kind registered there with
no entry below still travels in packages: folder ``<kind>s/``, installed by
saving its draft and recording a version — so a new engine's definitions
plug in by registering their kind, and get a dedicated entry here only when
publishing them needs more (evolving tables, syncing triggers, checks).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tangram.engines.context import EngineContext
from tangram.errors import DefinitionInvalid, ErrorItem
from tangram.metamodel import storage

# Metamodel modules that register definition kinds when imported.
KIND_MODULES = ("tangram.metamodel.flows", "tangram.metamodel.reports",
                "tangram.metamodel.roles", "tangram.metamodel.printing")

Stage = Callable[[EngineContext, str, str, dict[str, Any]], None]
# A publish may return what the engine reports (a form: its evolution plan).
Publish = Callable[[EngineContext, str, str, dict[str, Any], bool], Any]
References = Callable[[Any], list[tuple[str, str, str]]]  # (kind, key, json path)
Check = Callable[[EngineContext, str, Any], list[ErrorItem]]


def _generic_stage(ctx: EngineContext, app: str, kind: str, key: str,
                   body: dict[str, Any]) -> None:
    storage.save_draft(ctx.session, app=app, kind=kind, key=key, body=body,
                       user_id=ctx.actor.id, now=ctx.now())


def _generic_publish(ctx: EngineContext, app: str, kind: str, key: str) -> None:
    d = storage.get_definition(ctx.session, app=app, kind=kind, key=key, lock=True)
    assert d.draft is not None
    storage.record_version(ctx.session, definition=d, body=d.draft, user_id=ctx.actor.id,
                           now=ctx.now())


@dataclass(frozen=True)
class PackageKind:
    """How one definition kind travels in a package.

    ``stage`` stores the draft (all definitions are staged before any is
    published, so forms can link to each other); ``publish`` makes it live,
    with ``confirm_destructive`` for changes that lose data. ``keep_on_remove``
    kinds (they own data or running state) are kept, not deleted, when a new
    package version drops them. ``references`` names the other definitions a
    body needs, for the package's static checks; ``check`` re-validates a live
    definition against the rest of the app (an upgrade runs it on the tenant's
    definitions it did not republish, to find what the new version broke).
    """

    kind: str
    folder: str
    order: int
    stage: Stage | None = None
    publish: Publish | None = None
    keep_on_remove: bool = False
    references: References = field(default=lambda body: [])
    check: Check | None = None
    description: str = ""

    @property
    def model(self) -> type[BaseModel]:
        return storage.DEFINITION_KINDS[self.kind]

    def do_stage(self, ctx: EngineContext, app: str, key: str, body: dict[str, Any]) -> None:
        body = copy.deepcopy(body)  # engines may fill in ids; the package stays as given
        if self.stage is not None:
            self.stage(ctx, app, key, body)
        elif self.publish is None:
            _generic_stage(ctx, app, self.kind, key, body)

    def do_publish(self, ctx: EngineContext, app: str, key: str, body: dict[str, Any], *,
                   confirm_destructive: bool) -> Any:
        body = copy.deepcopy(body)
        if self.publish is not None:
            return self.publish(ctx, app, key, body, confirm_destructive)
        _generic_publish(ctx, app, self.kind, key)
        return None


# --- the entries -------------------------------------------------------------------

def _stage_form(ctx: EngineContext, app: str, key: str, body: dict[str, Any]) -> None:
    from tangram.engines.forms.publish import save_form_draft

    save_form_draft(ctx, app=app, key=key, body=body)


def _publish_form(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                  confirm: bool) -> dict[str, Any]:
    from tangram.engines.forms.publish import publish_form

    return publish_form(ctx, app=app, key=key, confirm_destructive=confirm, note="package")


def _form_refs(form: Any) -> list[tuple[str, str, str]]:
    out = []
    for i, f in enumerate(form.fields):
        if getattr(f, "target", None):
            out.append(("form", f.target, f"$.fields[{i}].target"))
        source = getattr(f, "source", None)
        if source is not None and getattr(source, "form", None):
            out.append(("form", source.form, f"$.fields[{i}].source.form"))
        for j, sf in enumerate(getattr(f, "fields", None) or []):
            if getattr(sf, "target", None):
                out.append(("form", sf.target, f"$.fields[{i}].fields[{j}].target"))
    return out


def _check_form(ctx: EngineContext, app: str, form: Any) -> list[ErrorItem]:
    from tangram.engines.forms.publish import check_form_in_app

    return check_form_in_app(ctx, app, form)


def _stage_flow(ctx: EngineContext, app: str, key: str, body: dict[str, Any]) -> None:
    from tangram.engines.flows.service import save_flow_draft

    save_flow_draft(ctx, app=app, key=key, body=body)


def _publish_flow(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                  confirm: bool) -> None:
    from tangram.engines.flows.service import publish_flow

    # A package's users come with its org fixture, after its flows.
    publish_flow(ctx, app=app, key=key, note="package", check_users=False)


def _check_flow(ctx: EngineContext, app: str, flow: Any) -> list[ErrorItem]:
    from tangram.engines.flows.validate import check_flow

    return check_flow(ctx.session, app, flow, check_users=False)


def _publish_calendar(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                      confirm: bool) -> None:
    from tangram.engines.flows.service import publish_calendar

    publish_calendar(ctx, app=app, body={**body, "key": key})


def _stage_report(ctx: EngineContext, app: str, key: str, body: dict[str, Any]) -> None:
    from tangram.engines.reports.service import save_report_draft

    save_report_draft(ctx, app=app, key=key, body=body)


def _publish_report(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                    confirm: bool) -> None:
    from tangram.engines.reports.service import publish_report

    publish_report(ctx, app=app, key=key, note="package")


def _check_report(ctx: EngineContext, app: str, report: Any) -> list[ErrorItem]:
    from tangram.engines.reports.compiler import validate_report

    return validate_report(ctx, app=app, report=report)


def _check_dashboard(ctx: EngineContext, app: str, dashboard: Any) -> list[ErrorItem]:
    return [ErrorItem(code="unknown_report", path=f"$.widgets[{i}].report",
                      message=f"widget {w.key!r} shows report {w.report!r}, which does not exist")
            for i, w in enumerate(dashboard.widgets)
            if storage.find_definition(ctx.session, app=app, kind="report", key=w.report) is None]


def _publish_dashboard(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                       confirm: bool) -> None:
    from tangram.engines.reports.service import save_dashboard

    save_dashboard(ctx, app=app, key=key, body=body)


def _publish_role(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                  confirm: bool) -> None:
    from tangram.platform.permissions.roles import publish_role

    publish_role(ctx.session, app=app, body={**body, "key": key}, actor_id=ctx.actor.id,
                 now=ctx.now(), note="package")


def _check_role(ctx: EngineContext, app: str, role: Any) -> list[ErrorItem]:
    from tangram.platform.permissions.roles import check_role

    try:
        check_role(ctx.session, app, role)
    except DefinitionInvalid as exc:
        return exc.errors
    return []


def _publish_print_template(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                            confirm: bool) -> None:
    from tangram.engines.printing import save_print_template

    save_print_template(ctx, app=app, key=key, body={**body, "key": key}, note="package")


def _check_print_template(ctx: EngineContext, app: str, template: Any) -> list[ErrorItem]:
    from tangram.engines.printing import check_print_template

    return check_print_template(ctx, app, template)


def _print_template_refs(body: Any) -> list[tuple[str, str, str]]:
    return [("form", body.form, "$.form")] + [
        ("form", r.form, f"$.related[{i}].form") for i, r in enumerate(body.related)]


def _stage_alert(ctx: EngineContext, app: str, key: str, body: dict[str, Any]) -> None:
    _generic_stage(ctx, app, "alert", key, body)


def _publish_alert(ctx: EngineContext, app: str, key: str, body: dict[str, Any],
                   confirm: bool) -> None:
    from tangram.engines.reports.alerts import sync_package_alerts

    _generic_publish(ctx, app, "alert", key)
    sync_package_alerts(ctx, app=app)


def _check_alert(ctx: EngineContext, app: str, alert: Any) -> list[ErrorItem]:
    from tangram.engines.reports.kpi import field_measure
    from tangram.metamodel.reports import Report

    found = storage.find_definition(ctx.session, app=app, kind="report", key=alert.report)
    body = found and (found.draft or storage.latest_body(ctx.session, app=app, kind="report",
                                                          key=alert.report))
    if not body:
        return [ErrorItem(code="unknown_report", path="$.report",
                          message=f"report {alert.report!r} does not exist")]
    try:
        field_measure(Report.model_validate(body), alert.measure, "$.measure")
    except DefinitionInvalid as exc:
        return exc.errors
    if storage.find_definition(ctx.session, app=app, kind="role", key=alert.role) is None:
        return [ErrorItem(code="unknown_role", path="$.role",
                          message=f"role {alert.role!r} does not exist in app {app!r}")]
    return []


def _single(kind: str, attr: str) -> References:
    return lambda body: ([(kind, getattr(body, attr), f"$.{attr}")]
                         if getattr(body, attr, None) else [])


def _dashboard_refs(body: Any) -> list[tuple[str, str, str]]:
    return [("report", w.report, f"$.widgets[{i}].report") for i, w in enumerate(body.widgets)]


def _role_refs(body: Any) -> list[tuple[str, str, str]]:
    return [("form", form, f"$.forms.{form}") for form in body.forms]


PACKAGE_KINDS: dict[str, PackageKind] = {k.kind: k for k in (
    PackageKind("form", "forms", 10, stage=_stage_form, publish=_publish_form,
                keep_on_remove=True, references=_form_refs, check=_check_form,
                description="Forms: fields, rules and layout; publishing creates the tables."),
    PackageKind("calendar", "calendars", 20, publish=_publish_calendar,
                description="Business calendars (work hours, holidays) used by flow timeouts."),
    PackageKind("role", "roles", 30, publish=_publish_role, references=_role_refs,
                check=_check_role,
                description="Roles: actions, row scope and field access per form."),
    PackageKind("report", "reports", 40, stage=_stage_report, publish=_publish_report,
                references=_single("form", "form"), check=_check_report,
                description="Reports: aggregations of one form's records and a chart."),
    PackageKind("dashboard", "dashboards", 50, publish=_publish_dashboard,
                references=_dashboard_refs, check=_check_dashboard,
                description="Dashboards: reports arranged on a grid with shared filters."),
    PackageKind("alert", "alerts", 52, stage=_stage_alert, publish=_publish_alert,
                references=lambda body: [("report", body.report, "$.report"),
                                         ("role", body.role, "$.role")],
                check=_check_alert,
                description="Data alerts: a report measure checked on a schedule; each "
                            "holder of the alert's role gets a copy checked with their scope."),
    PackageKind("print_template", "print_templates", 55, publish=_publish_print_template,
                references=_print_template_refs, check=_check_print_template,
                description="Print templates: a form's records as HTML and PDF pages."),
    PackageKind("flow", "flows", 60, stage=_stage_flow, publish=_publish_flow,
                keep_on_remove=True, references=_single("form", "form"), check=_check_flow,
                description="Flows: approvals and automations."),
)}


def package_kinds() -> list[PackageKind]:
    """Every kind a package may carry, in install order: the entries above
    for the kinds registered in storage, then any other registered kind."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    out = [PACKAGE_KINDS[k] for k in storage.DEFINITION_KINDS if k in PACKAGE_KINDS]
    out += [PackageKind(k, f"{k}s", 100, description=f"{k} definitions")
            for k in storage.DEFINITION_KINDS if k not in PACKAGE_KINDS]
    return sorted(out, key=lambda k: k.order)


def kind_for_folder(folder: str) -> PackageKind | None:
    return next((k for k in package_kinds() if k.folder == folder), None)
