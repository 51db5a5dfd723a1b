"""Report and Dashboard definitions.

A report aggregates the records of one form: dimensions group them (with date
buckets or numeric bins), measures aggregate them, a chart shows the result.
This module only describes the JSON; the report engine
(``tangram.engines.reports``) checks every field path against the published
forms and compiles the report to SQL. The names of measures, buckets, chart
types and parameter types here are the keys of the engine's registries (a test
keeps them equal).

    {"key": "won_by_month", "label": {"en": "Won by month"}, "form": "opportunity",
     "filter": {"field": "stage", "op": "eq", "value": "won"},
     "dimensions": [{"type": "date", "key": "month", "field": "close_date",
                     "bucket": "month"}],
     "measures": [{"agg": "sum", "key": "won", "field": "amount"}],
     "chart": {"type": "line", "x": "month", "y": ["won"]}}
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tangram.metamodel.common import Definition, Key, Label

FIELD_AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max", "median")
DERIVED_AGGREGATES = ("ratio", "share", "running_total", "change")
BUCKETS = ("day", "week", "month", "quarter", "year")
PARAMETER_TYPES = ("date_range", "user", "department", "text", "number", "date", "boolean")
MAX_ITEMS = 20  # dimensions, measures, parameters each
MAX_LIMIT = 10000

FieldPath = Annotated[str, Field(
    min_length=1, max_length=400, pattern=r"^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62})*$",
    description="A field key or a dotted path through relations and sub-tables, e.g. "
                "\"account.industry\" or \"lines.amount\".")]
SortSpec = Annotated[str, Field(pattern=r"^-?[a-z][a-z0-9_]{0,62}$", description=(
    "A dimension or measure key; \"-\" in front sorts descending."))]


# --------------------------------------------------------------------------- parameters

class Parameter(Definition):
    """A value the viewer can change; filters use it as ``{"$param": "<key>"}``.

    A condition whose parameter has no value (and no default) is left out, so an
    empty "owner" parameter means "every owner"."""

    key: Key
    label: Label
    type: Literal["date_range", "user", "department", "text", "number", "date", "boolean"]
    multiple: bool = Field(False, description="The value is a list (for \"in\" filters).")
    default: Any = Field(None, description="Used when the viewer gives no value.")
    required: bool = False


# --------------------------------------------------------------------------- dimensions

Expression = Annotated[str, Field(
    min_length=1, max_length=4000, description="A calculated field: an expression over the "
    "record's fields, e.g. \"record.amount * record.probability / 100\" (the SQL subset of "
    "the expression language; see docs/reports.md).")]


def _field_or_expression(item: Any, *, optional: bool = False) -> None:
    if item.field is not None and item.expression is not None:
        raise ValueError("give either field or expression, not both")
    if item.field is None and item.expression is None and not optional:
        raise ValueError("give a field or an expression")


class _DimensionBase(Definition):
    key: Key
    label: Label | None = None
    field: FieldPath | None = None
    expression: Expression | None = None

    @model_validator(mode="after")
    def _one_input(self) -> _DimensionBase:
        _field_or_expression(self)
        return self


class ValueDimension(_DimensionBase):
    """Group by the field's value (select, text, user, boolean, relation path…)."""

    type: Literal["value"]
    by: Literal["department"] | None = Field(None, description=(
        "For a user field: group by the user's primary department instead (a team "
        "leaderboard: owner by department)."))


class DateDimension(_DimensionBase):
    """Group a date or date-time by calendar period in the organization's time zone.
    ``week`` is the ISO week (Monday first); values are the period's first day."""

    type: Literal["date"]
    bucket: Literal["day", "week", "month", "quarter", "year"]


class BinDimension(_DimensionBase):
    """Group a number into bins ``[origin + i*width, origin + (i+1)*width)``."""

    type: Literal["bin"]
    width: Decimal = Field(gt=0, max_digits=20)
    origin: Decimal = Field(Decimal(0), max_digits=20)


