"""Export a report result: CSV and XLSX of the rows (display labels, exact
numbers, a totals line), PNG and SVG of the chart (vl-convert, offline)."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pandas as pd
from openpyxl import Workbook

from tangram.engines.reports.results import TOTAL, ReportResult
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel.common import localize

FORMATS = ("csv", "xlsx", "png", "svg")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "png": "image/png", "svg": "image/svg+xml"}


def display_frame(result: ReportResult) -> pd.DataFrame:
    """Columns titled in the viewer's language; dimensions as their labels,
    measures as exact values; the totals as a last row."""
    cols = result.compiled.columns
    titles = [result.title(c.key) for c in cols]
    # Two columns may share a title (an unlabelled average of the field a
    # sum is labelled after): each then names its key, so neither column
    # replaces the other.
    shared = {t for t in titles if titles.count(t) > 1}
    data: dict[str, list[Any]] = {}
    for c, title in zip(cols, titles, strict=True):
        source = f"{c.key}__label" if c.role == "dimension" else c.key
        values = list(result.frame[source])
        if result.totals is not None:
            if c.role == "dimension":
                first = c is next(x for x in cols if x.role == "dimension")
                values.append(localize(TOTAL, result.language) if first else "")
            else:
                values.append(result.totals.get(c.key))
        data[f"{title} ({c.key})" if title in shared else title] = values
    return pd.DataFrame(data)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def to_csv(result: ReportResult) -> bytes:
    frame = display_frame(result)
    buffer = io.StringIO()
    frame.map(lambda v: format(v, "f") if isinstance(v, Decimal) else _cell(v)).to_csv(
        buffer, index=False)
    # A byte-order mark so that Excel opens UTF-8 (Chinese labels) correctly.
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def to_xlsx(result: ReportResult) -> bytes:
    frame = display_frame(result)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = result.report.key[:31]
    ws.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        ws.append([_cell(v) for v in row])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def chart_image(spec: dict[str, Any] | None, fmt: str) -> bytes:
    if spec is None:
        raise ValidationFailed([ErrorItem(code="no_chart", field="format", message=(
            "this report is a table: export it as csv or xlsx"))])
    import vl_convert as vlc

    if fmt == "png":
        return bytes(vlc.vegalite_to_png(json.dumps(spec), scale=2))
    return str(vlc.vegalite_to_svg(json.dumps(spec))).encode("utf-8")


def export(result: ReportResult, spec: dict[str, Any] | None, fmt: str) -> bytes:
    if fmt == "csv":
        return to_csv(result)
    if fmt == "xlsx":
        return to_xlsx(result)
    if fmt in ("png", "svg"):
        return chart_image(spec, fmt)
    raise ValidationFailed([ErrorItem(code="invalid_format", field="format", message=(
        f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}"))])
