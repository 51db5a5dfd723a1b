"""The CRM package's business rules that hold whoever calls the API (docs:
../shared/domain/crm.md): a contract is signed only through its approval and
signing flows; payment plans and payments belong to the contract's owner and
are checked against the contract; overdue installments are flagged whenever
their due date has passed; a deal's stage checklist holds on every way into
a stage; a lead converts only onto its owner's account, once; pool leads are
claimed, not edited; a ticket closed on creation writes its score back.

Same fixture as test_crm_scenarios.py (a FrozenClock on Monday 2026-01-05
09:00 in Shanghai; the flow worker run synchronously after the clock moves)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_crm_scenarios import BASE, Crm


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def patch(crm: Crm, who: str, form: str, rid: str, **values: Any) -> Any:
    version = crm.get("admin", form, rid)["version"]
    return crm[who].patch(f"{BASE}/forms/{form}/records/{rid}",
                          json={"values": values, "version": version})


def rules(res: Any) -> list[tuple[str, str]]:
    assert res.status_code == 422, res.text
    return [(e["field"], e["message"]) for e in res.json()["errors"]]


def rep_contract(crm: Crm, amount: str = "300000", account_name: str = "厦门海峰新能源有限公司"
                 ) -> tuple[str, str]:
    """rep1's account, won deal and the contract drafted from it (rep1 owns all three)."""
    account = crm.create("rep1", "account", name=account_name)["id"]
    deal = crm.deal("rep1", account, "储能项目", "won", amount=amount, closed_on="2026-01-05")
    contract = crm.create("rep1", "contract", title="储能项目合同", opportunity=deal)["id"]
    return account, contract


def approve(crm: Crm, contract: str) -> None:
    res = crm.start("rep1", "contract_approval", contract)
    assert res.status_code == 201, res.text
    crm.decide("manager")
    if float(crm.get("admin", "contract", contract)["amount"]) > 500000:
        crm.decide("risk")
    crm.decide("fin")
    crm.decide("director")
    assert crm.get("admin", "contract", contract)["status"] == "approved"


def test_a_contract_is_signed_only_through_approval_and_the_signing_flow(crm: Crm):
    account, contract = rep_contract(crm)
    # Nobody sets the status or the sign date by hand: not the rep, not the
    # manager, not the director.
    for who in ("rep1", "manager", "director"):
        res = patch(crm, who, "contract", contract, status="signed", sign_date="2026-01-05")
        assert res.status_code == 403, res.text
        assert res.json()["details"]["field"] in ("status", "sign_date")
    res = crm["director"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "直接签订", "account": account, "amount": "1000", "status": "signed"}})
    assert res.status_code == 403, res.text
    acc = crm.get("director", "account", account)
    assert (acc["status"], acc["signed_total"]) == ("initial", "0.00")
    # Signing needs an approved contract.
    res = crm.start("rep1", "contract_sign", contract)
    assert res.status_code == 403, res.text
    assert res.json()["message"] == "只有已批准的合同才能标记为已签订"
    approve(crm, contract)
    assert crm.get("director", "account", account)["signed_total"] == "0.00"
    # The owner marks it signed once the customer has signed (not in the future).
    res = crm.start("rep1", "contract_sign", contract, sign_date="2026-01-06")
    assert res.status_code == 201 and res.json()["outcome"] == "not_signed", res.text
    assert crm.get("admin", "contract", contract)["status"] == "approved"
    assert any("签订日期不能晚于今天" in t for t in crm.titles("rep1"))
    res = crm.start("rep1", "contract_sign", contract, sign_date="2026-01-04")
    assert res.status_code == 201 and res.json()["outcome"] == "signed", res.text
    signed = crm.get("admin", "contract", contract)
    assert (signed["status"], signed["sign_date"]) == ("signed", "2026-01-04")
    acc = crm.get("director", "account", account)
    assert (acc["status"], acc["signed_total"], acc["level"]) == (
        "signed", "300000.00", "important")  # 已签约
    assert any("已签订" in t for t in crm.titles("fin"))
    assert crm.start("rep1", "contract_sign", contract).status_code == 403  # once


