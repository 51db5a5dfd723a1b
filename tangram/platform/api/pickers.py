"""Relation pickers: which records a relation field may link to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tangram.engines.forms import links
from tangram.platform.deps import ContextDep

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/fields", tags=["records"])


@router.get("/{field}/picker")
def relation_picker(
    app: str, form: str, field: str, ctx: ContextDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Records the relation field may link to (id and title): those you may
    read, or every live record when the field has ``link_outside_scope``.
    ``field`` is a field key, or ``subtable.field`` inside a sub-table."""
    return links.picker(ctx, app=app, form=form, field=field, search=search, limit=limit,
                        after=after)
