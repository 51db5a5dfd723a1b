"""The CRM package's opportunity and public-pool automations as its users live
them, over HTTP (docs: ../shared/domain/crm.md, "Automations and flows"):

- an opportunity sitting 7 days in one stage alerts its owner, once; a stage
  change starts the count again (the stage-entry date follows the stage) and
  won or lost deals are never alerted;
- one whose expected close is 14 days away while it is still in an early
  stage alerts the sales director;
- entering negotiation reminds the owner to prepare the contract;
- an idle lead goes back to the public pool with no owner, where reps and
  managers of every team see it and a rep claims it by taking it over;
- each rep reads these reminders in their own profile language.

Same fixture as test_crm_scenarios.py: the package installed without demo
data, a FrozenClock starting on Monday 2026-01-05 09:00 in Shanghai, and the
flow worker run synchronously after the clock moves."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.engines.directory import users_table
from tests.integration.test_crm_scenarios import BASE, Crm

STALLED = "已 7 天停留在同一阶段"
EARLY = "仍处于早期阶段"


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def opportunity(crm: Crm, who: str, account: str, name: str, **values: Any) -> str:
    """A deal, ready to move on (a visit and its BANT checklist on record)."""
    stage = values.pop("stage", "qualification")
    if stage != "qualification":  # reached the way people reach it
        return crm.deal(who, account, name, stage, **values)
    values.setdefault("amount", "100000")
    values.update(bant_budget=True, bant_authority=True, bant_need=True, bant_timeline=True)
    rid = crm.create(who, "opportunity", name=name, account=account, **values)["id"]
    crm.create(who, "follow_up", opportunity=rid, type="visit", summary="上门拜访")
    return str(rid)


def alerted(crm: Crm, who: str, marker: str) -> list[str]:
    """The opportunities named in ``who``'s notifications that carry ``marker``
    (titles read "商机 <name> …"), oldest first."""
    return sorted(t.split()[1] for t in crm.titles(who) if marker in t)


def test_seven_days_in_one_stage_alerts_the_owner_once_unless_the_stage_moved(crm: Crm):
    account = crm.create("rep1", "account", name="上海恒通物流有限公司")["id"]
    stuck = opportunity(crm, "rep1", account, "仓储系统")
    moved = opportunity(crm, "rep1", account, "运输管理")
    opportunity(crm, "rep1", account, "车队调度", stage="won", closed_on="2026-01-05")
    lost = opportunity(crm, "rep1", account, "电子签收")
    crm.update("rep1", "opportunity", lost, stage="lost", lost_reason="price",
               closed_on="2026-01-05")
    assert crm.get("rep1", "opportunity", stuck)["stage_entered"] == "2026-01-05"

    crm.run_due(days=3)  # 01-08: the second deal moves on
    crm.update("rep1", "opportunity", moved, stage="discovery")
    assert crm.get("rep1", "opportunity", moved)["stage_entered"] == "2026-01-08"

    crm.run_due(days=3, minutes=1)  # 01-11 09:01: six days in qualification
    assert alerted(crm, "rep1", STALLED) == []
    crm.run_due(days=1)  # 01-12 09:01: seven days
    assert alerted(crm, "rep1", STALLED) == ["仓储系统"]  # not the won, lost or moved ones
    assert alerted(crm, "rep2", STALLED) == [] and alerted(crm, "manager", STALLED) == []
    crm.run_due(days=1)  # 01-13
    assert alerted(crm, "rep1", STALLED) == ["仓储系统"]  # once

    crm.run_due(days=2)  # 01-15: seven days in discovery
    assert alerted(crm, "rep1", STALLED) == ["仓储系统", "运输管理"]
    note = next(n for n in crm.notes("rep1") if "运输管理" in n["title"])
    assert "自 2026-01-08 起未推进阶段" in note["body"]


def test_a_stage_entry_date_set_by_hand_with_the_stage_is_kept(crm: Crm):
    account = crm.create("rep1", "account", name="杭州新禾科技有限公司")["id"]
    opp = opportunity(crm, "rep1", account, "数据中台")
    crm.run_due(days=2)
    crm.update("rep1", "opportunity", opp, stage="discovery", stage_entered="2026-01-06")
    assert crm.get("rep1", "opportunity", opp)["stage_entered"] == "2026-01-06"
    crm.update("rep1", "opportunity", opp, amount="120000")  # not a stage change
    assert crm.get("rep1", "opportunity", opp)["stage_entered"] == "2026-01-06"


def test_a_close_date_14_days_away_in_an_early_stage_alerts_the_director(crm: Crm):
    account = crm.create("rep1", "account", name="南京华瑞医药有限公司")["id"]
    opportunity(crm, "rep1", account, "临床数据平台", expected_close="2026-01-20")
    opportunity(crm, "rep1", account, "药品追溯", stage="proposal",
                expected_close="2026-01-20")
    opportunity(crm, "rep1", account, "冷链监控", stage="won", closed_on="2026-01-05",
                expected_close="2026-01-20")
    later = opportunity(crm, "rep1", account, "营销云", stage="discovery",
                        expected_close="2026-01-25")
    opportunity(crm, "rep1", account, "年度维保", stage="discovery",
                expected_close="2026-01-26")

    crm.run_due(days=1, minutes=1)  # 01-06 09:01: 14 days before 01-20
    assert alerted(crm, "director", EARLY) == ["临床数据平台"]
    note = next(n for n in crm.notes("director") if EARLY in n["title"])
    assert note["title"] == "商机 临床数据平台 预计 2026-01-20 成交，仍处于早期阶段"
    assert "初步接触" in note["body"]
    assert alerted(crm, "rep1", EARLY) == [] and alerted(crm, "manager", EARLY) == []

    crm.run_due(days=2)  # 01-08: 营销云 moves to proposal before its day comes
    crm.update("rep1", "opportunity", later, stage="proposal")
    crm.run_due(days=4)  # 01-12 09:01: 14 days before 01-26, still in discovery
    assert alerted(crm, "director", EARLY) == ["临床数据平台", "年度维保"]

    # Already inside the 14 days when created or re-dated: alerted at once, once.
    opportunity(crm, "rep1", account, "急单", expected_close="2026-01-19")
    opportunity(crm, "rep1", account, "急单二", stage="proposal", expected_close="2026-01-19")
    moved = opportunity(crm, "rep1", account, "提前", stage="discovery",
                        expected_close="2026-03-01")
    crm.update("rep1", "opportunity", moved, expected_close="2026-01-22")
    crm.update("rep1", "opportunity", moved, expected_close="2026-01-21")  # still inside
    assert alerted(crm, "director", EARLY) == sorted(["临床数据平台", "年度维保", "急单", "提前"])

    # Exactly 14 days away: after the day's 09:00 check, alerted at once; before
    # it, by the check — once either way.
    opportunity(crm, "rep1", account, "整两周", expected_close="2026-01-26")  # 01-12 09:01
    redated = opportunity(crm, "rep1", account, "改两周", expected_close="2026-03-01")
    crm.update("rep1", "opportunity", redated, expected_close="2026-01-26")
    crm.run_due(hours=23)  # 01-13 08:01
    opportunity(crm, "rep1", account, "早两周", expected_close="2026-01-27")
    assert alerted(crm, "director", EARLY) == sorted(
        ["临床数据平台", "年度维保", "急单", "提前", "整两周", "改两周"])
    crm.run_due(hours=1)  # 01-13 09:01
    crm.run_due(days=1)
    assert alerted(crm, "director", EARLY) == sorted(
        ["临床数据平台", "年度维保", "急单", "提前", "整两周", "改两周", "早两周"])


def test_entering_negotiation_reminds_the_owner_to_prepare_the_contract(crm: Crm):
    account = crm.create("rep1", "account", name="苏州嘉盛精密机械有限公司")["id"]
    opp = opportunity(crm, "rep1", account, "MES 三期", stage="proposal")

    def contract_tasks() -> list[dict[str, Any]]:
        res = crm["rep1"].get(f"{BASE}/forms/task/records", params={"limit": 100})
        assert res.status_code == 200, res.text
        return [t for t in res.json()["items"] if t["subject"].startswith("准备合同")]

    crm.update("rep1", "opportunity", opp, amount="450000")
    assert contract_tasks() == []
    # The manager moves the deal on; the reminder goes to its owner, the rep.
    crm.update("manager", "opportunity", opp, stage="negotiation")
    [task] = contract_tasks()
    assert task["subject"] == "准备合同：MES 三期"
    assert (task["opportunity"], task["account"]) == (opp, account)
    assert str(task["assignee"]) == crm.ids["rep1"] and task["done"] is False
    assert "商机 MES 三期 已进入商务谈判，请准备合同" in crm.titles("rep1")
    assert not any("准备合同" in t for t in crm.titles("manager"))

    crm.update("rep1", "opportunity", opp, amount="420000")  # still negotiating
    assert len(contract_tasks()) == 1


def add_manager(crm: Crm, make_user, name: str, department: str) -> None:
    """Another team under the sales department, headed by ``name``."""
    sales = next(d["id"] for d in _departments(crm) if d["name"] == "sales")
    res = crm.admin.post("/api/org/departments", json={"name": department, "parent_id": sales})
    assert res.status_code == 201, res.text
    uid, token = make_user(name, app=crm.app)
    res = crm.admin.put(f"/api/org/users/{uid}/departments", json={
        "departments": [{"department_id": res.json()["id"], "is_head": True}],
        "primary_department_id": res.json()["id"]})
    assert res.status_code == 204, res.text
    res = crm.admin.post(f"{BASE}/role-assignments",
                         json={"role": "sales_manager", "user_id": str(uid)})
    assert res.status_code == 201, res.text
    crm.ids[name] = str(uid)
    crm.names[str(uid)] = name
    crm.clients[name] = TestClient(crm.app, headers={"Authorization": f"Bearer {token}"})


def _departments(crm: Crm) -> list[dict[str, Any]]:
    res = crm.admin.get("/api/org/departments")
    assert res.status_code == 200, res.text
    out: list[dict[str, Any]] = []
    stack = list(res.json())
    while stack:
        d = stack.pop()
        out.append(d)
        stack.extend(d.get("children") or [])
    return out


def test_an_idle_lead_goes_to_the_pool_without_owner_and_another_rep_claims_it(
        crm: Crm, make_user):
    add_manager(crm, make_user, "west_manager", "west")
    idle = crm.lead("manager", "陈杰", company="宁波海天塑机有限公司")["id"]
    kept = crm.lead("manager", "杨洋")["id"]
    idle_rep = crm.owner(crm.get("manager", "lead", idle))
    other = crm.owner(crm.get("manager", "lead", kept))
    assert {idle_rep, other} == {"rep1", "rep2"}
    assert idle not in crm.ids_of(other, "lead")
    assert idle not in crm.ids_of("west_manager", "lead")  # another team's lead
    crm.create(other, "follow_up", lead=kept, type="call", summary="电话沟通需求")

    crm.run_due(hours=24, minutes=1)
    crm.run_due(hours=48)  # 3 days without a follow-up
    lead = crm.get("manager", "lead", idle)
    assert lead["in_pool"] is True and lead["owner"] is None
    assert any("陈杰" in t and "退回公海" in t for t in crm.titles(idle_rep))
    kept_lead = crm.get("manager", "lead", kept)
    assert kept_lead["in_pool"] is False and crm.owner(kept_lead) == other
    # The pool is everyone's: reps (its former owner too) and managers of every team.
    for who in (idle_rep, other, "manager", "west_manager", "director"):
        assert idle in crm.ids_of(who, "lead"), who
    pool = crm["west_manager"].get(f"{BASE}/forms/lead/records", params={
        "filter": '{"field": "in_pool", "op": "eq", "value": true}'})
    assert pool.status_code == 200, pool.text
    assert [r["id"] for r in pool.json()["items"]] == [idle]
    assert kept not in crm.ids_of("west_manager", "lead")  # still the east team's
    # A manager may see and hand out a pool lead, not delete or export it
    # (the role's grants on leads: the pool for read and update, the team
    # for every action).
    res = crm["west_manager"].delete(f"{BASE}/forms/lead/records/{idle}")
    assert res.status_code == 403, res.text
    exported = crm["manager"].get(f"{BASE}/forms/lead/export", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert "杨洋" in exported.text and "陈杰" not in exported.text

    # Another rep claims it (the claim flow): takes it over, and it leaves the
    # pool. The former owner, claiming it next, finds it gone.
    res = crm.start(other, "lead_claim", idle)
    assert res.status_code == 201 and res.json()["outcome"] == "claimed", res.text
    late = crm.start(idle_rep, "lead_claim", idle)
    assert late.status_code == 404, late.text  # no longer in the pool: out of sight
    lead = crm.get(other, "lead", idle)
    assert crm.owner(lead) == other and lead["in_pool"] is False
    assert idle not in crm.ids_of(idle_rep, "lead")
    assert idle not in crm.ids_of("west_manager", "lead")
    assert idle in crm.ids_of("manager", "lead")  # the east team's again
    crm.update(other, "lead", idle, status="contacting")
    history = crm[other].get(f"{BASE}/forms/lead/records/{idle}/history").json()["items"]
    assert any(h.get("action") == "transfer" for h in history)
    assert crm.get(other, "lead", idle)["in_pool"] is False


def test_a_rep_cannot_take_a_lead_that_is_not_in_the_pool(crm: Crm):
    lead = crm.lead("manager", "王芳")["id"]
    owner = crm.owner(crm.get("manager", "lead", lead))
    thief = "rep2" if owner == "rep1" else "rep1"
    res = crm[thief].post(f"{BASE}/forms/lead/records/{lead}/transfer",
                          json={"owner": crm.ids[thief]})
    assert res.status_code == 404, res.text
    assert crm.start(thief, "lead_claim", lead).status_code == 404
    assert crm.owner(crm.get("manager", "lead", lead)) == owner


def test_a_lead_created_into_the_pool_belongs_to_no_one_until_claimed(crm: Crm):
    # Marketing (here the director) puts a lead straight into the pool: it is
    # not the creator's, nobody is assigned, and any rep may claim it.
    created = crm.lead("director", "孙悦", in_pool=True)
    assert created["owner"] is None and created["in_pool"] is True  # the answer says so
    lead = crm.get("director", "lead", created["id"])
    assert lead["owner"] is None and lead["in_pool"] is True
    assert created["id"] in crm.ids_of("rep1", "lead") and created["id"] in crm.ids_of(
        "rep2", "lead")
    res = crm.start("rep2", "lead_claim", created["id"])
    assert res.status_code == 201, res.text
    lead = crm.get("rep2", "lead", created["id"])
    assert crm.owner(lead) == "rep2" and lead["in_pool"] is False
    assert created["id"] not in crm.ids_of("rep1", "lead")
    # The claim restarts the follow-up watch for the new owner: no follow-up
    # in 3 days sends the lead back to the pool.
    crm.run_due(hours=24, minutes=1)
    assert any("孙悦" in t and "24 小时未跟进" in t for t in crm.titles("rep2"))
    crm.run_due(hours=48)
    lead = crm.get("director", "lead", created["id"])
    assert lead["in_pool"] is True and lead["owner"] is None


def test_a_rep_who_reads_english_is_reminded_of_an_idle_lead_in_english(crm: Crm):
    # The package's texts come in both languages; each owner gets theirs,
    # whoever created the lead (here a manager who reads Chinese).
    with crm.app.state.sessions.begin() as s:
        s.execute(users_table.update().where(users_table.c.id == uuid.UUID(crm.ids["rep1"]))
                  .values(language="en"))
    companies = {"陈杰": "宁波海天塑机有限公司", "杨洋": "温州瑞丰电器有限公司"}
    owned: dict[str, str] = {}  # rep → the name of the lead assigned to them
    for name, company in companies.items():
        lead = crm.lead("manager", name, company=company)["id"]
        owned[crm.owner(crm.get("manager", "lead", lead))] = name
    assert set(owned) == {"rep1", "rep2"}

    crm.run_due(hours=24, minutes=1)
    english, chinese = owned["rep1"], owned["rep2"]
    [note] = [n for n in crm.notes("rep1") if "24 hours" in n["title"]]
    assert note["title"] == f"Lead {english} not followed up for 24 hours", crm.titles("rep1")
    assert note["body"] == (
        f"Please follow up on lead {english} ({companies[english]}) soon; without a "
        "follow-up within 3 days it returns to the public pool.")
    assert f"线索 {chinese} 24 小时未跟进" in crm.titles("rep2")  # still Chinese for rep2

    crm.run_due(hours=48)  # 3 days: back to the pool, told in English
    assert f"Lead {english} not followed up for 3 days, returned to the public pool" in (
        crm.titles("rep1"))