def test_a_contracts_account_is_its_opportunitys(crm: Crm):
    account, contract = rep_contract(crm)
    other = crm.create("rep1", "account", name="泉州恒安包装有限公司")["id"]
    assert rules(patch(crm, "rep1", "contract", contract, account=other)) == [
        ("account", "合同客户必须是所选商机的客户")]
    deal = crm.get("rep1", "contract", contract)["opportunity"]
    res = crm["manager"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "错配", "opportunity": deal, "account": other, "amount": "1000"}})
    assert rules(res) == [("account", "合同客户必须是所选商机的客户")]
    assert crm.get("rep1", "contract", contract)["account"] == account


def test_finances_plans_and_payments_belong_to_the_contracts_owner(crm: Crm):
    _, contract = rep_contract(crm)
    approve(crm, contract)
    plan = crm.create("fin", "payment_plan", contract=contract, installment=1,
                      due_date="2026-01-10", amount="100000")["id"]
    payment = crm.create("fin", "payment", contract=contract, amount="40000",
                         received_on="2026-01-05", method="transfer")["id"]
    for form, rid in (("payment_plan", plan), ("payment", payment)):
        for who in ("rep1", "manager", "director", "fin"):
            record = crm.get(who, form, rid)
            assert crm.owner(record) == "rep1", (who, form)
        assert crm["rep2"].get(f"{BASE}/forms/{form}/records/{rid}").status_code == 404
    # The payments leaderboard is the same for the rep, the manager and the director.
    for who in ("rep1", "manager", "director"):
        rows = crm.report(who, "payments_leaderboard")
        assert [(crm.names[str(r["rep"])], r["received"], r["payments"]) for r in rows] == [
            ("rep1", "40000.00", 1)], who
    # Reps and managers read payment records; finance edits them.
    for who in ("rep1", "manager"):
        res = crm[who].post(f"{BASE}/forms/payment/records", json={"values": {
            "contract": contract, "amount": "1", "received_on": "2026-01-05"}})
        assert res.status_code == 403, res.text
        assert patch(crm, who, "payment", payment, amount="1").status_code == 403
    # The reminder three days before the due date reaches the contract's owner.
    crm.run_due(days=2, minutes=1)  # 01-07 09:01
    assert "第 1 期回款 100000.00 将于 2026-01-10 到期" in crm.titles("rep1")
    assert not any("回款" in t for t in crm.titles("fin"))
    # A transferred contract takes its plans and payments along.
    res = crm["manager"].post(f"{BASE}/forms/contract/records/{contract}/transfer",
                              json={"owner": crm.ids["rep2"]})
    assert res.status_code == 200, res.text
    assert crm.owner(crm.get("rep2", "payment_plan", plan)) == "rep2"
    assert crm.owner(crm.get("rep2", "payment", payment)) == "rep2"


def test_an_installment_entered_past_due_is_flagged_overdue_at_once(crm: Crm):
    _, contract = rep_contract(crm)
    late = crm.create("fin", "payment_plan", contract=contract, installment=1,
                      due_date="2025-12-01", amount="50000")["id"]
    soon = crm.create("fin", "payment_plan", contract=contract, installment=2,
                      due_date="2026-01-04", amount="50000")["id"]
    paid = crm.create("fin", "payment_plan", contract=contract, installment=3,
                      due_date="2025-12-20", amount="50000", paid=True)["id"]
    ahead = crm.create("fin", "payment_plan", contract=contract, installment=4,
                       due_date="2026-02-01", amount="50000")["id"]
    flags = {rid: crm.get("rep1", "payment_plan", rid)["overdue"]
             for rid in (late, soon, paid, ahead)}
    assert flags == {late: True, soon: True, paid: False, ahead: False}
    crm.run_due(minutes=2)  # the owner is told, once the plans are theirs
    told = [t for t in crm.titles("rep1") if "已逾期" in t]
    assert sorted(told) == ["第 1 期回款已逾期（应于 2025-12-01）",
                            "第 2 期回款已逾期（应于 2026-01-04）"]
    assert crm.report("manager", "overdue_payments")[0]["installments"] == 2
    # Re-dated into the future: no longer overdue.
    res = patch(crm, "fin", "payment_plan", soon, due_date="2026-01-20")
    assert res.status_code == 200, res.text
    assert crm.get("rep1", "payment_plan", soon)["overdue"] is False
    crm.run_due(days=1)  # the day-after check does not flag or tell again
    assert len([t for t in crm.titles("rep1") if "已逾期" in t]) == 2