Dimension = Annotated[ValueDimension | DateDimension | BinDimension,
                      Field(discriminator="type")]


# --------------------------------------------------------------------------- measures

class _MeasureBase(Definition):
    key: Key
    label: Label | None = None


class FieldMeasure(_MeasureBase):
    """An aggregate over the rows of a group; ``count`` without a field counts rows."""

    agg: Literal["count", "count_distinct", "sum", "avg", "min", "max", "median"]
    field: FieldPath | None = None
    expression: Expression | None = None

    @model_validator(mode="after")
    def _field_needed(self) -> FieldMeasure:
        _field_or_expression(self, optional=True)
        if self.field is None and self.expression is None and self.agg != "count":
            raise ValueError(f"{self.agg} needs a field or an expression")
        return self


class RatioMeasure(_MeasureBase):
    """``numerator / denominator`` of two measures (empty when the denominator is 0)."""

    agg: Literal["ratio"]
    numerator: Key
    denominator: Key


class ShareMeasure(_MeasureBase):
    """A measure's share of its total over all groups (0…1)."""

    agg: Literal["share"]
    of: Key


class RunningTotalMeasure(_MeasureBase):
    """Cumulative sum of a measure along a dimension (default: the first date one),
    restarting for each combination of the other dimensions."""

    agg: Literal["running_total"]
    of: Key
    along: Key | None = None


class ChangeMeasure(_MeasureBase):
    """Change of a measure from the previous period of a date dimension."""

    agg: Literal["change"]
    of: Key
    along: Key | None = None
    mode: Literal["percent", "absolute"] = "percent"


Measure = Annotated[FieldMeasure | RatioMeasure | ShareMeasure | RunningTotalMeasure
                    | ChangeMeasure, Field(discriminator="agg")]


# --------------------------------------------------------------------------- charts

class TableChart(Definition):
    type: Literal["table"]


class BarChart(Definition):
    type: Literal["bar"]
    x: Key
    y: list[Key] = Field(min_length=1, max_length=10)
    color: Key | None = None
    mode: Literal["grouped", "stacked"] = "grouped"
    horizontal: bool = False


class LineChart(Definition):
    type: Literal["line", "area"]
    x: Key
    y: list[Key] = Field(min_length=1, max_length=10)
    color: Key | None = None


class PieChart(Definition):
    type: Literal["pie"]
    category: Key
    value: Key
    donut: bool = False


class FunnelChart(Definition):
    """Ordered stages; each bar shows the conversion from the previous stage."""

    type: Literal["funnel"]
    stage: Key
    value: Key
    stages: list[str] | None = Field(None, max_length=50, description=(
        "Stage values in order (default: the select field's option order)."))
    cumulative: bool = Field(False, description="Count a record in its stage and every "
                             "earlier stage (it passed them).")


class KpiChart(Definition):
    type: Literal["kpi"]
    value: Key
    comparison: Key | None = Field(None, description="A change measure shown beside it.")
    target: Decimal | None = None


class HeatmapChart(Definition):
    type: Literal["heatmap"]
    x: Key
    y: Key
    value: Key


class ScatterChart(Definition):
    type: Literal["scatter"]
    x: Key
    y: Key
    color: Key | None = None
    size: Key | None = None


class LeaderboardChart(Definition):
    type: Literal["leaderboard"]
    name: Key
    value: Key


Chart = Annotated[TableChart | BarChart | LineChart | PieChart | FunnelChart | KpiChart
                  | HeatmapChart | ScatterChart | LeaderboardChart,
                  Field(discriminator="type")]


class Pivot(Definition):
    rows: list[Key] = Field(min_length=1, max_length=5)
    columns: list[Key] = Field(min_length=1, max_length=5)


# --------------------------------------------------------------------------- report

