"""One batch of file rows through the form engine: map, adapt, resolve,
match duplicates, validate — and, when writing, insert or update.

Every rule of the records service applies (``check_new_rows``,
``apply_changes``); a row gets *all* its errors at once. ``run(write=False)``
changes nothing (previews, the checking pass of an all-or-nothing import).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tangram.engines.context import EngineContext
from tangram.engines.forms import records
from tangram.engines.forms.fieldtypes import FieldProblem
from tangram.engines.forms.registry import FormRuntime
from tangram.engines.imports.cells import Adapter, adapter_for, split_list
from tangram.engines.imports.dedup import DedupRule
from tangram.engines.imports.lookups import LOOKUPS, MULTI_VALUED, Resolver
from tangram.engines.imports.messages import text
from tangram.engines.imports.sources import Cell, Formula, cell_text, is_blank
from tangram.errors import ErrorItem, TangramError
from tangram.metamodel.common import localize

Action = Literal["create", "update", "skip", "error"]
SOURCE = "import"
HISTORY_SOURCE = "history"  # an import of past records (ImportJob.historical)


@dataclass
class RowInput:
    number: int  # in the file; the header is row 1
    cells: list[Cell]


@dataclass
class RowResult:
    number: int
    action: Action
    errors: list[ErrorItem] = field(default_factory=list)
    record_id: uuid.UUID | None = None


@dataclass
class _Column:
    index: int
    key: str
    adapt: Adapter
    resolver: Resolver | None
    multi: bool


@dataclass
class _Row:
    source: RowInput
    data: dict[str, Any]
    errors: list[ErrorItem]
    lookups: dict[str, list[str]]  # field -> texts to resolve
    key: tuple[Any, ...] | None = None


class Pipeline:
    """Compiled once per job (columns, adapters, lookups); run per batch."""

    def __init__(self, rt: FormRuntime, mapping: Sequence[str | None], *,
                 dedup: DedupRule | None, timezone: str, historical: bool = False) -> None:
        self.rt, self.dedup = rt, dedup
        self.width = len(mapping)  # the header's columns
        self.source = HISTORY_SOURCE if historical else SOURCE
        zone = ZoneInfo(timezone)
        self.columns: list[_Column] = []
        for index, key in enumerate(mapping):
            if key is None:
                continue
            f = rt.form.field(key)
            assert f is not None
            lookup = LOOKUPS.get(f.type)  # type: ignore[attr-defined]
            self.columns.append(_Column(
                index=index, key=key, adapt=adapter_for(f, zone),
                resolver=Resolver(rt, f, lookup) if lookup else None,
                multi=f.type in MULTI_VALUED))  # type: ignore[attr-defined]
        self._plain = [(c.index, c.key, c.adapt) for c in self.columns if c.resolver is None]
        # A single match field was just looked up among live records: the
        # unique check need not look again (rows without a key have no value).
        self._looked_up = set(dedup.fields) if dedup and len(dedup.fields) == 1 else set()
        self._scoped = False  # whether that lookup saw only the importer's records
        self._referring = [c for c in self.columns if c.resolver is not None]

    # -- reading ---------------------------------------------------------------------

    def _read(self, row: RowInput, language: str) -> _Row:
        # Runs for every cell of the file: plain loops, no per-cell lookups.
        data: dict[str, Any] = {}
        lookups: dict[str, list[str]] = {}
        errors: list[ErrorItem] = []
        cells = row.cells
        width = len(cells)
        for index, key, adapt in self._plain:
            if index < width:
                cell = cells[index]
                if cell is not None and (cell.__class__ is not str or cell.strip()):
                    if cell.__class__ is Formula:
                        errors.append(self._formula(key, cell, language))
                    else:
                        data[key] = adapt(cell)
        for col in self._referring:
            cell = cells[col.index] if col.index < width else None
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                continue
            if cell.__class__ is Formula:
                errors.append(self._formula(col.key, cell, language))
                continue
            shown = cell_text(cell)
            lookups[col.key] = split_list(shown) if col.multi else [shown.strip()]
        if width > self.width and not is_blank(cells[self.width:]):
            # Values no column title names would be dropped without a word;
            # in a CSV they usually mean an unquoted delimiter shifted the row.
            extra = [cell_text(c) for c in cells[self.width:]]
            errors.append(ErrorItem(code="extra_cells", message=text(
                "extra_cells", language, columns=self.width,
                values=", ".join(v for v in extra if v.strip())[:200])))
        return _Row(source=row, data=data, errors=errors, lookups=lookups)

    def _formula(self, key: str, formula: str, language: str) -> ErrorItem:
        label = localize(self.rt.form.field(key).label, language)  # type: ignore[union-attr]
        return ErrorItem(code="formula_uncomputed", field=key, message=text(
            "formula_uncomputed", language, label=label, formula=formula[:100]))

    def _resolve(self, ctx: EngineContext, rows: list[_Row]) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            for key, texts in r.lookups.items():
                wanted[key].update(texts)
        resolvers = {c.key: c for c in self.columns if c.resolver is not None}
        for key, wanted_texts in wanted.items():
            resolver = resolvers[key].resolver
            assert resolver is not None
            resolver.resolve(ctx, wanted_texts)
        for r in rows:
            for key, texts in r.lookups.items():
                col = resolvers[key]
                assert col.resolver is not None
                ids: list[uuid.UUID] = []
                for value in texts:
                    found = col.resolver.get(ctx, value)
                    if isinstance(found, ErrorItem):
                        r.errors.append(found)
                    else:
                        ids.append(found)
                if len(ids) == len(texts):
                    r.data[key] = ids if col.multi else ids[0]

    def _match_key(self, r: _Row) -> tuple[Any, ...] | None:
        assert self.dedup is not None
        parts = []
        for key in self.dedup.fields:
            raw = r.data.get(key)
            if raw is None:
                return None
            try:
                parts.append(self.rt.fields[key].convert(raw))
            except FieldProblem:
                return None
        return tuple(parts)

    # -- running ---------------------------------------------------------------------

    def run(self, ctx: EngineContext, batch: Sequence[RowInput], *, write: bool
            ) -> list[RowResult]:
        """The outcome of each row, in order (written when ``write``)."""
        rows = [self._read(r, ctx.language) for r in batch]
        self._resolve(ctx, rows)
        if self.dedup is None:
            return self._segment(ctx, rows, write=write, pending={})
        for r in rows:
            r.key = self._match_key(r)
        results: list[RowResult] = []
        segment: list[_Row] = []
        keys: set[tuple[Any, ...]] = set()
        pending: dict[tuple[Any, ...], int] = {}
        for r in rows:
            if r.key is not None and r.key in keys:
                if write:
                    # Write the earlier row first: this one then matches its record.
                    results.extend(self._segment(ctx, segment, write=True, pending={}))
                    segment, keys = [], set()
                else:
                    pending[r.key] = pending.get(r.key, 0)
            segment.append(r)
            if r.key is not None:
                keys.add(r.key)
        results.extend(self._segment(ctx, segment, write=write, pending=pending))
        return results

    def _segment(self, ctx: EngineContext, rows: list[_Row], *, write: bool,
                 pending: dict[tuple[Any, ...], int]) -> list[RowResult]:
        results: dict[int, RowResult] = {}
        creates: list[tuple[int, _Row]] = []
        existing = self._existing(ctx, rows)
        seen: set[tuple[Any, ...]] = set()
        for i, r in enumerate(rows):
            matches = existing.get(r.key, []) if r.key is not None else []
            if r.key is not None and r.key in pending and r.key in seen:
                # A repeat of an earlier row of this batch (not written yet).
                matches = [{}]
            if r.key is not None:
                seen.add(r.key)
            if len(matches) > 1:
                r.errors.append(self._ambiguous(ctx, len(matches)))
                results[i] = RowResult(r.source.number, "error", r.errors)
            elif matches:
                results[i] = self._matched(ctx, r, matches[0], write=write)
            else:
                creates.append((i, r))
        if creates:
            prepared, errors = records.check_new_rows(ctx, self.rt, [r.data for _, r in creates],
                                                      known_free=() if self._scoped
                                                      else self._looked_up)
            good = []
            for j, (i, r) in enumerate(creates):
                row_errors = _merge(r.errors, errors.get(j, []))
                if row_errors:
                    results[i] = RowResult(r.source.number, "error", row_errors)
                else:
                    p = prepared[j]
                    assert p is not None
                    good.append((i, r, p))
            ids: list[uuid.UUID | None] = [None] * len(good)
            if write and good:
                ids = list(records.insert_rows(ctx, self.rt, [p for _, _, p in good],
                                               source=self.source))
            for (i, r, _), rid in zip(good, ids, strict=True):
                results[i] = RowResult(r.source.number, "create", record_id=rid)
        return [results[i] for i in range(len(rows))]

    def _existing(self, ctx: EngineContext, rows: list[_Row]
                  ) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
        """Live records with the match key of a row: id and key fields, or the
        whole record when the mode changes it (merge needs to see what is empty)."""
        if self.dedup is None:
            return {}
        fields = self.dedup.fields
        values = {r.key[0] for r in rows if r.key is not None}
        out: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        if not values:
            return out
        # Only records the importer may read: one beyond their scope is not
        # matched (nor its fields revealed by skip/merge); its unique value
        # then refuses the row as any create would.
        found = records.find_records(ctx, self.rt, fields[0], values, columns=fields,
                                     scope="read")
        self._scoped = ctx.policy.row_predicate(ctx.actor, self.rt.app, self.rt.key,
                                                self.rt.table, "read") is not None
        keys = {r.key for r in rows if r.key is not None}
        found = [rec for rec in found if tuple(rec.get(k) for k in fields) in keys]
        if found and self.dedup.mode.needs_update:
            found = records.find_records(ctx, self.rt, "id", [rec["id"] for rec in found])
        for rec in found:
            out[tuple(rec.get(k) for k in fields)].append(rec)
        return out

    def _matched(self, ctx: EngineContext, r: _Row, existing: dict[str, Any], *,
                 write: bool) -> RowResult:
        assert self.dedup is not None
        number = r.source.number
        if r.errors:
            return RowResult(number, "error", r.errors)
        changes = self.dedup.mode.changes(r.data, existing)
        if not changes:
            return RowResult(number, "skip", record_id=existing.get("id"))
        if not existing:  # the repeat of a row not written yet (checking only)
            _, by_row = records.check_new_rows(ctx, self.rt, [r.data])
            row_errors = by_row.get(0, [])
            return RowResult(number, "error" if row_errors else "update", row_errors)
        if not write:
            problems = records.check_changes(ctx, self.rt, existing, changes)
            return RowResult(number, "error" if problems else "update", problems,
                             record_id=existing["id"])
        try:
            records.apply_changes(ctx, self.rt, existing["id"], changes, source=self.source)
        except TangramError as exc:
            return RowResult(number, "error",
                             exc.errors or [ErrorItem(code=exc.code, message=exc.message)])
        return RowResult(number, "update", record_id=existing["id"])

    def _ambiguous(self, ctx: EngineContext, count: int) -> ErrorItem:
        assert self.dedup is not None
        labels = "、".join(localize(self.rt.form.field(k).label, ctx.language)  # type: ignore[union-attr]
                          for k in self.dedup.fields)
        return ErrorItem(code="dedup_ambiguous", message=text(
            "dedup_ambiguous", ctx.language, count=count, fields=labels))


def _merge(first: list[ErrorItem], more: list[ErrorItem]) -> list[ErrorItem]:
    """Lookup errors, then validation errors — without a "required" error for
    a field whose lookup already failed."""
    failed = {e.field for e in first}
    return [*first, *(e for e in more if not (e.code == "required" and e.field in failed))]
