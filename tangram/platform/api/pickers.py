"""Pickers: the choices a relation, user or department field may take."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tangram.engines import directory
from tangram.engines.forms import links
from tangram.engines.forms.records import check_settable, field_at
from tangram.engines.forms.registry import get_runtime
from tangram.metamodel import fields as fm
from tangram.platform.deps import ContextDep

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/fields", tags=["records"])


@router.get("/{field}/picker")
def field_picker(
    app: str, form: str, field: str, ctx: ContextDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """What the field may be set to, as ``{"kind", "items": [{"id", "title", …}],
    "next_cursor"}``: for a relation field the records it may link to (those
    you may read, or every live record when the field has
    ``link_outside_scope``); for a user field the active users, for a
    department field the departments (as ``/api/directory`` lists them).
    ``field`` is a field key, or ``subtable.field`` inside a sub-table."""
    rt = get_runtime(ctx.session, app, form)
    f = field_at(rt, field)
    if isinstance(f, (fm.UserField, fm.DepartmentField)):
        check_settable(ctx, rt, field)
        lookup = (directory.lookup_users if isinstance(f, fm.UserField)
                  else directory.lookup_departments)
        return {"kind": f.type, **lookup(ctx.session, search=search, limit=limit, after=after)}
    return {"kind": "relation", **links.picker(ctx, app=app, form=form, field=field,
                                               search=search, limit=limit, after=after)}
