"""The filter language and the list queries of the records API.

A filter is JSON (grammar, operators and semantics: ``docs/filters.md``)::

    {"and": [{"field": "amount", "op": "gte", "value": "500000"},
             {"field": "account.industry", "op": "under", "value": "制造业"},
             {"not": {"field": "stage", "op": "in", "value": ["won", "lost"]}}]}

It compiles to one SQLAlchemy Core condition with bound parameters only;
identifiers come only from the form definitions' validated keys. Paths through
relation fields (``account.industry``) compile to ``IN (SELECT id …)``
subqueries, so rows are never duplicated. The same compiler serves the records
API, rollup and report filters, dashboard drill-downs and permission scopes.

``build_select`` / ``build_count`` add sorting (also by relation paths),
full-text search, the recycle-bin switch and keyset pagination with an opaque
cursor. Semantics pinned here and in the docs:

- A path's value is empty when any link on it is empty or points to a deleted
  record. Negative operators (``ne``, ``not_in``, ``not_contains``,
  ``is_empty: true``) match empty values, so each is the exact complement of
  its positive twin, and ``{"not": X}`` matches exactly the rows X does not.
- Empty values sort last in both directions, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from tangram.engines.cursors import cursor_invalid, decode_cursor, encode_cursor
from tangram.engines.forms.fieldtypes import FIELD_KINDS, FieldKind, unstorable
from tangram.engines.forms.operators import (
    MAX_LIST_ITEMS,
    OPERATORS,
    Condition,
    Operand,
    ValueEnv,
    ValueProblem,
    allowed_operators,
    complement,
    escape_like,
    ilike,
    operator_catalog,
    python_type_of,
)
from tangram.engines.forms.tables import FormTables
from tangram.errors import ErrorItem, TangramError, ValidationFailed
from tangram.metamodel import fields as fm

__all__ = [
    "CursorInvalid", "FilterInvalid", "HiddenFields", "ListQuery", "QueryContext", "QueryInvalid",
    "Resolver", "build_count", "build_select", "compile_filter", "operator_catalog",
    "validate_filter",
]

Resolver = Callable[[str], FormTables]  # form key (same app) -> tables of its published version
# Form key -> keys of its fields hidden from the viewer (left out of messages).
HiddenFields = Callable[[str], Collection[str]]

MAX_DEPTH = 10  # nesting of groups
MAX_CONDITIONS = 200
MAX_STRING = 1000  # characters of any text in a filter value, and of a search
MAX_PATH = 10  # fields in a dotted path
MAX_LIMIT = 500
MAX_SORT_KEYS = 10
MAX_SEARCH_WORDS = 20
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# The viewer's row scope of a form reached through a relation: given the
# target's tables and the alias the query uses for it, an SQL condition (None
# = every row). A linked record outside the scope behaves as an empty link, so
# filtering or sorting through a relation reveals nothing of it.
RelationScope = Callable[[FormTables, sa.FromClause], "sa.ColumnElement[bool] | None"]


@dataclass
class QueryContext:
    resolve: Resolver
    today: date  # in the organization's time zone
    timezone: str  # the organization's, e.g. "Asia/Shanghai"
    now: datetime  # aware
    scope: RelationScope | None = None
    # The viewer's hidden fields: an unknown-field message lists and suggests
    # only the fields the viewer may see, on the queried form and at the far
    # end of a relation path (None: every field — the system, and analysts
    # checking a definition at publish time).
    hidden: HiddenFields | None = None

    def visible(self, tables: FormTables, alias: sa.FromClause) -> sa.ColumnElement[bool]:
        """Live rows of ``alias`` the viewer may see."""
        live = alias.c.deleted_at.is_(None)
        extra = self.scope(tables, alias) if self.scope is not None else None
        return live if extra is None else sa.and_(live, extra)


class QueryInvalid(ValidationFailed):
    """A list query (sort, fields, limit, search) is not valid; ``errors`` lists all."""

    code = "query_invalid"


class FilterInvalid(QueryInvalid):
    """A filter is not valid; ``errors`` lists every problem with its JSON path."""

    code = "filter_invalid"


def parse_filter(text: str | None) -> dict[str, Any] | None:
    """A filter sent as JSON text (the ``filter`` parameter of a GET) -> the
    filter object; text that is not JSON, or JSON that is not an object, is
    refused as ``filter_invalid``.

    >>> parse_filter('{"field": "stage", "op": "eq", "value": "won"}')["op"]
    'eq'
    """
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise FilterInvalid([ErrorItem(
            code="invalid_json", field="filter", path="$",
            message=f"filter is not valid JSON: {reason}")], "filter is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise FilterInvalid([ErrorItem(
            code="invalid_node", field="filter", path="$",
            message=f"filter must be a JSON object (a condition {{\"field\", \"op\", "
                    f"\"value\"}} or a group {{\"and\": [...]}}), got "
                    f"{_json_kind(parsed)}")], "filter must be a JSON object")
    return parsed


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a text" if isinstance(value, str) else "a list"


class CursorInvalid(QueryInvalid):
    """The ``after`` cursor was not made by this query (tampered, or another sort)."""

    code = "cursor_invalid"


# --------------------------------------------------------------------------- fields and paths

_SYSTEM_LABELS = {
    "id": {"zh": "记录ID", "en": "Record id"},
    "created_at": {"zh": "创建时间", "en": "Created at"},
    "updated_at": {"zh": "更新时间", "en": "Updated at"},
    "created_by": {"zh": "创建人", "en": "Created by"},
    "updated_by": {"zh": "更新人", "en": "Updated by"},
    "owner": {"zh": "负责人", "en": "Owner"},
}
# Columns every record table has, always selected by build_select.
SYSTEM_COLUMNS = ("id", "created_at", "created_by", "updated_at", "updated_by", "owner",
                  "version", "deleted_at")


@dataclass(frozen=True)
class Constant:
    """A filter node that is always true or always false. JSON cannot hold
    one: the platform puts it where a user placeholder has no value (the
    departments of a user in none), so that ``in`` that list matches nothing
    and ``not_in`` it everything, as for any other empty list of values."""

    value: bool


MATCH_NONE, MATCH_ALL = Constant(False), Constant(True)


@functools.lru_cache(maxsize=1024)
def system_fields(form_key: str) -> dict[str, fm.FieldBase]:
    """Filterable/sortable system columns, described like fields: timestamps
    as datetime fields, people as user fields, the id as a link to this form."""
    models: dict[str, type[fm.FieldBase]] = {
        "id": fm.RelationField, "created_at": fm.DateTimeField, "updated_at": fm.DateTimeField,
        "created_by": fm.UserField, "updated_by": fm.UserField, "owner": fm.UserField}
    return {key: model.model_validate({"key": key, "label": _SYSTEM_LABELS[key],
                                       **({"target": form_key} if key == "id" else {})})
            for key, model in models.items()}


class PathProblem(Exception):
    """A field path that cannot be resolved (code + message); callers turn it
    into an ErrorItem at the JSON path they were reading."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Hop:
    link: str  # relation field key on the previous form
    tables: FormTables  # the form it leads to


