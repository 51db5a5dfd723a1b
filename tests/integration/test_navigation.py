"""The app's menu as each member sees it (the CRM package's menus), over HTTP."""

from __future__ import annotations

from typing import Any

from tests.integration.test_crm_scenarios import BASE, Crm, crm  # noqa: F401


def nav(world: Crm, who: str) -> dict[str, Any]:
    res = world[who].get(f"{BASE}/navigation")
    assert res.status_code == 200, res.text
    return res.json()


def entries(menus: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in menus:
        out[m["key"]] = m
        out.update(entries(m.get("children", [])))
    return out


def test_the_package_menu_holds_what_each_member_may_open(crm: Crm):  # noqa: F811
    rep, fin, director = (nav(crm, who) for who in ("rep1", "fin", "director"))
    mine = entries(rep["menus"])
    # The director's cockpit is for the director's role; the pool is the
    # lead list with its saved filter; the inbox is a page of the client.
    assert "m_cockpit" not in mine and "m_cockpit" in entries(director["menus"])
    assert mine["m_pool"]["form"] == "lead" and mine["m_pool"]["filter"] == {
        "field": "in_pool", "op": "eq", "value": True}
    assert mine["m_inbox"]["page"] == "inbox"
    assert mine["m_leads"]["label"]["zh"] == "线索"
    # Finance reads no leads: the sales group keeps only what they may open.
    fin_sales = entries(fin["menus"])
    assert "m_leads" not in fin_sales and "m_accounts" in fin_sales
    assert "m_payments" in fin_sales
    # Each sees the dashboard meant for their role first.
    assert (rep["default_dashboard"], director["default_dashboard"]) == (
        "rep_view", "director_cockpit")
    assert fin["default_dashboard"] is None  # no dashboard for finance


def test_reports_reading_hidden_fields_are_not_offered(crm: Crm):  # noqa: F811
    # Contract amounts are hidden from reps: the RFM reports read them (through
    # the account's signed totals), so a rep is not offered them — running one
    # is refused, naming the field.
    rep = {r["key"] for r in nav(crm, "rep1")["reports"]}
    director = {r["key"] for r in nav(crm, "director")["reports"]}
    assert {"rfm_segments", "rfm_accounts"} <= director
    assert not {"rfm_segments", "rfm_accounts"} & rep
    refused = crm["rep1"].post(f"{BASE}/reports/rfm_segments/run", json={})
    assert refused.status_code == 403 and "may not see" in refused.json()["message"]
    # Nor its definition, KPI or export.
    assert crm["rep1"].get(f"{BASE}/reports/rfm_accounts").status_code == 403
    assert crm["rep1"].post(f"{BASE}/reports/rfm_accounts/kpi", json={
        "measure": "frequency", "period": "year", "date_field": "sign_date"}
    ).status_code == 403
    assert crm["rep1"].post(f"{BASE}/reports/rfm_accounts/export/csv", json={}
                            ).status_code == 403
    assert "sales_funnel" in rep
