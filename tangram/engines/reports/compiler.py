"""Compile a report definition into one SQLAlchemy Core statement.

The statement has this shape (every part built from validated keys and bound
parameters only)::

    WITH g AS (                        -- one row per group
      SELECT d_…, m_…  FROM (          -- base: one row per source record
          SELECT <dimension values> AS d_…, <measure inputs> AS m_…
          FROM form LEFT JOIN <to-one path targets, aliased per path>
                    LEFT JOIN (<to-many path pre-aggregated per record>)
          WHERE live AND <viewer's row scope> AND <filter with parameters>)
      GROUP BY d_…)
    SELECT d_…, m_…, <ratio / share / running total / change>, _pos, 0 AS _grand
      FROM g [LEFT JOIN g AS prev ON <previous period>]   -- ranked, cut at limit
    UNION ALL
    SELECT NULL…, <totals>, NULL, 1 FROM (<measures re-aggregated from g, or from base>)
    ORDER BY _grand, _pos

Dimension and measure keys become column names ``d_<key>`` / ``m_<key>``.
The viewer's row scope (``ctx.policy.row_predicate``) is in the WHERE and in
the ON clause of every joined form; a field the viewer may not read refuses
the report (``PermissionDenied`` naming the JSON path).

>>> compiled = compile_report(ctx, app="crm", report=report, parameters={"period": "this_year"})
>>> sql_text, params = compiled.sql(engine.dialect)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import util as sql_util

from tangram.db.types import ExactDecimal
from tangram.engines.context import EngineContext
from tangram.engines.directory import departments_table, users_table
from tangram.engines.expressions import ExpressionError
from tangram.engines.forms.query import FilterInvalid, QueryContext, compile_filter
from tangram.engines.forms.registry import FormRuntime, app_runtimes
from tangram.engines.forms.tables import FormTables
from tangram.engines.reports import calculated as calc
from tangram.engines.reports import registry as reg
from tangram.engines.reports.dialect import AsFloat, BinIndex, DateBucket, ShiftPeriod, supports
from tangram.engines.reports.params import (
    ParameterInvalid,
    filter_field_paths,
    filter_fields,
    parameter_conditions,
    pinned_days,
    referenced_parameters,
    rename_links,
    resolve_parameters,
    substitute,
)
from tangram.engines.reports.paths import (
    FieldRef,
    PathProblem,
    PathResolver,
    SubTableRows,
    sub_table_rows,
)
from tangram.errors import DefinitionInvalid, ErrorItem, PermissionDenied
from tangram.metamodel import reports as rm

Expr = sa.ColumnElement[Any]

# Decimals of an average or median of integers (of an integer field or an
# expression without decimals); a decimal number's keeps its own decimals.
MEAN_DECIMALS = 2

# Constant markers of the result rows, written into the SQL (no parameters).
_ZERO = sa.literal_column("0", sa.Integer)
_ONE = sa.literal_column("1", sa.Integer)


@dataclass
class OutputColumn:
    """One dimension or measure of the result."""

    key: str
    role: Literal["dimension", "measure"]
    label: dict[str, str]
    value_class: str  # registry value class; measures: "count" | "float" | the field's
    definition: Any
    ref: FieldRef | None = None
    calc: CalcRef | None = None  # a calculated field (``expression``) instead of ``ref``
    scale: int | None = None  # decimals of Decimal values
    label_column: bool = False  # a d_<key>__label column carries display names
    path: str = "$"  # JSON path of what computes it ($.measures[1].expression)

    @property
    def column(self) -> str:
        return ("d_" if self.role == "dimension" else "m_") + self.key


@dataclass
class CalcRef:
    """A checked calculated field: its result class, scale and the fields it reads."""

    source: str
    value_class: str  # number, text, boolean, date, datetime, reference
    scale: int
    column_type: Any
    refs: list[FieldRef]


@dataclass
class CompiledReport:
    report: rm.Report
    app: str
    statement: sa.Select[Any] | sa.CompoundSelect[Any]
    columns: list[OutputColumn]
    forms: tuple[str, ...]  # forms whose rows are read (their data versions key caches)
    parameters: dict[str, Any]
    dialect_name: str
    # The report's filter with the parameters' values, in the records filter
    # language on the report's form (drill-down starts from it); a relative
    # date range is written as the dates it covered (``params.pinned_days``).
    filter: Any = None
    _sql: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(
        default_factory=dict, repr=False, compare=False)

    @property
    def dimensions(self) -> list[OutputColumn]:
        return [c for c in self.columns if c.role == "dimension"]

    @property
    def measures(self) -> list[OutputColumn]:
        return [c for c in self.columns if c.role == "measure"]

    def sql(self, dialect: Dialect) -> tuple[str, dict[str, Any]]:
        """The SQL text with placeholders, and the parameters apart (compiled
        once per dialect: a cached report answers from memory)."""
        key = (dialect.name, dialect.paramstyle)
        found = self._sql.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            found = self._sql[key] = (str(compiled), dict(compiled.params))
        return found[0], dict(found[1])


# --------------------------------------------------------------------------- validation

class _Checker:
    """Validates a report against the app's forms, collecting every error."""

    def __init__(self, ctx: EngineContext, app: str, report: rm.Report,
                 runtimes: Mapping[str, FormRuntime], dialect_name: str) -> None:
        self.ctx, self.app, self.report, self.dialect_name = ctx, app, report, dialect_name
        self.runtimes = runtimes
        self.errors: list[ErrorItem] = []
        self.hidden: list[ErrorItem] = []
        self.refs: dict[str, FieldRef] = {}  # JSON path of the field -> resolved
        self.calcs: dict[str, CalcRef] = {}  # JSON path of the expression -> checked
        self._access: dict[str, Mapping[str, str]] = {}
        root = runtimes.get(report.form)
        self.root: FormTables | None = root.tables if root else None
        # What one row of the base query is: a record of the form, or a row of
        # one of its sub-tables ("rows"), described like a form.
        self.rows: SubTableRows | None = None
        self.source: FormTables | None = self.root
        if self.root is not None and report.rows is not None:
            try:
                self.rows = sub_table_rows(self.root, report.rows)
                self.source = self.rows.tables
            except PathProblem as exc:
                self.error(exc.code, "$.rows", exc.message)
                self.source = None
        self.resolver = (PathResolver(self.source, self._resolve, self.rows,
                                      hidden=self.hidden_keys)
                         if self.source is not None else None)

    def access(self, form: str) -> Mapping[str, str]:
        if form not in self._access:
            self._access[form] = self.ctx.policy.field_access(self.ctx.actor, self.app, form)
        return self._access[form]

    def hidden_keys(self, form: str) -> set[str]:
        """The fields of ``form`` the viewer may not see: left out of the field
        lists and suggestions of unknown-field messages."""
        return {k for k, v in self.access(form).items() if v == "hidden"}

    def _resolve(self, key: str) -> FormTables:
        rt = self.runtimes.get(key)
        if rt is None:
            raise LookupError(f"form {key!r} is not published in app {self.app!r}")
        return rt.tables

    def error(self, code: str, path: str, message: str) -> None:
        self.errors.append(ErrorItem(code=code, path=path, message=message))

    def field(self, path_text: str, at: str) -> FieldRef | None:
        if self.resolver is None:
            return None
        try:
            ref = self.resolver.resolve(path_text)
        except PathProblem as exc:
            self.error(exc.code, at, exc.message)
            return None
        self.check_access(ref, at)
        self.refs[at] = ref
        return ref

    def calc(self, source: str, at: str) -> CalcRef | None:
        """Check a calculated field against the forms (paths, access, types)."""
        if self.resolver is None:
            return None
        refs: list[FieldRef] = []
        resolver = self.resolver

        def lookup(path: str, position: int | None) -> calc.Typed:
            try:
                ref = resolver.resolve(path)
            except PathProblem as exc:
                raise calc.CalcProblem(exc.code, f"record.{path}: {exc.message}",
                                       position) from None
            if ref.to_many_at is not None:
                raise calc.CalcProblem("to_many_not_allowed", f"record.{path} goes through a "
                                       "sub-table or multi-relation; a calculated field reads "
                                       "one value per record", position)
            self.check_access(ref, at)
            refs.append(ref)
            return field_value(ref, sa.null(), position)

        try:
            typed = calc.translate(source, field=lookup, today=self.ctx.today(),
                                   now=self.ctx.now(), timezone=self.ctx.timezone)
        except ExpressionError as exc:
            self.errors.append(exc.as_error_item(at))
            return None
        except calc.CalcProblem as exc:
            self.error(exc.code, at, calc_message(source, exc))
            return None
        if typed.cls == calc.NULL:
            self.error("expression_type", at, f"the expression {source!r} is always empty")
            return None
        found = CalcRef(source=source, value_class=typed.cls, scale=typed.scale,
                        column_type=calc.output_type(typed), refs=refs)
        self.calcs[at] = found
        return found

    def check_access(self, ref: FieldRef, at: str) -> None:
        for form, key in ref.fields_touched():
            if self.access(form).get(key) == "hidden":
                self.hidden.append(ErrorItem(
                    code="field_hidden", path=at, message=f"{ref.path!r} reads field "
                    f"{form}.{key}, which you may not see", details={"field": f"{form}.{key}"}))
                return

    def date_range_conditions(self) -> None:
        """A date_range parameter feeds a ``date_range`` condition (or ``between``,
        which ``params.substitute`` compiles as one) on a date or date-time field:
        no other operator takes its values. Checked here because validation
        leaves conditions fed by parameters out (they have no value)."""
        r = self.report
        ranges = {p.key for p in r.parameters if p.type == "date_range"}
        for at, cond in parameter_conditions(r.filter, "$.filter"):
            key = cond["value"]["$param"]
            if not isinstance(key, str) or key not in ranges or self.resolver is None:
                continue
            try:
                ref = self.resolver.resolve(cond["field"])
            except PathProblem:
                continue  # reported with the other filter fields
            if ref.value_class not in (reg.DATE, reg.DATETIME):
                self.error("not_a_date", f"{at}.field", f"date_range parameter {key!r} needs "
                           f"a date or date-time field; {cond['field']!r} is a "
                           f"{ref.kind.name} field")
            elif cond.get("op") not in ("date_range", "between"):
                self.error("operator_not_allowed", f"{at}.op", f"date_range parameter {key!r} "
                           f"feeds operator date_range (or between), not {cond.get('op')!r}: "
                           "no other operator takes date ranges")

    def run(self) -> None:
        r = self.report
        if self.root is None:
            self.error("form_not_found", "$.form", f"form {r.form!r} is not published in app "
                       f"{self.app!r}; published: {', '.join(sorted(self.runtimes)) or 'none'}")
            return
        if self.rows is not None:
            access = self.ctx.policy.field_access(self.ctx.actor, self.app, r.form)
            if access.get(self.rows.field.key) == "hidden":
                self.hidden.append(ErrorItem(
                    code="field_hidden", path="$.rows", message=f"the rows of sub-table "
                    f"{r.form}.{self.rows.field.key}, which you may not see",
                    details={"field": f"{r.form}.{self.rows.field.key}"}))
        keys: dict[str, str] = {}
        for i, d in enumerate(r.dimensions):
            self._unique(keys, d.key, f"$.dimensions[{i}].key")
            self.dimension(d, f"$.dimensions[{i}]")
        for i, m in enumerate(r.measures):
            self._unique(keys, m.key, f"$.measures[{i}].key")
        for i, m in enumerate(r.measures):
            self.measure(m, f"$.measures[{i}]")
        params = {p.key for p in r.parameters}
        for i, p in enumerate(r.parameters):
            if [q.key for q in r.parameters].count(p.key) > 1:
                self.error("duplicate_key", f"$.parameters[{i}].key",
                           f"parameter key {p.key!r} appears twice")
        for at, key in referenced_parameters(r.filter, "$.filter"):
            if key not in params:
                self.error("unknown_parameter", at, f"the filter uses parameter {key!r}, which "
                           f"is not declared; parameters: {', '.join(sorted(params)) or 'none'}")
        for at, path_text in filter_field_paths(r.filter, "$.filter"):
            if self.resolver is not None:
                try:
                    ref = self.resolver.resolve(path_text)
                except PathProblem as exc:
                    # Over sub-table rows the filter compiler knows no parent
                    # names or to-many rule: report the path here. Otherwise it
                    # reports it itself, with the same path.
                    if self.rows is not None:
                        self.error(exc.code, at, exc.message)
                    continue
                self.check_access(ref, at)
        self.date_range_conditions()
        self.sort_and_limit()
        self.pivot()
        self.chart()

    def _unique(self, keys: dict[str, str], key: str, at: str) -> None:
        if key in keys:
            self.error("duplicate_key", at, f"key {key!r} is already used at {keys[key]}; "
                       "dimension and measure keys must be unique")
        keys.setdefault(key, at)

    def dimension(self, d: rm.Dimension, at: str) -> None:
        if d.expression is not None:
            self.calc_dimension(d, f"{at}.expression")
            return
        assert d.field is not None
        ref = self.field(d.field, f"{at}.field")
        if ref is None:
            return
        if ref.to_many_at is not None:
            self.error("to_many_dimension", f"{at}.field", f"{d.field!r} goes through a "
                       "sub-table or multi-relation; group by it in a report whose rows are "
                       "those records, or aggregate it in a measure")
        cls = ref.value_class
        if getattr(d, "by", None) == "department" and ref.kind.name != "user":
            self.error("not_a_user", f"{at}.by", f"grouping by department needs a user "
                       f"field (owner, created_by, …); {d.field!r} is a {ref.kind.name} field")
        if isinstance(d, rm.DateDimension) and cls not in (reg.DATE, reg.DATETIME):
            self.error("not_a_date", f"{at}.field", f"date buckets need a date or date-time "
                       f"field; {d.field!r} is a {ref.kind.name} field")
        elif isinstance(d, rm.BinDimension):
            if cls != reg.NUMBER:
                self.error("not_a_number", f"{at}.field", f"bins need a number field; "
                           f"{d.field!r} is a {ref.kind.name} field")
            else:
                self.bin_bounds(d, at, _scale(ref), "the field")
        elif cls in (reg.LIST, reg.TIME) or (cls == reg.TEXT and not ref.kind.sortable):
            self.error("not_groupable", f"{at}.field", f"cannot group by {d.field!r}, a "
                       f"{ref.kind.name} field")

    def calc_dimension(self, d: rm.Dimension, at: str) -> None:
        assert d.expression is not None
        found = self.calc(d.expression, at)
        if found is None:
            return
        cls = found.value_class
        if isinstance(d, rm.DateDimension) and cls not in (reg.DATE, reg.DATETIME):
            self.error("not_a_date", at, f"date buckets need a date or date-time; the "
                       f"expression gives a {cls}")
        elif isinstance(d, rm.BinDimension):
            if cls != reg.NUMBER:
                self.error("not_a_number", at, f"bins need a number; the expression gives a "
                           f"{cls}")
                return
            self.bin_bounds(d, at.rsplit(".", 1)[0], found.scale, "the expression")

    def bin_bounds(self, d: rm.BinDimension, at: str, scale: int, what: str) -> None:
        """A bin's width and origin have no more decimals than its number and
        are in the range the database computes in (``calc.fits``): SQLite
        computes bins in scaled 64-bit integers."""
        for name in ("width", "origin"):
            value: Decimal = getattr(d, name)
            if not calc.fits(value, scale):
                self.error("out_of_range", f"{at}.{name}", f"{name} {value} is out of "
                           f"range: {calc.range_message(scale)}")
            elif value != value.quantize(Decimal(1).scaleb(-scale)):
                self.error("invalid_bin", f"{at}.{name}", f"{name} {value} has more "
                           f"decimals than {what} ({scale})")

    def measure(self, m: rm.Measure, at: str) -> None:
        r = self.report
        if isinstance(m, rm.FieldMeasure):
            kind = reg.MEASURES[m.agg]
            if kind.capability and not supports(self.dialect_name, kind.capability):
                self.error("not_supported", f"{at}.agg", f"{m.agg} is not available on "
                           f"{self.dialect_name}; it needs PostgreSQL")
            if m.expression is not None:
                found = self.calc(m.expression, f"{at}.expression")
                if found is not None and kind.accepts and found.value_class not in kind.accepts:
                    self.error("aggregate_not_allowed", f"{at}.expression", f"{m.agg} cannot "
                               f"aggregate a {found.value_class}; it takes "
                               f"{', '.join(sorted(kind.accepts))} values")
                return
            if m.field is None:
                return
            ref = self.field(m.field, f"{at}.field")
            if ref is None:
                return
            if kind.accepts and ref.value_class not in kind.accepts:
                self.error("aggregate_not_allowed", f"{at}.field", f"{m.agg} cannot aggregate "
                           f"{m.field!r}, a {ref.kind.name} field; it takes "
                           f"{', '.join(sorted(kind.accepts))} fields")
            elif ref.kind.storage != "column":
                self.error("aggregate_not_allowed", f"{at}.field", f"{m.field!r} is a "
                           f"{ref.kind.name} field; aggregate a field inside it instead")
            if ref.to_many_at is not None and kind.parts is None:
                self.error("to_many_not_allowed", f"{at}.field", f"{m.agg} cannot go through "
                           f"a sub-table or multi-relation ({m.field!r}); use count, sum, avg, "
                           "min or max")
            return
        measures = {x.key: x for x in r.measures}
        derived = reg.DERIVED[m.agg]
        for attr in derived.references:
            target = getattr(m, attr)
            other = measures.get(target)
            if other is None or not isinstance(other, rm.FieldMeasure):
                self.error("unknown_measure", f"{at}.{attr}", f"{attr} must name a field "
                           f"measure of this report (count, sum, …), not {target!r}")
        if isinstance(m, rm.RunningTotalMeasure | rm.ChangeMeasure):
            along = m.along or _first_date_dimension(r)
            dims = {d.key: d for d in r.dimensions}
            if along is None or along not in dims:
                self.error("invalid_along", f"{at}.along", f"{m.agg} needs a dimension to run "
                           "along (along: a dimension key; default: the first date dimension)")
            elif isinstance(m, rm.ChangeMeasure) and not isinstance(dims[along],
                                                                    rm.DateDimension):
                self.error("invalid_along", f"{at}.along", "change compares with the previous "
                           f"period: {along!r} must be a date dimension")
            if r.others:
                self.error("not_with_others", f"{at}.agg", f"{m.agg} cannot be combined with "
                           "others (the others row has no place in a sequence)")

    def sort_and_limit(self) -> None:
        r = self.report
        known = {d.key for d in r.dimensions} | {m.key for m in r.measures}
        field_keys = {d.key for d in r.dimensions} | {
            m.key for m in r.measures if isinstance(m, rm.FieldMeasure)}
        for i, spec in enumerate(r.sort):
            key = spec.lstrip("-")
            if key not in known:
                self.error("unknown_key", f"$.sort[{i}]", f"sort names {key!r}, which is no "
                           f"dimension or measure; keys: {', '.join(sorted(known))}")
            elif r.others and key not in field_keys:
                self.error("not_with_others", f"$.sort[{i}]", "with others, sort by a "
                           "dimension or a field measure")
        if r.others:
            if r.limit is None:
                self.error("others_needs_limit", "$.others", "others needs a limit (top N)")
            if not r.dimensions:
                self.error("others_needs_limit", "$.others", "others needs a dimension")
            for i, m in enumerate(r.measures):
                if isinstance(m, rm.FieldMeasure) and reg.MEASURES[m.agg].parts is None:
                    self.error("not_with_others", f"$.measures[{i}].agg", f"{m.agg} cannot "
                               "be re-aggregated into an others row; remove others or use "
                               "another measure")

    def pivot(self) -> None:
        p = self.report.pivot
        if p is None:
            return
        dims = [d.key for d in self.report.dimensions]
        for part in ("rows", "columns"):
            for i, key in enumerate(getattr(p, part)):
                if key not in dims:
                    self.error("unknown_key", f"$.pivot.{part}[{i}]", f"{key!r} is not a "
                               f"dimension; dimensions: {', '.join(dims)}")
        if sorted(p.rows + p.columns) != sorted(dims):
            self.error("invalid_pivot", "$.pivot", "pivot rows and columns must together "
                       "name every dimension exactly once")

    def chart(self) -> None:
        from tangram.engines.reports.charts import CHART_TYPES

        chart = self.report.chart
        kind = CHART_TYPES[chart.type]
        dims = {d.key for d in self.report.dimensions}
        measures = {m.key for m in self.report.measures}
        for role, wants in kind.roles.items():
            value = getattr(chart, role, None)
            for i, key in enumerate(value if isinstance(value, list) else [value]):
                if key is None:
                    continue
                allowed = (dims if wants == "dimension" else measures if wants == "measure"
                           else dims | measures)
                if key not in allowed:
                    at = f"$.chart.{role}" + (f"[{i}]" if isinstance(value, list) else "")
                    self.error("unknown_key", at, f"{role} must name a {wants.replace('_', ' ')}"
                               f" of this report, not {key!r}")


