"""Exports of a form's list view as CSV or XLSX, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from tangram.engines.context import EngineContext
from tangram.engines.exports import ExportPlan, plan_export, stream_export
from tangram.engines.forms.query import ListQuery, parse_filter
from tangram.platform.api.records import QueryBody, with_view
from tangram.platform.dataio import policy_factory
from tangram.platform.deps import ContextDep, CurrentAuth

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/export", tags=["exports"])


class ExportBody(QueryBody):
    format: str = Field("csv", description="csv | xlsx")


def _response(request: Request, ctx: ContextDep, auth: CurrentAuth,
              plan: ExportPlan) -> StreamingResponse:
    sessions = request.app.state.sessions
    policy_for = policy_factory(request.app, auth.token_scope)

    def chunks() -> Iterator[bytes]:
        # The request's session is closed once the route returns; the stream
        # reads with a session of its own, as the same viewer.
        with sessions() as session:
            stream_ctx = EngineContext(session=session, actor=ctx.actor, clock=ctx.clock,
                                       language=ctx.language, timezone=ctx.timezone,
                                       policy=policy_for(session))
            yield from stream_export(stream_ctx, plan)

    return StreamingResponse(chunks(), media_type=plan.media_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(plan.file_name)}"})


@router.get("")
def export_get(
    app: str, form: str, request: Request, ctx: ContextDep, auth: CurrentAuth,
    format: Annotated[str, Query(description="csv | xlsx")] = "csv",
    filter: Annotated[str | None, Query(description="JSON filter (docs/filters.md)")] = None,
    sort: Annotated[str | None, Query(description="e.g. -amount,name")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    fields: Annotated[str | None, Query(description="comma-separated keys")] = None,
    view: Annotated[str | None, Query(description="a list view of the form")] = None,
) -> StreamingResponse:
    """Every row of the list view (same parameters as the records list), as a file."""
    parsed = parse_filter(filter)
    query = with_view(ctx, app, form, ListQuery(
        filter=parsed, sort=[s for s in (sort or "").split(",") if s], search=search,
        fields=fields.split(",") if fields else None), view)
    return _response(request, ctx, auth, plan_export(ctx, app=app, form=form, query=query,
                                               format=format))


@router.post("")
def export_post(app: str, form: str, body: ExportBody, request: Request,
                ctx: ContextDep, auth: CurrentAuth) -> StreamingResponse:
    """Like the GET, with the query as a JSON body (long filters)."""
    query = with_view(ctx, app, form, ListQuery(filter=body.filter, sort=body.sort,
                                                search=body.search, fields=body.fields),
                      body.view)
    return _response(request, ctx, auth, plan_export(ctx, app=app, form=form, query=query,
                                               format=body.format))