@dataclass(frozen=True)
class _Path:
    path: str  # as written, e.g. "account.industry"
    hops: tuple[_Hop, ...]
    field: fm.FieldBase  # the last field
    kind: FieldKind
    tables: FormTables  # the form holding the last field


class _Forms:
    """Field lookup and path resolution, resolving each related form once."""

    def __init__(self, qctx: QueryContext) -> None:
        self.qctx = qctx
        self._tables: dict[str, FormTables] = {}
        self._fields: dict[int, dict[str, fm.FieldBase]] = {}

    def fields(self, tables: FormTables) -> dict[str, fm.FieldBase]:
        found = self._fields.get(id(tables))
        if found is None:
            found = {f.key: f for f in tables.form.fields}
            found.update(system_fields(tables.form.key))
            self._fields[id(tables)] = found
        return found

    def target(self, key: str) -> FormTables:
        if key not in self._tables:
            try:
                self._tables[key] = self.qctx.resolve(key)
            except (LookupError, TangramError) as exc:
                raise PathProblem("form_not_found", f"the related form {key!r} is not "
                                   f"available (not published?): {exc}") from None
        return self._tables[key]

    def path(self, tables: FormTables, path: Any) -> _Path:
        if not isinstance(path, str) or not path:
            raise PathProblem("invalid_field", "field must be a field key or a dotted path "
                               "such as \"account.industry\"")
        parts = path.split(".")
        if len(parts) > MAX_PATH:
            raise PathProblem("too_deep", f"path {path!r} has {len(parts)} parts; at most "
                               f"{MAX_PATH} allowed")
        hops: list[_Hop] = []
        current = tables
        for i, part in enumerate(parts):
            fields = self.fields(current)
            f = fields.get(part)
            if f is None:
                raise PathProblem("unknown_field", self.unknown(part, current, fields))
            if i == len(parts) - 1:
                kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
                return _Path(path, tuple(hops), f, kind, current)
            if not isinstance(f, fm.RelationField) or part in _SYSTEM_LABELS:
                what = "system" if part in _SYSTEM_LABELS else f.type  # type: ignore[attr-defined]
                raise PathProblem("not_a_relation", f"cannot follow {'.'.join(parts[:i + 1])!r}"
                                   f" into {parts[i + 1]!r}: it is a {what} field, and only "
                                   "relation fields lead to another form")
            current = self.target(f.target)
            hops.append(_Hop(part, current))
        raise AssertionError("unreachable")

    def unknown(self, key: str, tables: FormTables, fields: Iterable[str]) -> str:
        """The message for an unknown field ``key`` of ``tables``, listing and
        suggesting only the fields the viewer may see (a relation path's far
        end resolves to the whole form, hidden fields included)."""
        hidden = self.qctx.hidden(tables.form.key) if self.qctx.hidden is not None else ()
        return _unknown(key, tables, [k for k in fields if k not in hidden])