def field_value(ref: FieldRef, column: Expr, position: int | None) -> calc.Typed:
    """A field read by a calculated field, with its class and scale."""
    cls = ref.value_class
    if ref.kind.storage != "column" or cls not in (reg.NUMBER, reg.TEXT, reg.BOOL, reg.DATE,
                                                   reg.DATETIME, reg.REFERENCE):
        raise calc.CalcProblem("expression_type", f"record.{ref.path} is a {ref.kind.name} "
                               "field, which a calculated field cannot read", position)
    if cls == reg.NUMBER:
        col_type = ref.kind.column_type(ref.field)
        if isinstance(col_type, ExactDecimal):
            return calc.Typed(column, calc.NUMBER, col_type.scale)
        if not isinstance(col_type, sa.Integer):
            raise calc.CalcProblem("expression_type", f"record.{ref.path} is not an exact "
                                   "number", position)
        return calc.Typed(column, calc.NUMBER, 0)
    return calc.Typed(column, cls)


def calc_message(source: str, exc: calc.CalcProblem) -> str:
    where = f" at position {exc.position}" if exc.position is not None else ""
    return f"in expression {source!r}{where}: {exc.message}"


def _key_label(key: str) -> dict[str, str]:
    return {"zh": key, "en": key}


def _first_date_dimension(r: rm.Report) -> str | None:
    return next((d.key for d in r.dimensions if isinstance(d, rm.DateDimension)), None)


