"""The operators of the filter language: one registry entry per operator.

``OPERATORS`` is read by the filter compiler (``tangram.engines.forms.query``)
for validation and SQL, by the metadata endpoint (:func:`operator_catalog`)
and by the docs (``docs/filters.md``; a test fails when an operator is missing
there). Which operators a field accepts is declared by its field kind
(``FieldKind.filter_ops``); adding an operator is adding one entry here.

Every compiled condition is about one field of one row (an :class:`Operand`)
and uses bound parameters only. Conditions are written so that ``ne``,
``not_in`` and ``not_contains`` are the exact complements of ``eq``, ``in``
and ``contains``: an empty (NULL) value matches the negative operators.

The only dialect-specific SQL of the filter language lives in the two
constructs at the end of this module (JSON arrays and JSON emptiness).
"""

from __future__ import annotations

import operator as pyop
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from tangram.engines.directory import user_departments_table
from tangram.engines.forms.date_ranges import (
    DateRangeProblem,
    DayRange,
    date_range_catalog,
    resolve_date_range,
)
from tangram.engines.forms.fieldtypes import FIELD_KINDS, FieldKind, FieldProblem
from tangram.engines.forms.tables import FormTables
from tangram.metamodel import fields as fm

ValueShape = Literal["none", "scalar", "list", "pair", "range_spec"]
Condition = sa.ColumnElement[bool]

MAX_LIST_ITEMS = 1000


class ValueProblem(Exception):
    """A filter value is not usable; ``problems`` are (JSON path suffix, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems

    @classmethod
    def one(cls, message: str, at: str = "") -> ValueProblem:
        return cls([(at, message)])


@dataclass(frozen=True)
class ValueEnv:
    """What value conversion needs besides the value: the organization's day."""

    today: date
    timezone: str


@dataclass(frozen=True)
class ValueAdapter:
    """For a kind whose filter compares a part of the stored value (a region is
    filtered on its province) rather than the whole value."""

    expression: Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]
    convert: Callable[[Any], Any]


def _province(value: dict[str, str]) -> str:
    if not value.get("province"):
        raise ValueProblem.one("a region filter needs a province, e.g. \"广东省\"")
    return value["province"]


FILTER_ADAPTERS: dict[str, ValueAdapter] = {
    "region": ValueAdapter(expression=lambda c: c["province"].as_string(), convert=_province),
}


@dataclass(frozen=True)
class Operand:
    """The field a condition tests, on one table (or alias) of one form."""

    path: str  # as written in the filter, e.g. "account.industry"
    field: fm.FieldBase
    kind: FieldKind
    source: sa.FromClause  # the form's table, or an alias of it inside a subquery
    tables: FormTables

    @property
    def column(self) -> sa.ColumnElement[Any]:
        return self.source.c[self.field.key]

    @property
    def value_expr(self) -> sa.ColumnElement[Any]:
        """What comparisons compare: the column, or the part an adapter picks."""
        adapter = FILTER_ADAPTERS.get(self.kind.name)
        return adapter.expression(self.column) if adapter else self.column

    @property
    def record_id(self) -> sa.ColumnElement[Any]:
        return self.source.c.id

    def python_type(self) -> type | None:
        return python_type_of(self.column.type)

    def convert(self, raw: Any, *, shown_as: Any = None) -> Any:
        """JSON value -> Python value with the field kind's ``filter_value()``."""
        try:
            value = self.kind.filter_value(self.field, raw)
        except FieldProblem as exc:
            expected = exc.params.get("expected")
            shown = repr(raw if shown_as is None else shown_as)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            reason = f"expected {expected}" if expected else f"breaks rule {exc.code!r}"
            raise ValueProblem.one(f"{shown} is not a valid value: {reason}") from None
        adapter = FILTER_ADAPTERS.get(self.kind.name)
        return adapter.convert(value) if adapter else value