def _unknown(key: str, tables: FormTables, fields: Iterable[str]) -> str:
    keys = list(fields)
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(keys[:10]) + (", …" if len(keys) > 10 else "")
    return f"unknown field {key!r} in form {tables.form.key!r}{hint}; fields: {shown}"


def _error(code: str, message: str, path: str, **details: Any) -> ErrorItem:
    return ErrorItem(code=code, message=message, path=path, details=details)


# --------------------------------------------------------------------------- filters

class _FilterCompiler:
    """One pass over a filter: validates everything and compiles what is valid."""

    def __init__(self, tables: FormTables, qctx: QueryContext, forms: _Forms | None = None
                 ) -> None:
        self.tables = tables
        self.forms = forms or _Forms(qctx)
        self.env = ValueEnv(today=qctx.today, timezone=qctx.timezone)
        self.qctx = qctx
        self.errors: list[ErrorItem] = []
        self.conditions = 0

    def node(self, spec: Any, path: str, depth: int) -> Condition | None:
        if spec is None:
            return None
        if isinstance(spec, Constant):
            return sa.true() if spec.value else sa.false()
        if not isinstance(spec, dict):
            self.errors.append(_error("invalid_node", "expected an object: a condition "
                                      "{\"field\", \"op\", \"value\"} or a group {\"and\": [...]}"
                                      ", {\"or\": [...]} or {\"not\": {...}}", path))
            return None
        if not spec:
            return None
        if depth > MAX_DEPTH:
            self.errors.append(_error("too_deep", f"the filter nests deeper than {MAX_DEPTH} "
                                      "levels", path))
            return None
        groups = [k for k in ("and", "or", "not") if k in spec]
        if not groups:
            return self.condition(spec, path)
        if len(spec) > 1:
            self.errors.append(_error("invalid_node", "a group has exactly one key (\"and\", "
                                      f"\"or\" or \"not\"); found {sorted(spec)}", path))
            return None
        key = groups[0]
        if key == "not":
            inner = self.node(spec["not"], f"{path}.not", depth + 1)
            return None if inner is None else complement(inner)
        parts = spec[key]
        if not isinstance(parts, list):
            self.errors.append(_error("invalid_node", f"\"{key}\" takes a list of conditions",
                                      f"{path}.{key}"))
            return None
        compiled = [c for i, part in enumerate(parts)
                    if (c := self.node(part, f"{path}.{key}[{i}]", depth + 1)) is not None]
        if not compiled:
            return None  # an empty group imposes nothing (filter builders produce them)
        if len(compiled) == 1:
            return compiled[0]
        return sa.and_(*compiled) if key == "and" else sa.or_(*compiled)

    def condition(self, spec: dict[str, Any], path: str) -> Condition | None:
        self.conditions += 1
        if self.conditions == MAX_CONDITIONS + 1:
            self.errors.append(_error("too_many_conditions", f"the filter has more than "
                                      f"{MAX_CONDITIONS} conditions", path))
        if self.conditions > MAX_CONDITIONS:
            return None
        errors_before = len(self.errors)
        unknown = sorted(set(spec) - {"field", "op", "value"})
        if unknown:
            self.errors.append(_error("invalid_node", f"unknown key(s) {unknown}; a condition "
                                      "has \"field\", \"op\" and \"value\"", path))
        field_path, op_key, raw = spec.get("field"), spec.get("op"), spec.get("value")
        target: _Path | None = None
        try:
            target = self.forms.path(self.tables, field_path)
        except PathProblem as exc:
            self.errors.append(_error(exc.code, exc.message, f"{path}.field", field=field_path))
        op = OPERATORS.get(op_key) if isinstance(op_key, str) else None
        if op is None:
            self.errors.append(_error("unknown_operator", f"unknown operator {op_key!r}; "
                                      f"operators: {', '.join(OPERATORS)}", f"{path}.op"))
        elif target is not None:
            allowed = allowed_operators(target.kind, target.field)
            if op.key not in allowed:
                self.errors.append(_error(
                    "operator_not_allowed", f"operator {op.key!r} cannot be used on "
                    f"{field_path!r} (a {target.kind.name} field); allowed: "
                    f"{', '.join(allowed)}", f"{path}.op", field=field_path))
        limit_errors = _value_limits(raw, f"{path}.value")
        self.errors.extend(limit_errors)
        if op is None or target is None or len(self.errors) > errors_before:
            return None
        leaf = Operand(path=target.path, field=target.field, kind=target.kind,
                       source=target.tables.table, tables=target.tables)
        try:
            value = op.convert_value(leaf, raw, self.env)
        except ValueProblem as exc:
            for at, message in exc.problems:
                self.errors.append(_error(
                    "invalid_value", f"{message} (field {field_path!r}, a "
                    f"{target.kind.name} field, operator {op.key!r})", f"{path}.value{at}",
                    field=field_path))
            return None
        return self._through(self.tables, self.tables.table, target, 0,
                             lambda o: op.compile(o, value), op.matches_empty(value))

    def _through(self, tables: FormTables, source: sa.FromClause, target: _Path, i: int,
                 leaf: Callable[[Operand], Condition], matches_empty: bool) -> Condition:
        """The condition on ``source`` rows, following ``target.hops[i:]``.

        Each hop becomes ``link IN (SELECT id FROM target WHERE live AND cond)``.
        When an empty value satisfies the condition (``ne``…), a broken link
        must match too: ``NOT EXISTS (SELECT … FROM target WHERE id = link AND
        live AND NOT cond)`` — true for an empty link as well, and planned as
        an anti-join (``NOT IN (subquery)`` is not). Targets are aliased, so a
        self-relation's subquery never correlates to the outer table by mistake.
        """
        if i == len(target.hops):
            return leaf(Operand(path=target.path, field=target.field, kind=target.kind,
                                source=source, tables=tables))
        hop = target.hops[i]
        alias = hop.tables.table.alias()
        inner = self._through(hop.tables, alias, target, i + 1, leaf, matches_empty)
        link = source.c[hop.link]
        live = self.qctx.visible(hop.tables, alias)
        if matches_empty:
            return ~sa.exists().where(alias.c.id == link, live, complement(inner))
        return link.in_(sa.select(alias.c.id).where(live, inner))