def _scale(ref: FieldRef | None) -> int:
    if ref is None:
        return 0
    col_type = ref.kind.column_type(ref.field)
    return col_type.scale if isinstance(col_type, ExactDecimal) else 0


# --------------------------------------------------------------------------- SQL

class _From:
    """The FROM clause of the base query: the source table and left joins to
    every form a to-one path reaches (one alias per path prefix), each joined
    row also limited to live records in the viewer's scope."""

    def __init__(self, root: sa.FromClause, scope: Callable[[FormTables, sa.FromClause],
                                                             Expr | None]) -> None:
        self.root = root
        self.clause: sa.FromClause = root
        self.scope = scope
        self._aliases: dict[tuple[Any, ...], sa.FromClause] = {}

    def source(self, steps: tuple[Any, ...], start: sa.FromClause | None = None
               ) -> sa.FromClause:
        src = start if start is not None else self.root
        key: tuple[Any, ...] = (id(src),)
        for step in steps:
            key = (*key, step.link)
            alias = self._aliases.get(key)
            if alias is None:
                alias = step.table.alias(f"j{len(self._aliases) + 1}")
                cond = [alias.c.id == src.c[step.link], alias.c.deleted_at.is_(None)]
                scoped = self.scope(step.tables, alias)
                if scoped is not None:
                    cond.append(scoped)
                self.clause = self.clause.outerjoin(alias, sa.and_(*cond))
                self._aliases[key] = alias
            src = alias
        return src

    def lookup(self, table: sa.Table, expr: Expr, column: str) -> Expr:
        """A column of a directory row (user's display name) joined on ``expr``."""
        alias = table.alias(f"j{len(self._aliases) + 1}")
        self._aliases[(id(alias),)] = alias
        self.clause = self.clause.outerjoin(alias, alias.c.id == expr)
        return alias.c[column]


