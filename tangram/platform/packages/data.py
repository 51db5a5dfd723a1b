"""Loading a package's data rows (``data/seed`` and ``data/demo``) through the
form engine's bulk path — every row validated like any record.

Rows name fields only. A row may carry ``"$ref": "name"``; another row (of
any form of the same data set) links to it with ``{"$ref": "name"}`` as a
relation value, so packages need no ids:

    data/seed/product_category.json  [{"$ref": "cat_hw", "name": "硬件"}]
    data/seed/product.json           [{"name": "网关", "category": {"$ref": "cat_hw"}}]

Forms load in the order their references need (a cycle is an error).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

from tangram.engines.context import EngineContext
from tangram.errors import ErrorItem, ValidationFailed
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.loader import REF

BATCH = 2000


def _refs_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {REF}:
            yield str(value[REF])
            return
        for v in value.values():
            yield from _refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs_in(v)


def _resolve(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {REF}:
            return ids.get(str(value[REF]), value)
        return {k: _resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    return value


def load_order(rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    owner = {str(r[REF]): form for form, rows in rows_by_form.items() for r in rows
             if REF in r}
    graph: dict[str, set[str]] = {form: set() for form in rows_by_form}
    for form, rows in rows_by_form.items():
        for row in rows:
            for name, value in row.items():
                if name != REF:
                    graph[form].update(owner[r] for r in _refs_in(value)
                                       if r in owner and owner[r] != form)
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise PackageInvalid("data rows refer to each other in a cycle", errors=[ErrorItem(
            code="data_cycle", message=f"forms {' → '.join(exc.args[1])} refer to each other "
            "in a cycle; load one side without the link")]) from exc


_ROW_FIELD = re.compile(r"^rows\[(\d+)\]\.?(.*)$")


def load_rows(ctx: EngineContext, *, app: str,
              rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
              file_of: Mapping[str, str] | None = None,
              ids: dict[str, str] | None = None) -> dict[str, int]:
    """Create the rows; returns how many per form. Every error of a form is
    reported at once (file and JSON path), as PackageInvalid."""
    from tangram.engines.forms.records import bulk_create

    ids = {} if ids is None else ids
    counts: dict[str, int] = {}
    for form in load_order(rows_by_form):
        rows = rows_by_form[form]
        file = (file_of or {}).get(form, f"data/{form}.json")
        errors: list[ErrorItem] = []
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            clean = [{k: _resolve(v, ids) for k, v in row.items() if k != REF} for row in chunk]
            for i, row in enumerate(clean):
                for name, value in row.items():
                    for missing in _refs_in(value):
                        errors.append(ErrorItem(code="data_ref", file=file,
                                                path=f"$[{start + i}].{name}",
                                                message=f"no row is named {missing!r}"))
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
            for source, rec in zip(chunk, created, strict=True):
                if REF in source:
                    ids[str(source[REF])] = rec["id"]
        if errors:
            raise PackageInvalid(f"{len(errors)} problem(s) in {file}; nothing was installed",
                                 errors=errors)
        counts[form] = len(rows)
    return counts
