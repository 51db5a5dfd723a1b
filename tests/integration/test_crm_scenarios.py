"""The CRM package (apps_catalog/crm) as its users live it, over HTTP, with the
package's own roles and flows (docs: ../shared/domain/crm.md): leads are
assigned on creation and return to the public pool when nobody follows them
up, a large contract goes through risk control (with a reminder when a step
waits), accounts become VIP from their signed contracts, the funnel and the
leaderboard add up, and a rep never sees another rep's accounts.

Installed without demo data; time is a FrozenClock and the flow worker is run
synchronously (``run_due``) after the clock moves."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.context import EngineContext
from tangram.engines.flows.worker import run_due
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package

CRM = Path(__file__).resolve().parents[2] / "apps_catalog" / "crm"
BASE = "/api/apps/crm"

# who → (department, head of it?, CRM roles)
PEOPLE: dict[str, tuple[str | None, bool, tuple[str, ...]]] = {
    "director": ("sales", True, ("sales_director",)),
    "manager": ("east", True, ("sales_manager",)),
    "rep1": ("east", False, ("sales_rep",)),
    "rep2": ("east", False, ("sales_rep",)),
    "fin": (None, False, ("finance",)),
    "risk": (None, False, ("risk_control",)),
    "svc": (None, False, ("service",)),
}


class Crm:
    """The CRM installed for a small sales organization: a director over a
    team (manager, two reps), plus finance and risk control."""

    def __init__(self, app_factory, make_user) -> None:
        self.clock = FrozenClock()
        self.app = app_factory(clock=self.clock, session_hours=24 * 365)
        with self.app.state.sessions.begin() as session:
            install_package(EngineContext(session=session, clock=self.clock),
                            load_package(read_package(CRM)), demo=False)
        admin_id, token = make_user("admin", is_admin=True, app=self.app)
        self.admin = TestClient(self.app, headers={"Authorization": f"Bearer {token}"})
        sales = self._department("sales", None)
        depts = {"sales": sales, "east": self._department("east", sales)}
        self.ids: dict[str, str] = {}
        self.clients: dict[str, TestClient] = {}
        for name, (dept, head, roles) in PEOPLE.items():
            uid, tok = make_user(name, app=self.app)
            self.ids[name] = str(uid)
            # the browsers of a Chinese sales organization
            self.clients[name] = TestClient(self.app, headers={
                "Authorization": f"Bearer {tok}", "Accept-Language": "zh-CN,zh;q=0.9"})
            if dept:
                res = self.admin.put(f"/api/org/users/{uid}/departments", json={
                    "departments": [{"department_id": depts[dept], "is_head": head}],
                    "primary_department_id": depts[dept]})
                assert res.status_code == 204, res.text
            for role in roles:
                res = self.admin.post(f"{BASE}/role-assignments",
                                      json={"role": role, "user_id": str(uid)})
                assert res.status_code == 201, res.text
        # The administrator enters history (signed contracts of past years):
        # a contract's status otherwise changes only through its flows.
        self.ids["admin"], self.clients["admin"] = str(admin_id), self.admin
        self.names = {uid: name for name, uid in self.ids.items()}
        self._mobiles = itertools.count(13800000001)

    def _department(self, name: str, parent: str | None) -> str:
        res = self.admin.post("/api/org/departments", json={"name": name, "parent_id": parent})
        assert res.status_code == 201, res.text
        return res.json()["id"]

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    def run_due(self, **advance: float) -> None:
        if advance:
            self.clock.advance(**advance)
        run_due(self.app.state.engine, self.clock)

    # records --------------------------------------------------------------------------------

    def create(self, who: str, form: str, **values: Any) -> dict[str, Any]:
        res = self[who].post(f"{BASE}/forms/{form}/records", json={"values": values})
        assert res.status_code == 201, res.text
        return res.json()

    def update(self, who: str, form: str, rid: str, **values: Any) -> dict[str, Any]:
        version = self.get(who, form, rid)["version"]
        res = self[who].patch(f"{BASE}/forms/{form}/records/{rid}",
                              json={"values": values, "version": version})
        assert res.status_code == 200, res.text
        return res.json()

    def get(self, who: str, form: str, rid: str) -> dict[str, Any]:
        res = self[who].get(f"{BASE}/forms/{form}/records/{rid}")
        assert res.status_code == 200, res.text
        return res.json()

    def ids_of(self, who: str, form: str) -> set[str]:
        res = self[who].get(f"{BASE}/forms/{form}/records", params={"limit": 500})
        assert res.status_code == 200, res.text
        return {r["id"] for r in res.json()["items"]}

    def lead(self, who: str, name: str, **values: Any) -> dict[str, Any]:
        return self.create(who, "lead", name=name, mobile=str(next(self._mobiles)),
                           source=values.pop("source", "website"), **values)

    def owner(self, record: dict[str, Any]) -> str:
        return self.names[str(record["owner"])]

    def ready_to_advance(self, who: str, opportunity: str) -> None:
        """A visit on record and the BANT checklist ticked: what moving a deal
        past qualification needs (the opportunity form's stage rules)."""
        self.create(who, "follow_up", opportunity=opportunity, type="visit",
                    summary="上门拜访，确认需求、预算和决策人")
        self.update(who, "opportunity", opportunity, bant_budget=True, bant_authority=True,
                    bant_need=True, bant_timeline=True)

    def deal(self, who: str, account: str, name: str, stage: str = "qualification",
             **values: Any) -> str:
        """An opportunity at ``stage`` reached the way people reach it: created
        in qualification, a visit and the BANT checklist on record, then moved
        on in one change (with ``values``, e.g. its close date). Lost deals
        are created lost (losing needs only its reason)."""
        values.setdefault("amount", "100000")
        if stage in ("qualification", "lost"):
            return str(self.create(who, "opportunity", name=name, account=account,
                                   stage=stage, **values)["id"])
        rid = str(self.create(who, "opportunity", name=name, account=account,
                              amount=values.pop("amount"))["id"])
        self.ready_to_advance(who, rid)
        self.update(who, "opportunity", rid, stage=stage, **values)
        return rid

    def history(self, who: str, form: str, **values: Any) -> dict[str, Any]:
        """A record of the past (a won deal, a signed contract) as the
        administrator enters history — at any stage or status — then handed
        to ``who``."""
        record = self.create("admin", form, **values)
        if who != "admin":
            res = self.admin.post(f"{BASE}/forms/{form}/records/{record['id']}/transfer",
                                  json={"owner": self.ids[who]})
            assert res.status_code == 200, res.text
        return record

    def start(self, who: str, flow: str, record_id: str, **variables: Any) -> Any:
        """Start (submit) a flow on a record; the response."""
        return self[who].post(f"{BASE}/flows/{flow}/start",
                              json={"record_id": record_id, "variables": variables})

    # flows ----------------------------------------------------------------------------------

    def notes(self, who: str) -> list[dict[str, Any]]:
        res = self[who].get("/api/flows/notifications")
        assert res.status_code == 200, res.text
        return res.json()["items"]

    def titles(self, who: str) -> list[str]:
        return [n["title"] for n in self.notes(who)]

    def todo(self, who: str) -> list[dict[str, Any]]:
        res = self[who].get("/api/flows/tasks", params={"box": "todo"})
        assert res.status_code == 200, res.text
        return res.json()["items"]

    def decide(self, who: str, action: str = "approve", **body: Any) -> None:
        [task] = self.todo(who)
        res = self[who].post(f"/api/flows/tasks/{task['id']}/{action}", json=body)
        assert res.status_code == 200, res.text

    def report(self, who: str, key: str) -> list[dict[str, Any]]:
        res = self[who].post(f"{BASE}/reports/{key}/run", json={})
        assert res.status_code == 200, res.text
        return res.json()["rows"]


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def test_converting_a_lead_creates_its_account_contact_and_opportunity(crm: Crm):
    lead = crm.lead("rep1", "赵磊", company="无锡华泰机电有限公司", source="self",
                    email="zhaolei@huatai.example", industry="manufacturing",
                    size="s200_500", region={"province": "江苏省", "city": "无锡市"})
    res = crm["rep1"].post(f"{BASE}/flows/lead_conversion/start", json={
        "record_id": lead["id"], "variables": {"amount": "380000"}})
    assert res.status_code == 201, res.text
    assert res.json()["outcome"] == "converted", res.json()
    assert crm.get("rep1", "lead", lead["id"])["status"] == "converted"
    [account] = [a for a in _items(crm, "rep1", "account") if a["name"] == "无锡华泰机电有限公司"]
    assert (account["industry"], account["size"], account["source"]) == (
        "manufacturing", "s200_500", "self")
    assert account["region"]["city"] == "无锡市" and crm.owner(account) == "rep1"
    [contact] = [c for c in _items(crm, "rep1", "contact") if c["account"] == account["id"]]
    assert (contact["name"], contact["phone"], contact["email"]) == (
        "赵磊", lead["mobile"], "zhaolei@huatai.example")
    [deal] = [o for o in _items(crm, "rep1", "opportunity") if o["account"] == account["id"]]
    assert deal["name"] == "无锡华泰机电有限公司 新商机" and deal["amount"] == "380000.00"
    assert deal["stage"] == "qualification" and crm.owner(deal) == "rep1"
    assert "线索 赵磊 已转化" in crm.titles("rep1")
    # Converted once: again is refused, and says so.
    again = crm["rep1"].post(f"{BASE}/flows/lead_conversion/start",
                             json={"record_id": lead["id"]})
    assert again.status_code == 403, again.text
    assert "已转化或无效的线索不能再转化" in again.json()["message"]
    assert "lead_conversion" not in [f["flow"] for f in crm["rep1"].get(
        f"{BASE}/forms/lead/records/{lead['id']}/flows").json()["startable"]]
    assert len([a for a in _items(crm, "rep1", "account")
                if a["name"] == "无锡华泰机电有限公司"]) == 1
    # A second lead of the same company: the account is reused, not duplicated.
    second = crm.lead("rep1", "钱敏", company="无锡华泰机电有限公司", source="self")
    res = crm["rep1"].post(f"{BASE}/flows/lead_conversion/start",
                           json={"record_id": second["id"]})
    assert res.status_code == 201 and res.json()["outcome"] == "converted", res.text
    assert len([a for a in _items(crm, "rep1", "account")
                if a["name"] == "无锡华泰机电有限公司"]) == 1
    assert sorted(c["name"] for c in _items(crm, "rep1", "contact")
                  if c["account"] == account["id"]) == ["赵磊", "钱敏"]
    assert len([o for o in _items(crm, "rep1", "opportunity")
                if o["account"] == account["id"]]) == 2
    # Another rep's lead is not theirs to convert.
    other = crm.lead("rep2", "钱坤", company="常州恒力电气有限公司", source="self")
    res = crm["rep1"].post(f"{BASE}/flows/lead_conversion/start",
                           json={"record_id": other["id"]})
    assert res.status_code in (403, 404), res.text


def _items(crm: Crm, who: str, form: str) -> list[dict[str, Any]]:
    res = crm[who].get(f"{BASE}/forms/{form}/records", params={"limit": 500})
    assert res.status_code == 200, res.text
    return res.json()["items"]


def test_new_leads_are_assigned_to_the_least_loaded_rep_who_is_told(crm: Crm):
    first = crm.lead("manager", "王伟", company="上海华创科技有限公司")
    second = crm.lead("manager", "李娜")
    owners = [crm.owner(crm.get("manager", "lead", r["id"])) for r in (first, second)]
    assert sorted(owners) == ["rep1", "rep2"]  # load-balanced: one each
    for rep, lead in zip(owners, (first, second), strict=True):
        assert lead["id"] in crm.ids_of(rep, "lead")
        assert any(n["kind"] == "assigned" for n in crm.notes(rep))
    third = crm.lead("manager", "张敏")
    assert crm.owner(crm.get("manager", "lead", third["id"])) in ("rep1", "rep2")
    # A rep's self-sourced lead stays theirs.
    own = crm.lead("rep2", "赵强", source="self")
    assert crm.owner(crm.get("rep2", "lead", own["id"])) == "rep2"


def test_an_idle_lead_is_reminded_then_returned_to_the_public_pool(crm: Crm):
    idle = crm.lead("manager", "陈杰")
    busy = crm.lead("manager", "杨洋")
    idle_rep = crm.owner(crm.get("manager", "lead", idle["id"]))
    busy_rep = crm.owner(crm.get("manager", "lead", busy["id"]))
    other = busy_rep
    assert idle_rep != busy_rep  # load-balanced
    assert idle["id"] not in crm.ids_of(other, "lead")
    crm.run_due(hours=2)
    crm.create(busy_rep, "follow_up", lead=busy["id"], type="call", summary="电话沟通需求")
    assert crm.get(busy_rep, "lead", busy["id"])["follow_ups"] == 1

    crm.run_due(hours=22, minutes=1)  # 24 h after creation
    assert any("陈杰" in t and "24 小时未跟进" in t for t in crm.titles(idle_rep))
    assert any("陈杰" in t and "未跟进" in t for t in crm.titles("manager"))  # their manager too
    assert not any("杨洋" in t and "未跟进" in t for t in crm.titles(busy_rep))
    assert crm.get("manager", "lead", idle["id"])["in_pool"] is False

    crm.run_due(hours=48)  # 3 days after creation
    lead = crm.get("manager", "lead", idle["id"])
    assert lead["in_pool"] is True and lead["owner"] is None  # owner cleared
    assert idle["id"] in crm.ids_of(other, "lead")  # others may now claim it
    assert crm.get("manager", "lead", busy["id"])["in_pool"] is False
    assert busy["id"] not in crm.ids_of(idle_rep, "lead")
    assert any("退回公海" in t for t in crm.titles(idle_rep))


def submit_contract(crm: Crm, title: str, amount: str) -> tuple[str, str]:
    """The rep's account; the contract drafted and submitted by the manager (the
    amount is hidden from reps, so they cannot fill it in)."""
    account = crm.create("rep1", "account", name=f"{title}客户有限公司")
    contract = crm.create("manager", "contract", title=title, account=account["id"],
                          amount=amount)
    assert crm["rep1"].get(f"{BASE}/forms/contract/records/{contract['id']}"
                           ).status_code == 404
    res = crm["manager"].post(f"{BASE}/flows/contract_approval/start",
                              json={"record_id": contract["id"]})
    assert res.status_code == 201, res.text
    return res.json()["id"], contract["id"]


def test_a_large_contract_goes_through_risk_control_with_a_reminder(crm: Crm):
    iid, cid = submit_contract(crm, "MES 项目合同", "800000")
    assert crm.get("director", "contract", cid)["status"] == "in_approval"
    assert crm.todo("fin") == [] and crm.todo("risk") == []
    # A head submitting: the department-head step goes one level up.
    crm.decide("director", comment="同意")
    assert len(crm.todo("risk")) == 1 and crm.todo("fin") == []

    crm.run_due(hours=24, minutes=1)  # risk control waits a day: reminded
    assert any(n["kind"] == "reminder" for n in crm.notes("risk"))
    assert crm.todo("director") == []  # not escalated before 48 h
    crm.decide("risk")
    assert crm.todo("risk") == []
    crm.decide("fin")
    crm.decide("director")  # the general manager step
    assert crm.get("director", "contract", cid)["status"] == "approved"
    assert any("已批准" in t for t in crm.titles("fin"))
    view = crm["manager"].get(f"/api/flows/instances/{iid}").json()
    assert view["instance"]["outcome"] == "approved"
    assert [h["action"] for h in view["history"]].count("approve") == 4


def test_a_waiting_step_escalates_to_the_director_after_48_hours(crm: Crm):
    submit_contract(crm, "BI 平台合同", "900000")
    crm.decide("director")
    crm.run_due(hours=48, minutes=1)
    assert len(crm.todo("director")) == 1  # the risk step, escalated
    crm.decide("director")
    assert crm.todo("risk") == []
    assert len(crm.todo("fin")) == 1


def test_a_small_contract_skips_risk_and_a_rejection_returns_to_the_submitter(crm: Crm):
    iid, cid = submit_contract(crm, "CRM 订阅", "120000")
    crm.decide("director")
    assert crm.todo("risk") == []
    crm.decide("fin", "reject", comment="付款条件不清楚")
    assert crm.get("director", "contract", cid)["status"] == "rejected"
    assert any("被驳回" in t for t in crm.titles("manager"))
    view = crm["manager"].get(f"/api/flows/instances/{iid}").json()
    assert [h["comment"] for h in view["history"] if h["action"] == "reject"] == [
        "付款条件不清楚"]


def test_an_account_becomes_vip_when_its_signed_contracts_pass_the_threshold(crm: Crm):
    account = crm.create("rep1", "account", name="宁波金泰汽车部件有限公司")
    assert crm.get("rep1", "account", account["id"])["level"] == "normal"
    signed = {"status": "signed", "sign_date": "2026-01-05", "account": account["id"]}
    crm.history("director", "contract", title="一期", amount="600000", **signed)
    assert crm.get("rep1", "account", account["id"])["level"] == "important"
    crm.create("director", "contract", title="草稿", amount="900000", account=account["id"])
    assert crm.get("rep1", "account", account["id"])["level"] == "important"  # not signed
    crm.history("director", "contract", title="二期", amount="400000", **signed)
    acc = crm.get("rep1", "account", account["id"])
    assert acc["level"] == "vip"
    # the signed total adds up contract amounts, which reps may not see; the
    # level band is shown to them on purpose (their role names it read-only)
    assert "signed_total" not in acc
    assert float(crm.get("director", "account", account["id"])["signed_total"]) == 1_000_000
    # Service staff read accounts but no contracts: a sum of contract amounts
    # is not theirs to see either (a rollup over a form they cannot read).
    seen = crm.get("svc", "account", account["id"])
    assert "signed_total" not in seen and seen["level"] == "vip"


def test_funnel_and_leaderboard_add_up_and_proposal_creates_a_task(crm: Crm):
    acc1 = crm.create("rep1", "account", name="上海鼎华信息技术有限公司")["id"]
    acc2 = crm.create("rep2", "account", name="北京瑞通物流有限公司")["id"]

    def opp(rep: str, account: str, name: str, amount: str, **values: Any) -> str:
        return crm.create(rep, "opportunity", name=name, account=account, amount=amount,
                          **values)["id"]

    opp("rep1", acc1, "BI 平台", "100000")
    proposal = opp("rep1", acc1, "CRM 项目", "200000")
    crm.deal("rep1", acc1, "私有化部署", "won", amount="300000", closed_on="2026-01-05")
    opp("rep1", acc1, "系统升级", "50000", stage="lost", lost_reason="price",
        closed_on="2026-01-05")
    crm.deal("rep2", acc2, "云服务采购", "won", amount="150000", closed_on="2026-01-05")
    lost_late = crm.deal("rep2", acc2, "BI 平台", "negotiation", amount="80000")

    crm.ready_to_advance("rep1", proposal)
    crm.update("rep1", "opportunity", proposal, stage="discovery")
    crm.update("rep1", "opportunity", proposal, stage="proposal")
    tasks = crm["rep1"].get(f"{BASE}/forms/task/records").json()["items"]
    assert [(t["subject"], t["opportunity"]) for t in tasks] == [
        ("准备方案/报价：CRM 项目", proposal)]
    assert str(tasks[0]["assignee"]) == crm.ids["rep1"]  # no pre-sales named: the owner

    # The funnel counts the deals that reached each stage: the lost deal was
    # lost in qualification; a deal lost in negotiation still counts there.
    crm.update("rep2", "opportunity", lost_late, stage="lost", lost_reason="competitor",
               closed_on="2026-01-05")
    funnel = [(r["stage"], r["deals"], r["_conversion"])
              for r in crm.report("director", "sales_funnel")]
    assert funnel == [("qualification", 6, None), ("proposal", 4, 4 / 6),
                      ("negotiation", 3, 3 / 4), ("won", 2, 2 / 3)]
    board = [(crm.names[str(r["rep"])], float(r["won_amount"]), r["deals_won"])
             for r in crm.report("director", "leaderboard")]
    assert board == [("rep1", 300000, 1), ("rep2", 150000, 1)]

    # The manager moves a rep's deal on: the task is the rep's all the same
    # (assigned to and owned by them, so in their own-scope task list).
    moved = opp("rep1", acc1, "数据中台", "120000")
    crm.ready_to_advance("rep1", moved)
    crm.update("rep1", "opportunity", moved, stage="discovery")
    crm.update("manager", "opportunity", moved, stage="proposal")
    tasks = crm["rep1"].get(f"{BASE}/forms/task/records").json()["items"]
    assert ("准备方案/报价：数据中台", moved) in [(t["subject"], t["opportunity"])
                                               for t in tasks]


def test_a_deal_advances_only_with_its_stage_checklist(crm: Crm):
    account = crm.create("rep1", "account", name="合肥智远信息技术有限公司")["id"]
    deal = crm.create("rep1", "opportunity", name="智能排产", account=account,
                      amount="260000", stage="qualification")
    url = f"{BASE}/forms/opportunity/records/{deal['id']}"

    def advance(stage: str) -> list[tuple[str, str]]:
        version = crm.get("rep1", "opportunity", deal["id"])["version"]
        res = crm["rep1"].patch(url, json={"values": {"stage": stage}, "version": version})
        if res.status_code == 200:
            return []
        assert res.status_code == 422, res.text
        return [(e["field"], e["message"]) for e in res.json()["errors"]]

    # Discovery needs a visit, the budget and the decision maker — each named.
    assert advance("discovery") == [
        ("stage", "进入需求确认及以后的阶段（含赢单），需要至少一条拜访跟进记录；"
                  "新商机请从“初步接触”开始"),
        ("bant_budget", "进入需求确认及以后的阶段，需要确认预算"),
        ("bant_authority", "进入需求确认及以后的阶段，需要找到决策人")]
    crm.create("rep1", "follow_up", opportunity=deal["id"], type="call", summary="电话沟通")
    crm.update("rep1", "opportunity", deal["id"], bant_budget=True, bant_authority=True)
    assert [f for f, _ in advance("discovery")] == ["stage"]  # a call is not a visit
    crm.create("rep1", "follow_up", opportunity=deal["id"], type="visit", summary="上门拜访")
    assert crm.get("rep1", "opportunity", deal["id"])["visits"] == 1
    assert advance("discovery") == []
    # Skipping ahead needs every checklist on the way.
    assert [f for f, _ in advance("negotiation")] == ["bant_need", "bant_timeline"]
    crm.update("rep1", "opportunity", deal["id"], bant_need=True)
    assert advance("proposal") == []
    # Other edits, losing the deal and going back are never blocked.
    crm.update("rep1", "opportunity", deal["id"], amount="240000", bant_budget=False)
    assert advance("discovery") == []


def test_each_user_gets_the_menu_of_what_they_may_open(crm: Crm):
    def nav(who: str) -> dict[str, Any]:
        res = crm[who].get(f"{BASE}/navigation")
        assert res.status_code == 200, res.text
        return res.json()

    rep, fin, director = nav("rep1"), nav("fin"), nav("director")
    assert rep["app"]["key"] == "crm"
    forms = {f["key"]: f for f in rep["forms"]}
    assert {"lead", "account", "opportunity", "follow_up"} <= set(forms)
    assert forms["lead"]["label"]["zh"] == "线索"
    assert set(forms["lead"]["actions"]) == {"read", "create", "update", "submit"}
    assert {f["key"] for f in fin["forms"]} == {"account", "contract", "payment",
                                                 "payment_plan"}
    assert "update" in {f["key"]: f for f in fin["forms"]}["payment"]["actions"]
    # Dashboards name the roles they are for.
    assert [d["key"] for d in rep["dashboards"]] == ["rep_view"]
    assert {d["key"] for d in director["dashboards"]} == {"director_cockpit", "manager_view"}
    assert fin["dashboards"] == []
    refused = crm["rep1"].post(f"{BASE}/dashboards/director_cockpit/run", json={})
    assert refused.status_code == 403 and "other roles" in refused.json()["message"]
    # Finance reads no opportunities: no funnel for them.
    assert "sales_funnel" in {r["key"] for r in director["reports"]}
    assert "sales_funnel" not in {r["key"] for r in fin["reports"]}
    assert rep["tasks_open"] == 0
    # The list pages' tabs: a rep's own leads, and the pool.
    mine = crm.lead("rep1", "孙俪", source="self")
    pooled = crm.lead("director", "周迅", in_pool=True)
    lead_views = {v["key"] for v in crm["rep1"].get(f"{BASE}/forms/lead").json()[
        "definition"]["views"]}
    assert {"mine", "pool", "to_follow_up"} <= lead_views

    def listed(view: str) -> list[str]:
        res = crm["rep1"].get(f"{BASE}/forms/lead/records", params={"view": view})
        assert res.status_code == 200, res.text
        return [r["id"] for r in res.json()["items"]]

    assert listed("mine") == [mine["id"]] and listed("pool") == [pooled["id"]]
    submit_contract(crm, "导航合同", "100000")  # the manager submits: the director decides
    assert nav("director")["tasks_open"] == 1


def test_a_rep_never_sees_another_reps_accounts(crm: Crm):
    mine = crm.create("rep1", "account", name="深圳天宇电子有限公司")["id"]
    theirs = crm.create("rep2", "account", name="广州润达医疗器械有限公司")["id"]
    assert crm.ids_of("rep1", "account") == {mine}
    assert crm.ids_of("rep2", "account") == {theirs}
    assert crm["rep2"].get(f"{BASE}/forms/account/records/{mine}").status_code == 404
    assert crm["rep2"].patch(f"{BASE}/forms/account/records/{mine}",
                             json={"values": {"competitor": "x"}, "version": 1}).status_code == 404
    assert crm.ids_of("manager", "account") == {mine, theirs}
    assert crm.ids_of("director", "account") == {mine, theirs}


def test_installments_are_reminded_three_days_before_due_and_flagged_overdue(crm: Crm):
    # The clock starts on Monday 2026-01-05, 09:00 in Shanghai.
    account = crm.create("rep1", "account", name="厦门海峰新能源有限公司")
    contract = crm.create("manager", "contract", title="储能项目", account=account["id"],
                          amount="300000")
    # Finance enters the plan; the reminders go to the contract's owner.
    unpaid = crm.create("fin", "payment_plan", contract=contract["id"], installment=1,
                        due_date="2026-01-10", amount="100000")
    crm.create("fin", "payment_plan", contract=contract["id"], installment=2,
               due_date="2026-01-10", amount="50000", paid=True)

    def due_notes() -> list[str]:
        return [t for t in crm.titles("manager") if "回款" in t]

    crm.run_due(days=1, minutes=1)  # 01-06: four days before
    assert due_notes() == []
    crm.run_due(days=1)  # 01-07 09:01: three days before
    assert due_notes() == ["第 1 期回款 100000.00 将于 2026-01-10 到期"]
    crm.run_due(hours=1)
    assert len(due_notes()) == 1  # once a day, once per record
    crm.run_due(days=3)  # 01-10: due today, not yet overdue
    assert crm.get("manager", "payment_plan", unpaid["id"])["overdue"] is False
    crm.run_due(days=1)  # 01-11
    assert crm.get("manager", "payment_plan", unpaid["id"])["overdue"] is True
    assert any("已逾期" in t for t in due_notes())
    paid = [r for r in crm["manager"].get(f"{BASE}/forms/payment_plan/records").json()[
        "items"] if r["paid"]]
    assert [p["overdue"] for p in paid] == [False]


def test_a_rep_drafts_the_contract_of_a_won_deal_without_seeing_its_amount(crm: Crm):
    """The contract takes its customer and amount from the opportunity
    (fill_from), so a rep can draft and submit it though the amount is hidden
    from reps; the manager sees the amount in the approval."""
    account = crm.create("rep1", "account", name="星河精密制造有限公司")
    opp = crm.create("rep1", "opportunity", name="MES 二期", account=account["id"],
                     amount="320000", stage="qualification",
                     expected_close="2026-12-31")
    res = crm["rep1"].post(f"{BASE}/forms/contract/records", json={"values": {
        "title": "MES 二期合同", "opportunity": opp["id"]}})
    assert res.status_code == 201, res.text
    contract = res.json()
    assert "amount" not in contract and contract["account"] == account["id"]
    seen = crm.get("manager", "contract", contract["id"])
    assert seen["amount"] == "320000.00" and seen["status"] == "draft"
    # The form metadata tells a client whom to show the submit button.
    assert "submit" in crm["rep1"].get(f"{BASE}/forms/contract").json()["actions"]
    assert "submit" not in crm["fin"].get(f"{BASE}/forms/contract").json()["actions"]
    # Finance may read the contract but no role lets it submit one.
    res = crm["fin"].post(f"{BASE}/flows/contract_approval/start",
                          json={"record_id": contract["id"]})
    assert res.status_code == 403, res.text
    assert res.json()["message"] == "您的角色没有提交审批此表单记录的权限"
    res = crm["rep1"].post(f"{BASE}/flows/contract_approval/start",
                           json={"record_id": contract["id"]})
    assert res.status_code == 201, res.text
    assert crm.get("manager", "contract", contract["id"])["status"] == "in_approval"


def now_json(crm: Crm) -> str:
    """The clock's time as the records API writes a date-time."""
    return crm.clock.now().isoformat().replace("+00:00", "Z")


def test_a_follow_up_writes_its_time_back_to_what_it_is_about(crm: Crm):
    lead = crm.lead("rep1", "周杰", source="self")
    account = crm.create("rep1", "account", name="苏州恒远机械有限公司")
    opportunity = crm.create("rep1", "opportunity", name="MES 二期", account=account["id"],
                             amount="200000", stage="qualification")
    crm.run_due(hours=3)
    crm.create("rep1", "follow_up", lead=lead["id"], type="call", summary="首次电话")
    assert crm.get("rep1", "lead", lead["id"])["last_follow_up"] == now_json(crm)
    assert crm.get("rep1", "account", account["id"])["last_follow_up"] is None

    crm.run_due(days=2)
    crm.create("rep1", "follow_up", opportunity=opportunity["id"], type="visit",
               summary="现场拜访")
    # The opportunity, and its account through it.
    assert crm.get("rep1", "opportunity", opportunity["id"])["last_follow_up"] == now_json(crm)
    assert crm.get("rep1", "account", account["id"])["last_follow_up"] == now_json(crm)
    assert crm.get("rep1", "lead", lead["id"])["last_follow_up"] != now_json(crm)


def test_a_closed_ticket_writes_its_satisfaction_score_back_to_the_account(crm: Crm):
    account = crm.create("rep1", "account", name="宁波瑞丰电子有限公司")
    ticket = crm.create("svc", "ticket", account=account["id"], problem="接口调用报错",
                        priority="normal")
    crm.update("svc", "ticket", ticket["id"], status="in_progress")
    assert crm.get("rep1", "account", account["id"])["satisfaction"] is None
    # Service staff only read accounts; the write-back is the flow's (as the system).
    crm.update("svc", "ticket", ticket["id"], status="closed", satisfaction=4)
    assert float(crm.get("rep1", "account", account["id"])["satisfaction"]) == 4
    crm.update("svc", "ticket", ticket["id"], satisfaction=5)  # a corrected score
    assert float(crm.get("rep1", "account", account["id"])["satisfaction"]) == 5


def test_birthdays_and_dormant_accounts_give_the_owner_a_care_task(crm: Crm):
    # The clock starts on Monday 2026-01-05, 09:00 in Shanghai.
    account = crm.create("rep1", "account", name="杭州云帆软件有限公司")
    crm.create("rep1", "contact", account=account["id"], name="刘洋", title="CTO",
               birthday="1985-01-06")
    crm.create("rep1", "contact", account=account["id"], name="孙丽", birthday="1990-03-01")
    crm.create("rep1", "follow_up", account=account["id"], type="call", summary="年度回访")

    def tasks() -> list[str]:
        res = crm["rep1"].get(f"{BASE}/forms/task/records", params={"limit": 100})
        assert res.status_code == 200, res.text
        return sorted(t["subject"] for t in res.json()["items"])

    crm.run_due(hours=23, minutes=59)  # 01-06 08:59: not yet
    assert tasks() == []
    crm.run_due(minutes=2)  # 01-06 09:01: 刘洋's birthday
    assert tasks() == ["生日问候：刘洋"]
    assert any("刘洋 的生日" in t for t in crm.titles("rep1"))
    crm.run_due(hours=3)
    assert tasks() == ["生日问候：刘洋"]  # once

    crm.run_due(days=87, hours=21)  # 04-04 09:01: 89 days after the follow-up
    assert crm.get("rep1", "account", account["id"])["status"] != "dormant"
    crm.run_due(days=1)  # 04-05 09:01: 90 days without a follow-up
    assert crm.get("rep1", "account", account["id"])["status"] == "dormant"
    assert "唤醒沉睡客户：杭州云帆软件有限公司" in tasks()
    assert any("90 天未跟进" in t for t in crm.titles("rep1"))