def _value_limits(raw: Any, path: str) -> list[ErrorItem]:
    """Size limits on a raw value, checked before any conversion."""
    out: list[ErrorItem] = []

    def walk(value: Any, at: str) -> None:
        if isinstance(value, str) and len(value) > MAX_STRING:
            out.append(_error("value_too_long", f"text of {len(value)} characters; at most "
                              f"{MAX_STRING} allowed", at))
        elif isinstance(value, str) and (problem := unstorable(value)) is not None:
            # Any operator, any field type: no stored value holds it, and the
            # database cannot even take it as a parameter.
            out.append(_error("invalid_value", f"value must be {problem}", at))
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                out.append(_error("too_many_values", f"{len(value)} values; at most "
                                  f"{MAX_LIST_ITEMS} allowed", at))
                return
            for i, item in enumerate(value):
                walk(item, f"{at}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{at}.{key}")

    walk(raw, path)
    return out


def validate_filter(spec: Any, *, tables: FormTables, qctx: QueryContext) -> list[ErrorItem]:
    """Every problem of ``spec`` (an empty list when it is valid).

    >>> validate_filter({"field": "amout", "op": "gt", "value": 1}, tables=t, qctx=q)
    [ErrorItem(code='unknown_field', path='$.field', message="unknown field 'amout' …")]
    """
    compiler = _FilterCompiler(tables, qctx)
    compiler.node(spec, "$", 1)
    return compiler.errors