class Report(Definition):
    """A report definition (see ``docs/reports.md``)."""

    key: Key
    label: Label
    description: Label | None = None
    form: Key = Field(description="The source form: one result row aggregates its records.")
    rows: Key | None = Field(None, description=(
        "A sub-table field of the form: its rows (quote lines, installments) are the rows "
        "the report aggregates instead of the form's records; the record holding a row is "
        "reached as \"parent\" (or by the form's key), e.g. \"parent.account.region\"."))
    parameters: list[Parameter] = Field(default_factory=list, max_length=MAX_ITEMS)
    filter: dict[str, Any] | None = Field(None, description="The records filter language "
                                          "(docs/filters.md); values may be {\"$param\": key}.")
    dimensions: list[Dimension] = Field(default_factory=list, max_length=MAX_ITEMS)
    measures: list[Measure] = Field(min_length=1, max_length=MAX_ITEMS)
    sort: list[SortSpec] = Field(default_factory=list, max_length=MAX_ITEMS)
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    others: bool = Field(False, description="With limit: add one row aggregating the rest.")
    pivot: Pivot | None = None
    totals: bool = Field(True, description="Also compute the measures over all rows.")
    chart: Chart = Field(default_factory=lambda: TableChart(type="table"))


# --------------------------------------------------------------------------- dashboard

class DashboardFilter(Definition):
    """A dashboard-level value passed to every widget's report parameter of the same key."""

    key: Key
    label: Label
    type: Literal["date_range", "user", "department", "text", "number", "date"]
    multiple: bool = False
    default: Any = None


_COMPARISONS: tuple[Literal["previous", "last_year"], ...] = ("previous", "last_year")


class KpiWidget(Definition):
    """A KPI card: one measure of the widget's report in the current period, compared
    with the previous period and the same period last year."""

    measure: Key
    period: Literal["day", "week", "month", "quarter", "year"] = "month"
    complete: bool = Field(False, description=(
        "Show the last complete period (default: the current period to date, compared "
        "with as many days of the other periods)."))
    date_field: FieldPath | None = Field(None, description=(
        "The date that places a record in a period (default: the report's first date "
        "dimension's field)."))
    compare: list[Literal["previous", "last_year"]] = Field(
        default_factory=lambda: list(_COMPARISONS), max_length=2)
    target: Decimal | None = Field(None, description=(
        "The goal for the period (e.g. a monthly revenue target): the card shows how "
        "much of it the value reaches."))


class Widget(Definition):
    key: Key
    report: Key
    title: Label | None = None
    kpi: KpiWidget | None = Field(None, description="Show a KPI card instead of the report's "
                                  "chart.")
    x: int = Field(0, ge=0, le=11)
    y: int = Field(0, ge=0, le=1000)
    w: int = Field(6, ge=1, le=12)
    h: int = Field(4, ge=1, le=50)
    parameters: dict[str, Any] = Field(default_factory=dict, description=(
        "Fixed values for this widget's report parameters."))


class Dashboard(Definition):
    key: Key
    label: Label
    description: Label | None = None
    roles: list[Key] = Field(default_factory=list, max_length=MAX_ITEMS, description=(
        "Who it is for: only holders of these app roles see it (and the app's "
        "designers); empty: anyone who may see one of its reports."))
    filters: list[DashboardFilter] = Field(default_factory=list, max_length=MAX_ITEMS)
    widgets: list[Widget] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _fits_grid(self) -> Dashboard:
        # Raised as a ValidationError of its own so that each problem names
        # its widget ($.widgets[1].key), not the dashboard.
        problems: list[InitErrorDetails] = []
        seen: dict[str, int] = {}
        for i, w in enumerate(self.widgets):
            if w.key in seen:
                problems.append(InitErrorDetails(type=PydanticCustomError(
                    "duplicate_key", "widget key '{key}' is already used by widgets[{first}]; "
                    "each widget needs its own key", {"key": w.key, "first": seen[w.key]}),
                    loc=("widgets", i, "key"), input=w.key))
            seen.setdefault(w.key, i)
            if w.x + w.w > 12:
                problems.append(InitErrorDetails(type=PydanticCustomError(
                    "value_error", "widget '{key}' is wider than the 12-column grid "
                    "(x + w > 12)", {"key": w.key}), loc=("widgets", i, "w"), input=w.w))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


