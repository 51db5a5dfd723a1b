"""Pivot subtotals and KPI cards on SQLite and PostgreSQL, against the seeded
CRM of test_report_data; expected values computed in Python from the raw rows."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine

from tangram.engines.reports import cache
from tangram.engines.reports import service as reports
from tangram.engines.reports.kpi import kpi_card
from tangram.engines.reports.results import result_json
from tests.factories import label
from tests.integration.test_report_data import Crm, OwnerScope, build_crm

ZONE = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")


@pytest.fixture
def crm(engine: Engine) -> Crm:
    cache.clear()
    return build_crm(engine)


def _none(v: Any) -> Any:
    if v is None or isinstance(v, str | list | dict):
        return v
    return None if pd.isna(v) else v


def _rows(crm: Crm) -> list[dict[str, Any]]:
    return [{k: _none(v) for k, v in r.items()} for r in crm.opps.to_dict(orient="records")]


def _label(v: Any, *, select: bool) -> str:
    if v is None:
        return "(empty)"
    return f"{v}-en" if select else v


def _expected(rows: list[dict[str, Any]]) -> dict[str, Any]:
    amounts = [r["amount"] for r in rows if r["amount"] is not None]
    return {"n": len(rows), "total": sum(amounts) if amounts else None,
            "mean": (sum(amounts) / len(amounts)).quantize(CENT) if amounts else None,
            "accounts": len({r["account"] for r in rows if r["account"] is not None})}


def _close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got == want
    return abs(Decimal(str(got)) - Decimal(str(want))) <= CENT


def test_pivot_subtotals_come_from_the_records(crm: Crm) -> None:
    report = {"dimensions": [{"type": "value", "key": "stage", "field": "stage"},
                             {"type": "value", "key": "region", "field": "account.region"}],
              "measures": [{"agg": "count", "key": "n"},
                           {"agg": "sum", "key": "total", "field": "amount"},
                           {"agg": "avg", "key": "mean", "field": "amount"},
                           {"agg": "count_distinct", "key": "accounts", "field": "account"}],
              "pivot": {"rows": ["stage"], "columns": ["region"]}}
    from tangram.metamodel.reports import Report

    definition = Report.model_validate({"key": "p", "label": label("P"), "form": "opportunity",
                                        **report})
    with crm.world.sessions.begin() as s:
        result, spec = reports.run_definition(crm.ctx(s), app="demo", report=definition,
                                              version="draft", use_cache=False)
    margins = result.pivot_totals()
    assert margins is not None
    rows = _rows(crm)
    measures = ["n", "total", "mean", "accounts"]
    stages = {r["stage"] for r in rows}
    for stage in stages:
        want = _expected([r for r in rows if r["stage"] == stage])
        got = margins["rows"][(_label(stage, select=True),)]
        for m in measures:
            assert _close(got[m], want[m]), (stage, m)
    for region in {r["region"] for r in rows}:
        want = _expected([r for r in rows if r["region"] == region])
        got = margins["columns"][(_label(region, select=False),)]
        for m in measures:
            assert _close(got[m], want[m]), (region, m)
    grand = _expected(rows)
    for m in measures:
        assert _close(margins["grand"][m], grand[m])
    # An average subtotal is not the average of the cells' averages.
    body = result_json(result, chart=spec)["pivot"]
    assert len(body["row_totals"]) == len(body["rows"])
    assert len(body["column_totals"]) == len(body["columns"])
    assert body["grand_total"][0] == len(rows)
    first = body["rows"][0][0]
    index = [r[0] for r in body["rows"]].index(first)
    assert body["row_totals"][index][0] == margins["rows"][(first,)]["n"]


def _local_day(ts: Any) -> date:
    return pd.Timestamp(ts).tz_convert(ZONE).date()


def _sum_between(rows: list[dict[str, Any]], lo: date, hi: date) -> Decimal | None:
    amounts = [r["amount"] for r in rows
               if lo <= _local_day(r["closed_at"]) < hi and r["amount"] is not None]
    return sum(amounts) if amounts else None


@pytest.mark.parametrize(("period", "complete", "current", "previous", "last_year"), [
    # The frozen clock's day is Monday 5 Jan 2026 in Shanghai.
    ("month", True, (date(2025, 12, 1), date(2026, 1, 1)),
     (date(2025, 11, 1), date(2025, 12, 1)), (date(2024, 12, 1), date(2025, 1, 1))),
    ("quarter", False, (date(2026, 1, 1), date(2026, 1, 6)),
     (date(2025, 10, 1), date(2025, 10, 6)), (date(2025, 1, 1), date(2025, 1, 6))),
    ("week", True, (date(2025, 12, 29), date(2026, 1, 5)),
     (date(2025, 12, 22), date(2025, 12, 29)), (date(2024, 12, 30), date(2025, 1, 6))),
])
def test_kpi_card_compares_periods_in_the_viewers_scope(
        crm: Crm, period: str, complete: bool, current: tuple[date, date],
        previous: tuple[date, date], last_year: tuple[date, date]) -> None:
    body = {"label": label("Won"), "form": "opportunity",
            "dimensions": [{"type": "date", "key": "m", "field": "closed_at",
                            "bucket": "month"}],
            "measures": [{"agg": "sum", "key": "total", "field": "amount"}]}
    crm.world.run(reports.save_report_draft, app="demo", key="won", body=body)
    crm.world.run(reports.publish_report, app="demo", key="won")
    rows = _rows(crm)
    owner = crm.users[0]
    for policy, mine in ((None, rows), (OwnerScope(owner), [r for r in rows
                                                            if r["owner"] == owner])):
        with crm.world.sessions.begin() as s:
            ctx = crm.ctx(s, **({"policy": policy} if policy else {}))
            card = kpi_card(ctx, app="demo", key="won", measure="total", period=period,
                            complete=complete)
        value = _sum_between(mine, *current)
        assert card["from"] == current[0].isoformat()
        assert card["to"] == (current[1] - timedelta(days=1)).isoformat()
        assert card["value"] == (None if value is None else format(value, "f"))
        for name, span in (("previous", previous), ("last_year", last_year)):
            other = _sum_between(mine, *span)
            got = card[name]
            assert got["value"] == (None if other is None else format(other, "f")), name
            if value is not None and other is not None:
                assert Decimal(got["delta"]) == value - other
                if other:
                    assert got["percent"] == pytest.approx(float((value - other) / other * 100))
            else:
                assert got["delta"] is None


def test_dashboard_kpi_widget(crm: Crm) -> None:
    body = {"label": label("Won"), "form": "opportunity",
            "dimensions": [{"type": "date", "key": "m", "field": "closed_at",
                            "bucket": "month"}],
            "measures": [{"agg": "count", "key": "n"}]}
    crm.world.run(reports.save_report_draft, app="demo", key="won", body=body)
    crm.world.run(reports.publish_report, app="demo", key="won")
    crm.world.run(reports.save_dashboard, app="demo", key="cockpit", body={
        "label": label("Cockpit"),
        "widgets": [{"key": "k", "report": "won", "w": 3,
                     "kpi": {"measure": "n", "period": "month", "complete": True}},
                    {"key": "goal", "report": "won", "w": 3,
                     "kpi": {"measure": "n", "period": "month", "complete": True,
                             "compare": [], "target": 40}},
                    {"key": "chart", "report": "won", "x": 3, "w": 9}]})
    out = crm.world.run(reports.run_dashboard, app="demo", key="cockpit")
    widgets = {w["key"]: w for w in out["widgets"]}
    rows = _rows(crm)
    dec = sum(1 for r in rows if date(2025, 12, 1) <= _local_day(r["closed_at"])
              < date(2026, 1, 1))
    nov = sum(1 for r in rows if date(2025, 11, 1) <= _local_day(r["closed_at"])
              < date(2025, 12, 1))
    assert widgets["k"]["kpi"]["value"] == dec
    assert widgets["k"]["kpi"]["previous"]["value"] == nov
    assert widgets["k"]["kpi"]["previous"]["delta"] == dec - nov
    assert "result" in widgets["chart"] and "kpi" not in widgets["chart"]
    goal = widgets["goal"]["kpi"]
    assert goal["value"] == dec and "previous" not in goal and "target" not in widgets["k"]["kpi"]
    # Decimals travel as strings, as everywhere in the API.
    assert goal["target"]["value"] == "40"
    assert goal["target"]["percent"] == pytest.approx(dec / 40 * 100)
    assert Decimal(goal["target"]["remaining"]) == max(40 - dec, 0)
    from tangram.errors import DefinitionInvalid

    with pytest.raises(DefinitionInvalid) as err:
        crm.world.run(reports.save_dashboard, app="demo", key="bad", body={
            "label": label("Bad"),
            "widgets": [{"key": "k", "report": "won", "kpi": {"measure": "zz"}}]})
    assert err.value.errors[0].path == "$.widgets[0].kpi.measure"
