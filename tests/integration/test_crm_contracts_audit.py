"""The partner audit's two defects of the CRM package's contracts
(/tmp/audit_pkg/REPORT.md D3, D8; docs: ../shared/domain/crm.md), over HTTP
as the people concerned act:

- D8: reps draft contracts ("entering negotiation reminds the rep to prepare
  the contract") although the amount is hidden from them: they pick the
  opportunity and the amount comes from it, server side. A contract without
  its opportunity asks for the opportunity, and the rollups' rules say
  nothing about an amount nobody gave.
- D3: the demo company has no contract "in approval" that no approval runs
  for (stuck: nobody's task, not resubmittable, locked); its unsubmitted
  contracts are drafts their owners submit to their managers' inboxes.

The small organization is test_crm_scenarios.py's (a FrozenClock on Monday
2026-01-05 09:00 in Shanghai); the demo test installs the demo company."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.context import EngineContext
from tangram.platform.auth.service import find_user_by_username
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package
from tests.integration.test_crm_scenarios import BASE, CRM, Crm

DEMO_PASSWORD = "tangram-demo"  # noqa: S105 - the demo users' password, printed by ./run demo
APPROVERS = ("mgr_east", "mgr_north", "mgr_south", "risk", "finance", "director")


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def errors(res: Any) -> list[tuple[str, str]]:
    assert res.status_code == 422, res.text
    return sorted((e["field"], e["message"]) for e in res.json()["errors"])


def test_a_rep_drafts_the_contract_of_their_won_deal_and_its_amount_comes_along(crm: Crm):
    account = crm.create("rep1", "account", name="常州天合储能科技有限公司")["id"]
    deal = crm.deal("rep1", account, "储能 EMS 项目", "won", amount="680000",
                    closed_on="2026-01-05")
    # The amount is hidden from reps: they may not type one ...
    res = crm["rep1"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "储能 EMS 项目合同", "opportunity": deal, "amount": "1"}})
    assert res.status_code == 403 and res.json()["details"] == {"field": "amount"}, res.text
    assert res.json()["message"] == "您无权填写字段“合同金额”：该字段对您不可见"
    # ... they pick the won opportunity: its customer and amount come along.
    res = crm["rep1"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "储能 EMS 项目合同", "opportunity": deal}})
    assert res.status_code == 201, res.text
    contract = res.json()
    assert "amount" not in contract and contract["account"] == account
    assert crm.owner(contract) == "rep1" and contract["status"] == "draft"
    assert crm.get("manager", "contract", contract["id"])["amount"] == "680000.00"
    # Submitted, it waits for the rep's manager, then risk control (over
    # 500,000), finance and the general manager; meanwhile it is locked.
    res = crm.start("rep1", "contract_approval", contract["id"])
    assert res.status_code == 201, res.text
    assert [t["record_id"] for t in crm.todo("manager")] == [contract["id"]]
    res = crm["rep1"].patch(f"{BASE}/forms/contract/records/{contract['id']}", json={
        "values": {"title": "改名"}, "version": crm.get("rep1", "contract",
                                                     contract["id"])["version"]})
    assert res.status_code == 409 and res.json()["code"] == "record_locked", res.text
    for who in ("manager", "risk", "fin", "director"):
        crm.decide(who)
    assert crm.get("rep1", "contract", contract["id"])["status"] == "approved"
    res = crm.start("rep1", "contract_sign", contract["id"], sign_date="2026-01-05")
    assert res.json()["outcome"] == "signed", res.text


def test_a_contract_without_its_opportunity_asks_for_the_opportunity(crm: Crm):
    account = crm.create("rep1", "account", name="无锡新创光电有限公司")["id"]
    # A rep cannot give the amount: the answer says where it comes from, and
    # the payment rules do not blame rollups the rep never touched.
    res = crm["rep1"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "光电项目合同", "account": account}})
    assert errors(res) == [("amount", "合同金额为必填项"),
                           ("opportunity", "请选择合同对应的商机：合同金额从商机带出")]
    # Someone who may type the amount still has to give one (a frame contract
    # without an opportunity); the rollups' rules stay quiet about it.
    res = crm["manager"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "框架合同", "account": account}})
    assert [f for f, _ in errors(res)] == ["amount", "opportunity"]
    made = crm.create("manager", "contract", title="框架合同", account=account,
                      amount="50000")
    assert made["amount"] == "50000.00"


def _contracts(client: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 500}
    while True:
        res = client.get(f"{BASE}/forms/contract/records", params=params)
        assert res.status_code == 200, res.text
        items += res.json()["items"]
        if not res.json().get("next_cursor"):
            return items
        params["after"] = res.json()["next_cursor"]


def test_the_demo_has_no_stuck_approval_and_its_drafts_go_to_the_managers(app_factory):
    clock = FrozenClock()
    app = app_factory(clock=clock)
    with app.state.sessions.begin() as s:
        install_package(EngineContext(session=s, clock=clock),
                        load_package(read_package(CRM)), demo=True)
    org = json.loads((Path(CRM) / "data" / "demo" / "_org.json").read_text("utf-8"))
    with app.state.sessions.begin() as s:
        username = {str(u.id): u.username for u in (
            find_user_by_username(s, user["id"]) for user in org["users"]) if u}
    clients: dict[str, TestClient] = {}

    def login(name: str) -> TestClient:
        if name not in clients:
            client = TestClient(app)
            res = client.post("/api/auth/login",
                              json={"username": name, "password": DEMO_PASSWORD})
            assert res.status_code == 200, res.text
            clients[name] = TestClient(app, headers={
                "Authorization": f"Bearer {res.json()['access_token']}"})
        return clients[name]

    def inbox(name: str) -> set[str]:
        res = login(name).get("/api/flows/tasks", params={"box": "todo"})
        assert res.status_code == 200, res.text
        return {t["record_id"] for t in res.json()["items"] if t["flow"] == "contract_approval"}

    contracts = _contracts(login("director"))
    assert len(contracts) > 100
    # Every contract in approval waits in an approver's inbox (none does now).
    waiting = {c["id"] for c in contracts if c["status"] == "in_approval"}
    assert waiting <= set().union(*(inbox(name) for name in APPROVERS))
    # The contracts not yet approved are drafts, ready for their owners to submit.
    drafts = [c for c in contracts if c["status"] == "draft"]
    assert drafts and {c["status"] for c in contracts} <= {"draft", "in_approval",
                                                           "approved", "signed"}
    draft = drafts[0]
    owner = login(username[str(draft["owner"])])
    panel = owner.get(f"{BASE}/forms/contract/records/{draft['id']}/flows").json()
    assert [f["flow"] for f in panel["startable"]] == ["contract_approval"]
    res = owner.post(f"{BASE}/flows/contract_approval/start", json={"record_id": draft["id"]})
    assert res.status_code == 201, res.text
    # It reaches the manager of the owner's region (the team has no head).
    team = next(u for u in org["users"] if u["id"] == username[str(draft["owner"])])
    region = next(d["parent_id"] for d in org["departments"]
                  if d["id"] == team["department_ids"][0])
    manager = next(u["id"] for u in org["users"] if region in (u.get("is_head") or []))
    assert draft["id"] in inbox(manager)
    now = owner.get(f"{BASE}/forms/contract/records/{draft['id']}").json()
    assert now["status"] == "in_approval"
    res = owner.patch(f"{BASE}/forms/contract/records/{draft['id']}", json={
        "values": {"title": "改名"}, "version": now["version"]})
    assert res.status_code == 409 and res.json()["code"] == "record_locked", res.text
    # An approved one is its owner's to mark signed once the customer signs.
    approved = next(c for c in contracts if c["status"] == "approved")
    panel = login(username[str(approved["owner"])]).get(
        f"{BASE}/forms/contract/records/{approved['id']}/flows").json()
    assert [f["flow"] for f in panel["startable"]] == ["contract_sign"]


def test_a_withdrawn_contract_is_a_draft_again_and_can_be_resubmitted(crm: Crm):
    # Withdrawn (撤回) before the manager acted, the contract left "in
    # approval" locked for good: the flow's on_withdraw puts it back to draft.
    account = crm.create("rep1", "account", name="无锡华光环保能源有限公司")["id"]
    deal = crm.deal("rep1", account, "锅炉改造", "won", amount="120000",
                    closed_on="2026-01-05")
    contract = crm.create("rep1", "contract", title="锅炉改造合同", opportunity=deal)
    res = crm.start("rep1", "contract_approval", contract["id"])
    assert res.status_code == 201, res.text
    iid = res.json()["id"]
    assert crm.get("rep1", "contract", contract["id"])["status"] == "in_approval"
    res = crm["rep1"].post(f"/api/flows/instances/{iid}/withdraw", json={"comment": "改条款"})
    assert res.status_code == 200, res.text
    assert crm.get("rep1", "contract", contract["id"])["status"] == "draft"
    assert crm.todo("manager") == []
    res = crm["rep1"].patch(f"{BASE}/forms/contract/records/{contract['id']}", json={
        "values": {"title": "锅炉改造合同（修订）"},
        "version": crm.get("rep1", "contract", contract["id"])["version"]})
    assert res.status_code == 200, res.text  # no longer locked
    assert crm.start("rep1", "contract_approval", contract["id"]).status_code == 201
