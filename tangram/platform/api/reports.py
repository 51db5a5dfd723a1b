"""Reports and dashboards: drafts, validation, publishing, running, SQL preview,
export, drill-down. Engine logic lives in ``tangram.engines.reports.service``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from tangram.engines.reports import service
from tangram.engines.reports.registry import catalog
from tangram.metamodel import storage
from tangram.platform.deps import AdminActor, ContextDep, CurrentActor

router = APIRouter(prefix="/api", tags=["reports"])


class DraftBody(BaseModel):
    definition: dict[str, Any] = Field(description="The report definition (see the report "
                                       "schema and docs/reports.md).")


class PublishBody(BaseModel):
    note: str | None = Field(None, max_length=2000)


class RunBody(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values of the "
                                       "report's declared parameters.")
    draft: bool = Field(False, description="Run the draft instead of the published version "
                        "(designers' preview).")


class DrillBody(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    element: dict[str, Any] = Field(description="Dimension values of the chart element, as "
                                    "the run returned them, e.g. {\"stage\": \"won\"}.")


class DashboardRunBody(BaseModel):
    filters: dict[str, Any] = Field(default_factory=dict)


@router.get("/meta/reports")
def report_catalog(actor: CurrentActor) -> dict[str, Any]:
    """Measures, buckets, parameter types and chart types, for the designer."""
    return catalog()


@router.get("/apps/{app}/reports")
def list_reports(app: str, ctx: ContextDep) -> list[dict[str, Any]]:
    return service.list_reports(ctx, app=app)


@router.get("/apps/{app}/reports/{key}/draft")
def get_draft(app: str, key: str, ctx: ContextDep, _admin: AdminActor) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="report", key=key)
    return {"key": key, "draft": d.draft, "latest_version": d.latest_version}


@router.put("/apps/{app}/reports/{key}/draft")
def save_draft(app: str, key: str, body: DraftBody, ctx: ContextDep,
               _admin: AdminActor) -> dict[str, Any]:
    return service.save_report_draft(ctx, app=app, key=key, body=body.definition)


@router.post("/apps/{app}/reports/{key}/validate")
def validate(app: str, key: str, ctx: ContextDep, _admin: AdminActor) -> dict[str, Any]:
    return service.validate_draft(ctx, app=app, key=key)


@router.post("/apps/{app}/reports/{key}/publish")
def publish(app: str, key: str, body: PublishBody, ctx: ContextDep,
            _admin: AdminActor) -> dict[str, Any]:
    return service.publish_report(ctx, app=app, key=key, note=body.note)


@router.get("/apps/{app}/reports/{key}")
def get_report(app: str, key: str, ctx: ContextDep) -> dict[str, Any]:
    report, version = service.published_report(ctx, app=app, key=key)
    return {"key": key, "version": version, "definition": storage.dump(report)}


@router.post("/apps/{app}/reports/{key}/run")
def run(app: str, key: str, body: RunBody, ctx: ContextDep) -> dict[str, Any]:
    """Rows, columns, totals and the Vega-Lite chart spec, for this viewer."""
    return service.run_report(ctx, app=app, key=key, parameters=body.parameters,
                              draft=body.draft)


@router.post("/apps/{app}/reports/{key}/sql")
def sql_preview(app: str, key: str, body: RunBody, ctx: ContextDep,
                _admin: AdminActor) -> dict[str, Any]:
    """The SQL the report runs (parameters apart), for debugging."""
    return service.report_sql(ctx, app=app, key=key, parameters=body.parameters,
                              draft=body.draft)


@router.post("/apps/{app}/reports/{key}/export/{fmt}")
def export(app: str, key: str, fmt: str, body: RunBody, ctx: ContextDep) -> Response:
    """csv, xlsx (rows with totals) or png, svg (the chart)."""
    content, media_type, name = service.export_report(ctx, app=app, key=key, fmt=fmt,
                                                      parameters=body.parameters)
    return Response(content=content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/apps/{app}/reports/{key}/drilldown")
def drilldown(app: str, key: str, body: DrillBody, ctx: ContextDep) -> dict[str, Any]:
    """The records-API filter matching one chart element (POST it to the form's
    ``/records/query``)."""
    return service.drilldown_filter(ctx, app=app, key=key, element=body.element,
                                     parameters=body.parameters)


@router.get("/apps/{app}/dashboards")
def list_dashboards(app: str, ctx: ContextDep) -> list[dict[str, Any]]:
    return service.list_reports(ctx, app=app, kind="dashboard")


@router.put("/apps/{app}/dashboards/{key}")
def save_dashboard(app: str, key: str, body: DraftBody, ctx: ContextDep,
                   _admin: AdminActor) -> dict[str, Any]:
    return service.save_dashboard(ctx, app=app, key=key, body=body.definition)


@router.get("/apps/{app}/dashboards/{key}")
def get_dashboard(app: str, key: str, ctx: ContextDep) -> dict[str, Any]:
    return storage.dump(service.get_dashboard(ctx, app=app, key=key))


@router.delete("/apps/{app}/dashboards/{key}", status_code=204)
def delete_dashboard(app: str, key: str, ctx: ContextDep, _admin: AdminActor) -> Response:
    service.delete_dashboard(ctx, app=app, key=key)
    return Response(status_code=204)


@router.post("/apps/{app}/dashboards/{key}/run")
def run_dashboard(app: str, key: str, body: DashboardRunBody, ctx: ContextDep
                  ) -> dict[str, Any]:
    return service.run_dashboard(ctx, app=app, key=key, filters=body.filters)
