"""Reports, dashboards and data alerts: drafts, validation, publishing, running,
SQL preview, export, drill-down, alerts and their firings. Engine logic lives in
``tangram.engines.reports.service`` and ``tangram.engines.reports.alerts``.

Editing reports and dashboards (drafts, validate, publish, SQL preview, save
and delete dashboards) is for administrators and the app's builders, like
forms and flows; running them is for anyone who may read the source forms."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from tangram.engines import catalogs
from tangram.engines.context import EngineContext
from tangram.engines.reports import alerts, service
from tangram.errors import PermissionDenied
from tangram.metamodel import storage
from tangram.platform.api.body import Body
from tangram.platform.deps import (
    BuilderActor,
    ContextDep,
    CurrentActor,
    LoginOnly,
    MemberContextDep,
)
from tangram.platform.permissions import definitions

router = APIRouter(prefix="/api", tags=["reports"])


class DraftBody(Body):
    definition: dict[str, Any] = Field(description="The report definition (see the report "
                                       "schema and docs/reports.md).")


class PublishBody(Body):
    note: str | None = Field(None, max_length=2000)


class RunBody(Body):
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values of the "
                                       "report's declared parameters.")
    draft: bool = Field(False, description="Run the draft instead of the published version "
                        "(designers' preview).")


class DrillBody(Body):
    parameters: dict[str, Any] = Field(default_factory=dict)
    element: dict[str, Any] = Field(description="Dimension values of the chart element, as "
                                    "the run returned them, e.g. {\"stage\": \"won\"}.")


class DashboardRunBody(Body):
    filters: dict[str, Any] = Field(default_factory=dict)


@router.get("/meta/reports")
def report_catalog(actor: CurrentActor) -> dict[str, Any]:
    """Measures, buckets, parameter types and chart types, for the designer."""
    return catalogs.reports()


@router.get("/apps/{app}/reports")
def list_reports(app: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """The reports the caller may see: those on forms they may read."""
    return definitions.visible_reports(ctx, app, service.list_reports(ctx, app=app))


@router.get("/apps/{app}/reports/{key}/draft")
def get_draft(app: str, key: str, ctx: ContextDep, _builder: BuilderActor) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="report", key=key)
    return {"key": key, "draft": d.draft, "latest_version": d.latest_version}


@router.put("/apps/{app}/reports/{key}/draft")
def save_draft(app: str, key: str, body: DraftBody, ctx: ContextDep,
               _builder: BuilderActor) -> dict[str, Any]:
    return service.save_report_draft(ctx, app=app, key=key, body=body.definition)


@router.post("/apps/{app}/reports/{key}/validate")
def validate(app: str, key: str, ctx: ContextDep, _builder: BuilderActor) -> dict[str, Any]:
    return service.validate_draft(ctx, app=app, key=key)


@router.post("/apps/{app}/reports/{key}/publish")
def publish(app: str, key: str, body: PublishBody, ctx: ContextDep,
            _builder: BuilderActor) -> dict[str, Any]:
    return service.publish_report(ctx, app=app, key=key, note=body.note)


@router.get("/apps/{app}/reports/{key}")
def get_report(app: str, key: str, ctx: MemberContextDep) -> dict[str, Any]:
    definitions.require_report(ctx, app, key)
    report, version = service.published_report(ctx, app=app, key=key)
    return {"key": key, "version": version, "definition": storage.dump(report)}


@router.post("/apps/{app}/reports/{key}/run")
def run(app: str, key: str, body: RunBody, ctx: MemberContextDep) -> dict[str, Any]:
    """Rows, columns, totals and the Vega-Lite chart spec, for this viewer."""
    _check_run(ctx, app, key, draft=body.draft)
    return service.run_report(ctx, app=app, key=key, parameters=body.parameters,
                              draft=body.draft)


@router.post("/apps/{app}/reports/{key}/sql")
def sql_preview(app: str, key: str, body: RunBody, ctx: ContextDep,
                _builder: BuilderActor) -> dict[str, Any]:
    """The SQL the report runs (parameters apart), for debugging (builders)."""
    return service.report_sql(ctx, app=app, key=key, parameters=body.parameters,
                              draft=body.draft)


@router.post("/apps/{app}/reports/{key}/export/{fmt}")
def export(app: str, key: str, fmt: str, body: RunBody, ctx: MemberContextDep) -> Response:
    """csv, xlsx (rows with totals) or png, svg (the chart)."""
    definitions.require_report(ctx, app, key)
    content, media_type, name = service.export_report(ctx, app=app, key=key, fmt=fmt,
                                                      parameters=body.parameters)
    return Response(content=content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


class KpiBody(Body):
    measure: str = Field(description="A field measure of the report.")
    period: str = Field("month", description="day, week, month, quarter or year.")
    complete: bool = Field(False, description="The last complete period instead of the "
                           "current period to date.")
    date_field: str | None = Field(None, description="Default: the report's first date "
                                   "dimension's field.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    target: Decimal | None = Field(None, description="The goal for the period; the card "
                                   "shows the share of it reached.")


@router.post("/apps/{app}/reports/{key}/kpi")
def kpi(app: str, key: str, body: KpiBody, ctx: MemberContextDep) -> dict[str, Any]:
    """One measure in the current period with value, delta and percent change against
    the previous period and the same period last year, for this viewer."""
    definitions.require_report(ctx, app, key)
    return service.kpi_card(ctx, app=app, key=key, measure=body.measure, period=body.period,
                            complete=body.complete, date_field=body.date_field,
                            parameters=body.parameters, target=body.target)


@router.post("/apps/{app}/reports/{key}/drilldown")
def drilldown(app: str, key: str, body: DrillBody, ctx: MemberContextDep) -> dict[str, Any]:
    """The records-API filter matching one chart element (POST it to the form's
    ``/records/query``)."""
    definitions.require_report(ctx, app, key)
    return service.drilldown_filter(ctx, app=app, key=key, element=body.element,
                                     parameters=body.parameters)


@router.get("/apps/{app}/dashboards")
def list_dashboards(app: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """The dashboards showing at least one report the caller may see."""
    return [d for d in service.list_reports(ctx, app=app, kind="dashboard")
            if definitions.dashboard_visible(ctx, app, d["key"])]


@router.put("/apps/{app}/dashboards/{key}")
def save_dashboard(app: str, key: str, body: DraftBody, ctx: ContextDep,
                   _builder: BuilderActor) -> dict[str, Any]:
    return service.save_dashboard(ctx, app=app, key=key, body=body.definition)


@router.get("/apps/{app}/dashboards/{key}")
def get_dashboard(app: str, key: str, ctx: MemberContextDep) -> dict[str, Any]:
    """The dashboard with the widgets whose reports the caller may see."""
    definitions.require_dashboard(ctx, app, key)
    body = storage.dump(service.get_dashboard(ctx, app=app, key=key))
    body["widgets"] = definitions.visible_widgets(ctx, app, body["widgets"])
    return body


@router.delete("/apps/{app}/dashboards/{key}", status_code=204)
def delete_dashboard(app: str, key: str, ctx: ContextDep, _builder: BuilderActor) -> Response:
    service.delete_dashboard(ctx, app=app, key=key)
    return Response(status_code=204)


@router.post("/apps/{app}/dashboards/{key}/run")
def run_dashboard(app: str, key: str, body: DashboardRunBody, ctx: MemberContextDep
                  ) -> dict[str, Any]:
    """Every visible widget's result (widgets on reports the caller may not
    see are left out, as in ``GET``)."""
    definitions.require_dashboard(ctx, app, key)
    result = service.run_dashboard(ctx, app=app, key=key, filters=body.filters)
    result["widgets"] = definitions.visible_widgets(ctx, app, result["widgets"])
    return result


def _check_run(ctx: EngineContext, app: str, key: str, *, draft: bool) -> None:
    if draft:
        if not definitions.is_designer(ctx, app):
            raise PermissionDenied("only administrators and builders of the app may run a "
                                   "report's draft", details={"app": app, "report": key})
        return
    definitions.require_report(ctx, app, key)


# --------------------------------------------------------------------------- alerts

class AlertBody(Body):
    definition: dict[str, Any] = Field(description="The alert (see docs/reports.md, "
                                       "\"Data alerts\").")


@router.get("/apps/{app}/alerts")
def list_alerts(app: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """Your alerts (an administrator: every alert of the app)."""
    return alerts.list_alerts(ctx, app=app)


@router.post("/apps/{app}/alerts", status_code=201)
def create_alert(app: str, body: AlertBody, ctx: MemberContextDep,
                 _login: LoginOnly) -> dict[str, Any]:
    """A new alert owned by you; its checks run with your permissions."""
    return alerts.create_alert(ctx, app=app, body=body.definition)


@router.get("/apps/{app}/alerts/{alert_id}")
def get_alert(app: str, alert_id: uuid.UUID, ctx: MemberContextDep) -> dict[str, Any]:
    return alerts.get_alert(ctx, app=app, alert_id=alert_id)


@router.put("/apps/{app}/alerts/{alert_id}")
def update_alert(app: str, alert_id: uuid.UUID, body: AlertBody, ctx: MemberContextDep,
                 _login: LoginOnly) -> dict[str, Any]:
    return alerts.update_alert(ctx, app=app, alert_id=alert_id, body=body.definition)


@router.delete("/apps/{app}/alerts/{alert_id}", status_code=204)
def delete_alert(app: str, alert_id: uuid.UUID, ctx: MemberContextDep,
                 _login: LoginOnly) -> Response:
    alerts.delete_alert(ctx, app=app, alert_id=alert_id)
    return Response(status_code=204)


@router.get("/apps/{app}/alerts/{alert_id}/firings")
def alert_firings(app: str, alert_id: uuid.UUID, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """When the alert fired (newest first), with the values and the recipients."""
    return alerts.list_firings(ctx, app=app, alert_id=alert_id)


@router.post("/apps/{app}/alerts/{alert_id}/check")
def check_alert(app: str, alert_id: uuid.UUID, ctx: MemberContextDep,
                _login: LoginOnly) -> dict[str, Any]:
    """Check the alert now (fires like a scheduled check when it became crossed)."""
    return alerts.check_now(ctx, app=app, alert_id=alert_id)
