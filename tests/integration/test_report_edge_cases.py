"""Reports at their edges, over HTTP as a builder would meet them: numbers out
of the database's range, averages and their types, totals of derived
measures, constant arithmetic, bad parameter values, drill-down of an
element that does not exist, KPI targets, timestamps and dashboard keys.
Every answer is the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import field, form_body, label

BASE = "/api/apps/shop"
TICKET = form_body(
    "ticket", field("name"), field("priority", "select", options=[
        {"value": v, "label": label(v)} for v in ("high", "low")]),
    field("satisfaction", "integer"), field("amount", "currency"),
    field("closed_on", "date"))
# priority, satisfaction, amount, closed_on
ROWS = [("high", 5, "100.00", "2026-01-05"), ("high", 4, "200.01", "2026-02-01"),
        ("high", 4, "50.00", "2026-02-03"), ("low", 3, None, "2026-02-10"),
        ("low", None, "10.00", "2025-12-31")]


@pytest.fixture
def shop(admin_client: TestClient) -> TestClient:
    c = admin_client
    assert c.post("/api/apps", json={"key": "shop", "name": label("Shop")}).status_code == 201
    assert c.put(f"{BASE}/forms/ticket/draft", json={"definition": TICKET}).status_code == 200
    assert c.post(f"{BASE}/forms/ticket/publish", json={}).status_code == 200
    for i, (priority, sat, amount, day) in enumerate(ROWS):
        res = c.post(f"{BASE}/forms/ticket/records", json={"values": {
            "name": f"t{i}", "priority": priority, "satisfaction": sat, "amount": amount,
            "closed_on": day}})
        assert res.status_code == 201, res.text
    return c


def report(**body: Any) -> dict[str, Any]:
    return {"label": label("r"), "form": "ticket", "dimensions": [], **body}


def draft(c: TestClient, key: str, body: dict[str, Any]) -> Any:
    return c.put(f"{BASE}/reports/{key}/draft", json={"definition": body})


def run_draft(c: TestClient, key: str, body: dict[str, Any], **parameters: Any) -> Any:
    saved = draft(c, key, body)
    assert saved.status_code == 200, saved.text
    return c.post(f"{BASE}/reports/{key}/run", json={"draft": True, "parameters": parameters})


def publish(c: TestClient, key: str, body: dict[str, Any]) -> None:
    assert draft(c, key, body).status_code == 200
    res = c.post(f"{BASE}/reports/{key}/publish", json={})
    assert res.status_code == 200, res.text


def paths(res: Any) -> list[tuple[str, str | None]]:
    return [(e["code"], e.get("path") or e.get("field")) for e in res.json()["errors"]]


# ----------------------------------------------------------------- D1, D2: out of range

@pytest.mark.parametrize("expression", [
    "record.amount * 99999999999999999999999999999999999999",
    "record.satisfaction + 9223372036854775808",
    "record.amount + 99999999999999999.99",
])
def test_a_constant_out_of_range_is_refused_when_saved(shop: TestClient, expression: str):
    res = draft(shop, "big", report(measures=[{"agg": "sum", "key": "x",
                                               "expression": expression}]))
    assert res.status_code == 422, res.text
    assert paths(res) == [("out_of_range", "$.measures[0].expression")]
    assert "range" in res.json()["errors"][0]["message"]


@pytest.mark.parametrize("expression", [
    "record.amount * 1000000000000 * 1000000000000",
    "record.amount * 10000000000 * 10000000000",
    "record.satisfaction * 1000000000000 * 1000000000000",
    "record.amount * 1000000000000 / 3",
])
def test_a_value_out_of_range_is_a_422_naming_the_measure_on_every_database(
        shop: TestClient, expression: str):
    body = report(dimensions=[{"type": "value", "key": "p", "field": "priority"}],
                  measures=[{"agg": "count", "key": "n"},
                            {"agg": "sum", "key": "x", "expression": expression}])
    assert draft(shop, "big", body).status_code == 200
    assert shop.post(f"{BASE}/reports/big/validate").json()["valid"]
    res = shop.post(f"{BASE}/reports/big/run", json={"draft": True})
    assert res.status_code == 422, res.text
    assert ("out_of_range", "$.measures[1].expression") in paths(res)
    # The connection still serves the next request.
    assert shop.get("/api/health").status_code == 200


def test_a_bin_wider_than_the_range_is_refused(shop: TestClient):
    body = report(dimensions=[{"type": "bin", "key": "b", "field": "amount",
                               "width": "99999999999999999999"}],
                  measures=[{"agg": "count", "key": "n"}])
    assert draft(shop, "bins", body).status_code == 200
    checked = shop.post(f"{BASE}/reports/bins/validate").json()
    assert [(e["code"], e["path"]) for e in checked["errors"]] == [
        ("out_of_range", "$.dimensions[0].width")]
    res = shop.post(f"{BASE}/reports/bins/run", json={"draft": True})
    assert res.status_code == 422 and paths(res) == [("out_of_range", "$.dimensions[0].width")]


def test_an_unexpected_error_is_a_500_that_leaves_the_asgi_app(app: FastAPI):
    """A 500 is answered by our handler inside the app; nothing escapes to the
    server (which would log it again and drop the keep-alive connection)."""
    @app.get("/api/test-boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=True) as client:
        res = client.get("/api/test-boom")
        assert res.status_code == 500
        assert res.json()["code"] == "internal_error"
        assert res.headers["x-content-type-options"] == "nosniff"
        assert client.get("/api/health").status_code == 200


# ----------------------------------------------------------------- D5, D16: averages and types

def test_averages_are_rounded_decimals_and_column_types_match_values(shop: TestClient):
    body = report(dimensions=[{"type": "value", "key": "p", "field": "priority"}],
                  measures=[{"agg": "count", "key": "n"},
                            {"agg": "avg", "key": "sat", "field": "satisfaction"},
                            {"agg": "avg", "key": "amt", "field": "amount"},
                            {"agg": "avg", "key": "days",
                             "expression": "days_between(record.closed_on, date(2026, 3, 1))"},
                            {"agg": "sum", "key": "total", "field": "amount"},
                            {"agg": "sum", "key": "sats", "field": "satisfaction"},
                            {"agg": "share", "key": "part", "of": "n"},
                            {"agg": "ratio", "key": "per", "numerator": "amt",
                             "denominator": "sat"}])
    res = run_draft(shop, "avgs", body)
    assert res.status_code == 200, res.text
    out = res.json()
    high = next(r for r in out["rows"] if r["p"] == "high")
    assert high["sat"] == "4.33"  # 13 / 3, an integer field: 2 decimals
    assert high["amt"] == "116.67"  # 350.01 / 3, half up to the field's 2 decimals
    assert high["days"] == "36.33"  # (55 + 28 + 26) / 3
    assert out["totals"]["sat"] == "4.00" and out["totals"]["amt"] == "90.00"
    assert high["per"] == pytest.approx(350.01 / 13)  # same on both databases
    types = {c["key"]: (c["type"], c.get("scale")) for c in out["columns"]}
    assert types == {"p": ("text", None), "n": ("count", None), "sat": ("decimal", 2),
                     "amt": ("decimal", 2), "days": ("decimal", 2),
                     "total": ("decimal", 2), "sats": ("integer", None),
                     "part": ("float", None), "per": ("float", None)}
    for row in out["rows"]:
        for key, (kind, _) in types.items():
            value = row[key]
            if value is None:
                continue
            expected = {"count": int, "integer": int, "decimal": str, "float": float,
                        "text": str}[kind]
            assert type(value) is expected, (key, value)


# ----------------------------------------------------------------- D10: totals of derived

def test_derived_measures_other_than_ratio_have_no_total(shop: TestClient):
    body = report(dimensions=[{"type": "value", "key": "p", "field": "priority"},
                              {"type": "date", "key": "m", "field": "closed_on",
                               "bucket": "month"}],
                  measures=[{"agg": "count", "key": "n"},
                            {"agg": "sum", "key": "amt", "field": "amount"},
                            {"agg": "share", "key": "part", "of": "n"},
                            {"agg": "running_total", "key": "cum", "of": "n"},
                            {"agg": "change", "key": "growth", "of": "n", "along": "m"},
                            {"agg": "ratio", "key": "per", "numerator": "amt",
                             "denominator": "n"}],
                  pivot={"rows": ["p"], "columns": ["m"]})
    res = run_draft(shop, "derived", body)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["totals"] == {"n": 5, "amt": "360.01", "part": None, "cum": None,
                             "growth": None, "per": pytest.approx(72.002)}
    assert out["pivot"]["grand_total"] == [5, "360.01", None, None, None,
                                           pytest.approx(72.002)]


# ----------------------------------------------------------------- D11: constant division

def test_a_constant_quotient_is_computed_like_any_quotient(shop: TestClient):
    body = report(measures=[{"agg": "max", "key": "q", "expression":
                             "1 / 3 + record.amount * 0"},
                            {"agg": "max", "key": "r", "expression": "record.amount / 3"}])
    res = run_draft(shop, "third", body)
    assert res.status_code == 200, res.text
    totals = res.json()["totals"]
    assert totals["q"] == "0.33333333"  # rounded half up to 8 decimals
    assert totals["r"] == "66.670000"


# ----------------------------------------------------------------- D12: parameter messages

def test_a_number_parameter_that_is_not_a_number_says_so(shop: TestClient):
    body = report(parameters=[{"key": "min", "label": label("Min"), "type": "number"}],
                  filter={"field": "amount", "op": "gte", "value": {"$param": "min"}},
                  measures=[{"agg": "count", "key": "n"}])
    res = run_draft(shop, "params", body, min="abc")
    assert res.status_code == 422
    [error] = res.json()["errors"]
    assert error["field"] == "parameters.min"
    assert "'abc' is not a number" in error["message"]
    assert "class" not in error["message"]
    for bad in ("NaN", "Infinity"):
        res = shop.post(f"{BASE}/reports/params/run", json={"draft": True,
                                                            "parameters": {"min": bad}})
        assert res.status_code == 422 and "is not a number" in res.text


# ----------------------------------------------------------------- D13: drill-down elements

def test_drilldown_refuses_unknown_dimensions_and_a_date_that_is_no_bucket(
        shop: TestClient):
    publish(shop, "drill", report(
        dimensions=[{"type": "value", "key": "p", "field": "priority"},
                    {"type": "date", "key": "m", "field": "closed_on", "bucket": "month"}],
        measures=[{"agg": "count", "key": "n"}]))
    url = f"{BASE}/reports/drill/drilldown"
    res = shop.post(url, json={"element": {"zz": "x", "p": "high"}})
    assert res.status_code == 422
    assert paths(res) == [("unknown_key", "element.zz")]
    # A dimension left out is a subtotal's (every value of it); {} the total's.
    for element, total in (({"p": "high"}, None), ({}, None)):
        res = shop.post(url, json={"element": element})
        assert res.status_code == 200, res.text
        found = shop.post(f"{BASE}/forms/ticket/records/query", json={
            "filter": res.json()["filter"], "include_total": True}).json()["total"]
        run = shop.post(f"{BASE}/reports/drill/run", json={}).json()
        counted = sum(r["n"] for r in run["rows"] if element.get("p", r["p"]) == r["p"])
        assert found == counted
    res = shop.post(url, json={"element": {"p": "high", "m": "2026-02-15"}})
    assert res.status_code == 422
    assert paths(res) == [("invalid_value", "element.m")]
    assert "2026-02-01" in res.json()["errors"][0]["message"]

    ok = shop.post(url, json={"element": {"p": "high", "m": "2026-02-01"}})
    assert ok.status_code == 200, ok.text
    found = shop.post(f"{BASE}/forms/ticket/records/query", json={
        "filter": ok.json()["filter"], "include_total": True}).json()
    assert found["total"] == 2


# ----------------------------------------------------------------- D14: KPI targets

@pytest.mark.parametrize("target", ["-5", "0", "1e400", "NaN"])
def test_a_kpi_target_out_of_range_is_refused(shop: TestClient, target: str):
    publish(shop, "kpis", report(
        dimensions=[{"type": "date", "key": "m", "field": "closed_on", "bucket": "month"}],
        measures=[{"agg": "sum", "key": "s", "field": "amount"}]))
    res = shop.post(f"{BASE}/reports/kpis/kpi", json={"measure": "s", "period": "month",
                                                      "target": target})
    assert res.status_code == 422, res.text
    assert "target" in res.text
    dash = shop.put(f"{BASE}/dashboards/k", json={"definition": {
        "label": label("k"), "widgets": [{"key": "w", "report": "kpis", "kpi": {
            "measure": "s", "target": target}}]}})
    assert dash.status_code == 422, dash.text
    assert [e["path"] for e in dash.json()["errors"]] == ["$.widgets[0].kpi.target"]
    good = shop.post(f"{BASE}/reports/kpis/kpi", json={"measure": "s", "period": "month",
                                                       "target": "500"})
    assert good.status_code == 200 and good.json()["target"]["value"] == "500"


# ----------------------------------------------------------------- D15: timestamps

def test_timestamps_in_results_are_utc_with_z(shop: TestClient):
    body = report(dimensions=[{"type": "value", "key": "p", "field": "priority"}],
                  measures=[{"agg": "min", "key": "first", "field": "created_at"},
                            {"agg": "max", "key": "last", "field": "updated_at"}])
    res = run_draft(shop, "times", body)
    assert res.status_code == 200, res.text
    out = res.json()
    values = [r[k] for r in out["rows"] for k in ("first", "last")]
    values += [out["totals"]["first"], out["totals"]["last"]]
    assert values and all(v.endswith("Z") and "+00:00" not in v for v in values)
    record = shop.get(f"{BASE}/forms/ticket/records").json()["items"][0]
    assert record["created_at"].endswith("Z")


# ----------------------------------------------------------------- D17: widget keys

def test_a_duplicate_widget_key_names_the_widget(shop: TestClient):
    publish(shop, "plain", report(measures=[{"agg": "count", "key": "n"}]))
    res = shop.put(f"{BASE}/dashboards/twice", json={"definition": {
        "label": label("d"), "widgets": [{"key": "w1", "report": "plain"},
                                         {"key": "w1", "report": "plain", "x": 6}]}})
    assert res.status_code == 422
    assert paths(res) == [("duplicate_key", "$.widgets[1].key")]
    assert "w1" in res.json()["errors"][0]["message"]


def test_a_drilldown_filter_leaves_out_conditions_whose_parameter_has_no_value(
        shop: TestClient):
    publish(shop, "pdrill", report(
        parameters=[{"key": "period", "label": label("period"), "type": "date_range"},
                    {"key": "prio", "label": label("prio"), "type": "text"}],
        filter={"and": [{"field": "closed_on", "op": "date_range",
                         "value": {"$param": "period"}},
                        {"or": [{"field": "priority", "op": "eq", "value": {"$param": "prio"}},
                                {"field": "priority", "op": "eq", "value": "high"}]}]},
        dimensions=[{"type": "value", "key": "p", "field": "priority"}],
        measures=[{"agg": "count", "key": "n"}]))
    res = shop.post(f"{BASE}/reports/pdrill/drilldown", json={"element": {"p": "high"}})
    assert res.status_code == 200, res.text
    # The period's empty condition is gone; the one inside "or" stays (it
    # changes what the "or" matches).
    assert res.json()["filter"] == {"and": [
        {"and": [{"or": [{}, {"field": "priority", "op": "eq", "value": "high"}]}]},
        {"field": "priority", "op": "eq", "value": "high"}]}