class _Builder:
    def __init__(self, ctx: EngineContext, app: str, report: rm.Report, checker: _Checker,
                 filter_condition: Expr | None) -> None:
        self.ctx, self.app, self.report, self.checker = ctx, app, report, checker
        assert checker.root is not None and checker.source is not None
        self.root = checker.root
        self.rows = checker.rows
        self.table = checker.source.table  # a sub-table's rows: the child table
        self.forms: set[str] = {self.root.form.key}
        self.filter_condition = filter_condition
        self.columns: list[OutputColumn] = []
        self.from_ = _From(self.table, self._scope)
        if self.rows is not None:
            # Rows of a sub-table: inner-joined to their record (the form's own
            # table, so its row scope applies unchanged); "parent.x" reuses it.
            link = self.table.c[self.rows.link]
            self.from_.clause = self.table.join(owner := self.root.table, owner.c.id == link)
            self.from_._aliases[(id(self.table), self.rows.link)] = owner
        self.partials: dict[str, dict[str, str]] = {}  # measure key -> part -> base column

    def _scope(self, tables: FormTables, alias: sa.FromClause) -> Expr | None:
        self.forms.add(tables.form.key)
        pred = self.ctx.policy.row_predicate(self.ctx.actor, self.app, tables.form.key,
                                             tables.table, "read")
        if pred is None:
            return None
        return sql_util.ClauseAdapter(alias).traverse(pred)

    # ---- base: one row per source record
    def base(self) -> sa.Subquery:
        cols: list[Expr] = []
        for i, d in enumerate(self.report.dimensions):
            if d.expression is not None:
                found = self.checker.calcs[f"$.dimensions[{i}].expression"]
                out = OutputColumn(d.key, "dimension", d.label or _key_label(d.key),
                                   found.value_class, d, calc=found, scale=found.scale)
                cols.extend(self._dimension(d, self._calc_value(found), None, out))
            else:
                ref = self.checker.refs[f"$.dimensions[{i}].field"]
                out = OutputColumn(d.key, "dimension", d.label or ref.field.label,
                                   ref.value_class, d, ref=ref, scale=_scale(ref))
                cols.extend(self._dimension(d, self.from_.source(ref.steps).c[ref.field.key],
                                            ref, out))
            out.path = f"$.dimensions[{i}]." + ("expression" if d.expression else "field")
            self.columns.append(out)
        for i, m in enumerate(self.report.measures):
            mref = self.checker.refs.get(f"$.measures[{i}].field")
            mcalc = self.checker.calcs.get(f"$.measures[{i}].expression")
            if mcalc is not None:
                cols.append(self._calc_value(mcalc).label(f"m_{m.key}"))
            else:
                cols.extend(self._measure_input(m, mref))
            column = self._measure_column(m, mref, mcalc)
            column.path = f"$.measures[{i}]" + (".expression" if mcalc is not None else
                                                  ".field" if mref is not None else "")
            self.columns.append(column)
        # Sub-table rows live and die with their record: its liveness and the
        # viewer's row scope of the form decide which rows count.
        owner = self.root.table
        where: list[Expr] = [owner.c.deleted_at.is_(None)]
        scope = self.ctx.policy.row_predicate(self.ctx.actor, self.app, self.root.form.key,
                                              owner, "read")
        if scope is not None:
            where.append(scope)
        if self.filter_condition is not None:
            where.append(self.filter_condition)
        if not cols:
            cols.append(sa.literal(1).label("_one"))
        return sa.select(*cols).select_from(self.from_.clause).where(*where).subquery("base")

    def _calc_value(self, found: CalcRef) -> Expr:
        """The calculated field's SQL over this query's joins."""
        def lookup(path: str, position: int | None) -> calc.Typed:
            assert self.checker.resolver is not None
            ref = self.checker.resolver.resolve(path)
            column = self.from_.source(ref.steps).c[ref.field.key]
            return field_value(ref, column, position)

        typed = calc.translate(found.source, field=lookup, today=self.ctx.today(),
                               now=self.ctx.now(), timezone=self.ctx.timezone)
        return sa.type_coerce(typed.expr, found.column_type)

    def _dimension(self, d: rm.Dimension, value: Expr, ref: FieldRef | None,
                   out: OutputColumn) -> list[Expr]:
        name = out.column
        if ref is not None and ref.kind.name == "region":
            value = value["province"].as_string()
        if isinstance(d, rm.DateDimension):
            tz = self.ctx.timezone if out.value_class == reg.DATETIME else None
            return [DateBucket(value, d.bucket, tz).label(name)]
        if isinstance(d, rm.BinDimension):
            return [BinIndex(value, origin=d.origin, width=d.width, scale=out.scale or 0)
                    .label(name)]
        kind = ref.kind.name if ref is not None else ""
        if kind == "user" and getattr(d, "by", None) == "department":
            # The user's primary department, labelled like a department field.
            value = self.from_.lookup(users_table, value, "primary_department_id")
            kind = "department"
        cols: list[Expr] = [value.label(name)]
        lookup = {"user": (users_table, "display_name"), "department": (departments_table,
                                                                        "name")}
        if kind in lookup:
            table, column = lookup[kind]
            cols.append(self.from_.lookup(table, value, column).label(name + "__label"))
            out.label_column = True
        return cols

    def _measure_input(self, m: rm.Measure, ref: FieldRef | None) -> list[Expr]:
        if not isinstance(m, rm.FieldMeasure) or ref is None:
            return []
        name = f"m_{m.key}"
        many = ref.to_many_at
        if many is None:
            return [self.from_.source(ref.steps).c[ref.field.key].label(name)]
        # To-many: aggregate the linked rows per record in a subquery, joined once
        # per record, so the record's other values are not repeated.
        holder = self.from_.source(ref.steps[:many])
        step = ref.steps[many]
        if step.kind == "child":
            child = step.table.alias(f"c_{m.key}")
            inner_from: sa.FromClause = child
            key_col, start = child.c.parent_id, child
        else:
            holder_tables = (ref.steps[many - 1].tables if many else self.root)
            link = holder_tables.joins[step.link].alias(f"l_{m.key}")
            target = step.table.alias(f"t_{m.key}")
            cond = [target.c.id == link.c.target_id, target.c.deleted_at.is_(None)]
            scoped = self._scope(step.tables, target)
            if scoped is not None:
                cond.append(scoped)
            inner_from = link.join(target, sa.and_(*cond))
            key_col, start = link.c.source_id, target
        inner = _From(start, self._scope)
        inner.clause = inner_from
        value = inner.source(ref.steps[many + 1:], start).c[ref.field.key]
        kind = reg.MEASURES[m.agg]
        assert kind.parts is not None
        parts = kind.parts(value)
        sub = (sa.select(key_col.label("k"), *(p.label(n) for n, p in parts.items()))
               .select_from(inner.clause).group_by(key_col).subquery(f"p_{m.key}"))
        self.from_.clause = self.from_.clause.outerjoin(sub, sub.c.k == holder.c.id)
        self.partials[m.key] = {n: f"{name}__{n}" for n in parts}
        return [sub.c[n].label(f"{name}__{n}") for n in parts]

    def _measure_column(self, m: rm.Measure, ref: FieldRef | None,
                        found: CalcRef | None = None) -> OutputColumn:
        label = m.label or (ref.field.label if ref is not None else
                            _key_label(m.key) if found is not None else
                            reg.MEASURES[m.agg].label if isinstance(m, rm.FieldMeasure)
                            else reg.DERIVED[m.agg].label)
        if isinstance(m, rm.FieldMeasure) and found is not None:
            result = reg.MEASURES[m.agg].result
            cls = ("count" if result == "count" else
                   found.value_class if result == "same" else "float")
            exact = found.value_class == reg.NUMBER and found.scale > 0
            scale = found.scale if exact and cls in (reg.NUMBER, "float") else None
            if cls == "float" and found.value_class == reg.NUMBER and not scale:
                scale = MEAN_DECIMALS  # the mean of integers
            return OutputColumn(m.key, "measure", label, cls, m, calc=found, scale=scale)
        if isinstance(m, rm.FieldMeasure):
            result = reg.MEASURES[m.agg].result
            cls = ("count" if result == "count" else
                   ref.value_class if result == "same" and ref is not None else "float")
            exact = ref is not None and isinstance(ref.kind.column_type(ref.field),
                                                   ExactDecimal)
            scale = _scale(ref) if exact and cls in (reg.NUMBER, "float") else None
            if cls == "float" and not exact:  # the mean of integers
                scale = MEAN_DECIMALS
            return OutputColumn(m.key, "measure", label, cls, m, ref=ref, scale=scale)
        if isinstance(m, rm.RunningTotalMeasure) or (isinstance(m, rm.ChangeMeasure)
                                                    and m.mode == "absolute"):
            of = next(c for c in self.columns if c.key == m.of)
            return OutputColumn(m.key, "measure", label, of.value_class, m, scale=of.scale)
        return OutputColumn(m.key, "measure", label, "float", m)

    # ---- g: one row per group
    def grouped(self, base: sa.Subquery, *, with_parts: bool) -> sa.CTE:
        dims = [base.c[c] for c in self._dim_columns()]
        cols: list[Expr] = list(dims)
        for m in self._field_measures():
            kind = reg.MEASURES[m.agg]
            scale = self._input_scale(m.key)
            parts = self.partials.get(m.key)
            if parts is not None:  # pre-aggregated below a to-many path
                merged = {n: reg.MERGE[n](base.c[c]) for n, c in parts.items()}
                assert kind.final is not None
                cols.append(kind.final(merged, scale).label(f"m_{m.key}"))
            else:
                value = (base.c[f"m_{m.key}"] if m.field is not None or m.expression is not None
                         else None)
                cols.append(kind.direct(value, scale).label(f"m_{m.key}"))
                merged = kind.parts(value) if kind.parts else {}
            if with_parts and kind.parts is not None and len(merged) > 1:
                cols.extend(p.label(f"p_{m.key}__{n}") for n, p in merged.items())
        stmt = sa.select(*cols).select_from(base)
        if dims:
            stmt = stmt.group_by(*dims)
        return stmt.cte("g")

    def regrouped(self, source: sa.FromClause, dims: list[str]) -> sa.Select[Any]:
        """Measures re-aggregated from group rows (others row, totals)."""
        cols: list[Expr] = [source.c[d] for d in dims]
        for m in self._field_measures():
            kind = reg.MEASURES[m.agg]
            assert kind.parts is not None and kind.final is not None
            names = list(kind.parts(sa.null()))
            if len(names) == 1:
                merged = {names[0]: reg.MERGE[names[0]](source.c[f"m_{m.key}"])}
            else:
                merged = {n: reg.MERGE[n](source.c[f"p_{m.key}__{n}"]) for n in names}
            value = kind.final(merged, self._input_scale(m.key))
            cols.append(sa.type_coerce(value, self._type_of(m)).label(f"m_{m.key}"))
        stmt = sa.select(*cols).select_from(source)
        return stmt.group_by(*(source.c[d] for d in dims)) if dims else stmt

    def _input_scale(self, key: str) -> int:
        col = self._col(key)
        return col.calc.scale if col.calc is not None else _scale(col.ref)

    def _type_of(self, m: rm.FieldMeasure) -> Any:
        kind = reg.MEASURES[m.agg]
        col = self._col(m.key)
        ref = col.ref
        if kind.result == "count":
            return sa.BigInteger()
        if kind.result == "same" and col.calc is not None:
            return col.calc.column_type
        if kind.result == "same" and ref is not None:
            return ref.kind.column_type(ref.field)
        return sa.Float()

    # ---- derived measures, ranking and the final statement
    def layer(self, source: sa.FromClause, dims: list[str], *, grand: bool,
              others: bool) -> sa.Select[Any]:
        cols: list[Expr] = []
        for c in self._dim_columns():
            cols.append(source.c[c] if not grand else sa.null().label(c))
        from_: sa.FromClause = source
        prev: dict[str, sa.FromClause] = {}
        dim_keys = [d.key for d in self.report.dimensions]
        for m in self.report.measures:
            name = f"m_{m.key}"
            if isinstance(m, rm.FieldMeasure):
                cols.append(source.c[name])
                continue
            expr: Expr
            if isinstance(m, rm.RatioMeasure):
                expr = (self._float(source, m.numerator)
                        / sa.func.nullif(self._float(source, m.denominator), 0))
            elif grand:
                # Totals (and pivot subtotals) of derived measures other than
                # ratios are empty: a share of everything, a running total
                # or a change over no sequence says nothing new.
                expr = sa.null()
            elif isinstance(m, rm.ShareMeasure):
                expr = self._float(source, m.of) / sa.func.nullif(
                    sa.func.sum(self._float(source, m.of)).over(), 0)
            elif isinstance(m, rm.RunningTotalMeasure):
                along = m.along or _first_date_dimension(self.report) or ""
                of = source.c[f"m_{m.of}"]
                partition = [source.c[f"d_{k}"] for k in dim_keys if k != along]
                expr = sa.func.sum(of).over(partition_by=partition or None,
                                            order_by=source.c[f"d_{along}"], rows=(None, 0))
            else:
                assert isinstance(m, rm.ChangeMeasure)
                along = m.along or _first_date_dimension(self.report) or ""
                if along not in prev:
                    prev[along] = p = source.alias(f"prev_{along}")
                    bucket = next(d for d in self.report.dimensions if d.key == along)
                    assert isinstance(bucket, rm.DateDimension)
                    cond = [p.c[f"d_{along}"] == ShiftPeriod(source.c[f"d_{along}"],
                                                             bucket.bucket, -1)]
                    cond += [p.c[f"d_{k}"].is_not_distinct_from(source.c[f"d_{k}"])
                             for k in dim_keys if k != along]
                    from_ = from_.outerjoin(p, sa.and_(*cond))
                now, before = source.c[f"m_{m.of}"], prev[along].c[f"m_{m.of}"]
                if m.mode == "absolute":
                    expr = now - before
                else:
                    scale = self._col(m.of).scale or 0
                    expr = ((AsFloat(now, scale) - AsFloat(before, scale))
                            / sa.func.nullif(AsFloat(before, scale), 0))
            cols.append(expr.label(name))
        cols.append(source.c["_others"] if others else _ZERO.label("_others"))
        return sa.select(*cols).select_from(from_)

    def _float(self, source: sa.FromClause, key: str) -> Expr:
        col = self._col(key)
        # An average is a float already; other numbers are in their stored form.
        stored = 0 if col.value_class == "float" else col.scale or 0
        return AsFloat(source.c[f"m_{key}"], stored)

    def _dim_columns(self) -> list[str]:
        out = []
        for c in self.columns:
            if c.role == "dimension":
                out.append(c.column)
                if c.label_column:
                    out.append(c.column + "__label")
        return out

    def _field_measures(self) -> list[rm.FieldMeasure]:
        return [m for m in self.report.measures if isinstance(m, rm.FieldMeasure)]

    def _col(self, key: str) -> OutputColumn:
        return next(c for c in self.columns if c.key == key)

    def order(self, source: sa.FromClause) -> list[Any]:
        specs = list(self.report.sort) or [d.key for d in self.report.dimensions]
        out: list[Any] = []
        for spec in specs:
            key = spec.lstrip("-")
            col = self._col(key)
            expr = source.c[col.column]
            out.append((expr.desc() if spec.startswith("-") else expr.asc()).nulls_last())
        # Every dimension breaks ties, so the order (and the top N) is total.
        for c in self.columns:
            if c.role == "dimension" and c.key not in {s.lstrip("-") for s in specs}:
                out.append(source.c[c.column].asc().nulls_last())
        return out

    def build(self) -> sa.CompoundSelect[Any] | sa.Select[Any]:
        r = self.report
        base = self.base()
        field_measures = self._field_measures()
        reaggregable = all(reg.MEASURES[m.agg].parts is not None for m in field_measures)
        g = self.grouped(base, with_parts=r.others or (r.totals and reaggregable))
        dims = self._dim_columns()
        if r.others:
            ranked = sa.select(g, sa.func.row_number().over(order_by=self.order(g))
                               .label("_rank")).subquery("ranked")
            keep = ranked.c._rank <= (r.limit or rm.MAX_LIMIT)
            part_cols = [c for c in ranked.c if c.name.startswith(("m_", "p_"))]
            tagged = sa.select(
                *(sa.case((keep, ranked.c[d]), else_=sa.null()).label(d) for d in dims),
                sa.case((keep, 0), else_=1).label("_others"), *part_cols).subquery("tagged")
            source: sa.FromClause = self.regrouped(tagged, [*dims, "_others"]).subquery("o")
        else:
            source = g
        if all(isinstance(m, rm.FieldMeasure) for m in r.measures):
            # Nothing derived: rank the group rows directly (one layer less).
            layered: sa.FromClause = source
            projected = self.layer(source, dims, grand=False, others=r.others).selected_columns
        else:
            layered = self.layer(source, dims, grand=False, others=r.others).subquery("l")
            projected = layered.c
        order = ([layered.c._others.asc()] if r.others else []) + self.order(layered)
        ranked_main = sa.select(
            *projected, sa.func.row_number().over(order_by=order).label("_pos"),
            _ZERO.label("_grand")).subquery("r")
        limit = None if r.others else (r.limit or rm.MAX_LIMIT)
        top = sa.select(*(c for c in ranked_main.c))
        if limit is not None:
            top = top.where(ranked_main.c._pos <= limit)
        if not r.totals:
            return top.order_by(ranked_main.c._pos)
        if reaggregable:
            t = self.regrouped(g, []).subquery("t")
        else:
            t = self._raw_totals(base).subquery("t")
        total = self.layer(t, [], grand=True, others=False).add_columns(
            sa.cast(sa.null(), sa.BigInteger).label("_pos"), _ONE.label("_grand"))
        union = sa.union_all(top, total)
        return union.order_by(union.selected_columns._grand, union.selected_columns._pos)

    def _raw_totals(self, base: sa.Subquery) -> sa.Select[Any]:
        cols: list[Expr] = []
        for m in self._field_measures():
            kind = reg.MEASURES[m.agg]
            parts = self.partials.get(m.key)
            scale = self._input_scale(m.key)
            if parts is not None:
                assert kind.final is not None
                merged = {n: reg.MERGE[n](base.c[c]) for n, c in parts.items()}
                cols.append(kind.final(merged, scale).label(f"m_{m.key}"))
            else:
                value = (base.c[f"m_{m.key}"] if m.field is not None or m.expression is not None
                         else None)
                cols.append(kind.direct(value, scale).label(f"m_{m.key}"))
        return sa.select(*cols).select_from(base)