def compile_filter(spec: Any, *, tables: FormTables, qctx: QueryContext
                   ) -> sa.ColumnElement[bool] | None:
    """The SQL condition of filter ``spec`` on ``tables.table`` (None: no filter).

    Raises :class:`FilterInvalid` listing every problem.

    >>> cond = compile_filter({"field": "account.industry", "op": "eq", "value": "制造业"},
    ...                       tables=opportunity, qctx=qctx)
    >>> sa.select(opportunity.table.c.id).where(cond)
    """
    compiler = _FilterCompiler(tables, qctx)
    cond = compiler.node(spec, "$", 1)
    if compiler.errors:
        raise FilterInvalid(compiler.errors, _summary("filter", compiler.errors))
    return cond


def _summary(what: str, errors: list[ErrorItem]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid {what}: {first.path or first.field}: {first.message}{more}"


# --------------------------------------------------------------------------- list queries

@dataclass
class ListQuery:
    filter: dict[str, Any] | None = None
    # "-" = descending; empty: the form's default_sort, else newest first
    sort: list[str] = field(default_factory=list)
    search: str | None = None  # words, all must match (each in any search field)
    fields: list[str] | None = None  # None: every column field
    limit: int = 50  # 1 … 500
    after: str | None = None  # the cursor of the previous page's last row
    include_total: bool = False
    deleted: bool = False  # True: the recycle bin (only soft-deleted rows)


@dataclass(frozen=True)
class _SortKey:
    spec: str  # "-amount", "account.name"
    descending: bool
    expr: sa.ColumnElement[Any]
    name: str  # key of the value in a result row
    nullable: bool
    python_type: type | None

    def order(self) -> sa.UnaryExpression[Any]:
        ordered = self.expr.desc() if self.descending else self.expr.asc()
        # Empty values last in both directions: SQLite's default puts NULLs
        # first, PostgreSQL's puts them last ascending and first descending.
        return ordered.nulls_last() if self.nullable else ordered


class _Builder:
    """Validates a ListQuery once and builds its conditions and sort keys."""

    def __init__(self, q: ListQuery, tables: FormTables, qctx: QueryContext, *,
                 with_sort: bool) -> None:
        self.q, self.tables, self.table = q, tables, tables.table
        self.qctx = qctx
        self.forms = _Forms(qctx)
        self.errors: list[ErrorItem] = []
        self.filter_failed = False
        self.where: list[Condition] = [
            self.table.c.deleted_at.is_not(None) if q.deleted else
            self.table.c.deleted_at.is_(None)]
        self._filter(qctx)
        self._search()
        self.keys: list[_SortKey] = self._sort() if with_sort else []

    def raise_if_invalid(self) -> None:
        if self.errors:
            kind = FilterInvalid if self.filter_failed else QueryInvalid
            raise kind(self.errors, _summary("query", self.errors))

    def _filter(self, qctx: QueryContext) -> None:
        compiler = _FilterCompiler(self.tables, qctx, self.forms)
        cond = compiler.node(self.q.filter, "$", 1)
        for e in compiler.errors:
            e.field = "filter"
        if compiler.errors:
            self.filter_failed = True
            self.errors.extend(compiler.errors)
        elif cond is not None:
            self.where.append(cond)

    def _search(self) -> None:
        text = self.q.search
        if text is None:
            return
        if not isinstance(text, str):
            self.errors.append(ErrorItem(code="invalid_search", field="search",
                                         message="search must be a text"))
            return
        if not text.strip():
            return
        if _CONTROL_CHARACTER.search(text):
            # NUL would cut the LIKE pattern short on SQLite (matching every
            # record) and is refused by PostgreSQL: no word contains one.
            self.errors.append(ErrorItem(code="invalid_search", field="search", message=(
                "search must not contain control characters (NUL, line breaks …)")))
            return
        words = text.split()  # any Unicode space, incl. the ideographic one
        if len(text) > MAX_STRING or len(words) > MAX_SEARCH_WORDS:
            self.errors.append(ErrorItem(code="invalid_search", field="search", message=(
                f"search is limited to {MAX_STRING} characters and {MAX_SEARCH_WORDS} words")))
            return
        form = self.tables.form
        keys = form.search_fields or ([form.effective_title_field]
                                      if form.effective_title_field else [])
        if not keys:
            self.errors.append(ErrorItem(code="invalid_search", field="search", message=(
                f"form {form.key!r} has no search fields and no title field to search")))
            return
        columns = [self.table.c[k] for k in keys]
        self.where.append(sa.and_(*(
            sa.or_(*(ilike(col, f"%{escape_like(word)}%") for col in columns))
            for word in words)))

    def _sort(self) -> list[_SortKey]:
        specs = self.q.sort or self.tables.form.default_sort or ["-id"]
        keys: list[_SortKey] = []
        seen: set[str] = set()
        if not isinstance(specs, list) or len(specs) > MAX_SORT_KEYS:
            self.errors.append(ErrorItem(code="invalid_sort", field="sort", message=(
                f"sort is a list of at most {MAX_SORT_KEYS} keys, e.g. [\"-amount\", "
                "\"name\"]")))
            return []
        for i, spec in enumerate(specs):
            key = self._sort_key(spec, i, seen)
            if key is not None:
                keys.append(key)
        if "id" not in seen:
            # The id breaks ties, so the order is total and keyset pages are exact.
            descending = keys[-1].descending if keys else True
            keys.append(self._own_key("id", descending, "-id" if descending else "id"))
        return keys

    def _sort_key(self, spec: Any, i: int, seen: set[str]) -> _SortKey | None:
        at = f"$[{i}]"
        descending = isinstance(spec, str) and spec.startswith("-")
        name = spec[1:] if descending else spec
        if not isinstance(name, str) or not name or name.startswith("-"):
            self.errors.append(ErrorItem(code="invalid_sort", field="sort", path=at, message=(
                f"{spec!r} is not a sort key: write a field key or path, with one \"-\" in "
                "front for descending (\"-amount\")")))
            return None
        if name in seen:
            self.errors.append(ErrorItem(code="invalid_sort", field="sort", path=at,
                                         message=f"{name!r} is sorted on twice"))
            return None
        seen.add(name)
        try:
            target = self.forms.path(self.tables, name)
        except PathProblem as exc:
            self.errors.append(ErrorItem(code=exc.code, field="sort", path=at,
                                         message=exc.message))
            return None
        if not target.kind.sortable or target.kind.storage != "column":
            self.errors.append(ErrorItem(code="invalid_sort", field="sort", path=at, message=(
                f"{name!r} is a {target.kind.name} field, which cannot be sorted on")))
            return None
        if not target.hops:
            return self._own_key(name, descending, spec)
        expr = self._path_value(self.tables, self.table, target, 0)
        return _SortKey(spec=spec, descending=descending, expr=expr, name=f"_sort_{i}",
                        nullable=True, python_type=_python_type(expr))

    def _own_key(self, name: str, descending: bool, spec: str) -> _SortKey:
        col = self.table.c[name]
        return _SortKey(spec=spec, descending=descending, expr=col, name=name,
                        nullable=bool(col.nullable), python_type=_python_type(col))

    def _path_value(self, tables: FormTables, source: sa.FromClause, target: _Path, i: int
                    ) -> sa.ColumnElement[Any]:
        """The value at the end of a relation path, as nested correlated scalar
        subqueries (NULL when a link is empty or its record deleted)."""
        if i == len(target.hops):
            return source.c[target.field.key]
        hop = target.hops[i]
        alias = hop.tables.table.alias()
        inner = self._path_value(hop.tables, alias, target, i + 1)
        return (sa.select(inner)
                .where(alias.c.id == source.c[hop.link], self.qctx.visible(hop.tables, alias))
                .correlate(source).scalar_subquery())

    def columns(self) -> list[sa.ColumnElement[Any]]:
        t, form = self.table, self.tables.form
        all_keys = [f.key for f in form.fields]
        wanted = all_keys if self.q.fields is None else self.q.fields
        if not isinstance(wanted, list):
            wanted = []
            self.errors.append(ErrorItem(code="invalid_fields", field="fields",
                                         message="fields must be a list of field keys"))
        names = list(SYSTEM_COLUMNS)
        for i, key in enumerate(wanted):
            if key in SYSTEM_COLUMNS or key in names:
                continue
            if not isinstance(key, str) or form.field(key) is None:
                self.errors.append(ErrorItem(code="unknown_field", field="fields",
                                             path=f"$[{i}]", message=self.forms.unknown(
                                                 str(key), self.tables, all_keys)))
            elif key in t.c:  # sub-tables and multi-relations have no column
                names.append(key)
        out: list[sa.ColumnElement[Any]] = [t.c[n] for n in names]
        for k in self.keys:
            if k.name not in names:
                out.append(k.expr.label(k.name) if k.name.startswith("_sort_") else k.expr)
                names.append(k.name)
        return out

    def after(self, token: str) -> Condition:
        values = _decode_cursor(token, self.keys)
        # Rows after the cursor row, for keys k1…kn (the last one is the id):
        # beyond(k1) OR (k1 = v1 AND (beyond(k2) OR (k2 = v2 AND …))).
        cond: Condition | None = None  # the last key is unique: no tie after it
        for key, value in reversed(list(zip(self.keys, values, strict=True))):
            if value is None:
                # Empty values sort last: past an empty one only other empty (tied) remain.
                cond = sa.and_(key.expr.is_(None), cond if cond is not None else sa.false())
                continue
            # A typed parameter: SQLAlchemy refuses "<" against a bare True/False.
            param = sa.bindparam(None, value, type_=key.expr.type)
            beyond = key.expr < param if key.descending else key.expr > param
            if key.nullable:
                beyond = sa.or_(beyond, key.expr.is_(None))
            cond = beyond if cond is None else sa.or_(beyond, sa.and_(key.expr == param, cond))
        assert cond is not None
        return cond

    def cursor_maker(self) -> Callable[[Any], str]:
        keys = self.keys
        specs = [k.spec for k in keys]

        def cursor_of(row: Any) -> str:
            data = row._mapping if hasattr(row, "_mapping") else row
            return encode_cursor({"s": specs, "v": [_encode_value(data[k.name]) for k in keys]})

        return cursor_of


def _python_type(expr: sa.ColumnElement[Any]) -> type | None:
    return python_type_of(expr.type)


# --------------------------------------------------------------------------- cursors
# A cursor is base64url JSON {"s": sort specs, "v": the last row's sort values,
# id last}. It only positions a page within a query the caller may run anyway,
# so it needs no signature — but anything not made by the same sort is refused.

def _encode_value(value: Any) -> Any:
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (date, time)):  # datetime is a date
        return value.isoformat()
    return value


