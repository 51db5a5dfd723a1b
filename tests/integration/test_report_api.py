"""The reports and dashboards API as a user would use it: draft, validate,
publish, run with parameters, SQL preview, export, dashboards and drill-down."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.factories import field, form_body, label

STAGES = ["lead", "won", "lost"]
OPPORTUNITY = form_body(
    "opportunity", field("name"), field("amount", "currency"),
    field("stage", "select", options=[{"value": s, "label": label(s)} for s in STAGES]),
    field("close_date", "date"))
ROWS = [("o1", "100.50", "won", "2026-01-05"), ("o2", "200.00", "won", "2026-02-01"),
        ("o3", "50.25", "lost", "2026-02-03"), ("o4", None, "lead", "2026-02-10"),
        ("o5", "10.00", "won", "2025-12-31")]

REPORT: dict[str, Any] = {
    "label": {"zh": "赢单金额", "en": "Won amount"},
    "form": "opportunity",
    "parameters": [{"key": "stage", "label": label("Stage"), "type": "text"}],
    "filter": {"field": "stage", "op": "eq", "value": {"$param": "stage"}},
    "dimensions": [{"type": "date", "key": "month", "field": "close_date", "bucket": "month"}],
    "measures": [{"agg": "sum", "key": "total", "field": "amount",
                  "label": {"zh": "金额", "en": "Amount"}},
                 {"agg": "count", "key": "n"}],
    "chart": {"type": "bar", "x": "month", "y": ["total"]},
}


def _setup(client: TestClient) -> None:
    assert client.post("/api/apps", json={"key": "crm", "name": label("CRM")}).status_code == 201
    r = client.put("/api/apps/crm/forms/opportunity/draft", json={"definition": OPPORTUNITY})
    assert r.status_code == 200, r.text
    assert client.post("/api/apps/crm/forms/opportunity/publish", json={}).status_code == 200
    for name, amount, stage, day in ROWS:
        r = client.post("/api/apps/crm/forms/opportunity/records", json={"values": {
            "name": name, "amount": amount, "stage": stage, "close_date": day}})
        assert r.status_code == 201, r.text


def test_report_lifecycle(admin_client: TestClient) -> None:
    c = admin_client
    _setup(c)
    bad = {**REPORT, "measures": [{"agg": "sum", "key": "total", "field": "name"}]}
    assert c.put("/api/apps/crm/reports/won/draft", json={"definition": bad}).status_code == 200
    checked = c.post("/api/apps/crm/reports/won/validate").json()
    assert not checked["valid"]
    assert checked["errors"][0]["path"] == "$.measures[0].field"
    assert c.post("/api/apps/crm/reports/won/publish", json={}).status_code == 422

    shape = c.put("/api/apps/crm/reports/won/draft", json={"definition": {
        **REPORT, "measures": [{"agg": "sum", "key": "Bad Key", "field": "amount"}]}})
    assert shape.status_code == 422
    assert shape.json()["errors"][0]["path"] == "$.measures[0].key"

    assert c.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT}).status_code \
        == 200
    assert c.post("/api/apps/crm/reports/won/publish", json={}).json()["version"] == 1

    run = c.post("/api/apps/crm/reports/won/run", json={"parameters": {"stage": "won"}},
                 headers={"Accept-Language": "en"})
    assert run.status_code == 200, run.text
    body = run.json()
    rows = {r["month__label"]: r for r in body["rows"]}
    assert rows["2026-01"]["total"] == "100.50" and rows["2026-02"]["total"] == "200.00"
    assert rows["2025-12"]["n"] == 1
    assert body["totals"] == {"total": "310.50", "n": 3}
    spec = body["chart"]
    assert spec["encoding"]["y"]["title"] == "Amount"
    assert "values" in spec["data"] and "url" not in spec["data"]

    everything = c.post("/api/apps/crm/reports/won/run", json={}).json()
    assert everything["totals"]["n"] == len(ROWS)  # no stage: the condition is left out

    sql = c.post("/api/apps/crm/reports/won/sql", json={"parameters": {"stage": "won"}}).json()
    assert "GROUP BY" in sql["sql"] and "won" not in sql["sql"]
    assert "won" in sql["params"].values()

    csv = c.post("/api/apps/crm/reports/won/export/csv", json={"parameters": {"stage": "won"}},
                 headers={"Accept-Language": "en"})
    assert csv.status_code == 200
    assert csv.content.decode("utf-8-sig").splitlines()[-1] == "Total,310.50,3"
    xlsx = c.post("/api/apps/crm/reports/won/export/xlsx", json={},
                  headers={"Accept-Language": "zh"})
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert [cell.value for cell in sheet[1]] == ["close_date", "金额", "计数"]
    svg = c.post("/api/apps/crm/reports/won/export/svg", json={})
    assert svg.status_code == 200 and svg.content.startswith(b"<svg")
    assert c.post("/api/apps/crm/reports/won/export/doc", json={}).status_code == 422


def test_dashboard_with_shared_filter_and_drilldown(admin_client: TestClient) -> None:
    c = admin_client
    _setup(c)
    c.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT})
    c.post("/api/apps/crm/reports/won/publish", json={})
    dashboard = {"label": label("Sales"),
                 "filters": [{"key": "stage", "label": label("Stage"), "type": "text"}],
                 "widgets": [{"key": "trend", "report": "won", "w": 8},
                             {"key": "lost", "report": "won", "x": 8, "w": 4,
                              "parameters": {"stage": "lost"}}]}
    saved = c.put("/api/apps/crm/dashboards/sales", json={"definition": dashboard})
    assert saved.status_code == 200, saved.text
    out = c.post("/api/apps/crm/dashboards/sales/run", json={"filters": {"stage": "won"}})
    widgets = {w["key"]: w for w in out.json()["widgets"]}
    assert widgets["trend"]["result"]["totals"]["n"] == 3
    assert widgets["lost"]["result"]["totals"]["n"] == 1  # the widget's own value wins

    drill = c.post("/api/apps/crm/reports/won/drilldown", json={
        "parameters": {"stage": "won"}, "element": {"month": "2026-02-01"}}).json()
    found = c.post("/api/apps/crm/forms/opportunity/records/query",
                   json={"filter": drill["filter"]}).json()
    assert [r["values"]["name"] if "values" in r else r["name"] for r in found["items"]] == \
        ["o2"]

    bad = {**dashboard, "widgets": [{"key": "x", "report": "nope"}]}
    r = c.put("/api/apps/crm/dashboards/bad", json={"definition": bad})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "$.widgets[0].report"
    r = c.put("/api/apps/crm/dashboards/bad", json={"definition": {**dashboard,
                                                                 "roles": ["ghost"]}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "$.roles[0]"
    assert c.delete("/api/apps/crm/dashboards/sales").status_code == 204
    assert c.get("/api/apps/crm/dashboards/sales").status_code == 404


def test_non_admin_cannot_edit_reports(admin_client: TestClient, make_user: Any,
                                       client: TestClient) -> None:
    _setup(admin_client)
    _, token = make_user("viewer")
    r = client.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    meta = admin_client.get("/api/meta/reports").json()
    assert {m["key"] for m in meta["measures"]} >= {"sum", "median"}


def test_app_builders_edit_reports_of_their_app(admin_client: TestClient, make_user: Any,
                                                client: TestClient) -> None:
    _setup(admin_client)
    builder_id, token = make_user("builder")
    _, stranger = make_user("stranger")
    as_builder = {"Authorization": f"Bearer {token}"}
    denied = client.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT},
                        headers=as_builder)
    assert denied.status_code == 403  # not yet a builder of crm
    assert admin_client.put(f"/api/apps/crm/builders/{builder_id}",
                            json={"granted": True}).status_code == 204
    assert client.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT},
                      headers=as_builder).status_code == 200
    assert client.post("/api/apps/crm/reports/won/validate",
                       headers=as_builder).json()["valid"] is True
    assert client.post("/api/apps/crm/reports/won/publish", json={},
                       headers=as_builder).json()["version"] == 1
    draft = client.get("/api/apps/crm/reports/won/draft", headers=as_builder)
    assert draft.status_code == 200 and draft.json()["latest_version"] == 1
    dashboard = {"label": label("D"), "widgets": [{"key": "w", "report": "won"}]}
    assert client.put("/api/apps/crm/dashboards/d", json={"definition": dashboard},
                      headers=as_builder).status_code == 200
    assert client.delete("/api/apps/crm/dashboards/d", headers=as_builder).status_code == 204
    other = {"Authorization": f"Bearer {stranger}"}
    assert client.put("/api/apps/crm/reports/won/draft", json={"definition": REPORT},
                      headers=other).status_code == 403
    assert client.post("/api/apps/crm/reports/won/publish", json={},
                       headers=other).status_code == 403
