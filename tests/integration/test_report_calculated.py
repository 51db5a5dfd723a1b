"""Calculated fields (expressions compiled to SQL) on SQLite and PostgreSQL.

The seeded CRM of test_report_data; every expected value is computed in
Python over the raw rows the test generated (Decimal arithmetic, the
language's rounding), never from the engine's output.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine

from tangram.engines.reports import cache
from tangram.engines.reports.compiler import compile_report
from tangram.engines.reports.service import check_expressions, save_report_draft
from tangram.errors import DefinitionInvalid, PermissionDenied
from tangram.metamodel.reports import Report
from tests.factories import label
from tests.integration.test_report_data import Crm, OwnerScope, build_crm

ZONE = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 1, 5)  # the FrozenClock's day in Shanghai


@pytest.fixture
def crm(engine: Engine) -> Crm:
    cache.clear()
    return build_crm(engine)


def _none(v: Any) -> Any:
    if v is None or isinstance(v, str | list | dict):
        return v
    return None if pd.isna(v) else v


def _records(crm: Crm) -> list[dict[str, Any]]:
    return [{k: _none(v) for k, v in r.items()} for r in crm.opps.to_dict(orient="records")]


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _grouped(crm: Crm, key: Any, value: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for rec in _records(crm):
        out.setdefault(key(rec), []).append(value(rec))
    return out


def test_weighted_amount_is_exact(crm: Crm) -> None:
    result = crm.run({
        "dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
        "measures": [{"agg": "sum", "key": "weighted",
                      "expression": "record.amount * record.probability / 100"},
                     {"agg": "sum", "key": "thirds",
                      "expression": "round(record.amount / 3, 2)"},
                     {"agg": "max", "key": "neg", "expression": "abs(0 - record.amount)"}]})

    def weighted(r: dict[str, Any]) -> Any:
        return None if r["amount"] is None else r["amount"] * r["probability"] / 100

    def thirds(r: dict[str, Any]) -> Any:
        if r["amount"] is None:
            return None
        return (r["amount"] / 3).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    want_w = _grouped(crm, lambda r: r["stage"], weighted)
    want_t = _grouped(crm, lambda r: r["stage"], thirds)
    want_max = _grouped(crm, lambda r: r["stage"], lambda r: r["amount"])
    rows = {r["stage"]: r for r in result.frame.to_dict(orient="records")}
    assert set(rows) == set(want_w)
    for stage, row in rows.items():
        assert row["weighted"] == _sum(want_w[stage])
        assert row["thirds"] == _sum(want_t[stage])
        present = [a for a in want_max[stage] if a is not None]
        assert row["neg"] == (max(present) if present else None)
    everything = [weighted(r) for r in _records(crm)]
    assert result.totals["weighted"] == _sum(everything)
    assert isinstance(result.totals["weighted"], Decimal)


def test_calculated_dimensions_text_logic_and_dates(crm: Crm) -> None:
    result = crm.run({
        "dimensions": [
            {"type": "value", "key": "size",
             "expression": "iif(record.amount >= 10000 and not (record.stage in "
                           "[\"lost\"]), \"big\", \"small\")"},
            {"type": "value", "key": "where",
             "expression": "concat(upper(record.account.name), \"/\", "
                           "coalesce(record.stage, \"none\"))"},
            {"type": "value", "key": "year", "expression": "year(record.closed_at)"}],
        "measures": [{"agg": "count", "key": "n"},
                     {"agg": "avg", "key": "age", "expression":
                      "days_between(record.close_date, today())"}]})

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        big = r["amount"] is not None and r["amount"] >= 10000 and r["stage"] != "lost"
        where = (r["account_name"] or "").upper() + "/" + (r["stage"] or "none")
        return ("big" if big else "small", where, r["closed_at"].astimezone(ZONE).year)

    def age(r: dict[str, Any]) -> int:
        return (TODAY - date.fromisoformat(r["close_date"])).days

    want = _grouped(crm, key, age)
    got = {(r["size"], r["where"], r["year"]): r for r in result.frame.to_dict(orient="records")}
    assert set(got) == set(want)
    for k, ages in want.items():
        assert got[k]["n"] == len(ages)
        # The average of whole days: rounded half up to 2 decimals.
        assert got[k]["age"] == (Decimal(sum(ages)) / len(ages)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_boolean_and_weekday_dimensions(crm: Crm) -> None:
    result = crm.run({
        "dimensions": [
            {"type": "value", "key": "closed", "expression":
             "record.stage in [\"won\", \"lost\"] or is_empty(record.account)"},
            {"type": "value", "key": "wd", "expression": "weekday(record.closed_at)"}],
        "measures": [{"agg": "count", "key": "n"}]})
    want = _grouped(crm, lambda r: (r["stage"] in ("won", "lost") or r["account"] is None,
                                    r["closed_at"].astimezone(ZONE).isoweekday()),
                    lambda r: 1)
    got = {(r["closed"], r["wd"]): r["n"] for r in result.frame.to_dict(orient="records")}
    assert got == {k: len(v) for k, v in want.items()}
    labels = set(result.frame.closed__label)
    assert labels <= {"Yes", "No"}


def test_bins_and_date_buckets_over_expressions(crm: Crm) -> None:
    result = crm.run({
        "dimensions": [{"type": "bin", "key": "band", "width": "5000.5",
                        "expression": "record.amount * 2"},
                       {"type": "date", "key": "m", "bucket": "month",
                        "expression": "to_date(record.closed_at)"}],
        "measures": [{"agg": "count", "key": "n"}]})
    width = Decimal("5000.5")

    def key(r: dict[str, Any]) -> tuple[Any, Any]:
        band = None if r["amount"] is None else (r["amount"] * 2 // width) * width
        local = r["closed_at"].astimezone(ZONE).date()
        return band, local.replace(day=1)

    want = _grouped(crm, key, lambda r: 1)
    got = {(r["band"], r["m"]): r["n"] for r in result.frame.to_dict(orient="records")}
    assert got == {k: len(v) for k, v in want.items()}


REFUSED = [
    ("len(record.name)", "expression_not_supported"),
    ("record.amount ** 2", "expression_not_supported"),
    ("record.amount % 2", "expression_not_supported"),
    ("record.__class__", "expression_invalid"),
    ("record.amount; DROP TABLE definitions", "expression_invalid"),
    ("__import__('os').system('x')", "expression_invalid"),
    ("user.id", "expression_invalid"),
    ("record", "expression_not_supported"),
    ("record.nope * 2", "unknown_field"),
    ("record.name * 2", "expression_type"),
    ("record.lines.qty", "to_many_not_allowed"),
    ("record.contacts", "expression_type"),
    ("round(record.amount, record.probability)", "expression_not_supported"),
    ("record.amount in [record.probability]", "expression_not_supported"),
]


def test_expressions_outside_the_subset_are_refused_with_their_path(crm: Crm) -> None:
    for expression, code in REFUSED:
        body = {"measures": [{"agg": "count", "key": "n"},
                             {"agg": "sum", "key": "x", "expression": expression}]}
        with pytest.raises(DefinitionInvalid) as err:
            crm.run(body)
        assert (err.value.errors[0].path, err.value.errors[0].code) == (
            "$.measures[1].expression", code), expression
        report = Report.model_validate({"key": "r", "label": label("r"),
                                        "form": "opportunity", **body})
        early = check_expressions(report)  # what saving a draft checks, without forms
        if code.startswith("expression_") and code != "expression_type":
            assert [(e.path, e.code) for e in early] == [("$.measures[1].expression", code)]


def test_saving_a_draft_refuses_an_expression_outside_the_subset(crm: Crm) -> None:
    body = {"label": label("r"), "form": "opportunity",
            "dimensions": [{"type": "value", "key": "d", "expression": "matches(record.name, "
                            "\"a\")"}],
            "measures": [{"agg": "count", "key": "n"}]}
    with pytest.raises(DefinitionInvalid) as err:
        crm.world.run(save_report_draft, app="demo", key="r", body=body)
    assert err.value.errors[0].path == "$.dimensions[0].expression"
    assert "matches() is not available in reports" in err.value.errors[0].message


def test_values_in_expressions_are_bound_parameters(crm: Crm) -> None:
    evil = "x'; DROP TABLE definitions; --"
    body = {"measures": [{"agg": "sum", "key": "hits",
                          "expression": f"iif(record.name == \"{evil}\", 1, 0)"}]}
    result = crm.run(body)
    assert result.frame.hits[0] == 0
    report = Report.model_validate({"key": "r", "label": label("r"), "form": "opportunity",
                                    **body})
    with crm.world.sessions.begin() as s:
        compiled = compile_report(crm.ctx(s), app="demo", report=report)
        text, params = compiled.sql(s.get_bind().dialect)
    assert "DROP" not in text and evil in params.values()
    assert crm.run({"measures": [{"agg": "count", "key": "n"}]}).frame.n[0] == len(crm.opps)


def test_hidden_fields_in_expressions_are_refused(crm: Crm) -> None:
    with pytest.raises(PermissionDenied) as err:
        crm.run({"measures": [{"agg": "count", "key": "n", "expression":
                               "iif(record.account.region == \"华东\", 1, none)"}]},
                policy=OwnerScope(crm.users[0], {"account": "region"}))
    assert err.value.errors[0].path == "$.measures[0].expression"


def test_row_scope_applies_to_calculated_measures(crm: Crm) -> None:
    owner = crm.users[1]
    result = crm.run({"measures": [{"agg": "sum", "key": "w",
                                    "expression": "record.amount * 2"}]},
                     policy=OwnerScope(owner))
    mine = [r["amount"] * 2 for r in _records(crm)
            if r["owner"] == owner and r["amount"] is not None]
    assert result.frame.w[0] == (sum(mine) if mine else None)
