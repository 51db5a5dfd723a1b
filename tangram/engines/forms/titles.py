"""Titles of what records name: what a list, an export, a print or a flow view
shows beside an id.

A reference is ``"user"`` (the user's display name), ``"department"`` (its
name), ``"file"`` (the file's name) or ``"form:<key>"`` (the linked record's
title field). Titles are read once for a whole page: one query per reference,
never one per row. Linked records' titles are read whatever their row scope
(a list shows which account an opportunity belongs to even when the reader
may not open that account) and from the recycle bin too, but never when the
caller's roles hide the title field of the linked form: the title then stays
unknown, as the field itself is.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.directory import departments_table, users_table
from tangram.engines.forms.registry import get_runtime
from tangram.engines.forms.systables import files_table
from tangram.errors import NotFound

Titles = dict[tuple[str, uuid.UUID], str]  # (reference, id) -> title ("" when empty)

FORM_PREFIX = "form:"


def form_reference(form: str) -> str:
    """The reference of records of ``form``."""
    return FORM_PREFIX + form


def load_titles(ctx: EngineContext, app: str,
                wanted: Mapping[str, Iterable[uuid.UUID]]) -> Titles:
    """The titles of the ids each reference of ``wanted`` names (ids that do
    not exist, forms that are gone and hidden title fields are left out)."""
    titles: Titles = {}
    for ref, given in wanted.items():
        ids = set(given)
        if not ids:
            continue
        statement = _statement(ctx, app, ref)
        if statement is None:
            continue
        for ident, text in ctx.session.execute(statement.where(
                statement.selected_columns[0].in_(ids))):
            titles[(ref, ident)] = "" if text is None else str(text)
    return titles


def _statement(ctx: EngineContext, app: str, ref: str) -> sa.Select[Any] | None:
    if ref == "user":
        return sa.select(users_table.c.id, users_table.c.display_name)
    if ref == "department":
        return sa.select(departments_table.c.id, departments_table.c.name)
    if ref == "file":
        return sa.select(files_table.c.id, files_table.c.name)
    if not ref.startswith(FORM_PREFIX):
        raise ValueError(f"unknown title reference {ref!r}")
    form = ref.removeprefix(FORM_PREFIX)
    try:
        rt = get_runtime(ctx.session, app, form)
    except NotFound:
        return None
    title = rt.title_field
    if title is None or title not in rt.column_key_set or \
            ctx.policy.field_access(ctx.actor, app, form).get(title) == "hidden":
        return None
    return sa.select(rt.table.c.id, rt.table.c[title])
