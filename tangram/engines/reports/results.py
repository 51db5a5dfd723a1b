"""Run a compiled report: rows into a pandas DataFrame, display labels, JSON.

The database did all aggregation; here values only get their Python types
(decimals quantized to the field's scale, bin numbers to their lower bound)
and dimensions get display labels in the viewer's language. Pivoting is a
reshape of the result rows (no aggregation).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import iso_utc
from tangram.engines.reports import calculated as calc
from tangram.engines.reports import registry as reg
from tangram.engines.reports.compiler import CompiledReport, OutputColumn
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel import fields as fm
from tangram.metamodel import reports as rm
from tangram.metamodel.common import localize

OTHERS = {"zh": "其他", "en": "Others"}
EMPTY = {"zh": "(空)", "en": "(empty)"}
TOTAL = {"zh": "合计", "en": "Total"}
YES_NO = {True: {"zh": "是", "en": "Yes"}, False: {"zh": "否", "en": "No"}}


@dataclass
class ReportResult:
    """Rows of a report. ``frame`` has one column per dimension and measure key
    (plain values), ``<key>__label`` per dimension (display text) and
    ``_others`` (the row aggregating what top-N left out)."""

    compiled: CompiledReport
    frame: pd.DataFrame
    totals: dict[str, Any] | None
    language: str
    extra_columns: list[str] = field(default_factory=list)  # added by the chart (funnel)
    # Pivot subtotals: the measures grouped by the pivot's rows only / columns only.
    margins: dict[str, ReportResult] | None = None

    @property
    def report(self) -> rm.Report:
        return self.compiled.report

    def column(self, key: str) -> OutputColumn:
        return next(c for c in self.compiled.columns if c.key == key)

    def title(self, key: str) -> str:
        return localize(self.column(key).label, self.language)

    def pivot(self) -> pd.DataFrame | None:
        """Rows × columns of the pivot; one column per (measure, column value)."""
        p = self.report.pivot
        if p is None:
            return None
        frame = self.frame[self.frame["_others"] == 0] if "_others" in self.frame else self.frame
        measures = [c.key for c in self.compiled.measures]
        wide = frame.pivot(index=[f"{k}__label" for k in p.rows],
                           columns=[f"{k}__label" for k in p.columns], values=measures)
        return wide

    def pivot_totals(self) -> dict[str, Any] | None:
        """Subtotals of the pivot: ``rows`` (row labels -> measure -> value, over
        every column), ``columns`` (column labels -> measure -> value, over every
        row) and ``grand`` (the report's totals)."""
        p = self.report.pivot
        if p is None or self.margins is None:
            return None
        measures = [c.key for c in self.compiled.measures]
        out: dict[str, Any] = {"grand": self.totals}
        for axis, keys in (("rows", p.rows), ("columns", p.columns)):
            margin = self.margins[axis]
            table: dict[tuple[str, ...], dict[str, Any]] = {}
            for rec in margin.frame.to_dict(orient="records"):
                labels = tuple(rec[f"{k}__label"] for k in keys)
                table[labels] = {m: rec.get(m) for m in measures}
            out[axis] = table
        return out


def fetch(session: Session, compiled: CompiledReport) -> Sequence[sa.RowMapping]:
    """The rows of the compiled statement. A number out of the database's range
    (an overflow while computing, or a value SQLite could only hold as a float)
    is an ``out_of_range`` error naming the calculated fields that may cause it,
    never a server error; the statement runs in a savepoint so that the
    transaction (e.g. a dashboard's other widgets on PostgreSQL) goes on."""
    try:
        with session.begin_nested():
            return session.execute(compiled.statement).mappings().all()
    except (sa.exc.StatementError, OverflowError, InvalidOperation) as exc:
        if not _is_overflow(exc):
            raise
        columns = [c for c in compiled.columns if c.calc is not None
                   and c.calc.value_class == reg.NUMBER] or [
            c for c in compiled.columns if c.value_class == reg.NUMBER]
        raise ValidationFailed([ErrorItem(
            code="out_of_range", path=c.path, message=(
                f"a number is out of range while computing {c.key!r}: "
                f"{calc.range_message(c.scale or 0)}")) for c in columns or compiled.columns],
            "a number of the report is out of the range the database computes in") from None


def _is_overflow(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OverflowError | InvalidOperation):
        return True
    # SQLite: an integer SUM() that overflows; PostgreSQL: SQLSTATE 22003.
    return ("integer overflow" in str(orig)
            or getattr(orig, "sqlstate", getattr(orig, "pgcode", None)) == "22003")


def execute(session: Session, compiled: CompiledReport, *, language: str) -> ReportResult:
    """Run the one statement and shape its rows.

    >>> result = execute(ctx.session, compile_report(ctx, app="crm", report=r), language="en")
    >>> result.frame.head()
    """
    rows = fetch(session, compiled)
    cols = compiled.columns
    data: dict[str, list[Any]] = {c.key: [] for c in cols}
    labels: dict[str, list[str]] = {c.key: [] for c in cols if c.role == "dimension"}
    others: list[int] = []
    totals: dict[str, Any] | None = None
    for row in rows:
        if row["_grand"] == 1:
            totals = {c.key: _value(c, row[c.column]) for c in cols if c.role == "measure"}
            continue
        is_other = bool(row["_others"])
        others.append(int(is_other))
        for c in cols:
            value = _value(c, row[c.column])
            data[c.key].append(value)
            if c.role == "dimension":
                raw_label = row[c.column + "__label"] if c.label_column else None
                labels[c.key].append(dimension_label(c, value, raw_label, is_other, language))
    frame = pd.DataFrame({**{k: pd.Series(v, dtype=object) for k, v in data.items()},
                          **{f"{k}__label": pd.Series(v, dtype=object)
                             for k, v in labels.items()},
                          "_others": pd.Series(others, dtype="int64")})
    return ReportResult(compiled=compiled, frame=frame, totals=totals, language=language)


def convert_value(c: OutputColumn, value: Any) -> Any:
    """A raw database value of a result column as the run returns it."""
    return _value(c, value)


def _value(c: OutputColumn, value: Any) -> Any:
    if value is None:
        return None
    d = c.definition
    if isinstance(d, rm.BinDimension):
        return d.origin + int(value) * d.width
    if c.role == "measure" or c.value_class == reg.NUMBER:
        _check_range(c, value)
    if c.role == "measure":
        if c.value_class == "count" or (c.value_class == reg.NUMBER and c.scale is None):
            return int(value)
        if _is_float(c):
            return float(value)
        if c.scale is not None and c.value_class in (reg.NUMBER, "float"):
            dec = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
            return dec.quantize(Decimal(1).scaleb(-c.scale), rounding=ROUND_HALF_UP)
    return value


def _is_float(c: OutputColumn) -> bool:
    """A ratio, a share or a percent change: a binary float, never rounded (an
    average has decimals: it is rounded to them)."""
    return c.value_class == "float" and c.scale is None


def _check_range(c: OutputColumn, value: Any) -> None:
    """A number beyond what the database holds exactly (SQLite turns an integer
    overflow into a float; PostgreSQL's NUMERIC would go on) is refused alike
    on both databases, naming the measure or dimension."""
    if isinstance(value, bool) or _is_float(c):
        return
    scale = c.scale or 0
    if isinstance(value, float):
        bad = value != value or abs(value) * 10.0 ** scale >= 2.0 ** 63
    elif isinstance(value, int | Decimal):
        bad = not Decimal(value).is_finite() or not calc.fits(value, scale)
    else:
        return
    if bad:
        raise ValidationFailed([ErrorItem(code="out_of_range", path=c.path, message=(
            f"{c.key!r} is out of range ({float(value):.6g}): "
            f"{calc.range_message(scale)}"))],
            f"{c.path}: a number of the report is out of range")


def json_type(c: OutputColumn) -> dict[str, Any]:
    """The ``type`` (and ``scale``) a column's values have in JSON: ``count``
    and ``integer`` (numbers), ``decimal`` (exact, as strings, with ``scale``
    decimals), ``float`` (ratios, shares, percent changes), ``date`` for a date
    bucket (its first day, also of a date-time field), else the field's value
    class (``date``, ``datetime``, ``text``, ``boolean``, ``reference``…); a
    ``reference`` says what it ``refers_to``: ``user``, ``department`` or
    ``record`` of ``form``."""
    d = c.definition
    if c.value_class == "count":
        return {"type": "count"}
    if isinstance(d, rm.DateDimension):
        return {"type": "date"}
    if c.value_class == reg.REFERENCE:
        return {"type": "reference", **_refers_to(c)}
    if isinstance(d, rm.BinDimension):
        return {"type": "decimal", "scale": max(0, -int(d.width.as_tuple().exponent),
                                               -int(d.origin.as_tuple().exponent))}
    if c.role == "measure" and _is_float(c):
        return {"type": "float"}
    if c.value_class in (reg.NUMBER, "float"):
        if c.scale:
            return {"type": "decimal", "scale": c.scale}
        return {"type": "integer"}
    return {"type": c.value_class}


def _refers_to(c: OutputColumn) -> dict[str, str]:
    """What a reference column's ids are ids of (empty: not known, e.g. a
    calculated field's)."""
    if getattr(c.definition, "by", None) == "department":
        return {"refers_to": "department"}
    f = c.ref.field if c.ref is not None else None
    if isinstance(f, fm.RelationField):
        return {"refers_to": "record", "form": f.target}
    if isinstance(f, fm.UserField | fm.DepartmentField):
        return {"refers_to": f.type}
    return {}


def dimension_label(c: OutputColumn, value: Any, raw_label: Any, is_other: bool,
                    language: str) -> str:
    if is_other:
        return localize(OTHERS, language)
    if value is None:
        return localize(EMPTY, language)
    d = c.definition
    if isinstance(d, rm.DateDimension):
        return reg.BUCKETS[d.bucket].format(value)
    if isinstance(d, rm.BinDimension):
        return f"{value} – {value + d.width}"
    if raw_label is not None:
        return str(raw_label)
    f = c.ref.field if c.ref is not None else None
    if isinstance(f, fm.SelectField | fm.TreeSelectField):
        options = _options(f.options)
        if value in options:
            return localize(options[value], language)
    if isinstance(value, bool):
        return localize(YES_NO[value], language)
    return str(to_json(value))


def _options(options: list[Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for o in options:
        out[o.value] = o.label
        out.update(_options(getattr(o, "children", []) or []))
    return out


def to_json(value: Any) -> Any:
    """Decimals as strings (exact), dates ISO, ids as text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def result_json(result: ReportResult, *, chart: dict[str, Any] | None) -> dict[str, Any]:
    """Rows, columns, totals and the chart spec, as the API returns them."""
    cols = result.compiled.columns
    rows = []
    for rec in result.frame.to_dict(orient="records"):
        row = {k: to_json(rec[k]) for k in (c.key for c in cols)}
        row.update({f"{c.key}__label": rec[f"{c.key}__label"] for c in cols
                    if c.role == "dimension"})
        if rec["_others"]:
            row["_others"] = True
        for key in result.extra_columns:
            row[key] = to_json(rec[key]) if rec[key] == rec[key] else None
        rows.append(row)
    out: dict[str, Any] = {
        "report": result.report.key,
        "columns": [{"key": c.key, "role": c.role, "label": localize(c.label, result.language),
                     **json_type(c)} for c in cols],
        "rows": rows,
        "totals": ({k: to_json(v) for k, v in result.totals.items()}
                   if result.totals is not None else None),
        "parameters": result.compiled.parameters,
        "chart": chart,
    }
    pivot = result.pivot()
    if pivot is not None:
        out["pivot"] = {
            "rows": [list(i) if isinstance(i, tuple) else [i] for i in pivot.index],
            "columns": [list(c) for c in pivot.columns],
            "values": [[to_json(v) if v == v else None for v in r] for r in pivot.to_numpy()]}
        margins = result.pivot_totals()
        if margins is not None:
            # Aligned with the pivot: one subtotal per row (per measure), one per column.
            measures = [c.key for c in result.compiled.measures]
            rows_index = [i if isinstance(i, tuple) else (i,) for i in pivot.index]
            out["pivot"]["row_totals"] = [
                [to_json(margins["rows"].get(i, {}).get(m)) for m in measures]
                for i in rows_index]
            out["pivot"]["column_totals"] = [
                to_json(margins["columns"].get(tuple(c[1:]), {}).get(c[0]))
                for c in pivot.columns]
            out["pivot"]["grand_total"] = [to_json((margins["grand"] or {}).get(m))
                                           for m in measures]
    return out