def test_payments_and_plans_are_checked_against_the_contract(crm: Crm):
    _, contract = rep_contract(crm, amount="100000")
    _, other = rep_contract(crm, amount="100000", account_name="漳州立达食品有限公司")

    def plan(contract: str, installment: int, amount: str) -> Any:
        return crm["fin"].post(f"{BASE}/forms/payment_plan/records", json={"values": {
            "contract": contract, "installment": installment, "due_date": "2026-02-01",
            "amount": amount}})

    def pay(amount: str, received_on: str = "2026-01-05", **values: Any) -> Any:
        return crm["fin"].post(f"{BASE}/forms/payment/records", json={"values": {
            "contract": contract, "amount": amount, "received_on": received_on, **values}})

    first = plan(contract, 1, "60000")
    assert first.status_code == 201, first.text
    assert rules(plan(contract, 2, "50000")) == [
        ("planned_total", "回款计划合计不能超过合同金额")]
    assert rules(plan(contract, 1, "10000"))[0][0] == "installment_key"  # used once
    assert plan(other, 1, "10000").status_code == 201  # per contract
    second = plan(contract, 2, "40000").json()["id"]
    assert rules(pay("1000", "2026-01-06")) == [("received_on", "回款日期不能晚于今天")]
    foreign = crm.create("fin", "payment_plan", contract=other, installment=2,
                         due_date="2026-03-01", amount="1000")["id"]
    assert rules(pay("1000", plan=foreign)) == [("plan", "回款计划必须属于同一合同")]
    # A plan is paid once the payments linked to it reach its amount.
    assert pay("30000", plan=first.json()["id"]).status_code == 201
    assert crm.get("fin", "payment_plan", first.json()["id"])["paid"] is False
    assert pay("30000", plan=first.json()["id"]).status_code == 201
    assert crm.get("rep1", "payment_plan", first.json()["id"])["paid"] is True
    assert crm.get("rep1", "payment_plan", second)["paid"] is False
    assert rules(pay("40001")) == [("received_total", "回款合计不能超过合同金额")]
    assert pay("40000", plan=second).status_code == 201
    assert crm.get("manager", "contract", contract)["received_total"] == "100000.00"


def test_the_stage_checklist_holds_on_create_and_when_skipping_ahead(crm: Crm):
    account = crm.create("rep1", "account", name="合肥智远信息技术有限公司")["id"]
    ticked = {"bant_budget": True, "bant_authority": True, "bant_need": True,
              "bant_timeline": True}

    def create(stage: str, **values: Any) -> Any:
        return crm["rep1"].post(f"{BASE}/forms/opportunity/records", json={"values": {
            "name": f"直接{stage}", "account": account, "amount": "100000", "stage": stage,
            **values}})

    for stage, extra in (("discovery", {}), ("negotiation", {}),
                         ("won", {"closed_on": "2026-01-05"})):
        res = create(stage, **ticked, **extra)
        assert [f for f, _ in rules(res)] == ["stage"], stage  # no visit yet: start earlier
    assert [f for f, _ in rules(create("won", closed_on="2026-01-05"))] == [
        "stage", "bant_budget", "bant_authority", "bant_need", "bant_timeline"]
    # Losing stays free, with its reason.
    assert create("lost", lost_reason="price", closed_on="2026-01-05").status_code == 201
    # From qualification straight to won: every checklist on the way.
    deal = crm.create("rep1", "opportunity", name="智能排产", account=account,
                      amount="260000")["id"]
    crm.create("rep1", "follow_up", opportunity=deal, type="visit", summary="上门拜访")
    crm.update("rep1", "opportunity", deal, bant_budget=True, bant_authority=True)
    res = patch(crm, "rep1", "opportunity", deal, stage="won", closed_on="2026-01-05")
    assert [f for f, _ in rules(res)] == ["bant_need", "bant_timeline"]
    crm.update("rep1", "opportunity", deal, bant_need=True, bant_timeline=True)
    res = patch(crm, "rep1", "opportunity", deal, stage="won", closed_on="2026-01-05")
    assert res.status_code == 200, res.text
    assert crm.get("rep1", "opportunity", deal)["stage_reached"] == "won"


