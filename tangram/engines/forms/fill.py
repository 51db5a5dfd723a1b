"""Fields filled from a linked record (关联带出): ``"fill_from": "opportunity.amount"``.

When a record is created with the link set and the field left empty — or an
update changes the link without setting the field — the field takes the
linked record's value, before validation, so the value is checked like any
other. Only what the actor could read is copied: the linked record must be
in the actor's read scope and its source field visible to the actor;
otherwise the field is left as the write gave it (a required field then
says so). Sub-table rows fill from their own relations the same way when
the row leaves the field empty.

One query per linked form for a whole batch of writes (imports, bulk API).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.errors import NotFound
from tangram.metamodel import fields as fm

# (where the value goes, the relation field, the source field)
_Plan = list[tuple[str, str, str]]


def _plans(fields: Sequence[fm.FieldBase]) -> _Plan:
    out = []
    for f in fields:
        if f.fill_from:
            via, source = f.fill_from.split(".", 1)
            out.append((f.key, via, source))
    return out


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _parse_id(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None  # not an id: validation reports it


def fill_linked(ctx: EngineContext, rt: FormRuntime,
                items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]]
                ) -> list[Any]:
    """Each write's data with ``fill_from`` fields filled: ``items`` are
    ``(data, old)`` pairs (``old`` None for a create; values as stored)."""
    top = _plans(rt.form.fields)
    subs = {f.key: _plans(f.fields) for f in rt.form.fields
            if isinstance(f, fm.SubTableField) and _plans(f.fields)}
    if not top and not subs:
        return [data for data, _old in items]
    relations = {f.key: f for f in rt.form.fields if isinstance(f, fm.RelationField)}
    # A client's value of a read-only field never counts (validation refuses it).
    read_only = {f.key for f in rt.form.fields if f.read_only}
    for parent in rt.form.fields:
        if isinstance(parent, fm.SubTableField) and parent.key in subs:
            relations.update({f"{parent.key}.{f.key}": f for f in parent.fields
                              if isinstance(f, fm.RelationField)})
    # Pass 1: which (relation, id) each write needs, per target form.
    wanted: dict[str, set[uuid.UUID]] = defaultdict(set)
    todo: list[tuple[int, str | None, int | None, str, str, uuid.UUID, str]] = []
    for i, (data, old) in enumerate(items):
        if not isinstance(data, Mapping):
            continue
        for key, via, source in top:
            if old is None:  # a create: unless the write gives the field
                if not _empty(data.get(key)) and key not in read_only:
                    continue
            elif key in data or via not in data \
                    or _parse_id(data.get(via)) == old.get(via):
                continue  # an update that sets the field, or keeps the link
            ident = _parse_id(data.get(via)) if not _empty(data.get(via)) else None
            if ident is not None:
                target = relations[via].target
                wanted[target].add(ident)
                todo.append((i, None, None, key, target, ident, source))
        for sub_key, plans in subs.items():
            rows = data.get(sub_key)
            if not isinstance(rows, list):
                continue
            for r, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    continue
                for key, via, source in plans:
                    if not _empty(row.get(key)) or _empty(row.get(via)):
                        continue
                    ident = _parse_id(row.get(via))
                    if ident is not None:
                        target = relations[f"{sub_key}.{via}"].target
                        wanted[target].add(ident)
                        todo.append((i, sub_key, r, key, target, ident, source))
    if not todo:
        return [data for data, _old in items]
    # Pass 2: one query per target form, in the actor's scope, visible fields only.
    values: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for target, ids in wanted.items():
        values.update(_read(ctx, rt, target, ids, {t[6] for t in todo if t[4] == target}))
    out: list[Any] = [dict(data) if isinstance(data, Mapping) else data for data, _old in items]
    copied: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n, sub, row_no, key, target, ident, source in todo:
        found = values.get((target, ident))
        if found is None or source not in found:
            continue
        if sub is None:
            out[n][key] = found[source]
            continue
        rows = copied.get((n, sub))
        if rows is None:
            rows = copied[(n, sub)] = [dict(row) for row in out[n][sub]]
            out[n][sub] = rows
        assert row_no is not None
        rows[row_no][key] = found[source]
    return out


def _read(ctx: EngineContext, rt: FormRuntime, target: str, ids: set[uuid.UUID],
          sources: set[str]) -> dict[tuple[str, uuid.UUID], dict[str, Any]]:
    try:
        trt = rt if target == rt.key else get_runtime(ctx.session, rt.app, target)
    except NotFound:
        return {}
    access = ctx.policy.field_access(ctx.actor, trt.app, trt.key)
    columns = [k for k in sorted(sources) if access.get(k) != "hidden"
               and trt.fields.get(k) is not None and trt.fields[k].kind.storage == "column"]
    if not columns:
        return {}
    t = trt.table
    out: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    id_list = sorted(ids)
    for start in range(0, len(id_list), 500):
        stmt = sa.select(t.c.id, *(t.c[k] for k in columns)).where(
            t.c.id.in_(id_list[start:start + 500]), t.c.deleted_at.is_(None))
        scope = ctx.policy.row_predicate(ctx.actor, trt.app, trt.key, t, "read")
        if scope is not None:
            stmt = stmt.where(scope)
        for row in ctx.session.execute(stmt).mappings():
            out[(target, row["id"])] = {
                k: trt.fields[k].to_json(trt.fields[k].kind.from_db(row[k])) for k in columns}
    return out
