"""The examples of docs/reports.md work verbatim against the CRM package: each
JSON block is read from the page and sent as it is (the alert's recipient
placeholder aside). Also the funnel behind the CRM's dashboards: a
cumulative stage drills down to the records counted in its bar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_crm_scenarios import BASE, Crm

DOC = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```json\n(.*?)```", DOC, re.S)


def block(marker: str) -> str:
    [found] = [b for b in BLOCKS if marker in b]
    return found


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def won_deals(crm: Crm) -> None:
    """rep1's won deals in Shanghai and Beijing this year, and one of rep2."""
    accounts = {province: crm.history("rep1", "account", name=f"{province}客户有限公司",
                                      region={"province": province, "city": province})["id"]
                for province in ("上海市", "北京市")}
    for province, amount, closed in (("上海市", "100000", "2026-02-03"),
                                     ("上海市", "50000", "2026-02-20"),
                                     ("北京市", "80000", "2026-01-20")):
        crm.history("rep1", "opportunity", name=f"{province}-{amount}",
                    account=accounts[province], amount=amount, stage="won", closed_on=closed)
    crm.history("rep2", "opportunity", name="rep2 deal", account=accounts["上海市"],
                amount="70000", stage="won", closed_on="2026-02-05")


def save_and_publish(crm: Crm, key: str, definition: dict[str, Any]) -> None:
    res = crm.admin.put(f"{BASE}/reports/{key}/draft", json={"definition": definition})
    assert res.status_code == 200, res.text
    checked = crm.admin.post(f"{BASE}/reports/{key}/validate").json()
    assert checked == {"valid": True, "errors": []}, checked
    res = crm.admin.post(f"{BASE}/reports/{key}/publish", json={})
    assert res.status_code == 200, res.text


def test_the_full_example_its_run_drilldown_and_dashboard_work_verbatim(crm: Crm):
    won_deals(crm)
    report = json.loads(block('"key": "won_by_region"'))
    save_and_publish(crm, report["key"], report)

    run_text = re.search(r"Run it: `POST (\S+)` with\s+`(\{.*?\})`", DOC, re.S)
    assert run_text is not None
    url, body = run_text.group(1), json.loads(run_text.group(2))
    assert url == f"{BASE}/reports/won_by_region/run"
    res = crm["rep1"].post(url, json=body)
    assert res.status_code == 200, res.text
    out = res.json()
    rows = {(r["month"], r["region"]): (r["won"], r["deals"]) for r in out["rows"]}
    assert rows == {("2026-01-01", "北京市"): ("80000.00", 1),
                    ("2026-02-01", "上海市"): ("150000.00", 2)}  # rep1's own only
    assert out["totals"]["won"] == "230000.00" and out["totals"]["share"] is None

    drill = re.search(r'\(`(\{"element": \{.*?\}\})` for the full example\)', DOC, re.S)
    assert drill is not None
    res = crm["rep1"].post(f"{BASE}/reports/won_by_region/drilldown",
                           json={**json.loads(drill.group(1)), "parameters": body["parameters"]})
    assert res.status_code == 200, res.text
    found = crm["rep1"].post(f"{BASE}/forms/opportunity/records/query", json={
        "filter": res.json()["filter"], "include_total": True})
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 2

    dashboard = json.loads(block('"key": "sales"'))
    res = crm.admin.put(f"{BASE}/dashboards/{dashboard['key']}",
                        json={"definition": dashboard})
    assert res.status_code == 200, res.text
    res = crm["rep1"].post(f"{BASE}/dashboards/sales/run", json={})
    assert res.status_code == 200, res.text
    widgets = {w["key"]: w for w in res.json()["widgets"]}
    assert [k for k, w in widgets.items() if "error" in w] == []
    assert widgets["trend"]["parameters"]["owner"] == "me"
    assert widgets["won_kpi"]["kpi"]["target"]["value"] == "500000"


def test_the_sub_table_calculated_field_and_alert_examples_work_verbatim(crm: Crm):
    won_deals(crm)
    lines = json.loads(block('"rows": "lines"'))
    save_and_publish(crm, lines["key"], lines)
    assert crm.admin.post(f"{BASE}/reports/{lines['key']}/run", json={}).status_code == 200

    fragments, text, at = [], block('"key": "weighted"'), 0
    decoder = json.JSONDecoder()
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        fragment, at = decoder.raw_decode(text, at)
        fragments.append(fragment)
    measures = [f for f in fragments if "agg" in f]
    dimensions = [f for f in fragments if "type" in f]
    assert measures and dimensions
    save_and_publish(crm, "calculated", {
        "key": "calculated", "label": {"en": "Calculated"}, "form": "opportunity",
        "dimensions": dimensions, "measures": [*measures, {"agg": "count", "key": "n"}]})
    res = crm.admin.post(f"{BASE}/reports/calculated/run", json={})
    assert res.status_code == 200, res.text
    assert res.json()["totals"]["n"] == 4

    alert = block('"schedule": "0 9 * * 1"').replace("<director's user id>",
                                                      crm.ids["director"])
    res = crm["director"].post(f"{BASE}/alerts", json={"definition": json.loads(alert)})
    assert res.status_code == 201, res.text


def test_a_cumulative_funnel_stage_drills_down_to_the_records_in_its_bar(crm: Crm):
    account = crm.create("rep1", "account", name="上海鼎华信息技术有限公司")["id"]
    for i, stage in enumerate(("qualification", "qualification", "discovery", "proposal",
                               "negotiation", "won", "won")):
        crm.deal("rep1", account, f"deal {i}", stage, amount=str(10000 * (i + 1)),
                 **({"closed_on": "2026-01-05"} if stage == "won" else {}))
    res = crm["director"].post(f"{BASE}/reports/sales_funnel/run", json={})
    assert res.status_code == 200, res.text
    rows = res.json()["rows"]
    assert [(r["stage"], r["deals"]) for r in rows] == [
        ("qualification", 7), ("discovery", 5), ("proposal", 4), ("negotiation", 3),
        ("won", 2)]
    assert all(type(r["deals"]) is int for r in rows)
    assert {c["key"]: c["type"] for c in res.json()["columns"]}["deals"] == "count"
    for row in rows:
        drill = crm["director"].post(f"{BASE}/reports/sales_funnel/drilldown",
                                     json={"element": {"stage": row["stage"]}})
        assert drill.status_code == 200, drill.text
        found = crm["director"].post(f"{BASE}/forms/opportunity/records/query", json={
            "filter": drill.json()["filter"], "include_total": True})
        assert found.status_code == 200, found.text
        assert found.json()["total"] == row["deals"], row["stage"]
    csv = crm["director"].post(f"{BASE}/reports/sales_funnel/export/csv", json={})
    assert csv.status_code == 200
    assert ".0," not in csv.text and not re.search(r"\.0\r?\n", csv.text)