def _decode_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value


_DECODERS: dict[type, Callable[[Any], Any]] = {
    Decimal: lambda v: Decimal(_text(v)),
    uuid.UUID: lambda v: uuid.UUID(_text(v)),
    datetime: lambda v: _decode_datetime(_text(v)),
    date: lambda v: date.fromisoformat(_text(v)),
    time: lambda v: time.fromisoformat(_text(v)),
    str: lambda v: _exact(v, str),
    int: lambda v: _exact(v, int),
    bool: lambda v: _exact(v, bool),
}


def _text(value: Any) -> str:
    return _exact(value, str)


def _exact(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise TypeError(f"expected {kind.__name__}")
    return value


def _decode_cursor(token: str, keys: list[_SortKey]) -> list[Any]:
    def bad(why: str) -> CursorInvalid:
        return cursor_invalid(why, of="query")

    payload = decode_cursor(token, of="query")
    if not isinstance(payload, dict) or set(payload) != {"s", "v"}:
        raise bad("not a cursor")
    if payload["s"] != [k.spec for k in keys]:
        raise bad("it was made for another sort order")
    values = payload["v"]
    if not isinstance(values, list) or len(values) != len(keys):
        raise bad("wrong number of values")
    out: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            if not key.nullable:
                raise bad(f"{key.spec} cannot be empty")
            out.append(None)
            continue
        decode = _DECODERS.get(key.python_type) if key.python_type else None
        try:
            out.append(decode(value) if decode else value)
        except (ValueError, TypeError, InvalidOperation):
            raise bad(f"bad value for {key.spec}") from None
    return out


# --------------------------------------------------------------------------- entry points

def build_select(q: ListQuery, *, tables: FormTables, qctx: QueryContext,
                 scope: sa.ColumnElement[bool] | None = None
                 ) -> tuple[sa.Select[Any], Callable[[Any], str]]:
    """One page of ``tables.table`` rows: a SELECT of the system columns and the
    columns of ``q.fields``, filtered (``q.filter``, ``q.search``, ``scope``,
    live or recycle-bin rows), ordered by ``q.sort`` then id, after the cursor
    ``q.after``, with ``LIMIT q.limit + 1`` (an extra row means a next page);
    and the function that makes the cursor of a result row (``Row`` or mapping).
    Sort values reached through relations come as ``_sort_<i>`` columns.

    >>> stmt, cursor_of = build_select(ListQuery(sort=["-amount"], limit=20), ...)
    >>> rows = session.execute(stmt).all()
    >>> next_cursor = cursor_of(rows[19]) if len(rows) > 20 else None
    """
    builder = _Builder(q, tables, qctx, with_sort=True)
    if isinstance(q.limit, bool) or not isinstance(q.limit, int) or not 1 <= q.limit <= MAX_LIMIT:
        builder.errors.append(ErrorItem(code="invalid_limit", field="limit", message=(
            f"limit must be a whole number from 1 to {MAX_LIMIT}, not {q.limit!r}")))
    columns = builder.columns()
    builder.raise_if_invalid()
    where = list(builder.where)
    if scope is not None:
        where.append(scope)
    if q.after:
        where.append(builder.after(q.after))
    stmt = (sa.select(*columns).select_from(tables.table).where(*where)
            .order_by(*(k.order() for k in builder.keys)).limit(q.limit + 1))
    return stmt, builder.cursor_maker()


def build_count(q: ListQuery, *, tables: FormTables, qctx: QueryContext,
                scope: sa.ColumnElement[bool] | None = None) -> sa.Select[Any]:
    """``SELECT count(*)`` of the rows ``q`` lists on all pages (no cursor, no sort).

    >>> session.execute(build_count(q, tables=t, qctx=qctx)).scalar_one()
    """
    builder = _Builder(q, tables, qctx, with_sort=False)
    builder.raise_if_invalid()
    where: Iterable[Condition] = builder.where if scope is None else [*builder.where, scope]
    return sa.select(sa.func.count()).select_from(tables.table).where(*where)