def python_type_of(sql_type: sa.types.TypeEngine[Any]) -> type | None:
    """The Python type of a column's values (None if unknown). Type decorators
    such as UTCDateTime report ``object`` unless they say otherwise, so look
    through them to their implementation."""
    if isinstance(sql_type, sa.types.TypeDecorator):
        own = sql_type.python_type
        if own is not object:
            return own
        sql_type = sql_type.impl_instance
    try:
        return sql_type.python_type
    except NotImplementedError:
        return None


# --------------------------------------------------------------------------- values

def _convert_none(o: Operand, raw: Any, env: ValueEnv) -> bool:
    if raw is None:
        return True
    if not isinstance(raw, bool):
        raise ValueProblem.one("value must be true or false (or left out, meaning true)")
    return raw


def _convert_scalar(o: Operand, raw: Any, env: ValueEnv) -> Any:
    if raw is None:
        raise ValueProblem.one("a value is required (to find empty values use "
                               "\"op\": \"is_empty\")")
    if isinstance(raw, (list, dict)) and o.kind.name not in FILTER_ADAPTERS:
        raise ValueProblem.one("value must be a single value, not a list or object")
    return o.convert(raw)


def _checked_list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise ValueProblem.one("value must be a list, e.g. [\"a\", \"b\"]")
    if not raw:
        raise ValueProblem.one("value must be a list of at least one item")
    if len(raw) > MAX_LIST_ITEMS:
        raise ValueProblem.one(f"value has {len(raw)} items; at most {MAX_LIST_ITEMS} allowed")
    return raw


