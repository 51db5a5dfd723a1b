"""Report defects found by the audit of the demo CRM over HTTP, as its users
meet them: a custom period on every report and dashboard, column types that
match the values, KPI answers that say what their number is, and alerts that
tell nobody what they may not see."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.test_crm_scenarios import BASE, CRM, Crm

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def leads_at(crm: Crm, *moments: str) -> None:
    """One lead created by rep1 at each UTC moment (the clock only moves forward)."""
    for moment in moments:
        crm.clock.advance(datetime.fromisoformat(moment) - crm.clock.now())
        crm.lead("rep1", f"lead {moment}")


def total(answer: dict[str, Any], measure: str) -> Any:
    return answer["totals"][measure]


# --------------------------------------------------------------------------- 1: custom periods

def test_a_custom_period_counts_the_local_days_it_names(crm: Crm) -> None:
    # 31 March 23:30 in Shanghai is in the first quarter; 00:30 on 1 April is not,
    # though both are 31 March in UTC.
    leads_at(crm, "2026-01-05T02:00:00+00:00", "2026-03-31T15:30:00+00:00",
             "2026-03-31T16:30:00+00:00", "2026-04-02T02:00:00+00:00")
    for who in ("director", "rep1"):
        res = crm[who].post(f"{BASE}/reports/channel_conversion/run", json={
            "parameters": {"period": ["2026-01-01", "2026-03-31"]}})
        assert res.status_code == 200, res.text
        seen = crm[who].get(f"{BASE}/forms/lead/records", params={"limit": 50}).json()
        in_quarter = [r for r in seen["items"] if datetime.fromisoformat(
            r["created_at"]).astimezone(SHANGHAI).date() <= date(2026, 3, 31)]
        assert total(res.json(), "leads") == len(in_quarter)
        assert len(in_quarter) == 2 or who != "director"
        assert res.json()["parameters"]["period"] == ["2026-01-01", "2026-03-31"]
    one_day = crm["director"].post(f"{BASE}/reports/channel_conversion/run", json={
        "parameters": {"period": ["2026-04-01", "2026-04-01"]}})
    assert total(one_day.json(), "leads") == 1
    named = crm["director"].post(f"{BASE}/reports/channel_conversion/run", json={
        "parameters": {"period": "this_month"}})  # April 2026
    assert total(named.json(), "leads") == 2


def test_a_custom_period_reaches_every_widget_of_a_dashboard(crm: Crm) -> None:
    leads_at(crm, "2026-01-05T02:00:00+00:00")
    res = crm["rep1"].post(f"{BASE}/dashboards/rep_view/run", json={
        "filters": {"period": ["2026-01-01", "2026-03-31"]}})
    assert res.status_code == 200, res.text
    assert [(w["key"], w["error"]) for w in res.json()["widgets"] if "error" in w] == []


@pytest.mark.parametrize("period", ["bogus", ["2026-03-31", "2026-01-01"], ["2026-01-01"],
                                    ["2026-01-01", "31.03.2026"], {"last_n_days": 0}])
def test_a_wrong_period_is_the_viewers_parameter_error(crm: Crm, period: Any) -> None:
    res = crm["rep1"].post(f"{BASE}/reports/channel_conversion/run",
                           json={"parameters": {"period": period}})
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "parameter_invalid"
    assert [e.get("field") for e in res.json()["errors"]] == ["parameters.period"]
    assert not any("path" in e for e in res.json()["errors"])


def draft(crm: Crm, key: str, **definition: Any) -> None:
    body = {"label": {"zh": key, "en": key}, "form": "lead",
            "measures": [{"agg": "count", "key": "n"}], **definition}
    res = crm.admin.put(f"{BASE}/reports/{key}/draft", json={"definition": body})
    assert res.status_code == 200, res.text


def test_a_parameter_value_the_field_refuses_is_the_viewers_error(crm: Crm) -> None:
    draft(crm, "by_source", parameters=[{"key": "src", "label": {"zh": "来源", "en": "Source"},
                                         "type": "text"}],
          filter={"and": [{"field": "source", "op": "eq", "value": {"$param": "src"}}]})
    res = crm.admin.post(f"{BASE}/reports/by_source/run",
                         json={"draft": True, "parameters": {"src": "carrier_pigeon"}})
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "parameter_invalid"
    [error] = res.json()["errors"]
    assert error["field"] == "parameters.src" and "carrier_pigeon" in error["message"]


def test_a_date_range_parameter_must_feed_a_date_condition(crm: Crm) -> None:
    period = [{"key": "period", "label": {"zh": "期间", "en": "Period"}, "type": "date_range"}]
    draft(crm, "odd_periods", parameters=period, filter={"and": [
        {"field": "source", "op": "date_range", "value": {"$param": "period"}},
        {"field": "created_at", "op": "gte", "value": {"$param": "period"}}]})
    res = crm.admin.post(f"{BASE}/reports/odd_periods/validate")
    assert [(e["code"], e["path"]) for e in res.json()["errors"]] == [
        ("not_a_date", "$.filter.and[0].field"), ("operator_not_allowed", "$.filter.and[1].op")]


def test_the_catalog_says_which_values_a_date_range_takes(crm: Crm) -> None:
    meta = crm["rep1"].get("/api/meta/reports").json()
    date_range = next(p for p in meta["parameter_types"] if p["key"] == "date_range")
    assert date_range["value_forms"] == ["range", "from_to"]
    assert "this_month" in {r["key"] for r in date_range["ranges"]}


# --------------------------------------------------------------------------- 2: column types

def columns(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["key"]: {k: v for k, v in c.items() if k not in ("key", "role", "label")}
            for c in answer["columns"]}


def test_a_date_bucket_is_typed_date_like_its_values(crm: Crm) -> None:
    crm.create("rep1", "account", name="上海鼎华信息技术有限公司")
    for key in ("active_accounts", "customer_growth", "new_accounts"):
        res = crm["director"].post(f"{BASE}/reports/{key}/run", json={})
        assert res.status_code == 200, res.text
        assert columns(res.json())["month"] == {"type": "date"}, key
    growth = crm["director"].post(f"{BASE}/reports/customer_growth/run", json={}).json()
    assert [r["month"] for r in growth["rows"]] == ["2026-01-01"]


def test_reference_columns_say_what_they_refer_to(crm: Crm) -> None:
    reps = crm["director"].post(f"{BASE}/reports/leaderboard/run", json={}).json()
    assert columns(reps)["rep"] == {"type": "reference", "refers_to": "user"}
    teams = crm["director"].post(f"{BASE}/reports/leaderboard_teams/run", json={}).json()
    assert columns(teams)["team"] == {"type": "reference", "refers_to": "department"}
    draft = {"label": {"zh": "按客户", "en": "By account"}, "form": "opportunity",
             "dimensions": [{"type": "value", "key": "account", "field": "account"}],
             "measures": [{"agg": "count", "key": "n"}]}
    assert crm.admin.put(f"{BASE}/reports/by_account/draft",
                         json={"definition": draft}).status_code == 200
    res = crm.admin.post(f"{BASE}/reports/by_account/run", json={"draft": True})
    assert res.status_code == 200, res.text
    assert columns(res.json())["account"] == {"type": "reference", "refers_to": "record",
                                              "form": "account"}


# --------------------------------------------------------------------------- 3: KPI answers

def test_a_kpi_says_what_its_number_is(crm: Crm) -> None:
    won = crm["director"].post(f"{BASE}/reports/won_by_month/kpi",
                               json={"measure": "won", "period": "month"})
    assert won.status_code == 200, won.text
    assert {k: won.json()[k] for k in ("label", "type", "scale")} == {
        "label": {"zh": "金额", "en": "Amount"}, "type": "decimal", "scale": 2}  # the field's
    rate = crm["rep1"].post(f"{BASE}/reports/channel_conversion/kpi", json={
        "measure": "conversion", "period": "month", "date_field": "created_at"}).json()
    assert (rate["label"]["en"], rate["type"], rate["scale"]) == ("Conversion rate",
                                                                  "decimal", 4)
    board = crm["rep1"].post(f"{BASE}/dashboards/rep_view/run", json={}).json()
    cards = {w["key"]: w["kpi"] for w in board["widgets"] if "kpi" in w}
    assert cards["kpi_conversion"]["label"] == rate["label"]
    assert cards["kpi_revenue"]["type"] == "decimal"


def test_a_kpi_period_that_is_no_period_is_a_request_error(crm: Crm) -> None:
    res = crm["director"].post(f"{BASE}/reports/won_by_month/kpi",
                               json={"measure": "won", "period": "fortnight"})
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "validation_failed"
    assert [(e["code"], e.get("field"), e.get("path")) for e in res.json()["errors"]] == [
        ("invalid_value", "period", None)]
    assert "month" in res.json()["errors"][0]["message"]


# --------------------------------------------------------------------------- 4: alerts

def alert(crm: Crm, who: str, *recipients: str, **definition: Any) -> Any:
    body = {"label": "m", "report": "rfm_accounts", "measure": "monetary",
            "condition": {"type": "above", "threshold": "1"}, "schedule": "0 9 * * 1",
            "recipients": [crm.ids[r] for r in recipients], **definition}
    return crm[who].post(f"{BASE}/alerts", json={"definition": body})


def test_an_alert_cannot_tell_a_recipient_a_field_they_may_not_see(crm: Crm) -> None:
    refused = alert(crm, "manager", "director", "rep1")
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert (error["code"], error["path"]) == ("recipient", "$.recipients[1]")
    assert "contract.amount" in error["message"] and crm.ids["rep1"] in error["message"]
    # The alert's own filter is read too: reps may not see an account's signed total.
    refused = alert(crm, "manager", "rep1", report="won_by_month", measure="won",
                    filter={"field": "account.signed_total", "op": "gt", "value": "0"})
    assert refused.status_code == 422, refused.text
    assert "account.signed_total" in refused.json()["errors"][0]["message"]
    assert alert(crm, "manager", "rep1", report="won_by_month",
                 measure="won").status_code == 201
    assert alert(crm, "manager", "director", "fin").status_code == 201


def test_a_recipient_who_lost_sight_of_a_field_is_not_notified(crm: Crm) -> None:
    account = crm.create("rep1", "account", name="甲公司")["id"]
    crm.history("rep1", "contract", title="甲", account=account, amount="150000",
                status="signed", sign_date="2025-11-20")
    made = alert(crm, "manager", "director", "fin")
    assert made.status_code == 201, made.text
    # Finance no longer sees contract amounts.
    finance = json.loads((CRM / "roles" / "finance.json").read_text())
    finance["forms"]["contract"]["fields"] = {"amount": "hidden"}
    res = crm.admin.put(f"{BASE}/roles/finance", json={"definition": finance})
    assert res.status_code == 200, res.text
    checked = crm["manager"].post(f"{BASE}/alerts/{made.json()['id']}/check")
    assert checked.status_code == 200, checked.text
    assert checked.json()["fired"] is True
    assert checked.json()["last_error"].startswith("not notified: ")
    assert crm.ids["fin"] in checked.json()["last_error"]
    assert "contract.amount" in checked.json()["last_error"]
    firings = crm["manager"].get(f"{BASE}/alerts/{made.json()['id']}/firings").json()
    assert firings[0]["recipients"] == [crm.ids["director"]]
    assert not any(n["kind"] == "report_alert" for n in crm.notes("fin"))
    assert any(n["kind"] == "report_alert" for n in crm.notes("director"))


# --------------------------------------------------------------------------- 5: contract totals

def test_reps_see_no_contract_totals_but_the_installments_they_collect(crm: Crm) -> None:
    account = crm.create("rep1", "account", name="厦门海峰新能源有限公司")["id"]
    deal = crm.deal("rep1", account, "储能项目", "won", amount="300000",
                    closed_on="2026-01-05")
    contract = crm.create("rep1", "contract", title="储能项目合同", opportunity=deal)["id"]
    plan = crm.create("fin", "payment_plan", contract=contract, installment=1,
                      due_date="2026-02-01", amount="100000")["id"]
    seen = crm.get("rep1", "contract", contract)
    assert not {"amount", "planned_total", "received_total"} & set(seen)
    assert crm.get("manager", "contract", contract)["planned_total"] == "100000.00"
    assert crm.get("rep1", "payment_plan", plan)["amount"] == "100000.00"
    res = crm["rep1"].post(f"{BASE}/forms/contract/records/query", json={
        "filter": {"field": "planned_total", "op": "gt", "value": "0"}})
    assert res.status_code == 403, res.text


# --------------------------------------------------------------------------- 5: hidden fields

def test_a_kpi_date_field_says_nothing_of_a_field_the_reader_may_not_see(crm: Crm) -> None:
    # Reps may not see an account's signed_total: a misspelt date field is not
    # answered with it in the list or the suggestion, on the report's form or
    # through a relation, and the field itself is refused as hidden — not
    # described as "not a date", which would tell it exists.
    for report, measure, path in (("new_accounts", "accounts", "signed_totl"),
                                  ("open_pipeline", "pipeline", "account.signed_totl")):
        res = crm["rep1"].post(f"{BASE}/reports/{report}/kpi", json={
            "measure": measure, "period": "month", "date_field": path})
        assert res.status_code == 422, res.text
        assert res.json()["errors"][0]["code"] == "unknown_field", res.text
        assert "signed_total" not in res.text
        seen = crm["director"].post(f"{BASE}/reports/{report}/kpi", json={
            "measure": measure, "period": "month", "date_field": path})
        assert "signed_total" in seen.text  # the director may see it
        hidden = crm["rep1"].post(f"{BASE}/reports/{report}/kpi", json={
            "measure": measure, "period": "month", "date_field": path.replace("totl", "total")})
        assert hidden.status_code == 403, hidden.text
        assert hidden.json()["errors"][0]["code"] == "field_hidden"
