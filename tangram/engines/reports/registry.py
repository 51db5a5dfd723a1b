"""The report engine's registries: measures, date buckets, parameter types.

Each is one table of entries read by validation and compilation
(``compiler.py``), the metadata endpoint (:func:`catalog`) and the docs
(``docs/reports.md``; a test fails when an entry is missing there). Chart
types live in ``charts.py`` with their builders.

A field measure is defined by an algebra of *parts* so that it can be
computed over raw rows, pre-aggregated below a to-many path (sub-table rows,
multi-relation targets) and re-aggregated from groups (the "others" row and
totals) with one definition: ``parts(v)`` are partial aggregates over rows,
``merge`` says how partials combine, ``final`` turns merged partials into the
value. ``count_distinct`` and ``median`` have no parts: they cannot be
pre-aggregated or re-aggregated, so the engine refuses them below to-many
paths and with ``others``, and computes their totals from the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tangram.engines.reports.dialect import AsFloat, Median
from tangram.metamodel import reports as rm

Expr = sa.ColumnElement[Any]

# Value classes of fields, as measures and dimensions see them.
NUMBER, DATE, DATETIME, TEXT, BOOL, TIME, REFERENCE, REGION, LIST = (
    "number", "date", "datetime", "text", "boolean", "time", "reference", "region", "list")

_CLASS_OF_KIND = {
    "integer": NUMBER, "decimal": NUMBER, "currency": NUMBER, "percent": NUMBER,
    "rollup": NUMBER, "date": DATE, "datetime": DATETIME, "time": TIME, "boolean": BOOL,
    "text": TEXT, "long_text": TEXT, "rich_text": TEXT, "email": TEXT, "phone": TEXT,
    "url": TEXT, "select": TEXT, "tree_select": TEXT, "autonumber": TEXT,
    "relation": REFERENCE, "user": REFERENCE, "department": REFERENCE, "region": REGION,
    "multi_select": LIST, "tags": LIST, "attachment": LIST, "multi_relation": LIST,
    "sub_table": LIST,
}
_CLASS_OF_FORMULA = {"integer": NUMBER, "decimal": NUMBER, "text": TEXT, "boolean": BOOL,
                     "date": DATE, "datetime": DATETIME}


def value_class(kind_name: str, field_def: Any) -> str:
    if kind_name == "formula":
        return _CLASS_OF_FORMULA[field_def.result_type]
    if kind_name == "rollup":  # a number, or a min/max of dates
        return {"number": NUMBER, "date": DATE, "datetime": DATETIME}[field_def.result_type]
    return _CLASS_OF_KIND.get(kind_name, LIST)


# --------------------------------------------------------------------------- measures

def _sum(e: Expr) -> Expr:
    return sa.func.sum(e)


def _count_total(e: Expr) -> Expr:
    return sa.cast(sa.func.coalesce(sa.func.sum(e), 0), sa.BigInteger)


MERGE: dict[str, Callable[[Expr], Expr]] = {
    "c": _count_total, "s": _sum, "mn": sa.func.min, "mx": sa.func.max}


def _avg_final(parts: dict[str, Expr], scale: int) -> Expr:
    return AsFloat(parts["s"], scale) / sa.func.nullif(parts["c"], 0)


def _avg(v: Expr | None, scale: int) -> Expr:
    # A float, unscaled (AsFloat), like the re-aggregated average of parts:
    # both may meet in one UNION column. Results round it to the field's scale.
    return AsFloat(sa.func.avg(v), scale)


def _count_parts(v: Expr | None) -> dict[str, Expr]:
    return {"c": sa.func.count() if v is None else sa.func.count(v)}


@dataclass(frozen=True)
class MeasureKind:
    key: str
    label: dict[str, str]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    accepts: frozenset[str]  # value classes of the field; empty: any field
    direct: Callable[[Expr | None, int], Expr]  # over raw rows (value, scale)
    result: str  # "count" (integer) | "same" (the field's type) | "float"
    parts: Callable[[Expr | None], dict[str, Expr]] | None = None
    final: Callable[[dict[str, Expr], int], Expr] | None = None
    capability: str | None = None  # dialect feature needed (dialect.CAPABILITIES)
    field_optional: bool = False


_MEASURES = [
    MeasureKind(
        "count", {"zh": "计数", "en": "Count"},
        {"zh": "记录数；指定字段时，统计该字段有值的记录数。",
         "en": "Number of records; with a field, of records where the field has a value."},
        frozenset(), lambda v, s: sa.func.count() if v is None else sa.func.count(v),
        "count", parts=_count_parts, final=lambda p, s: p["c"], field_optional=True),
    MeasureKind(
        "count_distinct", {"zh": "去重计数", "en": "Count distinct"},
        {"zh": "字段有多少个不同的取值（去重后计数）。",
         "en": "Number of different values of the field."},
        frozenset({NUMBER, DATE, DATETIME, TEXT, BOOL, TIME, REFERENCE}),
        lambda v, s: sa.func.count(sa.distinct(v)) if v is not None else sa.func.count(),
        "count"),
    MeasureKind(
        "sum", {"zh": "求和", "en": "Sum"},
        {"zh": "数值字段求和（小数精确计算）。",
         "en": "Sum of a number field (exact for decimals)."},
        frozenset({NUMBER}), lambda v, s: sa.func.sum(v), "same",
        parts=lambda v: {"s": sa.func.sum(v)}, final=lambda p, s: p["s"]),
    MeasureKind(
        "avg", {"zh": "平均值", "en": "Average"},
        {"zh": "数值字段的平均值（只计该字段有值的记录）。",
         "en": "Average of a number field over records where it has a value."},
        frozenset({NUMBER}), lambda v, s: _avg(v, s), "float",
        parts=lambda v: {"s": sa.func.sum(v), "c": sa.func.count(v)}, final=_avg_final),
    MeasureKind(
        "min", {"zh": "最小值", "en": "Minimum"},
        {"zh": "取最小的值（适用于数值、日期、时间）。",
         "en": "Smallest value (numbers, dates, times)."},
        frozenset({NUMBER, DATE, DATETIME, TIME}), lambda v, s: sa.func.min(v), "same",
        parts=lambda v: {"mn": sa.func.min(v)}, final=lambda p, s: p["mn"]),
    MeasureKind(
        "max", {"zh": "最大值", "en": "Maximum"},
        {"zh": "取最大的值（适用于数值、日期、时间）。",
         "en": "Largest value (numbers, dates, times)."},
        frozenset({NUMBER, DATE, DATETIME, TIME}), lambda v, s: sa.func.max(v), "same",
        parts=lambda v: {"mx": sa.func.max(v)}, final=lambda p, s: p["mx"]),
    MeasureKind(
        "median", {"zh": "中位数", "en": "Median"},
        {"zh": "数值字段的中位数（记录数为偶数时取中间两个值的平均值）。仅支持 PostgreSQL："
               "在 SQLite 上使用它的报表会被拒绝。",
         "en": "Middle value of a number field (the mean of the two middle values for an even "
               "count). PostgreSQL only: on SQLite the report is refused."},
        frozenset({NUMBER}), lambda v, s: Median(v, s) if v is not None else sa.null(),
        "float", capability="median"),
]

MEASURES: dict[str, MeasureKind] = {m.key: m for m in _MEASURES}


@dataclass(frozen=True)
class DerivedKind:
    """A measure computed from other measures of the same result."""

    key: str
    label: dict[str, str]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    references: tuple[str, ...]  # attributes naming other measures


_DERIVED = [
    DerivedKind("ratio", {"zh": "比率", "en": "Ratio"},
                {"zh": "两个度量之比：numerator / denominator（分子 / 分母）；分母为 0 时为空。",
                 "en": "numerator / denominator of two measures; empty where the denominator "
                       "is 0."},
                ("numerator", "denominator")),
    DerivedKind("share", {"zh": "占比", "en": "Share of total"},
                {"zh": "某度量占所有分组合计的比例（在 limit 截取之前计算；取值 0…1）。",
                 "en": "A measure divided by its sum over all groups (before limit; 0…1)."},
                ("of",)),
    DerivedKind("running_total", {"zh": "累计", "en": "Running total"},
                {"zh": "沿某个维度逐项累加度量；其他维度的每种组合各自重新累计。",
                 "en": "Cumulative sum of a measure along a dimension, restarting for each "
                       "combination of the other dimensions."}, ("of",)),
    DerivedKind("change", {"zh": "环比", "en": "Period-over-period change"},
                {"zh": "度量相对于日期维度上一周期的变化（percent：(本期 - 上期) / 上期；"
                       "absolute：本期 - 上期）；上一周期没有值时为空。",
                 "en": "Change of a measure from the previous period of a date dimension "
                       "(percent: (this - previous) / previous; absolute: this - previous); "
                       "empty when the previous period has no value."}, ("of",)),
]

DERIVED: dict[str, DerivedKind] = {d.key: d for d in _DERIVED}

assert set(MEASURES) == set(rm.FIELD_AGGREGATES), "metamodel and registry disagree"
assert set(DERIVED) == set(rm.DERIVED_AGGREGATES), "metamodel and registry disagree"


# --------------------------------------------------------------------------- buckets

@dataclass(frozen=True)
class BucketKind:
    key: str
    label: dict[str, str]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    format: Callable[[Any], str]  # the period's first day -> its label


def _quarter_label(d: Any) -> str:
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


def _week_label(d: Any) -> str:
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


_BUCKETS = [
    BucketKind("day", {"zh": "日", "en": "Day"}, {"zh": "自然日。", "en": "The calendar day."},
               lambda d: d.isoformat()),
    BucketKind("week", {"zh": "周", "en": "Week"},
               {"zh": "ISO 周，周一至周日；以 ISO 年份和周序号标记（2025 年 12 月 29 日属于 "
                      "2026-W01）。",
                "en": "The ISO week, Monday to Sunday; labelled with its ISO year and number "
                      "(29 Dec 2025 is in 2026-W01)."}, _week_label),
    BucketKind("month", {"zh": "月", "en": "Month"},
               {"zh": "自然月。", "en": "The calendar month."},
               lambda d: f"{d.year}-{d.month:02d}"),
    BucketKind("quarter", {"zh": "季度", "en": "Quarter"},
               {"zh": "自然季度，分别从 1 月、4 月、7 月、10 月开始。",
                "en": "Calendar quarters starting January, April, July, October."},
               _quarter_label),
    BucketKind("year", {"zh": "年", "en": "Year"}, {"zh": "自然年。", "en": "The calendar year."},
               lambda d: str(d.year)),
]

BUCKETS: dict[str, BucketKind] = {b.key: b for b in _BUCKETS}
assert set(BUCKETS) == set(rm.BUCKETS)


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class ParameterType:
    key: str
    label: dict[str, str]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    examples: list[Any] = field(default_factory=list)
    # The forms of value an input for it offers (a UI renders one control each).
    value_forms: tuple[str, ...] = ()


_PARAMETER_TYPES = [
    ParameterType("date_range", {"zh": "日期范围", "en": "Date range"},
                  {"zh": "组织时区的一段日期：相对范围（\"range\"：\"ranges\" 中的一项，"
                         "如 \"this_month\" 或 {\"last_n_days\": 30}），或自定义日期"
                         "（\"from_to\"：[起, 止]，包含首尾两天）。两种写法都可用于该参数"
                         "所对应的 date_range 或 between 条件。",
                   "en": "Local days in the organization's time zone: a relative range "
                         "(\"range\": one of \"ranges\", e.g. \"this_month\" or "
                         "{\"last_n_days\": 30}) or custom dates (\"from_to\": [from, to], "
                         "both days included). Either works in the date_range or between "
                         "condition the parameter feeds."},
                  ["this_month", {"last_n_days": 30}, ["2026-01-01", "2026-03-31"]],
                  ("range", "from_to")),
    ParameterType("user", {"zh": "用户", "en": "User"},
                  {"zh": "用户 ID；\"me\" 表示当前查看报表的人。",
                   "en": "A user id; \"me\" is the viewer."}, ["me"], ("id", "me")),
    ParameterType("department", {"zh": "部门", "en": "Department"},
                  {"zh": "部门 ID。", "en": "A department id."}, [], ("id",)),
    ParameterType("text", {"zh": "文本", "en": "Text"},
                  {"zh": "一段文本（选项值、省份等）。",
                   "en": "A text (an option value, a province …)."}, ["华东"], ("text",)),
    ParameterType("number", {"zh": "数值", "en": "Number"},
                  {"zh": "一个数值（以字符串传递）。", "en": "A number (as a string)."},
                  ["100000"], ("number",)),
    ParameterType("date", {"zh": "日期", "en": "Date"},
                  {"zh": "日期，格式为 YYYY-MM-DD。", "en": "A date, YYYY-MM-DD."},
                  ["2026-01-01"], ("date",)),
    ParameterType("boolean", {"zh": "是否", "en": "Yes / no"},
                  {"zh": "true 或 false（用于是/否字段）。",
                   "en": "true or false (for a yes/no field)."}, [False], ("boolean",)),
]

PARAMETER_TYPES: dict[str, ParameterType] = {p.key: p for p in _PARAMETER_TYPES}
assert set(PARAMETER_TYPES) == set(rm.PARAMETER_TYPES)


def catalog() -> dict[str, Any]:
    """JSON-able registries for the metadata endpoint and the designer palette."""
    from tangram.engines.forms.date_ranges import date_range_catalog
    from tangram.engines.reports.calculated import SQL_FUNCTIONS
    from tangram.engines.reports.charts import CHART_TYPES

    return {
        "measures": [{"key": m.key, "label": m.label, "description": m.description,
                      "field_classes": sorted(m.accepts), "field_optional": m.field_optional,
                      "needs": m.capability} for m in MEASURES.values()],
        "derived_measures": [{"key": d.key, "label": d.label, "description": d.description,
                              "references": list(d.references)} for d in DERIVED.values()],
        "buckets": [{"key": b.key, "label": b.label, "description": b.description}
                    for b in BUCKETS.values()],
        "parameter_types": [{"key": p.key, "label": p.label, "description": p.description,
                             "examples": p.examples, "value_forms": list(p.value_forms),
                             **({"ranges": date_range_catalog()} if "range" in p.value_forms
                                else {})}
                            for p in PARAMETER_TYPES.values()],
        "chart_types": [{"key": c.key, "label": c.label, "description": c.description,
                         "roles": c.roles} for c in CHART_TYPES.values()],
        # The functions a calculated field (``"expression"``) may call: a subset
        # of the expression language, named by ``name`` like its functions.
        "calculated_functions": [{"name": f.name, "signature": f.signature,
                                  "description": f.description}
                                 for f in SQL_FUNCTIONS.values()],
    }