# --------------------------------------------------------------------------- entry points

def _dialect_name(ctx: EngineContext) -> str:
    return ctx.session.get_bind().dialect.name


def validate_report(ctx: EngineContext, *, app: str, report: rm.Report) -> list[ErrorItem]:
    """Every problem of ``report`` against the app's published forms (empty: valid).
    Fields the viewer may not see are reported too (code ``field_hidden``)."""
    runtimes = app_runtimes(ctx.session, app)
    checker = _Checker(ctx, app, report, runtimes, _dialect_name(ctx))
    checker.run()
    errors = checker.errors + checker.hidden
    if not errors and checker.root is not None:
        try:
            # Validation leaves parameters out: their values are checked at run time.
            _compile_filter(ctx, checker, report, substitute(
                report.filter, {p.key: None for p in report.parameters}))
        except FilterInvalid as exc:
            errors.extend(exc.errors)
    return errors


def _filled(report: rm.Report, values: Mapping[str, Any]) -> Any:
    """The report's filter with the parameters' values."""
    return substitute(report.filter, values, date_ranges={
        p.key for p in report.parameters if p.type == "date_range"})


def _compile_filter(ctx: EngineContext, checker: _Checker, report: rm.Report,
                    spec: Any) -> Expr | None:
    """The WHERE condition of ``spec``, the report's filter with parameter
    values substituted."""
    assert checker.source is not None
    if checker.rows is not None:
        spec = rename_links(spec, checker.rows.names, checker.rows.link)
    qctx = QueryContext(resolve=checker._resolve, today=ctx.today(), timezone=ctx.timezone,
                        now=ctx.now(), hidden=checker.hidden_keys)
    try:
        return compile_filter(spec, tables=checker.source, qctx=qctx)
    except FilterInvalid as exc:
        wrong_values = _parameter_errors(report, exc.errors)
        if wrong_values:
            raise ParameterInvalid(wrong_values, f"invalid parameters: "
                                   f"{wrong_values[0].message}") from None
        for e in exc.errors:
            e.path = "$.filter" + (e.path or "$")[1:]
            e.field = None
        raise FilterInvalid(exc.errors, f"invalid report filter: {exc.errors[0].path}: "
                            f"{exc.errors[0].message}") from None


