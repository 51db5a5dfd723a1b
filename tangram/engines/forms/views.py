"""List views of a form ("my leads", "the public pool"): checked when the
form is published, applied to a list query when a client asks for one.

A view's filter may hold user placeholders (``{"$user": "id"}``); they belong
to the platform, which knows users: it installs the function that fills them
with sample values for the publish check (``set_placeholder_sampler``) and
fills them with the viewer's values before a list runs (``view_query``'s
``fill``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from tangram.engines.context import EngineContext
from tangram.engines.forms.query import ListQuery, validate_filter
from tangram.engines.forms.registry import FormRuntime
from tangram.errors import DefinitionInvalid, ErrorItem, NotFound

Fill = Callable[[Any], Any]
Sampler = Callable[[Session, Any], Any]

_sampler: list[Sampler] = [lambda session, spec: spec]


def set_placeholder_sampler(fn: Sampler) -> None:
    """The platform tells the engine how to fill placeholders for checking."""
    _sampler[0] = fn


def check_views(ctx: EngineContext, rt: FormRuntime) -> None:
    """Every view filter compiles against the form as published (else the
    publish is refused, naming ``$.views[i].filter…``)."""
    from tangram.engines.forms.records import query_context

    errors: list[ErrorItem] = []
    qctx = query_context(ctx, rt.app, scoped=False)
    for i, view in enumerate(rt.form.views):
        if view.filter is None:
            continue
        at = f"$.views[{i}].filter"
        try:
            spec = _sampler[0](ctx.session, view.filter)
        except ValueError as exc:
            errors.append(ErrorItem(code="filter_invalid", path=at, message=str(exc)))
            continue
        for e in validate_filter(spec, tables=rt.tables, qctx=qctx):
            errors.append(ErrorItem(code=e.code, message=e.message,
                                    path=at + (e.path or "$")[1:]))
    if errors:
        raise DefinitionInvalid(f"form {rt.key!r} cannot be published: a view's filter "
                                "is not valid", errors=errors)


def view_query(rt: FormRuntime, key: str, query: ListQuery, *, fill: Fill) -> ListQuery:
    """``query`` narrowed by view ``key``: both filters must match; the view's
    sort applies when the query has none."""
    view = next((v for v in rt.form.views if v.key == key), None)
    if view is None:
        known = ", ".join(v.key for v in rt.form.views) or "none"
        raise NotFound(f"form {rt.key!r} has no view {key!r}; views: {known}")
    filters = [f for f in (fill(view.filter) if view.filter else None, query.filter) if f]
    combined = filters[0] if len(filters) == 1 else {"and": filters} if filters else None
    return replace(query, filter=combined, sort=query.sort or list(view.sort))
