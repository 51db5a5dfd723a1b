"""What a generic client needs to render the flow inbox, a task and a
request's graph and history for any app, over HTTP as real users with the
platform's role policy: list items of one shape in every box (titles and
names, not only ids), keyset pages and counts, the actions each caller may
really take, and a graph whose edges say what they are."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tests.factories import label
from tests.flow_factories import contract_app_admin

FLOW = {
    "key": "contract_approval", "label": {"zh": "合同审批", "en": "Contract approval"},
    "form": "contract",
    "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "submitted"}, "next": "manager"},
        {"type": "approval", "key": "manager", "label": {"zh": "经理审批", "en": "Manager"},
         "assignees": [{"kind": "user", "users": ["manager"]}],
         "cc": [{"kind": "user", "users": ["gm"]}], "next": "amount_check",
         "on_reject": "rejected"},
        {"type": "branch", "key": "amount_check", "conditions": [
            {"when": "record.amount > 500000", "next": "risk",
             "label": {"zh": "超过 50 万", "en": "Over 500,000"}}], "default": "approved"},
        {"type": "approval", "key": "risk", "label": {"zh": "风控审批", "en": "Risk control"},
         "assignees": [{"kind": "user", "users": ["risk"]}], "next": "approved",
         "timeouts": [{"after": {"hours": 48},
                       "actions": [{"kind": "take_path", "next": "rejected"}]}]},
        {"type": "end", "key": "approved", "outcome": "approved"},
        {"type": "end", "key": "rejected", "outcome": "rejected"},
    ],
}
NAMES = {"rep": "销售小王", "manager": "王经理", "gm": "总经理", "risk": "风控老李"}
# Every inbox item, in every box, has exactly these keys.
ITEM_KEYS = {
    "id", "task_id", "instance_id", "kind", "status", "app", "flow", "flow_label",
    "flow_version", "node", "node_label", "current", "form", "record_id", "record_title",
    "instance_status", "outcome", "started_by", "started_by_name", "started_at",
    "assignee_id", "assignee_name", "created_at", "due_at", "read_at", "decision", "comment",
    "acted_by", "acted_by_name", "acted_at", "version"}
TASK_KEYS = ITEM_KEYS | {"actions", "return_to", "instance_actions", "record",
                         "editable_fields"}


class Crm:
    def __init__(self, app: Any, admin: TestClient, make_user: Any) -> None:
        self.admin = admin
        self.ids: dict[str, str] = {}
        self.clients: dict[str, TestClient] = {}
        for name, display in NAMES.items():
            uid, token = make_user(name, display_name=display, app=app)
            self.ids[name] = str(uid)
            # Chinese-speaking users' browsers
            self.clients[name] = TestClient(app, headers={"Authorization": f"Bearer {token}",
                                                          "Accept-Language": "zh"})

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    def role(self, key: str, users: list[str], **contract: Any) -> None:
        res = self.admin.put(f"/api/apps/crm/roles/{key}", json={"definition": {
            "key": key, "label": label(key), "forms": {"contract": contract}}})
        assert res.status_code in (200, 201), res.text
        for user in users:
            res = self.admin.post("/api/apps/crm/role-assignments",
                                  json={"role": key, "user_id": self.ids[user]})
            assert res.status_code == 201, res.text

    def submit(self, amount: str = "100000", title: str = "HT-2026-0001") -> tuple[str, str]:
        rec = self["rep"].post("/api/apps/crm/forms/contract/records", json={"values": {
            "title": title, "amount": amount, "status": "draft"}})
        assert rec.status_code == 201, rec.text
        res = self["rep"].post("/api/apps/crm/flows/contract_approval/start",
                               json={"record_id": rec.json()["id"]})
        assert res.status_code == 201, res.text
        return res.json()["id"], rec.json()["id"]

    def box(self, name: str, box: str = "todo", **params: Any) -> dict[str, Any]:
        res = self[name].get("/api/flows/tasks", params={"box": box, **params})
        assert res.status_code == 200, res.text
        return res.json()

    def task(self, name: str, task_id: str, **headers: str) -> dict[str, Any]:
        res = self[name].get(f"/api/flows/tasks/{task_id}", headers=headers)
        assert res.status_code == 200, res.text
        return res.json()


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    app = app_factory(clock=FrozenClock(), session_hours=24 * 365)  # the role policy
    admin = contract_app_admin(app, make_user)
    org = Crm(app, admin, make_user)
    # Reps see and submit their own contracts; approvers may read only their
    # own (none): what a task is about must reach them through the task.
    org.role("rep", ["rep"], actions=["read", "create", "update", "submit"], scope="own")
    org.role("approver", ["manager", "gm"], actions=["read", "approve"], scope="own")
    org.role("risk", ["risk"], actions=["read", "approve"], scope="own",
             fields={"title": "hidden"})
    assert admin.put("/api/apps/crm/flows/contract_approval/draft",
                     json={"definition": FLOW}).status_code == 200
    res = admin.post("/api/apps/crm/flows/contract_approval/publish", json={})
    assert res.status_code == 200, res.text
    return org


def test_a_task_offers_exactly_the_actions_its_viewer_may_take(crm):
    iid, _ = crm.submit("800000")
    [item] = crm.box("manager")["items"]
    mine = crm.task("manager", item["id"])
    assert set(mine) == TASK_KEYS
    # No earlier approval to return to: return is not offered.
    assert mine["actions"] == ["approve", "reject", "transfer", "add_signer", "cc", "comment"]
    assert mine["instance_actions"] == ["comment"]
    # An administrator may look at the task but not act on it: nothing offered,
    # and what was offered before the fix is indeed refused.
    as_admin = crm.admin.get(f"/api/flows/tasks/{item['id']}").json()
    assert as_admin["actions"] == [] and as_admin["return_to"] == []
    assert as_admin["instance_actions"] == ["withdraw", "urge", "comment"]
    assert crm.admin.post(f"/api/flows/tasks/{item['id']}/approve",
                          json={}).status_code == 403
    # A CC is for information: no task action, but its reader may comment.
    [cc] = crm.box("gm", "cc")["items"]
    copy = crm.task("gm", cc["id"])
    assert (copy["kind"], copy["actions"], copy["instance_actions"]) == ("cc", [], ["comment"])
    assert crm["gm"].post(f"/api/flows/tasks/{cc['id']}/comment",
                          json={"comment": "?"}).status_code == 409
    assert crm["gm"].post(f"/api/flows/instances/{iid}/comment",
                          json={"comment": "收到"}).status_code == 200
    # The submitter withdraws and urges on the request; once an approver
    # acted, withdraw is no longer offered — and indeed refused.
    assert crm["rep"].get(f"/api/flows/instances/{iid}").json()["actions"] == [
        "withdraw", "urge", "comment"]
    assert crm["manager"].post(f"/api/flows/tasks/{item['id']}/approve",
                               json={}).status_code == 200
    assert crm["rep"].get(f"/api/flows/instances/{iid}").json()["actions"] == [
        "urge", "comment"]
    assert crm["rep"].post(f"/api/flows/instances/{iid}/withdraw",
                           json={}).status_code == 409
    # The manager's task is decided: nothing left to do on it.
    assert crm.task("manager", item["id"])["actions"] == []


def test_every_box_lists_items_of_one_shape_with_titles_and_names(crm):
    iid, rid = crm.submit("800000")
    # The manager may not read the contract (row scope "own") …
    assert crm["manager"].get(
        f"/api/apps/crm/forms/contract/records/{rid}").status_code in (403, 404)
    # … yet the inbox says what the task is about and who asked.
    [todo] = crm.box("manager")["items"]
    assert set(todo) == ITEM_KEYS
    assert {k: todo[k] for k in ("kind", "status", "flow_label", "node", "node_label",
                                 "record_id", "record_title", "started_by",
                                 "started_by_name", "assignee_name", "instance_id")} == {
        "kind": "approve", "status": "open", "flow_label": "合同审批", "node": "manager",
        "node_label": "经理审批", "record_id": rid, "record_title": "HT-2026-0001",
        "started_by": crm.ids["rep"], "started_by_name": "销售小王",
        "assignee_name": "王经理", "instance_id": iid}
    assert todo["task_id"] == todo["id"] and todo["created_at"].endswith("Z")
    [cc] = crm.box("gm", "cc")["items"]
    assert set(cc) == ITEM_KEYS and (cc["kind"], cc["status"]) == ("cc", "cc")
    assert cc["record_title"] == "HT-2026-0001"
    res = crm["manager"].post(f"/api/flows/tasks/{todo['id']}/approve",
                              json={"comment": "同意"})
    assert res.status_code == 200, res.text
    [done] = crm.box("manager", "done")["items"]
    assert set(done) == ITEM_KEYS
    assert (done["status"], done["decision"], done["comment"], done["acted_by_name"]) == (
        "approved", "approve", "同意", "王经理")
    assert done["current"] == [{"key": "risk", "label": "风控审批"}]
    # The risk approver's roles hide the title field: no title, the rest as usual.
    [risk] = crm.box("risk")["items"]
    assert risk["record_title"] is None and risk["started_by_name"] == "销售小王"
    # The requests the rep submitted: an instance per item, in the same shape,
    # where each waits now — none of the engine's own columns.
    [mine] = crm.box("rep", "submitted")["items"]
    assert set(mine) == ITEM_KEYS
    assert (mine["id"], mine["task_id"], mine["kind"], mine["status"]) == (
        iid, None, None, "running")
    assert (mine["node"], mine["node_label"], mine["record_title"]) == (
        "risk", "风控审批", "HT-2026-0001")
    # Labels follow the caller's language.
    [en] = crm["rep"].get("/api/flows/tasks", params={"box": "submitted"},
                          headers={"Accept-Language": "en"}).json()["items"]
    assert (en["flow_label"], en["node_label"]) == ("Contract approval", "Risk control")


def test_the_inbox_pages_by_cursor_and_counts_each_box(crm):
    submitted = [crm.submit(title=f"HT-2026-{n:04d}")[0] for n in range(1, 6)]
    # Tasks created at the same moment (a frozen clock): the id orders them.
    first = crm.box("manager", limit=2, total="true")
    assert len(first["items"]) == 2 and first["total"] == 5 and first["next_cursor"]
    seen = [i["instance_id"] for i in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = crm.box("manager", limit=2, after=cursor)
        assert "total" not in page
        seen += [i["instance_id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(submitted) and len(set(seen)) == 5
    assert crm.box("manager", limit=500)["items"][0]["instance_id"] == seen[0]
    # Newest first in the submitted box, paged the same way.
    page = crm.box("rep", "submitted", limit=3)
    rest = crm.box("rep", "submitted", limit=3, after=page["next_cursor"])
    assert [i["id"] for i in page["items"] + rest["items"]] == submitted[::-1]
    assert rest["next_cursor"] is None
    counts = crm["manager"].get("/api/flows/tasks/counts").json()
    assert counts == {"todo": 5, "done": 0, "cc": 0, "submitted": 0,
                      "unread": {"todo": 5, "cc": 0}}
    crm.task("manager", first["items"][0]["id"])  # reading it marks it read
    res = crm["manager"].post(f"/api/flows/tasks/{first['items'][1]['id']}/approve", json={})
    assert res.status_code == 200, res.text
    assert crm["manager"].get("/api/flows/tasks/counts").json() == {
        "todo": 4, "done": 1, "cc": 0, "submitted": 0, "unread": {"todo": 3, "cc": 0}}
    assert crm["gm"].get("/api/flows/tasks/counts", params={"app": "crm"}).json()["cc"] == 5
    assert crm["gm"].get("/api/flows/tasks/counts", params={"app": "other"}).json()["cc"] == 0
    assert crm.box("gm", "cc", app="other")["items"] == []


@pytest.mark.parametrize("params,field", [
    ({"limt": "2"}, "query.limt"), ({"limit": "0"}, "query.limit"),
    ({"limit": "501"}, "query.limit"), ({"box": "inbox"}, "query.box"),
    ({"total": "maybe"}, "query.total"), ({"app": "CRM!"}, "query.app")])
def test_unknown_or_bad_inbox_parameters_are_refused(crm, params, field):
    res = crm["manager"].get("/api/flows/tasks", params=params)
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "request_invalid"
    assert [e["field"] for e in res.json()["errors"]] == [field]


def test_a_cursor_not_made_for_the_box_is_refused(crm):
    for n in range(3):
        crm.submit(title=f"HT-{n}")
    cursor = crm.box("rep", "submitted", limit=1)["next_cursor"]
    for bad in (cursor, "not-a-cursor", "eyJ4IjoxfQ"):
        res = crm["manager"].get("/api/flows/tasks", params={"box": "todo", "after": bad})
        assert res.status_code == 422, res.text
        assert (res.json()["code"], res.json()["errors"][0]["field"]) == (
            "cursor_invalid", "after")
    res = crm["manager"].get("/api/flows/tasks/counts", params={"box": "todo"})
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "query.box"


def test_an_instance_shows_names_and_a_graph_whose_edges_say_what_they_are(crm):
    iid, rid = crm.submit("800000")
    [item] = crm.box("manager")["items"]
    crm["manager"].post(f"/api/flows/tasks/{item['id']}/approve", json={"comment": "ok"})
    view = crm["rep"].get(f"/api/flows/instances/{iid}",
                          headers={"Accept-Language": "en"}).json()
    instance = view["instance"]
    assert "version" not in instance and "row_version" not in instance
    assert "dedupe_key" not in instance
    assert {k: instance[k] for k in ("flow_version", "flow_label", "record_id",
                                     "record_title", "started_by_name")} == {
        "flow_version": 1, "flow_label": "Contract approval", "record_id": rid,
        "record_title": "HT-2026-0001", "started_by_name": "销售小王"}
    nodes = {n["key"]: n["label"] for n in view["graph"]["nodes"]}
    assert nodes == {"start": "Start", "manager": "Manager", "amount_check": "Branch",
                     "risk": "Risk control", "approved": "End", "rejected": "End"}
    edges = {(e["from"], e["to"], e["kind"]): e for e in view["graph"]["edges"]}
    assert set(edges) == {
        ("start", "manager", "next"), ("manager", "amount_check", "next"),
        ("manager", "rejected", "on_reject"), ("amount_check", "risk", "condition"),
        ("amount_check", "approved", "default"), ("risk", "approved", "next"),
        ("risk", "rejected", "timeout")}
    branch = edges[("amount_check", "risk", "condition")]
    assert (branch["label"], branch["index"], branch["when"]) == (
        "Over 500,000", 0, "record.amount > 500000")
    assert edges[("amount_check", "approved", "default")]["label"] == "Otherwise"
    assert edges[("manager", "rejected", "on_reject")]["label"] == "Rejected"
    assert edges[("start", "manager", "next")]["label"] is None
    zh = crm["rep"].get(f"/api/flows/instances/{iid}").json()["graph"]
    assert [e["label"] for e in zh["edges"] if e["kind"] == "condition"] == ["超过 50 万"]
    assert {n["label"] for n in zh["nodes"] if n["type"] == "end"} == {"结束"}
    # Names beside ids: the submitter, each task's assignee and who acted,
    # each history entry's actor — and the users an entry names.
    approved = next(t for t in view["tasks"] if t["node"] == "manager" and
                    t["kind"] == "approve")
    assert (approved["assignee_name"], approved["acted_by_name"]) == ("王经理", "王经理")
    copy = next(t for t in view["tasks"] if t["kind"] == "cc")
    assert copy["assignee_name"] == "总经理" and copy["acted_by_name"] is None
    names = {h["action"]: h["actor_name"] for h in view["history"] if h["actor_id"]}
    assert names["approve"] == "王经理"
    assert all(h["actor_name"] == NAMES[next(k for k, v in crm.ids.items()
                                             if v == h["actor_id"])]
               for h in view["history"] if h["actor_id"])
    assert next(h for h in view["history"] if h["action"] == "approve")["node_label"] == \
        "Manager"


def test_a_task_action_answers_the_task_as_it_is_read(crm):
    iid, _ = crm.submit("800000")
    [item] = crm.box("manager")["items"]
    res = crm["manager"].post(f"/api/flows/tasks/{item['id']}/cc",
                              json={"users": [crm.ids["risk"]]})
    assert res.status_code == 200, res.text
    after_cc = res.json()
    assert set(after_cc) == TASK_KEYS and after_cc["status"] == "open"
    assert after_cc["actions"] == crm.task("manager", item["id"])["actions"]
    res = crm["manager"].post(f"/api/flows/instances/{iid}/my-task/approve", json={})
    assert res.status_code == 200, res.text
    approved = res.json()
    assert set(approved) == TASK_KEYS
    assert (approved["id"], approved["status"], approved["actions"]) == (
        item["id"], "approved", [])
    assert approved["record"]["title"] == "HT-2026-0001"
    assert approved["current"] == [{"key": "risk", "label": "风控审批"}]


def test_a_cc_notification_names_its_cc_task(crm):
    iid, _ = crm.submit()
    [cc] = crm.box("gm", "cc")["items"]
    notes = crm["gm"].get("/api/flows/notifications").json()["items"]
    [note] = [n for n in notes if n["kind"] == "cc"]
    assert (note["instance_id"], note["task_id"]) == (iid, cc["task_id"])
    # The notification itself names it, so every list of notifications does.
    notes = crm["gm"].get("/api/notifications").json()["items"]
    [note] = [n for n in notes if n["kind"] == "cc"]
    assert note["task_id"] == cc["task_id"]
