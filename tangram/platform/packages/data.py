"""Loading a package's data sets (``data/seed`` and ``data/demo``): first the
set's org fixture (``_org.json``, see ``org_fixture.py``), then its rows
through the form engine's bulk path — every row validated like any record —
then the rows' owners and creation times (``$owner``, ``$created_at``).

Rows name fields only, plus the ``$``-keys and values of ``rows.py``. A row
may carry ``"$ref": "name"``; another row (of any form of the same data set)
links to it with ``{"$ref": "name"}`` as a relation value, so packages need
no ids:

    data/seed/product_category.json  [{"$ref": "cat_hw", "name": "硬件"}]
    data/seed/product.json           [{"name": "网关", "category": {"$ref": "cat_hw"}}]

Forms load in the order their references need (a cycle is an error).
Relative dates (``{"$date": "-45d"}``) are counted from the day the data is
loaded, in the organization's time zone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.errors import ErrorItem, ValidationFailed
from tangram.platform.auth.service import normalize_username
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.org_fixture import ORG_FILE, load_org
from tangram.platform.packages.rows import CREATED_AT, OWNER, REF, BadSpec, Resolver, refs_in

BATCH = 2000


def load_order(rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    owner = {str(r[REF]): form for form, rows in rows_by_form.items() for r in rows
             if REF in r}
    graph: dict[str, set[str]] = {form: set() for form in rows_by_form}
    for form, rows in rows_by_form.items():
        for row in rows:
            for name, value in row.items():
                if not name.startswith("$"):
                    graph[form].update(owner[r] for r in refs_in(value)
                                       if r in owner and owner[r] != form)
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise PackageInvalid("data rows refer to each other in a cycle", errors=[ErrorItem(
            code="data_cycle", message=f"forms {' → '.join(exc.args[1])} refer to each other "
            "in a cycle; load one side without the link")]) from exc


_ROW_FIELD = re.compile(r"^rows\[(\d+)\]\.?(.*)$")


def _owners(ctx: EngineContext, rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
            file_of: Mapping[str, str]) -> dict[str, uuid.UUID]:
    """Every ``$owner``'s user id by username; one error per row naming a
    user that does not exist, all at once."""
    names = {normalize_username(str(r[OWNER])) for rows in rows_by_form.values()
             for r in rows if r.get(OWNER) is not None}
    u = users_table
    found = {r.username: r.id for r in ctx.session.execute(
        sa.select(u.c.username, u.c.id).where(u.c.username.in_(sorted(names))))} \
        if names else {}
    errors = [ErrorItem(code="data_owner", file=file_of[form], path=f"$[{i}].{OWNER}",
                        message=f"no user is named {row[OWNER]!r}; create the user (or add "
                        f"them to the data set's {ORG_FILE}) first")
              for form, rows in rows_by_form.items() for i, row in enumerate(rows)
              if row.get(OWNER) is not None
              and normalize_username(str(row[OWNER])) not in found]
    if errors:
        raise PackageInvalid(f"{len(errors)} row(s) name an owner who is not a user; nothing "
                             "was installed", errors=errors)
    return found


def load_rows(ctx: EngineContext, *, app: str,
              rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
              file_of: Mapping[str, str] | None = None,
              ids: dict[str, str] | None = None) -> dict[str, int]:
    """Create the rows; returns how many per form. Every error of a form is
    reported at once (file and JSON path), as PackageInvalid."""
    from tangram.engines.forms.origins import Origin, set_origins
    from tangram.engines.forms.records import bulk_create

    ids = {} if ids is None else ids
    files = {form: (file_of or {}).get(form, f"data/{form}.json") for form in rows_by_form}
    owners = _owners(ctx, rows_by_form, files)
    resolver = Resolver(today=ctx.today(), timezone=ctx.timezone, ids=ids)
    counts: dict[str, int] = {}
    for form in load_order(rows_by_form):
        rows = rows_by_form[form]
        file = files[form]
        errors: list[ErrorItem] = []
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            clean: list[dict[str, Any]] = []
            origins: list[tuple[uuid.UUID | None, Any, bool]] = []
            for i, row in enumerate(chunk, start=start):
                values: dict[str, Any] = {}
                at = None
                for name, value in row.items():
                    try:
                        if name == CREATED_AT:
                            at = resolver.created_at(value)
                        elif not name.startswith("$"):
                            values[name] = resolver.value(value)
                    except BadSpec as exc:
                        errors.append(ErrorItem(code="data_date", file=file,
                                                path=f"$[{i}].{name}", message=str(exc)))
                        continue
                    for missing in refs_in(values.get(name)):
                        errors.append(ErrorItem(code="data_ref", file=file,
                                                path=f"$[{i}].{name}",
                                                message=f"no row is named {missing!r}"))
                clean.append(values)
                owner = owners[normalize_username(str(row[OWNER]))] \
                    if row.get(OWNER) is not None else None
                origins.append((owner, at, OWNER in row and row[OWNER] is None))
            if errors:
                break
            try:
                created = bulk_create(ctx, app=app, form=form, rows=clean, source="package",
                                      allow_read_only=True)
            except ValidationFailed as exc:
                for e in exc.errors:
                    m = _ROW_FIELD.match(e.field or "")
                    path = (f"$[{start + int(m[1])}]" + (f".{m[2]}" if m[2] else "")) if m \
                        else "$"
                    errors.append(ErrorItem(code=e.code, message=e.message, path=path,
                                            file=file))
                break
            for row, rec in zip(chunk, created, strict=True):
                if REF in row:
                    ids[str(row[REF])] = rec["id"]
            stamps = [Origin(record_id=uuid.UUID(rec["id"]), owner=owner, created_at=at,
                             no_owner=unowned)
                      for rec, (owner, at, unowned) in zip(created, origins, strict=True)
                      if owner is not None or at is not None or unowned]
            if stamps:
                set_origins(ctx, app=app, form=form, origins=stamps)
        if errors:
            raise PackageInvalid(f"{len(errors)} problem(s) in {file}; nothing was installed",
                                 errors=errors)
        counts[form] = len(rows)
    return counts


def load_data_set(ctx: EngineContext, *, app: str, data_set: str,
                  rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
                  org: Mapping[str, Any] | None = None) -> dict[str, int]:
    """A data set of a package: its org fixture (if any), then its rows."""
    if org is not None:
        load_org(ctx, app=app, file=f"data/{data_set}/{ORG_FILE}", body=org)
    if not rows_by_form:
        return {}
    return load_rows(ctx, app=app, rows_by_form=rows_by_form,
                     file_of={f: f"data/{data_set}/{f}.json" for f in rows_by_form})