def test_a_lead_converts_only_onto_its_owners_account_and_only_once(crm: Crm):
    theirs = crm.create("rep2", "account", name="常州恒力电气有限公司")["id"]
    lead = crm.lead("rep1", "钱坤", company="常州恒力电气有限公司", source="self")["id"]
    res = crm.start("rep1", "lead_conversion", lead)
    assert res.status_code == 201 and res.json()["outcome"] == "not_convertible", res.text
    assert "线索 钱坤 未转化：客户 常州恒力电气有限公司 已由其他销售负责" in crm.titles("rep1")
    record = crm.get("rep1", "lead", lead)
    assert (record["status"], record["account"], record["account_taken"]) == (
        "new", None, False)
    assert [o for o in crm.ids_of("director", "opportunity")] == []
    assert crm.ids_of("rep1", "contact") == set()
    # The manager hands the account over: now the lead converts onto it.
    res = crm["manager"].post(f"{BASE}/forms/account/records/{theirs}/transfer",
                              json={"owner": crm.ids["rep1"]})
    assert res.status_code == 200, res.text
    res = crm.start("rep1", "lead_conversion", lead)
    assert res.status_code == 201 and res.json()["outcome"] == "converted", res.text
    converted = crm.get("rep1", "lead", lead)
    assert (converted["status"], converted["account"]) == ("converted", theirs)
    [deal] = [crm.get("rep1", "opportunity", o) for o in crm.ids_of("rep1", "opportunity")]
    assert deal["account"] == theirs
    # Converted: submitting it again is refused outright, and not offered.
    res = crm.start("rep1", "lead_conversion", lead)
    assert res.status_code == 403 and "已转化" in res.json()["message"], res.text
    panel = crm["rep1"].get(f"{BASE}/forms/lead/records/{lead}/flows").json()
    assert "lead_conversion" not in [f["flow"] for f in panel["startable"]]
    assert len(crm.ids_of("rep1", "opportunity")) == 1


def test_pool_leads_are_read_and_claimed_not_changed(crm: Crm, make_user):
    pooled = crm.lead("director", "孙悦", in_pool=True)["id"]
    assert pooled in crm.ids_of("rep1", "lead")
    # Unclaimed, a pool lead cannot be changed or handed to someone by a rep.
    res = patch(crm, "rep1", "lead", pooled, status="invalid", invalid_reason="联系不上")
    assert res.status_code in (403, 404), res.text
    res = crm["rep1"].post(f"{BASE}/forms/lead/records/{pooled}/transfer",
                           json={"owner": crm.ids["rep2"]})
    assert res.status_code in (403, 404), res.text
    lead = crm.get("director", "lead", pooled)
    assert (lead["status"], lead["owner"], lead["in_pool"]) == ("new", None, True)
    # A pool lead is not converted without an owner.
    assert crm.start("rep1", "lead_conversion", pooled).status_code == 403
    # Claimed, it is the rep's to work.
    res = crm.start("rep1", "lead_claim", pooled)
    assert res.status_code == 201 and res.json()["outcome"] == "claimed", res.text
    lead = crm.get("rep1", "lead", pooled)
    assert crm.owner(lead) == "rep1" and lead["in_pool"] is False
    crm.update("rep1", "lead", pooled, status="contacting")
    assert pooled not in crm.ids_of("rep2", "lead")


def test_a_ticket_created_closed_writes_its_score_back(crm: Crm):
    account = crm.create("rep1", "account", name="宁波瑞丰电子有限公司")["id"]
    crm.create("svc", "ticket", account=account, problem="补录：上周电话已解决",
               status="closed", satisfaction=3)
    assert float(crm.get("rep1", "account", account)["satisfaction"]) == 3


