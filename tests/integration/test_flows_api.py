"""The contract approval of the CRM (docs: ../shared/domain/crm.md) end to
end over HTTP, as real users: manager → finance → general manager, a
risk-control step over 500,000, reminders at 24 h and escalation at 48 h,
rejection back to the submitter; plus definitions, inbox, webhook and admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.access import AllowAll
from tangram.engines.flows.worker import run_due
from tests.factories import label
from tests.flow_factories import CONTRACT_FORM, contract_app_admin


def approval(key: str, assignees: list, next: str, **options) -> dict:
    return {"type": "approval", "key": key, "label": label(key), "assignees": assignees,
            "next": next, "on_reject": "rejected_mark", "timeouts": [
                {"after": {"hours": 24}, "actions": [{"kind": "remind"}]},
                {"after": {"hours": 48}, "actions": [{"kind": "escalate", "to": [
                    {"kind": "user", "users": ["director"]}]}]}], **options}


CONTRACT_APPROVAL = {
    "key": "contract_approval", "label": {"zh": "合同审批", "en": "Contract approval"},
    "form": "contract",
    "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "submitted"}, "next": "mark"},
        {"type": "action", "key": "mark", "next": "manager", "action": {
            "kind": "update_record", "values": {"status": "in_approval"}}},
        approval("manager", [{"kind": "department_head"}], "amount_check"),
        {"type": "branch", "key": "amount_check", "conditions": [
            {"when": "record.amount > 500000", "next": "risk"}], "default": "finance"},
        approval("risk", [{"kind": "user", "users": ["risk"]}], "finance"),
        approval("finance", [{"kind": "role", "role": "finance"}], "gm"),
        approval("gm", [{"kind": "user", "users": ["gm"]}], "approved_mark"),
        {"type": "action", "key": "approved_mark", "next": "notify_finance", "action": {
            "kind": "update_record", "values": {"status": "approved"}}},
        {"type": "action", "key": "notify_finance", "next": "approved", "action": {
            "kind": "notify", "to": [{"kind": "role", "role": "finance"}],
            "title": "合同 {{ record.title }} 已批准"}},
        {"type": "end", "key": "approved", "outcome": "approved"},
        {"type": "action", "key": "rejected_mark", "next": "tell_submitter", "action": {
            "kind": "update_record", "values": {"status": "rejected"}}},
        {"type": "action", "key": "tell_submitter", "next": "rejected", "action": {
            "kind": "notify", "to": [{"kind": "submitter"}],
            "title": "合同 {{ record.title }} 被退回"}},
        {"type": "end", "key": "rejected", "outcome": "rejected"},
    ],
}


class Org:
    def __init__(self, app, admin: TestClient, make_user) -> None:
        self.app = app
        self.admin = admin
        self.clients: dict[str, TestClient] = {}
        self.ids: dict[str, str] = {}
        sales = admin.post("/api/org/departments", json={"name": "sales"}).json()["id"]
        for name in ("manager", "rep", "fin", "gm", "risk", "director"):
            uid, token = make_user(name)
            self.ids[name] = str(uid)
            self.clients[name] = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        for name, head in (("manager", True), ("rep", False)):
            res = admin.put(f"/api/org/users/{self.ids[name]}/departments", json={
                "departments": [{"department_id": sales, "is_head": head}],
                "primary_department_id": sales})
            assert res.status_code == 204, res.text

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    def todo(self, name: str) -> list[dict]:
        res = self[name].get("/api/flows/tasks", params={"box": "todo"})
        assert res.status_code == 200, res.text
        return res.json()["items"]

    def decide(self, name: str, action: str = "approve", **body) -> dict:
        [task] = self.todo(name)
        res = self[name].post(f"/api/flows/tasks/{task['id']}/{action}", json=body)
        assert res.status_code == 200, res.text
        return res.json()


@pytest.fixture
def crm(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock, policy=AllowAll(), session_hours=24 * 365)
    admin = contract_app_admin(app, make_user)
    org = Org(app, admin, lambda name: make_user(name, app=app))
    res = admin.put("/api/apps/crm/roles/finance", json={"definition": {
        "key": "finance", "label": label("finance")}})
    assert res.status_code in (200, 201), res.text
    res = admin.post("/api/apps/crm/role-assignments", json={"role": "finance",
                                                             "user_id": org.ids["fin"]})
    assert res.status_code == 201, res.text
    assert admin.put("/api/apps/crm/flows/contract_approval/draft",
                     json={"definition": CONTRACT_APPROVAL}).status_code == 200
    res = admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert res.status_code == 200, res.text
    org.clock = clock  # type: ignore[attr-defined]
    return org


def submit(org: Org, amount: str) -> tuple[str, str]:
    rec = org["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
        "title": "HT-2026-0001", "amount": amount, "status": "draft"}})
    assert rec.status_code == 201, rec.text
    res = org["rep"].post("/api/apps/crm/flows/contract_approval/start",
                          json={"record_id": rec.json()["id"]})
    assert res.status_code == 201, res.text
    return res.json()["id"], rec.json()["id"]


def contract(org: Org, record_id: str) -> dict:
    return org.admin.get(f"/api/apps/crm/forms/contract/records/{record_id}").json()


def test_small_contract_goes_manager_finance_gm(crm):
    iid, rid = submit(crm, "100000")
    assert contract(crm, rid)["status"] == "in_approval"
    crm.decide("manager", comment="ok")
    assert crm.todo("risk") == []
    crm.decide("fin")
    crm.decide("gm")
    assert contract(crm, rid)["status"] == "approved"
    view = crm["rep"].get(f"/api/flows/instances/{iid}").json()
    assert view["instance"]["outcome"] == "approved"
    assert [h["action"] for h in view["history"]].count("approve") == 3
    notes = crm["fin"].get("/api/flows/notifications").json()["items"]
    assert any("已批准" in n["title"] for n in notes)


def test_big_contract_adds_risk_control(crm):
    iid, rid = submit(crm, "800000")
    crm.decide("manager")
    assert crm.todo("fin") == []
    crm.decide("risk")
    crm.decide("fin")
    crm.decide("gm")
    assert contract(crm, rid)["status"] == "approved"


def test_reminder_at_24h_and_escalation_at_48h(crm):
    iid, rid = submit(crm, "100000")
    engine = crm.app.state.engine
    crm.clock.advance(hours=24, minutes=1)
    run_due(engine, crm.clock)
    reminders = [n for n in crm["manager"].get("/api/flows/notifications").json()["items"]
                 if n["kind"] == "reminder"]
    assert len(reminders) == 1
    assert crm.todo("director") == []
    crm.clock.advance(hours=24)
    run_due(engine, crm.clock)
    assert len(crm.todo("director")) == 1
    crm.decide("director")
    assert crm.todo("manager") == []  # any-one: the escalation decided the step
    assert len(crm.todo("fin")) == 1


def test_rejection_returns_to_the_submitter_with_comments(crm):
    iid, rid = submit(crm, "100000")
    crm.decide("manager")
    crm.decide("fin", "reject", comment="付款条件不清楚")
    assert contract(crm, rid)["status"] == "rejected"
    notes = crm["rep"].get("/api/flows/notifications").json()["items"]
    assert any("被退回" in n["title"] for n in notes)
    view = crm["rep"].get(f"/api/flows/instances/{iid}").json()
    assert view["instance"]["outcome"] == "rejected"
    assert [h["comment"] for h in view["history"] if h["action"] == "reject"] == [
        "付款条件不清楚"]


def test_second_action_on_a_decided_task_is_409(crm):
    submit(crm, "100000")
    [task] = crm.todo("manager")
    first = crm["manager"].post(f"/api/flows/tasks/{task['id']}/approve", json={})
    again = crm["manager"].post(f"/api/flows/tasks/{task['id']}/approve", json={})
    assert first.status_code == 200
    # Times as the records API writes them: UTC with "Z".
    assert first.json()["acted_at"].endswith("Z") and first.json()["created_at"].endswith("Z")
    assert again.status_code == 409
    assert "already decided" in again.json()["message"]
    other = crm["rep"].post(f"/api/flows/tasks/{task['id']}/approve", json={})
    assert other.status_code == 403


def test_acting_on_my_task_in_a_request_without_its_id(crm):
    iid, record_id = submit(crm, "800000")
    # Someone with no open task in the request: 409 with the reason.
    res = crm["risk"].post(f"/api/flows/instances/{iid}/my-task/approve", json={})
    assert res.status_code == 409 and "no open task" in res.json()["message"]
    view = crm["manager"].get(f"/api/flows/instances/{iid}").json()
    res = crm["manager"].post(f"/api/flows/instances/{iid}/my-task/approve",
                              json={"comment": "ok"})
    assert res.status_code == 200, res.text
    decided = res.json()
    assert decided["id"] == view["my_task"] and decided["status"] == "approved"
    assert decided["comment"] == "ok" and decided["decision"] == "approve"
    again = crm["manager"].post(f"/api/flows/instances/{iid}/my-task/approve", json={})
    assert again.status_code == 409
    # Risk control now has a task; a stale version is refused and changes nothing.
    [risk_task] = crm.todo("risk")
    stale = crm["risk"].post(f"/api/flows/instances/{iid}/my-task/reject",
                             json={"version": risk_task["version"] + 1})
    assert stale.status_code == 409 and "reload" in stale.json()["message"]
    assert [t["id"] for t in crm.todo("risk")] == [risk_task["id"]]
    res = crm["risk"].post(f"/api/flows/instances/{iid}/my-task/reject",
                           json={"comment": "too risky"})
    assert res.status_code == 200 and res.json()["id"] == risk_task["id"]
    assert contract(crm, record_id)["status"] == "rejected"
    done = crm["risk"].post(f"/api/flows/instances/{iid}/my-task/approve", json={})
    assert done.status_code == 409 and "rejected" in done.json()["message"]
    unknown = crm["risk"].post(f"/api/flows/instances/{iid}/my-task/withdraw", json={})
    assert unknown.status_code == 404


def test_a_record_page_shows_its_requests_and_what_may_be_started(crm):
    rec = crm["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
        "title": "HT-2026-0002", "amount": "100000", "status": "draft"}}).json()
    url = f"/api/apps/crm/forms/contract/records/{rec['id']}/flows"
    zh = {"Accept-Language": "zh"}  # labels in the rep's language
    panel = crm["rep"].get(url, headers=zh)
    assert panel.status_code == 200, panel.text
    assert panel.json() == {"items": [], "startable": [
        {"flow": "contract_approval", "kind": "submitted", "label": "合同审批"}]}
    started = crm["rep"].post("/api/apps/crm/flows/contract_approval/start",
                              json={"record_id": rec["id"]}).json()
    # In approval: not startable again, and submitting again is refused.
    again = crm["rep"].post("/api/apps/crm/flows/contract_approval/start",
                            json={"record_id": rec["id"]})
    assert again.status_code == 409 and "already in approval" in again.json()["message"]
    panel = crm["rep"].get(url, headers=zh).json()
    assert panel["startable"] == []
    [item] = panel["items"]
    assert (item["id"], item["status"], item["flow_label"]) == (
        started["id"], "running", "合同审批")
    assert item["current"] == [{"key": "manager", "label": "manager"}]
    assert "error" not in item  # failures are for the administrators' views
    assert item["my_task"] is None
    as_manager = crm["manager"].get(url).json()["items"][0]
    [task] = crm.todo("manager")
    assert as_manager["my_task"] == task["id"]
    # Reading the record is what it takes; someone who may not gets 404.
    crm.admin.put("/api/apps/crm/roles/outsider", json={"definition": {
        "key": "outsider", "label": {"en": "outsider"}, "forms": {}}})
    assert crm["gm"].get("/api/apps/crm/forms/contract/records/"
                         "01a00000-0000-7000-8000-000000000000/flows").status_code == 404


def test_task_view_and_withdraw_over_http(crm):
    iid, _ = submit(crm, "100000")
    [task] = crm.todo("manager")
    view = crm["manager"].get(f"/api/flows/tasks/{task['id']}").json()
    assert view["record"]["title"] == "HT-2026-0001"
    assert "approve" in view["actions"]
    assert crm["gm"].get(f"/api/flows/tasks/{task['id']}").status_code == 403
    res = crm["rep"].post(f"/api/flows/instances/{iid}/withdraw", json={})
    assert res.status_code == 200 and res.json()["status"] == "withdrawn"
    submitted = crm["rep"].get("/api/flows/tasks", params={"box": "submitted"}).json()
    assert [s["status"] for s in submitted["items"]] == ["withdrawn"]
    assert submitted["items"][0]["started_at"].endswith("Z")
    instance = crm["rep"].get(f"/api/flows/instances/{iid}").json()
    stamps = [instance["instance"]["ended_at"], *(h["at"] for h in instance["history"])]
    assert all(s.endswith("Z") for s in stamps)


def test_validation_errors_name_the_node(crm):
    bad = {**CONTRACT_APPROVAL, "nodes": [n for n in CONTRACT_APPROVAL["nodes"]
                                          if n["key"] != "risk"]}
    res = crm.admin.post("/api/apps/crm/flows/contract_approval/validate",
                         json={"definition": bad})
    assert res.status_code == 200
    errors = res.json()["errors"]
    assert errors and errors[0]["details"]["node"] == "amount_check"
    assert "'risk'" in errors[0]["message"]
    crm.admin.put("/api/apps/crm/flows/contract_approval/draft", json={"definition": bad})
    res = crm.admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert res.status_code == 422
    assert crm.admin.get("/api/apps/crm/flows/contract_approval/versions").json()[0][
        "version"] == 1
    assert crm["rep"].put("/api/apps/crm/flows/contract_approval/draft",
                          json={"definition": bad}).status_code == 403


def test_webhook_needs_the_token(crm):
    body = {"key": "inbound", "label": label("inbound"), "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "webhook"}, "next": "end"},
        {"type": "end", "key": "end"}]}
    crm.admin.put("/api/apps/crm/flows/inbound/draft", json={"definition": body})
    token = crm.admin.post("/api/apps/crm/flows/inbound/publish", json={}).json()[
        "webhook_token"]
    anonymous = TestClient(crm.app)
    assert anonymous.post("/api/hooks/flows/crm/inbound", json={}).status_code == 401
    assert anonymous.post("/api/hooks/flows/crm/inbound", json={},
                          headers={"X-Tangram-Token": "wrong"}).status_code == 403
    res = anonymous.post("/api/hooks/flows/crm/inbound", json={"order": 7},
                         headers={"X-Tangram-Token": token})
    assert res.status_code == 202
    view = crm.admin.get(f"/api/flows/instances/{res.json()['instance_id']}").json()
    assert view["instance"]["variables"] == {"payload": {"order": 7}}


def test_metadata_lists_every_registry(crm):
    meta = crm["rep"].get("/api/meta/flows").json()
    assert {n["kind"] for n in meta["node_types"]} == {
        "start", "approval", "branch", "parallel_split", "parallel_join", "delay", "action",
        "end"}
    assert "department_head" in {a["kind"] for a in meta["assignee_rules"]}


def test_admin_sees_failed_instances_and_cancels(crm):
    body = {"key": "broken", "label": label("broken"), "form": "contract", "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "submitted"}, "next": "a"},
        {"type": "approval", "key": "a", "assignees": [{"kind": "field", "field": "manager"}],
         "on_empty": "fail", "next": "end"},
        {"type": "end", "key": "end"}]}
    crm.admin.put("/api/apps/crm/flows/broken/draft", json={"definition": body})
    assert crm.admin.post("/api/apps/crm/flows/broken/publish", json={}).status_code == 200
    rec = crm["rep"].post("/api/apps/crm/forms/contract/records",
                          json={"values": {"title": "x"}}).json()
    iid = crm["rep"].post("/api/apps/crm/flows/broken/start",
                          json={"record_id": rec["id"]}).json()["id"]
    failed = crm.admin.get("/api/admin/flows/instances", params={"status": "failed"}).json()
    assert [f["id"] for f in failed["items"]] == [iid]
    assert "found nobody" in failed["items"][0]["error"]
    assert crm["rep"].get("/api/admin/flows/instances").status_code == 403
    res = crm.admin.post(f"/api/admin/flows/instances/{iid}/cancel")
    assert res.json()["status"] == "cancelled"
    _ = timedelta


def test_admin_lists_a_flows_instances_by_status(crm):
    # What ran, newest first, narrowed to a flow: an analyst checking what a
    # schedule or delete trigger did has no task to find it by.
    small, _ = submit(crm, "100000")
    crm.decide("manager")
    crm.decide("fin")
    crm.decide("gm")
    crm.clock.advance(minutes=1)
    running, _ = submit(crm, "200000")

    def listed(**params) -> list[str]:
        res = crm.admin.get("/api/admin/flows/instances", params=params)
        assert res.status_code == 200, res.text
        return [i["id"] for i in res.json()["items"]]

    assert listed(status="all", app="crm", flow="contract_approval") == [running, small]
    assert listed(status="completed") == [small]
    assert listed(status="running", flow="contract_approval") == [running]
    assert listed(status="all", flow="other") == []
    assert listed(status="all", limit=1) == [running]
    assert crm.admin.get("/api/admin/flows/instances",
                         params={"status": "done"}).status_code == 422
    assert crm["rep"].get("/api/admin/flows/instances",
                          params={"status": "all"}).status_code == 403


def test_a_locked_record_is_changed_only_by_its_flow(crm):
    # The contract locks while in approval and once approved; its note stays
    # editable. The flow's own status changes still go through.
    locked = {**CONTRACT_FORM, "fields": [*CONTRACT_FORM["fields"], {
        "key": "note", "type": "text", "label": label("note")}], "lock": {
        "when": "record.status in ['in_approval', 'approved']", "editable": ["note"],
        "message": {"zh": "审批中或已批准的合同不能修改", "en": "in approval or approved"}}}
    assert crm.admin.put("/api/apps/crm/forms/contract/draft",
                         json={"definition": locked}).status_code == 200
    res = crm.admin.post("/api/apps/crm/forms/contract/publish", json={})
    assert res.status_code == 200, res.text
    _, record_id = submit(crm, "1000.00")
    url = f"/api/apps/crm/forms/contract/records/{record_id}"
    rec = crm["rep"].get(url, headers={"Accept-Language": "en"}).json()
    assert (rec["status"], rec["_locked"]) == ("in_approval", True)

    res = crm["rep"].patch(url, json={"version": rec["version"], "values": {"amount": "1.00"}},
                           headers={"Accept-Language": "en"})
    assert res.status_code == 409, res.text
    body = res.json()
    assert body["code"] == "record_locked" and "in approval or approved" in body["message"]
    assert body["details"]["fields"] == ["amount"] and body["details"]["editable"] == ["note"]
    assert crm["rep"].delete(url).json()["code"] == "record_locked"
    # Told it is locked before being told a value is wrong; sending the
    # record back unchanged with an editable field changed is fine.
    res = crm["rep"].patch(url, json={"version": rec["version"], "values": {"amount": "abc"}})
    assert res.status_code == 409 and res.json()["code"] == "record_locked"
    res = crm["rep"].patch(url, json={"version": rec["version"], "values": {
        "amount": "1000", "title": rec["title"], "nope": 1}})
    assert res.status_code == 422 and "nope" in res.text  # an unknown key, not the lock
    res = crm["rep"].patch(url, json={"version": rec["version"], "values": {"note": "盖章版"}})
    assert res.status_code == 200, res.text  # an editable field
    assert contract(crm, record_id)["amount"] == "1000.00"  # nothing else changed

    for who in ("manager", "fin", "gm"):
        crm.decide(who)
    rec = contract(crm, record_id)  # the flow's update_record went through
    assert (rec["status"], rec["_locked"]) == ("approved", True)
    res = crm["rep"].patch(url, json={"version": rec["version"], "values": {
        "status": "draft"}})
    assert res.status_code == 409 and res.json()["code"] == "record_locked"
    # A platform administrator may still correct a locked record.
    res = crm.admin.patch(url, json={"version": rec["version"], "values": {"title": "改"}})
    assert res.status_code == 200, res.text
    # A draft is not locked.
    draft = crm["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
        "title": "B", "amount": "5", "status": "draft"}}).json()
    assert draft["_locked"] is False
    res = crm["rep"].patch(f"/api/apps/crm/forms/contract/records/{draft['id']}",
                           json={"version": 1, "values": {"amount": "6"}})
    assert res.status_code == 200, res.text


def test_a_lock_rule_is_checked_at_publish(crm):
    bad = {**CONTRACT_FORM, "lock": {"when": "record.stauts == 'approved'"}}
    assert crm.admin.put("/api/apps/crm/forms/contract/draft",
                         json={"definition": bad}).status_code == 200
    res = crm.admin.post("/api/apps/crm/forms/contract/publish", json={})
    assert res.status_code == 422, res.text
    assert res.json()["errors"][0]["path"] == "$.lock.when" and "stauts" in res.text
    bad = {**CONTRACT_FORM, "lock": {"when": "true", "editable": ["nope"]}}
    res = crm.admin.put("/api/apps/crm/forms/contract/draft", json={"definition": bad})
    assert res.status_code == 422 and "nope" in res.text


def test_each_recipient_reads_notifications_in_their_language(crm):
    import uuid

    from tangram.engines.directory import users_table

    with crm.app.state.sessions.begin() as s:  # finance reads English
        s.execute(users_table.update().where(users_table.c.id == uuid.UUID(crm.ids["fin"]))
                  .values(language="en"))
    flow = {**CONTRACT_APPROVAL, "nodes": [
        {**n, "label": {"zh": "财务审批", "en": "Finance review"}} if n["key"] == "finance"
        else {**n, "label": {"zh": "经理审批", "en": "Manager review"}} if n["key"] == "manager"
        else {**n, "action": {**n["action"], "title": {
            "zh": "合同 {{ record.title }} 已批准", "en": "Contract {{ record.title }} approved"}}}
        if n["key"] == "notify_finance" else n
        for n in CONTRACT_APPROVAL["nodes"]]}
    assert crm.admin.put("/api/apps/crm/flows/contract_approval/draft",
                         json={"definition": flow}).status_code == 200
    res = crm.admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert res.status_code == 200, res.text

    def titles(who: str) -> list[str]:
        return [n["title"] for n in crm[who].get("/api/flows/notifications").json()["items"]]

    submit(crm, "100000")  # by the rep, who reads Chinese
    assert titles("manager") == ["合同审批 · 经理审批 · HT-2026-0001"]
    crm.decide("manager")
    assert titles("fin") == ["Contract approval · Finance review · HT-2026-0001"]
    crm.decide("fin")
    crm.decide("gm")
    assert titles("fin")[0] == "Contract HT-2026-0001 approved"
    bodies = [n["body"] for n in crm["fin"].get("/api/flows/notifications").json()["items"]]
    assert bodies[-1] == "A task waits for your decision."


def test_publish_checks_what_actions_write_and_name(crm):
    # Literal values must suit their fields, templates may only read the
    # form's fields, and group channels must exist — found at publish, not
    # when an instance fails later.
    nodes = [
        {"type": "start", "key": "start", "trigger": {"kind": "manual"}, "next": "mark"},
        {"type": "action", "key": "mark", "next": "tell", "action": {
            "kind": "update_record", "values": {"status": "nope", "amount": "abc",
                                                "title": "ok"}}},
        {"type": "action", "key": "tell", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "submitter"}], "channels": ["nosuch"],
            "title": {"zh": "合同 {{ record.titel }}", "en": "Contract {{ record['title'] }}"},
            "body": "{{ record.amount }} {{ vars.anything }}"}},
        {"type": "end", "key": "end"}]
    body = {"key": "checked", "label": label("checked"), "form": "contract", "nodes": nodes}
    res = crm.admin.post("/api/apps/crm/flows/checked/validate", json={"definition": body})
    assert res.status_code == 200, res.text
    found = {(e["path"], e["code"]) for e in res.json()["errors"]}
    assert found == {
        ("$.nodes[1].action.values.status", "value_invalid"),
        ("$.nodes[1].action.values.amount", "value_invalid"),
        ("$.nodes[2].action.title", "unknown_field"),
        ("$.nodes[2].action.channels[0]", "unknown_channel")}, res.json()["errors"]
    messages = " ".join(e["message"] for e in res.json()["errors"])
    assert "record.titel" in messages and "'nope'" in messages


def test_a_refused_submission_says_why_in_the_flows_words(crm):
    flow = {**CONTRACT_APPROVAL, "nodes": [
        {**n, "trigger": {"kind": "submitted", "condition": "record.amount > 0", "refusal": {
            "zh": "金额大于零的合同才能提交审批", "en": "Only a contract with an amount can be "
            "submitted"}}} if n["key"] == "start" else n for n in CONTRACT_APPROVAL["nodes"]]}
    assert crm.admin.put("/api/apps/crm/flows/contract_approval/draft",
                         json={"definition": flow}).status_code == 200
    assert crm.admin.post("/api/apps/crm/flows/contract_approval/publish",
                          json={}).status_code == 200
    rec = crm["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
        "title": "零元合同", "amount": "0", "status": "draft"}}).json()
    for language, text in (("zh", "金额大于零的合同才能提交审批"),
                           ("en", "Only a contract with an amount can be submitted")):
        res = crm["rep"].post("/api/apps/crm/flows/contract_approval/start",
                              json={"record_id": rec["id"]},
                              headers={"Accept-Language": language})
        assert res.status_code == 403, res.text
        assert res.json()["message"] == text and "record.amount" not in res.text
        assert res.json()["details"] == {"flow": "contract_approval",
                                         "reason": "start_condition"}


def test_return_is_offered_only_where_there_is_an_earlier_approval(crm):
    submit(crm, "100000")
    [task] = crm.todo("manager")
    view = crm["manager"].get(f"/api/flows/tasks/{task['id']}").json()
    assert "return" not in view["actions"] and view["return_to"] == []
    res = crm["manager"].post(f"/api/flows/tasks/{task['id']}/return", json={"comment": "?"})
    assert res.status_code == 422
    assert "no earlier approval" in res.json()["errors"][0]["message"]
    crm.decide("manager")
    [task] = crm.todo("fin")
    view = crm["fin"].get(f"/api/flows/tasks/{task['id']}").json()
    assert "return" in view["actions"]
    assert view["return_to"] == [{"key": "manager", "label": "manager"}]
    res = crm["fin"].post(f"/api/flows/tasks/{task['id']}/return", json={})
    assert res.status_code == 422 and "manager" in res.json()["errors"][0]["message"]


def test_a_template_that_fails_on_the_values_fails_the_action_not_the_request(crm):
    body = {"key": "ping", "label": label("ping"), "form": "contract", "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "manual"}, "next": "tell"},
        {"type": "action", "key": "tell", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "submitter"}],
            "title": "{{ record.amount / 0 }}"}},
        {"type": "end", "key": "end"}]}
    assert crm.admin.put("/api/apps/crm/flows/ping/draft",
                         json={"definition": body}).status_code == 200
    res = crm.admin.post("/api/apps/crm/flows/ping/publish", json={})
    assert res.status_code == 200, res.text
    rec = crm["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
        "title": "T", "amount": "5", "status": "draft"}}).json()
    res = crm["rep"].post("/api/apps/crm/flows/ping/start", json={"record_id": rec["id"]})
    assert res.status_code == 201, res.text
    view = crm.admin.get(f"/api/flows/instances/{res.json()['id']}").json()
    failed = [h for h in view["history"] if h["action"] == "action_failed"]
    assert failed and "a template failed" in failed[0]["details"]["error"]


def test_renaming_a_field_other_definitions_use_is_refused_naming_them(crm):
    # The approval flow's notices read record.title: renaming the field to
    # subject would leave them printing nothing.
    published = crm.admin.get("/api/apps/crm/forms/contract").json()["definition"]
    renamed = {**published, "fields": [
        {**f, "key": "subject"} if f["key"] == "title" else f for f in published["fields"]]}
    assert crm.admin.put("/api/apps/crm/forms/contract/draft",
                         json={"definition": renamed}).status_code == 200
    res = crm.admin.post("/api/apps/crm/forms/contract/publish", json={})
    assert res.status_code == 422, res.text
    errors = res.json()["errors"]
    assert {(e["details"]["kind"], e["details"]["key"]) for e in errors} == {
        ("flow", "contract_approval")}
    assert any("record.title" in e["message"] for e in errors)
    assert crm.admin.get("/api/apps/crm/forms/contract").json()["version"] == 1  # unchanged
    # Knowingly: published, with what it broke listed.
    res = crm.admin.post("/api/apps/crm/forms/contract/publish", json={"allow_breaking": True})
    assert res.status_code == 200, res.text
    assert res.json()["broken"] and crm.admin.get(
        "/api/apps/crm/forms/contract").json()["version"] == 2


def test_a_file_is_attached_only_by_someone_who_may_read_it(crm):
    body = {"key": "doc", "label": label("doc"), "fields": [
        {"key": "name", "type": "text", "label": label("name")},
        {"key": "files", "type": "attachment", "label": label("files")}]}
    assert crm.admin.put("/api/apps/crm/forms/doc/draft", json={"definition": body}
                         ).status_code == 200
    assert crm.admin.post("/api/apps/crm/forms/doc/publish", json={}).status_code == 200

    def upload(who: str) -> str:
        res = crm[who].post("/api/files", files={"file": ("秘密.pdf", b"%PDF-1.4 x",
                                                          "application/pdf")})
        assert res.status_code == 201, res.text
        return res.json()["id"]

    url = "/api/apps/crm/forms/doc/records"
    theirs = upload("manager")  # uploaded, attached nowhere
    res = crm["rep"].post(url, json={"values": {"name": "偷", "files": [theirs]}})
    assert res.status_code == 422 and res.json()["errors"][0]["code"] == "file_missing"
    assert crm["rep"].get(f"/api/files/{theirs}").status_code == 404
    mine = upload("rep")
    assert crm["rep"].post(url, json={"values": {"name": "我的", "files": [mine]}}
                           ).status_code == 201
    # Once the manager attaches it to a record the rep may read, the rep may too.
    assert crm["manager"].post(url, json={"values": {"name": "共享", "files": [theirs]}}
                               ).status_code == 201
    assert crm["rep"].post(url, json={"values": {"name": "转", "files": [theirs]}}
                           ).status_code == 201


def test_withdrawing_runs_the_flows_withdraw_actions(crm):
    # The record goes back to draft with the withdrawal (it stayed "in
    # approval", locked, and could not be submitted again).
    body = {**CONTRACT_APPROVAL, "nodes": [
        {**n, "trigger": {"kind": "submitted",
                          "condition": "record.status in ['draft', 'rejected']"}}
        if n["key"] == "start" else n for n in CONTRACT_APPROVAL["nodes"]],
        "on_withdraw": [{"kind": "update_record", "values": {"status": "draft"}},
                        {"kind": "notify", "to": [{"kind": "user", "users": ["manager"]}],
                         "title": "{{ record.title }} withdrawn"}]}
    res = crm.admin.put("/api/apps/crm/flows/contract_approval/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    res = crm.admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert res.status_code == 200, res.text
    iid, rid = submit(crm, "100000")
    assert contract(crm, rid)["status"] == "in_approval"
    res = crm["rep"].post(f"/api/flows/instances/{iid}/withdraw", json={"comment": "typo"})
    assert res.status_code == 200, res.text
    assert contract(crm, rid)["status"] == "draft"
    view = crm["rep"].get(f"/api/flows/instances/{iid}").json()
    assert view["instance"]["status"] == "withdrawn"
    assert crm.todo("manager") == []
    notes = crm["manager"].get("/api/flows/notifications").json()["items"]
    assert any(n["title"] == "HT-2026-0001 withdrawn" for n in notes)
    res = crm["rep"].post("/api/apps/crm/flows/contract_approval/start",
                          json={"record_id": rid})
    assert res.status_code == 201, res.text  # submitted again


def test_withdraw_actions_are_checked_at_publish_and_a_failing_one_refuses(crm):
    def publish(on_withdraw: list) -> list:
        body = {**CONTRACT_APPROVAL, "on_withdraw": on_withdraw}
        res = crm.admin.put("/api/apps/crm/flows/contract_approval/draft",
                            json={"definition": body})
        assert res.status_code == 200, res.text
        res = crm.admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
        return [] if res.status_code == 200 else [
            (e["path"], e["code"]) for e in res.json()["errors"]]

    assert publish([{"kind": "update_record", "values": {"nope": "x"}},
                    {"kind": "http", "url": "http://127.0.0.1:9/x"}]) == [
        ("$.on_withdraw[0].values.nope", "unknown_field"),
        ("$.on_withdraw[1].kind", "not_allowed")]
    # A value the form refuses at run time: the withdrawal is refused, nothing changes.
    assert publish([{"kind": "update_record", "expressions": {"amount": "'lots'"}}]) == []
    iid, rid = submit(crm, "100000")
    res = crm["rep"].post(f"/api/flows/instances/{iid}/withdraw", json={})
    assert res.status_code == 409, res.text
    assert "withdraw action 1 (update_record) failed" in res.json()["message"]
    assert crm["rep"].get(f"/api/flows/instances/{iid}").json()["instance"]["status"] == \
        "running"
    assert contract(crm, rid)["status"] == "in_approval"
    assert len(crm.todo("manager")) == 1


def test_an_administrators_cancel_runs_the_flows_cancel_actions(crm):
    body = {**CONTRACT_APPROVAL,
            "on_cancel": [{"kind": "update_record", "expressions": {"amount": "'lots'"}},
                          {"kind": "update_record", "values": {"status": "draft"}}]}
    res = crm.admin.put("/api/apps/crm/flows/contract_approval/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    assert crm.admin.post("/api/apps/crm/flows/contract_approval/publish",
                          json={}).status_code == 200
    iid, rid = submit(crm, "100000")
    res = crm.admin.post(f"/api/admin/flows/instances/{iid}/cancel")
    assert res.status_code == 200 and res.json()["status"] == "cancelled", res.text
    # The record is a draft again; the action that failed was undone and is
    # named in the history; the cancel went on.
    assert contract(crm, rid)["status"] == "draft"
    assert contract(crm, rid)["amount"] == "100000.00"
    history = crm.admin.get(f"/api/flows/instances/{iid}").json()["history"]
    failed = [h for h in history if h["action"] == "action_failed"]
    assert len(failed) == 1 and "on_cancel action 1 (update_record)" in str(failed[0])
    assert crm.todo("manager") == []
    res = crm.admin.put("/api/apps/crm/flows/contract_approval/draft", json={"definition": {
        **CONTRACT_APPROVAL, "on_cancel": [{"kind": "http", "url": "http://127.0.0.1:9/"}]}})
    res = crm.admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert [(e["path"], e["code"]) for e in res.json()["errors"]] == [
        ("$.on_cancel[0].kind", "not_allowed")]
