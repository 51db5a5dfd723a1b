"""The records API: CRUD, restore, bulk, query, history of one form's records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import Field, Strict

from tangram.engines.context import EngineContext
from tangram.engines.forms import records
from tangram.engines.forms.query import ListQuery, parse_filter
from tangram.engines.forms.registry import get_runtime
from tangram.engines.forms.views import view_query
from tangram.platform.api.body import Body
from tangram.platform.deps import ContextDep
from tangram.platform.permissions.placeholders import facts_for, substitute

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/records", tags=["records"])


class CreateBody(Body):
    values: dict[str, Any] = Field(description="Field values by field key.")


# Booleans are not integers: pydantic would read true as 1.
StrictInt = Annotated[int, Strict()]


class UpdateBody(Body):
    version: StrictInt = Field(description="The version you read; a stale one gets 409.")
    values: dict[str, Any] = Field(description="Only the fields to change.")


class BulkCreateBody(Body):
    rows: list[dict[str, Any]] = Field(max_length=5000)


class BulkUpdateRow(Body):
    id: str
    version: StrictInt
    values: dict[str, Any]


class BulkUpdateBody(Body):
    rows: list[BulkUpdateRow] = Field(max_length=5000)


class QueryBody(Body):
    view: str | None = Field(None, description="A list view of the form: its filter and "
                             "sort apply (with yours).")
    filter: dict[str, Any] | None = None
    sort: list[str] = Field(default_factory=list)
    search: str | None = Field(None, max_length=200)
    fields: list[str] | None = None
    limit: StrictInt = Field(50, ge=1, le=500)
    after: str | None = None
    include_total: Annotated[bool, Strict()] = False
    deleted: Annotated[bool, Strict()] = False


def _list_query(ctx: EngineContext, app: str, form: str, body: QueryBody) -> ListQuery:
    query = ListQuery(**body.model_dump(exclude={"view"}))
    return with_view(ctx, app, form, query, body.view)


def with_view(ctx: EngineContext, app: str, form: str, query: ListQuery,
              view: str | None) -> ListQuery:
    """``query`` narrowed by the form's list view ``view`` (if given), its user
    placeholders filled with the caller's values."""
    if not view:
        return query
    facts = facts_for(ctx.session, ctx.actor)
    return view_query(get_runtime(ctx.session, app, form), view, query,
                      fill=lambda spec: substitute(spec, facts))


@router.get("")
def list_records(
    app: str, form: str, ctx: ContextDep,
    filter: Annotated[str | None, Query(description="JSON filter (docs/filters.md)")] = None,
    sort: Annotated[str | None, Query(description="e.g. -amount,name")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    fields: Annotated[str | None, Query(description="comma-separated keys")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    total: bool = False,
    deleted: Annotated[bool, Query(description="list the recycle bin")] = False,
    view: Annotated[str | None, Query(description="a list view of the form")] = None,
) -> dict[str, Any]:
    parsed = parse_filter(filter)
    body = QueryBody(filter=parsed, sort=[s for s in (sort or "").split(",") if s],
                     search=search, fields=fields.split(",") if fields else None, limit=limit,
                     after=after, include_total=total, deleted=deleted, view=view)
    return records.list_records(ctx, app=app, form=form,
                                query=_list_query(ctx, app, form, body))


@router.post("/query")
def query_records(app: str, form: str, body: QueryBody, ctx: ContextDep) -> dict[str, Any]:
    """Like the list, with the query as a JSON body (for long filters)."""
    return records.list_records(ctx, app=app, form=form,
                                query=_list_query(ctx, app, form, body))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_record(app: str, form: str, body: CreateBody, ctx: ContextDep) -> dict[str, Any]:
    return records.create_record(ctx, app=app, form=form, data=body.values)


@router.post("/bulk", status_code=status.HTTP_201_CREATED)
def bulk_create(app: str, form: str, body: BulkCreateBody, ctx: ContextDep) -> dict[str, Any]:
    """All rows or none; errors name the row (``rows[3].phone``)."""
    return {"items": records.bulk_create(ctx, app=app, form=form, rows=body.rows)}


@router.patch("/bulk")
def bulk_update(app: str, form: str, body: BulkUpdateBody, ctx: ContextDep) -> dict[str, Any]:
    items = [{"id": r.id, "version": r.version, "changes": r.values} for r in body.rows]
    return {"items": records.bulk_update(ctx, app=app, form=form, items=items)}


@router.get("/{record_id}")
def get_record(app: str, form: str, record_id: str, ctx: ContextDep,
               deleted: bool = False) -> dict[str, Any]:
    return records.get_record(ctx, app=app, form=form, record_id=record_id, deleted=deleted)


@router.patch("/{record_id}")
def update_record(app: str, form: str, record_id: str, body: UpdateBody,
                  ctx: ContextDep) -> dict[str, Any]:
    return records.update_record(ctx, app=app, form=form, record_id=record_id,
                                 changes=body.values, expected_version=body.version)


@router.delete("/{record_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_record(app: str, form: str, record_id: str, ctx: ContextDep,
                  version: int | None = None) -> Response:
    records.delete_record(ctx, app=app, form=form, record_id=record_id,
                          expected_version=version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{record_id}/restore")
def restore_record(app: str, form: str, record_id: str, ctx: ContextDep) -> dict[str, Any]:
    return records.restore_record(ctx, app=app, form=form, record_id=record_id)


@router.get("/{record_id}/history")
def record_history(app: str, form: str, record_id: str, ctx: ContextDep) -> dict[str, Any]:
    return {"items": records.record_history(ctx, app=app, form=form, record_id=record_id)}
