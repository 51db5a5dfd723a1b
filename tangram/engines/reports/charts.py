"""Chart types: one registry entry per type, building a Vega-Lite spec with altair.

``CHART_TYPES`` is read by validation (``roles``: which chart attribute names
a dimension or a measure), by the builders below, the metadata endpoint and
the docs (a test fails when a type is missing in ``docs/reports.md``). Specs
embed their data (``data.values``) and name no external URL; axis titles are
the dimension and measure labels in the viewer's language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import altair as alt
import pandas as pd

from tangram.engines.reports.compiler import OutputColumn
from tangram.engines.reports.results import ReportResult, to_json
from tangram.metamodel import fields as fm
from tangram.metamodel import reports as rm
from tangram.metamodel.common import localize

Spec = dict[str, Any]
CONVERSION = {"zh": "转化率", "en": "Conversion"}
RANK = {"zh": "排名", "en": "Rank"}


def _records(result: ReportResult, keys: list[str]) -> list[dict[str, Any]]:
    """Chart data: dimension labels as text, measures as JSON numbers."""
    out = []
    for rec in result.frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key in keys:
            if key.startswith("_"):
                value = rec.get(key)
                row[key] = None if value is None or value != value else float(value)
                continue
            col = result.column(key)
            if col.role == "dimension":
                row[key] = rec[f"{key}__label"]
            else:
                value = rec[key]
                row[key] = (float(value) if isinstance(value, (Decimal, int, float))
                            and not isinstance(value, bool) else to_json(value))
        out.append(row)
    return out


def _data(result: ReportResult, keys: list[str]) -> alt.Data:
    return alt.Data(values=_records(result, keys))


def _nominal(result: ReportResult, key: str, **kw: Any) -> Any:
    return alt.X(f"{key}:N", title=result.title(key), sort=None, **kw)


def _long(result: ReportResult, x: str, y: list[str]) -> alt.Data:
    """Several measures on one axis: one row per (x, measure), the measure's
    title in ``_series`` and its value in ``_value``."""
    values = []
    for rec in _records(result, [x, *y]):
        for key in y:
            values.append({x: rec[x], "_series": result.title(key), "_value": rec[key]})
    return alt.Data(values=values)


def _bar(result: ReportResult, c: Any) -> Spec:
    keys = [c.x, *c.y] + ([c.color] if c.color else [])
    x = _nominal(result, c.x)
    stack: Literal["zero"] | None = "zero" if c.mode == "stacked" else None
    if len(c.y) == 1:
        field, title = f"{c.y[0]}:Q", result.title(c.y[0])
        base = alt.Chart(_data(result, keys)).mark_bar()
        color = alt.Color(f"{c.color}:N", title=result.title(c.color), sort=None) \
            if c.color else alt.Undefined
        offset = alt.XOffset(f"{c.color}:N") if c.color and c.mode == "grouped" else \
            alt.Undefined
    else:
        field, title = "_value:Q", ", ".join(result.title(k) for k in c.y)
        base = alt.Chart(_long(result, c.x, c.y)).mark_bar()
        color = alt.Color("_series:N", title=None)
        offset = alt.XOffset("_series:N") if c.mode == "grouped" else alt.Undefined
    if c.horizontal:
        chart = base.encode(y=alt.Y(f"{c.x}:N", title=result.title(c.x), sort=None),
                            x=alt.X(field, title=title, stack=stack), color=color)
    else:
        chart = base.encode(x=x, y=alt.Y(field, title=title, stack=stack), color=color,
                            xOffset=offset)
    return chart.to_dict()


def _line(result: ReportResult, c: Any) -> Spec:
    keys = [c.x, *c.y] + ([c.color] if c.color else [])
    chart = alt.Chart(_data(result, keys) if len(c.y) == 1 else _long(result, c.x, c.y))
    chart = chart.mark_area() if c.type == "area" else chart.mark_line(point=True)
    if len(c.y) == 1:
        enc: dict[str, Any] = {"y": alt.Y(f"{c.y[0]}:Q", title=result.title(c.y[0]))}
        if c.color:
            enc["color"] = alt.Color(f"{c.color}:N", title=result.title(c.color), sort=None)
    else:
        enc = {"y": alt.Y("_value:Q", title=", ".join(result.title(k) for k in c.y)),
               "color": alt.Color("_series:N", title=None)}
    return chart.encode(x=_nominal(result, c.x), **enc).to_dict()


def _pie(result: ReportResult, c: rm.PieChart) -> Spec:
    chart = alt.Chart(_data(result, [c.category, c.value])).mark_arc(
        innerRadius=60 if c.donut else 0)
    return chart.encode(theta=alt.Theta(f"{c.value}:Q", title=result.title(c.value)),
                        color=alt.Color(f"{c.category}:N", title=result.title(c.category),
                                        sort=None)).to_dict()


def funnel_order(col: OutputColumn, c: rm.FunnelChart) -> list[Any] | None:
    """The funnel's stages in order: ``stages``, else the select field's options."""
    if c.stages is not None:
        return list(c.stages)
    if col.ref is not None and isinstance(col.ref.field, fm.SelectField):
        return [o.value for o in col.ref.field.options]
    return None


def prepare_funnel(result: ReportResult, c: rm.FunnelChart) -> None:
    """Order rows by stage and add ``_conversion`` (value / previous stage's value);
    ``cumulative`` first turns each value into "reached at least this stage"."""
    order = funnel_order(result.column(c.stage), c)
    frame = result.frame
    if order:
        position = {v: i for i, v in enumerate(order)}
        frame = frame[frame[c.stage].isin(position)].copy()
        frame["_order"] = frame[c.stage].map(position)
        frame = frame.sort_values("_order").drop(columns="_order")
    frame = frame.reset_index(drop=True)
    if c.cumulative:
        # Sums of the values as they are (counts stay integers, decimals exact).
        running: list[Any] = []
        acc: Any = 0
        for v in reversed(list(frame[c.value])):
            acc = acc + (v or 0)
            running.append(acc)
        frame[c.value] = pd.Series(list(reversed(running)), dtype=object)
    values = [float(v or 0) for v in frame[c.value]]
    conversion: list[float | None] = [None]
    for before, now in zip(values, values[1:], strict=False):
        conversion.append(now / before if before else None)
    frame["_conversion"] = pd.Series(conversion[:len(frame)], dtype=object)
    result.frame = frame
    if "_conversion" not in result.extra_columns:
        result.extra_columns.append("_conversion")


def _funnel(result: ReportResult, c: rm.FunnelChart) -> Spec:
    prepare_funnel(result, c)
    data = _data(result, [c.stage, c.value, "_conversion"])
    base = alt.Chart(data).encode(y=alt.Y(f"{c.stage}:N", title=result.title(c.stage),
                                          sort=None))
    bars = base.mark_bar().encode(x=alt.X(f"{c.value}:Q", title=result.title(c.value)))
    text = base.mark_text(align="left", dx=4).encode(
        x=alt.X(f"{c.value}:Q"), text=alt.Text("_conversion:Q", format=".1%"))
    return alt.layer(bars, text).to_dict()


def _kpi(result: ReportResult, c: rm.KpiChart) -> Spec:
    keys = [c.value] + ([c.comparison] if c.comparison else [])
    records = _records(result, keys)
    row = records[-1] if records else {k: None for k in keys}
    value = {"value": row.get(c.value), "title": result.title(c.value)}
    if c.comparison:
        value["comparison"] = row.get(c.comparison)
    if c.target is not None:
        value["target"] = float(c.target)
    chart = alt.Chart(alt.Data(values=[value])).mark_text(fontSize=36).encode(
        text=alt.Text("value:Q", format=",.2f"))
    return chart.properties(title=result.title(c.value)).to_dict()


def _heatmap(result: ReportResult, c: rm.HeatmapChart) -> Spec:
    chart = alt.Chart(_data(result, [c.x, c.y, c.value])).mark_rect()
    return chart.encode(x=_nominal(result, c.x),
                        y=alt.Y(f"{c.y}:N", title=result.title(c.y), sort=None),
                        color=alt.Color(f"{c.value}:Q", title=result.title(c.value))).to_dict()


def _scatter(result: ReportResult, c: rm.ScatterChart) -> Spec:
    keys = [c.x, c.y] + [k for k in (c.color, c.size) if k]
    enc: dict[str, Any] = {"x": alt.X(f"{c.x}:Q", title=result.title(c.x)),
                           "y": alt.Y(f"{c.y}:Q", title=result.title(c.y))}
    if c.color:
        enc["color"] = alt.Color(f"{c.color}:N", title=result.title(c.color))
    if c.size:
        enc["size"] = alt.Size(f"{c.size}:Q", title=result.title(c.size))
    return alt.Chart(_data(result, keys)).mark_point().encode(**enc).to_dict()


def _leaderboard(result: ReportResult, c: rm.LeaderboardChart) -> Spec:
    chart = alt.Chart(_data(result, [c.name, c.value])).mark_bar()
    return chart.encode(
        y=alt.Y(f"{c.name}:N", title=result.title(c.name), sort="-x"),
        x=alt.X(f"{c.value}:Q", title=result.title(c.value))).to_dict()


def _table(result: ReportResult, c: rm.TableChart) -> Spec | None:
    return None  # the UI renders the rows; nothing to draw


@dataclass(frozen=True)
class ChartKind:
    key: str
    label: dict[str, str]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label
    roles: dict[str, str]  # chart attribute -> "dimension" | "measure" | "any"
    build: Callable[[ReportResult, Any], Spec | None]


_CHARTS = [
    ChartKind("table", {"zh": "表格", "en": "Table"},
              {"zh": "以表格（或透视表）展示数据行。", "en": "The rows as a table (or pivot)."},
              {}, _table),
    ChartKind("bar", {"zh": "柱状图", "en": "Bar"},
              {"zh": "按 x 轴取值绘制柱形；多个度量或颜色维度可分组或堆叠显示。",
               "en": "Bars per x value; several measures or a color dimension grouped or "
                     "stacked."},
              {"x": "dimension", "y": "measure", "color": "dimension"}, _bar),
    ChartKind("line", {"zh": "折线图", "en": "Line"},
              {"zh": "沿 x 维度绘制折线，展示趋势。", "en": "Lines over an x dimension (trends)."},
              {"x": "dimension", "y": "measure", "color": "dimension"}, _line),
    ChartKind("area", {"zh": "面积图", "en": "Area"},
              {"zh": "与折线图相同，并填充折线下方的区域。", "en": "Like line, filled."},
              {"x": "dimension", "y": "measure", "color": "dimension"}, _line),
    ChartKind("pie", {"zh": "饼图", "en": "Pie / donut"},
              {"zh": "展示一个度量的各部分占比；设置 donut: true 时显示为环形图。",
               "en": "Shares of one measure; donut: true leaves a hole."},
              {"category": "dimension", "value": "measure"}, _pie),
    ChartKind("funnel", {"zh": "漏斗图", "en": "Funnel"},
              {"zh": "按顺序排列的各阶段及逐级转化率（本阶段值 / 上一阶段值）。",
               "en": "Ordered stages with the stage-to-stage conversion (value / previous "
                     "value)."},
              {"stage": "dimension", "value": "measure"}, _funnel),
    ChartKind("kpi", {"zh": "指标卡", "en": "KPI card"},
              {"zh": "突出显示一个数字（最后一行的值），可附带对比值（一个变化度量）和目标值。",
               "en": "One number (the last row's value), a comparison (a change measure) and "
                     "a target."}, {"value": "measure", "comparison": "measure"}, _kpi),
    ChartKind("heatmap", {"zh": "热力图", "en": "Heat map"},
              {"zh": "以两个维度为横纵轴，用颜色深浅表示度量的大小。",
               "en": "A measure colored over two dimensions."},
              {"x": "dimension", "y": "dimension", "value": "measure"}, _heatmap),
    ChartKind("scatter", {"zh": "散点图", "en": "Scatter"},
              {"zh": "每个分组一个点，两个度量分别作为 x 和 y 坐标。",
               "en": "Two measures per group as x and y."},
              {"x": "measure", "y": "measure", "color": "dimension", "size": "measure"},
              _scatter),
    ChartKind("leaderboard", {"zh": "排行榜", "en": "Leaderboard"},
              {"zh": "带条形的排名列表（对报表排序并限制条数即得前 N 名）。",
               "en": "A ranked list with bars (sort and limit the report for top N)."},
              {"name": "dimension", "value": "measure"}, _leaderboard),
]

CHART_TYPES: dict[str, ChartKind] = {c.key: c for c in _CHARTS}


def chart_spec(result: ReportResult) -> Spec | None:
    """The Vega-Lite spec of the report's chart (None for a table)."""
    chart = result.report.chart
    spec = CHART_TYPES[chart.type].build(result, chart)
    if spec is not None:
        spec.pop("config", None)
        title = localize(result.report.label, result.language)
        spec.setdefault("title", title)
    return spec


def chart_kinds_in_model() -> set[str]:
    """Chart type names the metamodel accepts (kept equal to the registry by a test)."""
    names: set[str] = set()
    for model in (rm.TableChart, rm.BarChart, rm.LineChart, rm.PieChart, rm.FunnelChart,
                  rm.KpiChart, rm.HeatmapChart, rm.ScatterChart, rm.LeaderboardChart):
        annotation = model.model_fields["type"].annotation
        names.update(getattr(annotation, "__args__", ()))
    return names
