"""Field paths of reports: ``amount``, ``account.industry``, ``lines.amount``,
``contacts.age`` — resolved against the published forms of the app.

A path follows relation fields (to-one: joined, never duplicating rows) and at
most one to-many link: a sub-table or a multi-relation field. A to-many path
is only allowed inside a measure, where the engine pre-aggregates it per
record. A path is refused when it is too long or cyclic (follows the same
relation field twice).

A report over a sub-table's rows (``"rows": "lines"``) resolves paths from a
row of that sub-table: its own fields (``qty``), and the record holding it as
``parent`` or by the form's key (``parent.account.region``,
``quote.account.region``). There every path is to-one: a to-many link from
the parent would repeat its rows for every line, so it is refused.
"""

from __future__ import annotations

import difflib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from tangram.engines.forms.fieldtypes import FIELD_KINDS, FieldKind
from tangram.engines.forms.query import HiddenFields, PathProblem, system_fields
from tangram.engines.forms.tables import FormTables
from tangram.engines.reports.registry import value_class
from tangram.metamodel import fields as fm

MAX_HOPS = 4  # links in one path

# System columns described as fields, and the path error, are the records
# query's (one description for lists, filters and reports).


@dataclass(frozen=True)
class Step:
    """One link of a path."""

    kind: Literal["one", "child", "join"]
    link: str  # the column (field key) followed on the previous table
    access: tuple[str, str]  # (form, field key) field permissions name for the link
    table: sa.Table  # what the link reaches: a form table or a child table
    tables: FormTables  # the form reached (for "child": the parent form)


@dataclass(frozen=True)
class FieldRef:
    path: str
    steps: tuple[Step, ...]
    field: fm.FieldBase
    kind: FieldKind
    value_class: str
    owner_form: str  # form holding the field (a sub-table's fields: the parent form)
    access_key: str  # the key field permissions name (a sub-table field: the sub-table)

    @property
    def to_many_at(self) -> int | None:
        for i, step in enumerate(self.steps):
            if step.kind != "one":
                return i
        return None

    def fields_touched(self) -> list[tuple[str, str]]:
        """(form, field key) of every link and of the field: all must be readable."""
        return [s.access for s in self.steps] + [(self.owner_form, self.access_key)]


@dataclass(frozen=True)
class SubTableRows:
    """The rows of a sub-table as a report's row source.

    ``tables`` describes them like a form, so the records filter compiles
    against them unchanged: its table is the child table with the parent id
    column keyed ``link``, and its form has the sub-table's fields plus a
    relation field ``link`` to the parent form. ``names`` are the keys that
    reach the parent record (``parent`` and the form's key, unless a field of
    the sub-table has that key)."""

    parent: FormTables
    field: fm.SubTableField
    tables: FormTables
    link: str
    names: tuple[str, ...] = ()


_ROWS_MAX = 256
_rows_cache: OrderedDict[tuple[int, str], tuple[sa.Table, SubTableRows]] = OrderedDict()
_rows_lock = threading.Lock()


def sub_table_rows(parent: FormTables, key: str) -> SubTableRows:
    """The row source of sub-table ``key`` of ``parent`` (built once per form version).

    Raises PathProblem when the form has no such sub-table."""
    cache_key = (id(parent.table), key)
    with _rows_lock:
        hit = _rows_cache.get(cache_key)
        if hit is not None and hit[0] is parent.table:
            _rows_cache.move_to_end(cache_key)
            return hit[1]
    f = next((x for x in parent.form.fields if x.key == key), None)
    if not isinstance(f, fm.SubTableField):
        subs = [x.key for x in parent.form.fields if isinstance(x, fm.SubTableField)]
        what = "no field" if f is None else f"a {getattr(f, 'type', '?')} field"
        raise PathProblem("not_a_sub_table", f"{key!r} is {what} of form "
                          f"{parent.form.key!r}, not a sub-table; its sub-tables: "
                          f"{', '.join(subs) or 'none'}")
    own = {g.key for g in f.fields}
    names = tuple(n for n in ("parent", parent.form.key) if n not in own)
    # "parent_id" is a system column name, so no sub-table field can take it.
    link = names[0] if names else "parent_id"
    child = parent.children[key]
    columns = [sa.Column(c.name, c.type, key=link if c.name == "parent_id" else c.key,
                         primary_key=c.primary_key, nullable=c.nullable)
               for c in child.columns]
    table = sa.Table(child.name, sa.MetaData(), *columns)
    link_field = fm.RelationField(key=link, label=parent.form.label, target=parent.form.key)
    form = parent.form.model_copy(update={"fields": [*f.fields, link_field], "rules": [],
                                          "title_field": None, "search_fields": [],
                                          "layout": None, "default_sort": []})
    rows = SubTableRows(parent=parent, field=f, tables=FormTables(
        app=parent.app, form=form, table=table), link=link, names=names)
    with _rows_lock:
        _rows_cache[cache_key] = (parent.table, rows)
        while len(_rows_cache) > _ROWS_MAX:
            _rows_cache.popitem(last=False)
    return rows