def _each(raw: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    out: list[Any] = []
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        try:
            out.append(convert(item))
        except ValueProblem as exc:
            problems.extend((f"[{i}]{at}", m) for at, m in exc.problems)
    if problems:
        raise ValueProblem(problems)
    return out


def _convert_list(o: Operand, raw: Any, env: ValueEnv) -> list[Any]:
    items = _each(_checked_list(raw), lambda v: _convert_scalar(o, v, env))
    return list(dict.fromkeys(items))


def _convert_items(o: Operand, raw: Any, env: ValueEnv) -> list[Any]:
    """Items of a list-valued field (options, tags, linked record ids); the
    kind converts lists, so each item is converted as a one-item list."""
    if isinstance(raw, str):
        raw = [raw]
    converted = _each(_checked_list(raw), lambda v: o.convert([v], shown_as=v))
    items = list(dict.fromkeys(x for part in converted for x in part))
    if not items:
        raise ValueProblem.one("value must name at least one non-empty item")
    return items


def _convert_pair(o: Operand, raw: Any, env: ValueEnv) -> tuple[Any, Any]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueProblem.one("value must be a list of two values [from, to]")
    lo, hi = _each(raw, lambda v: _convert_scalar(o, v, env))
    if lo > hi:
        raise ValueProblem.one("the first value of between is greater than the second")
    return lo, hi


def _convert_text(o: Operand, raw: Any, env: ValueEnv) -> str:
    value = _convert_scalar(o, raw, env)
    if not isinstance(value, str) or not value:
        raise ValueProblem.one("value must be a non-empty text")
    return value


def _convert_range(o: Operand, raw: Any, env: ValueEnv) -> tuple[DayRange, str]:
    """A relative range or custom ``[from, to]`` dates → the local days, with
    the zone that turns them into instants for a date-time field."""
    try:
        return resolve_date_range(raw, today=env.today), env.timezone
    except DateRangeProblem as exc:
        raise ValueProblem.one(str(exc), exc.at) from None


def _convert_node(o: Operand, raw: Any, env: ValueEnv) -> list[str]:
    """A tree node -> the node's value and the values of all its descendants."""
    value = _convert_scalar(o, raw, env)
    options: list[fm.TreeOption] = getattr(o.field, "options", [])
    stack = list(options)
    while stack:
        node = stack.pop()
        if node.value == value:
            return [node.value, *fm.tree_values(node.children)]
        stack.extend(node.children)
    shown = ", ".join(fm.tree_values(options)[:10])
    raise ValueProblem.one(f"{value!r} is not an option of the tree (options include: {shown})")


def _convert_departments(o: Operand, raw: Any, env: ValueEnv) -> list[uuid.UUID]:
    """Department ids, not values of the (user) field; one id may be given
    alone (``{"$user": "department"}``)."""
    if isinstance(raw, str):
        raw = [raw]

    def one(item: Any) -> uuid.UUID:
        try:
            return uuid.UUID(str(item).strip())
        except ValueError:
            shown = repr(item) if len(repr(item)) <= 60 else repr(item)[:57] + "..."
            raise ValueProblem.one(f"{shown} is not a valid value: expected a department "
                                   "id") from None

    return list(dict.fromkeys(_each(_checked_list(raw), one)))


SHAPE_CONVERTERS: dict[ValueShape, Callable[[Operand, Any, ValueEnv], Any]] = {
    "none": _convert_none, "scalar": _convert_scalar, "list": _convert_list,
    "pair": _convert_pair, "range_spec": _convert_range,
}


# --------------------------------------------------------------------------- SQL

def complement(cond: Condition) -> Condition:
    """Two-valued NOT: true where ``cond`` is false *or NULL*. ``NOT x`` would
    stay NULL for a NULL column, so the row would match neither a condition
    nor its negation."""
    return cond.is_not(sa.true())


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def ilike(expr: sa.ColumnElement[Any], pattern: str) -> Condition:
    """Case-insensitive LIKE with ``\\`` as escape (ILIKE on PostgreSQL,
    lower() LIKE lower() on SQLite — SQLAlchemy renders both)."""
    return expr.ilike(pattern, escape="\\")


def _or_empty(o: Operand, cond: Condition) -> Condition:
    return sa.or_(o.value_expr.is_(None), cond)


def _compare(fn: Callable[[Any, Any], Any]) -> Callable[[Operand, Any], Condition]:
    return lambda o, v: fn(o.value_expr, v)


def _like(template: str, *, negate: bool = False) -> Callable[[Operand, Any], Condition]:
    def build(o: Operand, v: str) -> Condition:
        cond = ilike(o.value_expr, template.format(escape_like(v)))
        return _or_empty(o, sa.not_(cond)) if negate else cond
    return build


def empty_condition(o: Operand) -> Condition:
    """True where the field has no value: NULL, '' for texts, an empty JSON
    list/object (or JSON null), no join-table or sub-table rows."""
    if o.kind.storage == "join_table":
        link = o.tables.joins[o.field.key].alias()
        return ~sa.exists().where(link.c.source_id == o.record_id)
    if o.kind.storage == "child_table":
        child = o.tables.children[o.field.key].alias()
        return ~sa.exists().where(child.c.parent_id == o.record_id)
    col = o.column
    if isinstance(col.type, sa.JSON):
        return JsonEmpty(col)
    if isinstance(col.type, sa.String):
        return sa.or_(col.is_(None), col == "")
    return col.is_(None)


def _is_empty(o: Operand, v: bool) -> Condition:
    cond = empty_condition(o)
    return cond if v else sa.not_(cond)


def _contains(mode: Literal["any", "all"]) -> Callable[[Operand, Any], Condition]:
    def build(o: Operand, v: list[Any]) -> Condition:
        if o.kind.storage == "join_table":
            link = o.tables.joins[o.field.key].alias()
            linked = sa.select(link.c.source_id).where(link.c.target_id.in_(v))
            if mode == "all":
                linked = linked.group_by(link.c.source_id).having(
                    sa.func.count(sa.distinct(link.c.target_id)) == len(v))
            return o.record_id.in_(linked)
        return JsonArrayContains(o.column, [str(x) for x in v], mode=mode)
    return build


def _in_department(o: Operand, v: list[uuid.UUID]) -> Condition:
    # Membership is read as it is now (like the owner-based row scopes), so a
    # user moved to another department counts there from the next query on.
    ud = user_departments_table
    return o.value_expr.in_(sa.select(ud.c.user_id).where(ud.c.department_id.in_(v)))


def _date_range(o: Operand, v: tuple[DayRange, str]) -> Condition:
    """Dates compare as dates; a date-time lies from local midnight of the first
    day up to (not including) local midnight after the last, in the zone the
    caller gave (the organization's). An open end adds no bound, but an empty
    value never matches."""
    days, timezone = v
    expr = o.value_expr
    if o.python_type() is datetime:
        lo, hi = days.utc_bounds(timezone)
        bounds = [expr >= lo if lo is not None else None, expr < hi if hi is not None else None]
    elif days.start is not None and days.end is not None:
        return expr.between(days.start, days.end)
    else:
        bounds = [expr >= days.start if days.start is not None else None,
                  expr <= days.end if days.end is not None else None]
    conditions = [b for b in bounds if b is not None]
    return sa.and_(*conditions) if conditions else expr.is_not(None)


# --------------------------------------------------------------------------- registry

def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Operator:
    key: str
    label: dict[str, str]
    value_shape: ValueShape
    compile: Callable[[Operand, Any], Condition]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    # Does an empty value (no value, or a broken relation path) satisfy the
    # condition, given the converted value? Decides how relation paths compile.
    matches_empty: Callable[[Any], bool] = _never
    # Overrides the value shape's converter (text search, list items, trees).
    convert: Callable[[Operand, Any, ValueEnv], Any] | None = None

    def convert_value(self, o: Operand, raw: Any, env: ValueEnv) -> Any:
        return (self.convert or SHAPE_CONVERTERS[self.value_shape])(o, raw, env)


_OPERATORS = [
    Operator("eq", {"zh": "等于", "en": "equals"}, "scalar", _compare(pyop.eq),
             {"zh": "字段值等于给定值（文本须完全一致，区分大小写）。",
              "en": "The value equals the given value (texts: exact, case-sensitive)."}),
    Operator("ne", {"zh": "不等于", "en": "does not equal"}, "scalar",
             lambda o, v: _or_empty(o, o.value_expr != v),
             {"zh": "字段值不等于给定值，或为空。",
              "en": "The value differs from the given value or is empty."}, _always),
    Operator("lt", {"zh": "小于", "en": "less than"}, "scalar", _compare(pyop.lt),
             {"zh": "字段值小于给定值（日期：早于给定日期）。",
              "en": "The value is less than the given value (earlier, for dates)."}),
    Operator("lte", {"zh": "小于等于", "en": "at most"}, "scalar", _compare(pyop.le),
             {"zh": "字段值小于或等于给定值。",
              "en": "The value is less than or equal to the given value."}),
    Operator("gt", {"zh": "大于", "en": "greater than"}, "scalar", _compare(pyop.gt),
             {"zh": "字段值大于给定值（日期：晚于给定日期）。",
              "en": "The value is greater than the given value (later, for dates)."}),
    Operator("gte", {"zh": "大于等于", "en": "at least"}, "scalar", _compare(pyop.ge),
             {"zh": "字段值大于或等于给定值。",
              "en": "The value is greater than or equal to the given value."}),
    Operator("in", {"zh": "属于", "en": "is any of"}, "list",
             lambda o, v: o.value_expr.in_(v),
             {"zh": "字段值等于所列值中的任意一个（最多 1000 个）。",
              "en": "The value equals one of the listed values (at most 1000)."}),
    Operator("not_in", {"zh": "不属于", "en": "is none of"}, "list",
             lambda o, v: _or_empty(o, o.value_expr.not_in(v)),
             {"zh": "字段值不等于所列的任何一个值，或为空。",
              "en": "The value equals none of the listed values, or is empty."}, _always),
    Operator("contains", {"zh": "包含", "en": "contains"}, "scalar", _like("%{}%"),
             {"zh": "文本中包含给定文本，不区分大小写。",
              "en": "The text contains the given text, ignoring case."},
             convert=_convert_text),
    Operator("not_contains", {"zh": "不包含", "en": "does not contain"}, "scalar",
             _like("%{}%", negate=True),
             {"zh": "文本中不包含给定文本（不区分大小写），或为空。",
              "en": "The text does not contain the given text (ignoring case), or is empty."},
             _always, convert=_convert_text),
    Operator("starts_with", {"zh": "开头是", "en": "starts with"}, "scalar", _like("{}%"),
             {"zh": "文本以给定文本开头，不区分大小写。",
              "en": "The text starts with the given text, ignoring case."},
             convert=_convert_text),
    Operator("ends_with", {"zh": "结尾是", "en": "ends with"}, "scalar", _like("%{}"),
             {"zh": "文本以给定文本结尾，不区分大小写。",
              "en": "The text ends with the given text, ignoring case."},
             convert=_convert_text),
    Operator("between", {"zh": "介于", "en": "between"}, "pair",
             lambda o, v: o.value_expr.between(v[0], v[1]),
             {"zh": "字段值介于两个给定值之间（包含两端）。",
              "en": "The value lies between the two given values, both included."}),
    Operator("is_empty", {"zh": "为空", "en": "is empty"}, "none", _is_empty,
             {"zh": "值为 true（默认）时：字段没有值（无值、空文本或空列表）；值为 false "
                    "时：字段有值。",
              "en": "With true (the default): the field has no value (nothing, empty text, "
                    "empty list). With false: it has one."}, lambda v: v is True),
    Operator("contains_any", {"zh": "包含任一", "en": "contains any of"}, "list",
             _contains("any"),
             {"zh": "列表类字段（多选、标签、多对多关联）至少包含给定项中的一项。",
              "en": "The list field (multi-select, tags, multi-relation) holds at least one "
                    "of the given items."}, convert=_convert_items),
    Operator("contains_all", {"zh": "包含全部", "en": "contains all of"}, "list",
             _contains("all"),
             {"zh": "列表类字段包含给定的全部项（也可以还有其他项）。",
              "en": "The list field holds every one of the given items (and maybe more)."},
             convert=_convert_items),
    Operator("under", {"zh": "属于分类", "en": "is under"}, "scalar",
             lambda o, v: o.value_expr.in_(v),
             {"zh": "树形选择：字段值是给定节点或其下级的任一节点。",
              "en": "Tree select: the value is the given node or any node below it."},
             convert=_convert_node),
    Operator("in_department", {"zh": "所在部门属于", "en": "is in department"}, "list",
             _in_department,
             {"zh": "人员字段（负责人 owner、创建人 created_by 等）：该人员当前属于给定"
                    "部门（部门 ID）之一。写作 {\"$user\": \"department_tree\"} 时即 "
                    "department_tree 数据范围（本部门及下级部门），可与其他条件组合使用。",
              "en": "A user field (owner, created_by, …): the user is now a member of one "
                    "of the given departments (ids). With {\"$user\": \"department_tree\"} "
                    "this is the department_tree scope, so it can be combined with other "
                    "conditions."},
             convert=_convert_departments),
    Operator("date_range", {"zh": "日期范围", "en": "in date range"}, "range_spec",
             _date_range,
             {"zh": "日期落在组织时区的某段日期内：可以是相对今天的范围，如 \"this_month\" "
                    "或 {\"last_n_days\": 7}；也可以是自定义日期 [起, 止]，如 "
                    "[\"2026-01-01\", \"2026-03-31\"]（包含首尾两天；null 表示该端不限）。",
              "en": "The date falls in a range of local days in the organization's time "
                    "zone: relative to today, e.g. \"this_month\" or {\"last_n_days\": 7}, or "
                    "custom dates [from, to] such as [\"2026-01-01\", \"2026-03-31\"] (both "
                    "days included; null leaves an end open)."}),
]

OPERATORS: dict[str, Operator] = {op.key: op for op in _OPERATORS}


def allowed_operators(kind: FieldKind, field: fm.FieldBase) -> tuple[str, ...]:
    """The operators a field accepts: its kind's ``filter_ops``; a kind that
    stores another kind's values (formula, rollup) also needs them to suit that kind."""
    ops = kind.filter_ops
    result_kind = getattr(kind, "result_kind", None)
    if callable(result_kind):
        inner = result_kind(field).filter_ops
        ops = tuple(op for op in ops if op in inner)
    return ops


def operator_catalog() -> list[dict[str, Any]]:
    """JSON-able entries for the metadata endpoint and the filter builder UI;
    the ``range_spec`` operator lists its relative date ranges and the forms of
    value it takes (``value_forms``: ``range`` — one of ``ranges`` — and
    ``from_to``, custom dates), as a report's date_range parameter does."""
    out: list[dict[str, Any]] = []
    for op in OPERATORS.values():
        entry: dict[str, Any] = {
            "key": op.key, "label": op.label, "value_shape": op.value_shape,
            "description": op.description,
            "field_types": [k.name for k in FIELD_KINDS.values() if op.key in k.filter_ops]}
        if op.value_shape == "range_spec":
            entry["value_forms"] = ["range", "from_to"]
            entry["ranges"] = date_range_catalog()
        out.append(entry)
    return out


# --------------------------------------------------------------------------- dialect constructs
# The only places of the filter language that render differently per dialect.


class JsonArrayContains(sa.ColumnElement[bool]):
    """The JSON array in ``column`` holds any (or all) of the given strings.

    PostgreSQL: jsonb ``?|`` / ``@>`` (index-friendly with a GIN index);
    SQLite: ``json_each`` in a subquery.
    """

    # Values become bound parameters when rendered, so statements holding this
    # construct are not cached; filters vary per request anyway.
    inherit_cache = False
    _is_implicitly_boolean = True  # SQLite: no "= 1" appended in WHERE
    type = sa.Boolean()

    def __init__(self, column: sa.ColumnElement[Any], values: list[str], *,
                 mode: Literal["any", "all"]) -> None:
        self.column = column
        self.values = values
        self.mode = mode

    @property
    def _from_objects(self) -> list[Any]:  # type: ignore[override]
        return self.column._from_objects

    def get_children(self, **kw: Any) -> list[Any]:  # type: ignore[override]
        return [self.column]


@compiles(JsonArrayContains, "postgresql")
def _json_contains_pg(element: JsonArrayContains, compiler: SQLCompiler, **kw: Any) -> str:
    doc = sa.type_coerce(element.column, JSONB)
    if element.mode == "any":
        cond = doc.has_any(sa.bindparam(None, element.values, type_=ARRAY(sa.Text())))
    else:
        cond = doc.contains(sa.bindparam(None, element.values, type_=JSONB()))
    return compiler.process(cond, **kw)


@compiles(JsonArrayContains, "sqlite")
@compiles(JsonArrayContains)  # str(statement) without a dialect, for logs and debugging
def _json_contains_sqlite(element: JsonArrayContains, compiler: SQLCompiler, **kw: Any) -> str:
    items = sa.func.json_each(element.column).table_valued("value")
    matching = sa.select(items.c.value).where(items.c.value.in_(element.values))
    cond: Condition
    if element.mode == "any":
        cond = matching.exists()
    else:
        found = sa.select(sa.func.count(sa.distinct(items.c.value))) \
            .where(items.c.value.in_(element.values)).scalar_subquery()
        cond = found == len(set(element.values))
    return compiler.process(cond, **kw)


class JsonEmpty(sa.ColumnElement[bool]):
    """The JSON column is SQL NULL, JSON null, ``[]`` or ``{}``."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]
    _is_implicitly_boolean = True
    type = sa.Boolean()

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        self.column = column

    @property
    def _from_objects(self) -> list[Any]:  # type: ignore[override]
        return self.column._from_objects

    def get_children(self, **kw: Any) -> list[Any]:  # type: ignore[override]
        return [self.column]


@compiles(JsonEmpty, "postgresql")
def _json_empty_pg(element: JsonEmpty, compiler: SQLCompiler, **kw: Any) -> str:
    col = compiler.process(element.column, **kw)
    return f"({col} IS NULL OR {col} IN ('null'::jsonb, '[]'::jsonb, '{{}}'::jsonb))"


@compiles(JsonEmpty, "sqlite")
@compiles(JsonEmpty)
def _json_empty_sqlite(element: JsonEmpty, compiler: SQLCompiler, **kw: Any) -> str:
    col = compiler.process(element.column, **kw)
    return f"({col} IS NULL OR json({col}) IN ('null', '[]', '{{}}'))"