# --------------------------------------------------------------------------- alerts

class ThresholdCondition(Definition):
    """Crossed while the value is above (``>``) or below (``<``) the threshold."""

    type: Literal["above", "below"]
    threshold: Decimal = Field(max_digits=30)


class ChangeCondition(Definition):
    """Crossed while the last complete period's value moved more than ``percent``
    from the period before (``down``: dropped; ``up``: rose), e.g. last week's
    won amount is more than 20% below the week before."""

    type: Literal["change"]
    period: Literal["day", "week", "month", "quarter", "year"]
    direction: Literal["down", "up"] = "down"
    percent: Decimal = Field(gt=0, max_digits=12)
    date_field: FieldPath | None = Field(None, description=(
        "The date or date-time that places a record in a period (default: the field of the "
        "report's first date dimension)."))


AlertCondition = Annotated[ThresholdCondition | ChangeCondition, Field(discriminator="type")]


def _label_shape(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "texts" if isinstance(value, dict) else None


# An alert's label: one text (every reader sees it as written; alerts stored
# before labels had languages) or a text per language, e.g. {"zh": "华东周赢单下降",
# "en": "East weekly drop"}, shown to each reader in their language.
AlertLabel = Annotated[
    Annotated[Annotated[str, Field(min_length=1, max_length=200)], Tag("text")]
    | Annotated[Label, Tag("texts")],
    Discriminator(_label_shape, custom_error_type="label_type", custom_error_message=(
        'a label is a text or a text per language, e.g. {"zh": "周赢单下降", '
        '"en": "Weekly won drop"}'))]


class Alert(Definition):
    """A data alert: a report measure checked on a schedule against a condition;
    it notifies the recipients once each time the condition becomes true."""

    label: AlertLabel = Field(description=(
        "A text, or a text per language ({\"zh\": …, \"en\": …}): each recipient "
        "reads it in their language."))
    report: Key = Field(description="A published report of the app.")
    measure: Key = Field(description="A field measure of that report (count, sum, …).")
    parameters: dict[str, Any] = Field(default_factory=dict, description=(
        "Values of the report's parameters."))
    filter: dict[str, Any] | None = Field(None, description=(
        "An extra records filter (docs/filters.md), e.g. one region."))
    condition: AlertCondition
    schedule: str = Field("0 9 * * *", min_length=9, max_length=100, description=(
        "A cron expression in the organization's time zone (default: daily at 09:00)."))
    recipients: list[uuid.UUID] = Field(min_length=1, max_length=100)
    active: bool = True


class PackageAlert(Definition):
    """A data alert shipped in an app package (folder ``alerts/``). A package
    cannot name users, so it names a role: every holder of ``role`` gets their
    own copy of the alert, owned by them — so it is checked with their row
    scope (a regional manager's department tree is their region) — and
    notifying them. Copies follow the role's holders and the published
    definition (``tangram.engines.reports.alerts.sync_package_alerts``)."""

    key: Key
    label: Label
    report: Key = Field(description="A report of the app.")
    measure: Key = Field(description="A field measure of that report (count, sum, …).")
    parameters: dict[str, Any] = Field(default_factory=dict)
    filter: dict[str, Any] | None = None
    condition: AlertCondition
    schedule: str = Field("0 9 * * *", min_length=9, max_length=100)
    role: Key = Field(description="Each holder of this app role owns and receives a copy.")
    active: bool = True


def _register() -> None:
    from tangram.metamodel import storage

    storage.register_kind("report", Report)
    storage.register_kind("dashboard", Dashboard)
    storage.register_kind("alert", PackageAlert)


_register()