class PathResolver:
    """Resolves report paths from ``root`` (or from a row of ``rows``).

    ``hidden`` gives, per form key, the fields hidden from the viewer: an
    unknown-field message then lists and suggests only what the viewer may
    see, on every form of the path (None: every field, for the system and
    for analysts checking a definition). Resolving is the same either way:
    the caller refuses hidden fields with its own, specific error."""

    def __init__(self, root: FormTables, resolve: Callable[[str], FormTables],
                 rows: SubTableRows | None = None, *, hidden: HiddenFields | None = None
                 ) -> None:
        self.root = root
        self._resolve = resolve
        self.rows = rows
        self._hidden = hidden

    def _shown(self, owner: str, sub_key: str | None, keys: list[str]) -> list[str]:
        """``keys`` of ``owner`` (or of its sub-table ``sub_key``) the viewer may see."""
        if self._hidden is None:
            return keys
        hidden = self._hidden(owner)
        if sub_key is not None and sub_key in hidden:  # the sub-table is hidden as a whole
            return [k for k in keys if self.rows is not None and k in self.rows.names]
        return keys if sub_key is not None else [k for k in keys if k not in hidden]

    def _target(self, key: str) -> FormTables:
        try:
            return self._resolve(key)
        except (LookupError, Exception) as exc:  # noqa: BLE001 - any lookup failure
            raise PathProblem("form_not_found", f"the related form {key!r} is not available "
                              f"(not published?): {exc}") from None

    def resolve(self, path: str) -> FieldRef:
        parts = path.split(".")
        if len(parts) > MAX_HOPS + 1:
            raise PathProblem("too_deep", f"path {path!r} follows {len(parts) - 1} links; at "
                              f"most {MAX_HOPS} allowed")
        steps: list[Step] = []
        current = self.root
        fields = _form_fields(current)
        owner, sub_key = current.form.key, None
        if self.rows is not None:
            link_field = self.rows.tables.form.fields[-1]
            fields = {g.key: g for g in self.rows.field.fields}
            fields.update(dict.fromkeys(self.rows.names, link_field))
            sub_key = self.rows.field.key
        seen: set[tuple[str, str | None, str]] = set()
        for i, part in enumerate(parts):
            f = fields.get(part)
            if f is None:
                where = (f"sub-table {sub_key!r} of form {owner!r}" if sub_key
                         else f"form {owner!r}")
                raise PathProblem("unknown_field", _unknown(
                    part, where, self._shown(owner, sub_key, list(fields))))
            access = (owner, sub_key or part)
            if i == len(parts) - 1:
                kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
                return FieldRef(path=path, steps=tuple(steps), field=f, kind=kind,
                                value_class=value_class(kind.name, f), owner_form=owner,
                                access_key=access[1])
            if (owner, sub_key, part) in seen:
                raise PathProblem("cyclic_path", f"path {path!r} follows "
                                  f"{owner}.{part} twice")
            seen.add((owner, sub_key, part))
            if isinstance(f, fm.SubTableField) and sub_key is None:
                steps.append(Step("child", part, access, current.children[part], current))
                fields = {g.key: g for g in f.fields}
                sub_key = part
            elif isinstance(f, (fm.MultiRelationField, fm.RelationField)) and part != "id":
                target = self._target(f.target)
                kind_of: Literal["one", "join"] = (
                    "join" if isinstance(f, fm.MultiRelationField) else "one")
                # f.key, not part: "quote.x" in a report over quote lines is "parent.x".
                steps.append(Step(kind_of, f.key, access, target.table, target))
                current, owner, sub_key = target, target.form.key, None
                fields = _form_fields(current)
            else:
                raise PathProblem("not_a_relation", f"cannot follow {'.'.join(parts[:i + 1])!r}"
                                  f" into {parts[i + 1]!r}: it is a "
                                  f"{getattr(f, 'type', '?')} field, and only relation, "
                                  "multi-relation and sub-table fields lead on")
            if self.rows is not None and steps[-1].kind != "one":
                raise PathProblem("to_many_through_parent", f"path {path!r} goes from the "
                                  "parent record through a sub-table or multi-relation; each "
                                  f"row of this report is one row of sub-table "
                                  f"{self.rows.field.key!r}, so the parent's other to-many "
                                  "values would be counted once per row — aggregate them in a "
                                  f"report over form {self.rows.parent.form.key!r} instead")
            if sum(1 for s in steps if s.kind != "one") > 1:
                raise PathProblem("nested_to_many", f"path {path!r} follows two to-many links "
                                  "(sub-tables or multi-relations); at most one is allowed")
        raise AssertionError("unreachable")


def _form_fields(tables: FormTables) -> dict[str, fm.FieldBase]:
    found: dict[str, fm.FieldBase] = {f.key: f for f in tables.form.fields}
    found.update(system_fields(tables.form.key))
    return found


def _unknown(key: str, where: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(keys[:12]) + (", …" if len(keys) > 12 else "")
    return f"unknown field {key!r} in {where}{hint}; fields: {shown or 'none you may see'}"