def _parameter_errors(report: rm.Report, errors: list[ErrorItem]) -> list[ErrorItem]:
    """The filter's errors about a value a parameter gave, as errors of that
    parameter: the viewer's value is wrong, not the definition."""
    fed = parameter_conditions(report.filter)
    out = []
    for e in errors:
        for at, cond in fed:
            rest = (e.path or "")[len(at):] if (e.path or "").startswith(at) else None
            if rest is not None and rest[:1] in ("", ".", "[") and ".value" in rest:
                key = cond["value"]["$param"]
                out.append(ErrorItem(code="invalid_value", field=f"parameters.{key}",
                                     message=f"parameter {key!r}: {e.message}"))
                break
    return out


# --------------------------------------------------------------------------- compile cache
#
# A compiled report is kept per process, keyed by everything its statement
# depends on: the definition's content, the dialect, the version of every
# published form of the app (publishing a form makes a new key), the
# organization's zone and "today" (relative date filters), "now" when an
# expression asks for it, the parameter values after resolution ("me" is the
# viewer's id), and the viewer's scope inputs — for every form the statement
# reads, the row predicate the policy gives and the field access it reports.
# Two viewers whose scopes differ therefore never share an entry; a viewer
# whose scope changed gets a new one. Both maps are bounded (LRU).