def test_a_contract_in_approval_or_approved_is_locked(crm: Crm):
    # The audit: a rep changed an approved contract (its opportunity, and so
    # its amount) and edited one in approval. Locked now; the attachments
    # (the signed scan) stay editable, and the flows still move it on.
    account, contract = rep_contract(crm)
    other = crm.deal("rep1", account, "小项目", "won", amount="2000", closed_on="2026-01-05")
    res = crm.start("rep1", "contract_approval", contract)
    assert res.status_code == 201, res.text
    res = patch(crm, "rep1", "contract", contract, title="改名")
    assert res.status_code == 409 and res.json()["code"] == "record_locked", res.text
    assert "审批中、已批准或已签订的合同不能修改" in res.json()["message"]
    crm.decide("manager")
    crm.decide("fin")
    crm.decide("director")
    res = patch(crm, "rep1", "contract", contract, opportunity=other)
    assert res.status_code == 409, res.text
    assert crm.get("admin", "contract", contract)["amount"] == "300000.00"
    res = crm["manager"].delete(f"{BASE}/forms/contract/records/{contract}")
    assert res.status_code == 409 and res.json()["code"] == "record_locked", res.text
    res = crm.start("rep1", "contract_sign", contract, sign_date="2026-01-04")
    assert res.json()["outcome"] == "signed", res.text  # the flow changes it
    assert crm.get("rep1", "contract", contract)["_locked"] is True


def test_a_notice_leaves_out_what_its_reader_may_not_see(crm: Crm):
    # Contract amounts are hidden from reps: a notice that prints the amount
    # reaches the rep without it and finance with it.
    notice = {"key": "amount_notice", "label": {"zh": "金额通知", "en": "Amount notice"},
              "form": "contract", "nodes": [
                  {"type": "start", "key": "start", "trigger": {"kind": "manual"},
                   "next": "tell"},
                  {"type": "action", "key": "tell", "next": "end", "action": {
                      "kind": "notify", "to": [{"kind": "field", "field": "owner"},
                                               {"kind": "role", "role": "finance"}],
                      "title": "合同 {{ record.title }} 金额[{{ record.amount }}]"}},
                  {"type": "end", "key": "end"}]}
    assert crm.admin.put(f"{BASE}/flows/amount_notice/draft",
                         json={"definition": notice}).status_code == 200
    res = crm.admin.post(f"{BASE}/flows/amount_notice/publish", json={})
    assert res.status_code == 200, res.text
    _, contract = rep_contract(crm)
    res = crm.admin.post(f"{BASE}/flows/amount_notice/start", json={"record_id": contract})
    assert res.status_code == 201, res.text
    assert "合同 储能项目合同 金额[]" in crm.titles("rep1")
    assert "合同 储能项目合同 金额[300000.00]" in crm.titles("fin")


def test_counts_over_forms_a_reader_may_not_read_are_hidden(crm: Crm):
    # Service reads contracts and accounts but no payments, plans or leads:
    # how many there are is theirs to know no more than the amounts.
    account, contract = rep_contract(crm)
    seen = crm.get("svc", "contract", contract)
    assert not {"payment_count", "plan_count", "received_total"} & set(seen)
    assert "converted_leads" not in crm.get("svc", "account", account)
    res = crm["svc"].post(f"{BASE}/forms/contract/records/query", json={
        "filter": {"field": "payment_count", "op": "gt", "value": 0}})
    assert res.status_code == 403, res.text
    # Finance reads payments and plans: the counts are there.
    assert {"payment_count", "plan_count"} <= set(crm.get("fin", "contract", contract))


def test_a_refused_conversion_does_not_tell_whose_account_it_is(crm: Crm):
    theirs = crm.create("rep2", "account", name="杭州智航科技集团有限公司")["id"]
    lead = crm.lead("rep1", "探", company="杭州智航科技集团有限公司", source="self")
    res = crm.start("rep1", "lead_conversion", lead["id"])
    assert res.status_code == 201, res.text
    history = crm["rep1"].get(f"{BASE}/forms/lead/records/{lead['id']}/history").json()
    shown = json.dumps(history, ensure_ascii=False) + json.dumps(
        crm.get("rep1", "lead", lead["id"]), ensure_ascii=False)
    assert crm.ids["rep2"] not in shown and "account_owner" not in shown
    assert theirs  # the account exists; whose it is stays unsaid