COMPILED_MAX = 512
_compiled: OrderedDict[Any, CompiledReport] = OrderedDict()
_forms_read: OrderedDict[Any, tuple[str, ...]] = OrderedDict()
_cache_lock = threading.Lock()
compile_stats = {"hits": 0, "misses": 0}


def clear_compiled() -> None:
    with _cache_lock:
        _compiled.clear()
        _forms_read.clear()
        compile_stats.update(hits=0, misses=0)


def _remember(store: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _cache_lock:
        store[key] = value
        store.move_to_end(key)
        while len(store) > COMPILED_MAX:
            store.popitem(last=False)


def _freeze(value: Any) -> Any:
    """A hashable copy of a parameter or bound value."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_freeze(v) for v in value)
    return value


def _predicate_key(pred: Expr | None, dialect: Dialect) -> Any:
    if pred is None:
        return None
    ck = pred._generate_cache_key()
    if ck is not None:
        return (ck.key, tuple(_freeze(b.effective_value) for b in ck.bindparams))
    compiled = pred.compile(dialect=dialect)  # a construct SQLAlchemy cannot key
    return (str(compiled), _freeze(dict(compiled.params)))


def _scope_key(ctx: EngineContext, app: str, forms: tuple[str, ...],
               runtimes: Mapping[str, FormRuntime], dialect: Dialect) -> Any:
    out = []
    for form in forms:
        rt = runtimes.get(form)
        if rt is None:
            return None  # not published any more: compile (and fail) afresh
        pred = ctx.policy.row_predicate(ctx.actor, app, form, rt.tables.table, "read")
        access = ctx.policy.field_access(ctx.actor, app, form)
        out.append((form, _predicate_key(pred, dialect), tuple(sorted(access.items()))))
    return tuple(out)


def _definition_key(ctx: EngineContext, app: str, report: rm.Report,
                    runtimes: Mapping[str, FormRuntime], dialect: Dialect) -> Any:
    uses_now = any("now" in (getattr(item, "expression", None) or "")
                   for item in (*report.dimensions, *report.measures))
    return (app, report.model_dump_json(), dialect.name,
            tuple(sorted((k, rt.version_id) for k, rt in runtimes.items())),
            ctx.timezone, ctx.today(), ctx.now() if uses_now else None)


def compile_report(ctx: EngineContext, *, app: str, report: rm.Report,
                   parameters: Mapping[str, Any] | None = None) -> CompiledReport:
    """Check ``report`` for the viewer in ``ctx`` and compile it to one statement
    (from the per-process cache when nothing it depends on changed).

    Raises DefinitionInvalid (errors name JSON paths), PermissionDenied (a field
    the viewer may not see; the form not readable), ParameterInvalid or
    FilterInvalid.

    >>> compiled = compile_report(ctx, app="crm", report=rm.Report.model_validate(body))
    >>> rows = ctx.session.execute(compiled.statement).all()
    """
    ctx.policy.check_form_action(ctx.actor, app, report.form, "read")
    runtimes = app_runtimes(ctx.session, app)
    dialect = ctx.session.get_bind().dialect
    definition = _definition_key(ctx, app, report, runtimes, dialect)
    with _cache_lock:
        forms = _forms_read.get(definition)
    if forms is not None:
        values = resolve_parameters(report.parameters, parameters, actor=ctx.actor,
                                    today=ctx.today())
        scope = _scope_key(ctx, app, forms, runtimes, dialect)
        if scope is not None:
            key = (definition, _freeze(values), scope)
            with _cache_lock:
                hit = _compiled.get(key)
                if hit is not None:
                    _compiled.move_to_end(key)
                    compile_stats["hits"] += 1
                    return hit
    compiled = _compile(ctx, app, report, parameters, runtimes, dialect.name)
    with _cache_lock:
        compile_stats["misses"] += 1
    _remember(_forms_read, definition, compiled.forms)
    scope = _scope_key(ctx, app, compiled.forms, runtimes, dialect)
    if scope is not None:
        _remember(_compiled, (definition, _freeze(compiled.parameters), scope), compiled)
    return compiled


def _compile(ctx: EngineContext, app: str, report: rm.Report,
             parameters: Mapping[str, Any] | None, runtimes: Mapping[str, FormRuntime],
             dialect_name: str) -> CompiledReport:
    checker = _Checker(ctx, app, report, runtimes, dialect_name)
    checker.run()
    if checker.errors:
        raise DefinitionInvalid(f"report {report.key!r} is not valid: "
                                f"{checker.errors[0].path}: {checker.errors[0].message}",
                                errors=checker.errors)
    if checker.hidden:
        raise PermissionDenied(f"report {report.key!r} reads fields you may not see: "
                               f"{checker.hidden[0].path}: {checker.hidden[0].message}",
                               errors=checker.hidden)
    values = resolve_parameters(report.parameters, parameters, actor=ctx.actor,
                                today=ctx.today())
    condition = _compile_filter(ctx, checker, report, _filled(report, values))
    builder = _Builder(ctx, app, report, checker, condition)
    statement = builder.build()
    forms = set(builder.forms)
    for ref in [*checker.refs.values(), *(r for c in checker.calcs.values() for r in c.refs)]:
        forms.update(s.tables.form.key for s in ref.steps)
    for path_text in filter_fields(report.filter):
        try:
            assert checker.resolver is not None
            forms.update(s.tables.form.key for s in checker.resolver.resolve(path_text).steps)
        except PathProblem:
            pass
    return CompiledReport(report=report, app=app, statement=statement,
                          columns=builder.columns, forms=tuple(sorted(forms)),
                          parameters=values, dialect_name=dialect_name,
                          filter=_filled(report, pinned_days(report.parameters, values,
                                                             today=ctx.today())))


__all__ = ["CompiledReport", "OutputColumn", "compile_report", "validate_report"]

