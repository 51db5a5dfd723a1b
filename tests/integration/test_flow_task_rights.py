"""Who may be handed a decision, which fields an approval may open, and what a
flow's notices tell each reader — over HTTP, with the platform's role policy
(the CRM audit: transfers to people without ``approve`` or to the submitter,
rollups overwritten at a node, notices that printed the whole record).

- A transfer or an added signer must hold ``approve`` on the flow's form with
  the record in that grant's scope, and is never the submitter; the flow's
  own assignees are the analyst's choice.
- An approval never opens a field the form computes or makes read-only.
- A notice's record is cut to what each reader's roles show, whatever the
  template reads of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.flows import validate
from tangram.engines.flows.worker import run_due
from tests.factories import field, form_body, label
from tests.flow_factories import CONTRACT_FORM, approval, contract_app_admin, end, flow_body, start

BASE = "/api/apps/crm"
ACTIONS = ["approve", "reject", "transfer", "add_signer", "cc"]
CONTRACT = {**CONTRACT_FORM, "fields": [
    *CONTRACT_FORM["fields"], field("note", read_only=True),
    field("visits", "rollup", source={"form": "visit", "via": "contract"})]}

# role → its grant on contract; who holds which roles
ROLES: dict[str, dict[str, Any]] = {
    "rep": {"actions": ["read", "create", "update", "submit"], "scope": "own"},
    "approver": {"actions": ["read", "approve"], "scope": "all"},
    "own_approver": {"actions": ["read", "approve"], "scope": "own"},
    "reader": {"actions": ["read"], "scope": "all"},
    "blind": {"actions": ["read", "approve"], "scope": "all",
              "fields": {"amount": "hidden", "manager": "hidden"}},
}
PEOPLE = {"rep01": ("rep", "approver"), "rep02": ("rep",), "fin": ("approver",),
          "fin2": ("approver",), "mine": ("own_approver",), "reader": ("reader",),
          "blind": ("blind",), "boss": ("approver",), "outsider": ()}


class Shop:
    """App ``crm`` under the role policy: contracts with a read-only ``note``
    and a ``visits`` rollup, and users holding the roles above."""

    def __init__(self, app_factory: Any, make_user: Any) -> None:
        self.clock = FrozenClock()
        self.app = app_factory(clock=self.clock, session_hours=24 * 365)
        self.admin = contract_app_admin(self.app, make_user)
        self.publish_form(form_body("visit", field("title"),
                                    field("contract", "relation", target="contract")))
        self.publish_form(CONTRACT)
        self.ids: dict[str, str] = {}
        self.clients: dict[str, TestClient] = {}
        for role, grant in ROLES.items():
            self.ok(self.admin.put(f"{BASE}/roles/{role}", json={"definition": {
                "key": role, "label": label(role),
                "forms": {"contract": grant, "visit": {"actions": ["read"], "scope": "all"}}}}))
        for name, roles in PEOPLE.items():
            uid, token = make_user(name, app=self.app)
            self.ids[name] = str(uid)
            self.clients[name] = TestClient(self.app,
                                            headers={"Authorization": f"Bearer {token}"})
            for role in roles:
                self.ok(self.admin.post(f"{BASE}/role-assignments",
                                        json={"role": role, "user_id": str(uid)}))

    @staticmethod
    def ok(res: Any) -> Any:
        assert res.status_code in (200, 201, 204), res.text
        return res.json() if res.content else None

    def publish_form(self, body: dict[str, Any]) -> None:
        self.ok(self.admin.put(f"{BASE}/forms/{body['key']}/draft", json={"definition": body}))
        self.ok(self.admin.post(f"{BASE}/forms/{body['key']}/publish", json={}))

    def publish_flow(self, body: dict[str, Any]) -> Any:
        self.ok(self.admin.put(f"{BASE}/flows/{body['key']}/draft", json={"definition": body}))
        return self.admin.post(f"{BASE}/flows/{body['key']}/publish", json={})

    def submit(self, flow: str = "f", by: str = "rep01", **values: Any) -> tuple[str, str]:
        record = self.ok(self.clients[by].post(f"{BASE}/forms/contract/records", json={
            "values": {"title": "HT-1", "amount": "123456.78", "status": "draft", **values}}))
        started = self.ok(self.clients[by].post(f"{BASE}/flows/{flow}/start",
                                                json={"record_id": record["id"]}))
        return started["id"], record["id"]

    def todo(self, name: str) -> list[dict[str, Any]]:
        return self.ok(self.clients[name].get("/api/flows/tasks",
                                              params={"box": "todo"}))["items"]

    def my_task(self, name: str, instance: str, action: str, **body: Any) -> Any:
        return self.clients[name].post(f"/api/flows/instances/{instance}/my-task/{action}",
                                       json=body)

    def instance(self, instance: str) -> dict[str, Any]:
        return self.ok(self.admin.get(f"/api/flows/instances/{instance}"))

    def bodies(self, name: str, kind: str) -> list[str]:
        items = self.ok(self.clients[name].get("/api/flows/notifications"))["items"]
        return [str(n["body"]) for n in items if n["kind"] == kind]


@pytest.fixture
def shop(app_factory, make_user) -> Shop:
    s = Shop(app_factory, make_user)
    assert s.publish_flow(flow_body("f", start(), approval("a", "fin", actions=ACTIONS),
                                    end())).status_code == 200
    return s


def _refused(res: Any, message: str) -> None:
    assert res.status_code == 422, res.text
    [error] = res.json()["errors"]
    assert error["field"] == "users" and error["message"] == message, error


# --- 1. who may be handed a decision ----------------------------------------------------

def test_a_transfer_goes_only_to_someone_who_may_approve_the_record(shop):
    iid, _ = shop.submit()
    before = shop.instance(iid)
    _refused(shop.my_task("fin", iid, "transfer", users=["rep02"]),
             "'rep02' cannot decide this request: none of their roles allows approve on "
             "form 'contract'")
    _refused(shop.my_task("fin", iid, "transfer", users=["reader"]),
             "'reader' cannot decide this request: none of their roles allows approve on "
             "form 'contract'")
    # "mine" may approve contracts they own; rep01's is not one of them.
    _refused(shop.my_task("fin", iid, "transfer", users=["mine"]),
             "'mine' cannot decide this request: this record is outside the scope in which "
             "their roles allow approve")
    assert shop.instance(iid) == before  # nothing changed
    assert [t["node"] for t in shop.todo("fin")] == ["a"]
    assert shop.todo("rep02") == []

    shop.ok(shop.my_task("fin", iid, "transfer", users=["fin2"]))
    assert shop.todo("fin") == [] and [t["node"] for t in shop.todo("fin2")] == ["a"]
    shop.ok(shop.my_task("fin2", iid, "approve"))
    assert shop.instance(iid)["instance"]["outcome"] == "approved"


def test_the_submitter_is_never_handed_their_own_request(shop):
    # rep01 holds approve on every contract, and still may not decide their own.
    iid, _ = shop.submit(by="rep01")
    before = shop.instance(iid)
    submitter = ("'rep01' submitted this request and may not decide it (nobody approves "
                 "their own request); name someone else")
    _refused(shop.my_task("fin", iid, "transfer", users=["rep01"]), submitter)
    for position in ("before", "after"):
        _refused(shop.my_task("fin", iid, "add_signer", users=["fin2", "rep01"],
                              position=position), submitter)
    _refused(shop.my_task("fin", iid, "transfer", users=["fin"]),
             "you cannot transfer a task to yourself; name someone else")
    assert shop.instance(iid) == before
    assert shop.todo("rep01") == [] and shop.todo("fin2") == []


def test_added_signers_need_the_approve_right_too(shop):
    iid, _ = shop.submit()
    _refused(shop.my_task("fin", iid, "add_signer", users=["fin2", "rep02"], position="after"),
             "'rep02' cannot decide this request: none of their roles allows approve on "
             "form 'contract'")
    _refused(shop.my_task("fin", iid, "add_signer", users=["mine"], position="before"),
             "'mine' cannot decide this request: this record is outside the scope in which "
             "their roles allow approve")
    assert [t["node"] for t in shop.todo("fin")] == ["a"] and shop.todo("fin2") == []

    shop.ok(shop.my_task("fin", iid, "add_signer", users=["fin2"], position="before"))
    assert shop.todo("fin") == [] and [t["node"] for t in shop.todo("fin2")] == ["a"]
    # A CC is not a decision: anyone may be copied.
    shop.ok(shop.my_task("fin2", iid, "cc", users=["rep02"]))


def test_a_flow_without_a_form_needs_no_approve_right(shop):
    assert shop.publish_flow(flow_body("chat", start("manual"), approval("a", "fin",
                                       actions=ACTIONS), end(), form=None)).status_code == 200
    iid = shop.ok(shop.clients["rep01"].post(f"{BASE}/flows/chat/start", json={}))["id"]
    _refused(shop.my_task("fin", iid, "transfer", users=["rep01"]),
             "'rep01' submitted this request and may not decide it (nobody approves their "
             "own request); name someone else")
    shop.ok(shop.my_task("fin", iid, "transfer", users=["rep02"]))
    shop.ok(shop.my_task("rep02", iid, "approve"))


def test_the_flows_own_assignees_are_not_filtered(shop):
    assert shop.publish_flow(flow_body("g", start(), approval("a", "rep02"),
                                       end())).status_code == 200
    iid, _ = shop.submit("g")
    shop.ok(shop.my_task("rep02", iid, "approve"))
    assert shop.instance(iid)["instance"]["outcome"] == "approved"


# --- 2. fields an approval may open ------------------------------------------------------

def test_publishing_refuses_computed_and_read_only_editable_fields(shop):
    res = shop.publish_flow(flow_body("e", start(), approval(
        "a", "fin", editable_fields=["title", "visits", "note"]), end()))
    assert res.status_code == 422, res.text
    errors = {(e["path"], e["code"]): e["message"] for e in res.json()["errors"]}
    assert errors == {
        ("$.nodes[1].editable_fields[1]", "read_only"):
            "node 'a': editable field 'visits': form 'contract' computes it, so no approver "
            "may edit it; remove it from editable_fields",
        ("$.nodes[1].editable_fields[2]", "read_only"):
            "node 'a': editable field 'note': form 'contract' makes it read-only, so no "
            "approver may edit it; remove it from editable_fields"}


def test_a_version_published_before_that_opens_neither(shop, monkeypatch):
    # As if published before publishing refused them (or before the form
    # made the field read-only): the task view and the approval still refuse.
    with monkeypatch.context() as m:
        m.setattr(validate, "form_fixed_fields", lambda *args: {}, raising=False)
        assert shop.publish_flow(flow_body("e", start(), approval(
            "a", "fin", editable_fields=["title", "visits", "note"]), end())).status_code == 200
    iid, rid = shop.submit("e")
    [task] = shop.todo("fin")
    view = shop.ok(shop.clients["fin"].get(f"/api/flows/tasks/{task['id']}"))
    assert view["editable_fields"] == ["title"]
    assert view["record"]["visits"] == 0
    for key, why in (("visits", "computes it"), ("note", "makes it read-only")):
        res = shop.my_task("fin", iid, "approve", values={key: 5})
        assert res.status_code == 403, res.text
        assert res.json()["message"] == (f"you may not set field {key!r} at node 'a': the form "
                                         f"{why}")
    assert [t["id"] for t in shop.todo("fin")] == [task["id"]]  # still open
    shop.ok(shop.my_task("fin", iid, "approve", values={"title": "HT-1b"}))
    record = shop.ok(shop.admin.get(f"{BASE}/forms/contract/records/{rid}"))
    assert (record["title"], record["visits"], record.get("note")) == ("HT-1b", 0, None)


# --- 3. what a notice tells each reader ----------------------------------------------------

TEMPLATES = ("{{ record | tojson }}", "{% set r = record %}amount {{ r.amount }}")


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_notice_leaves_out_every_field_the_reader_may_not_see(shop, template):
    assert shop.publish_flow(flow_body("n", start(next="tell"), {
        "type": "action", "key": "tell", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "user", "users": ["blind", "fin", "outsider"]}],
            "title": "HT", "body": template}}, end())).status_code == 200
    shop.submit("n", manager=shop.ids["boss"])
    [blind] = shop.bodies("blind", "notify")
    [seen] = shop.bodies("fin", "notify")
    [outside] = shop.bodies("outsider", "notify")  # no role on the form at all
    assert "123456.78" in seen and "123456.78" not in blind
    assert "123456.78" not in outside
    if "tojson" in template:
        assert "boss" in seen and "boss" not in blind  # the manager's display name too
        assert '"title": "HT-1"' in blind
        assert "HT-1" not in outside


def test_a_reminder_leaves_them_out_too(shop):
    assert shop.publish_flow(flow_body("r", start(), approval(
        "a", assignees=[{"kind": "user", "users": ["blind", "fin"]}], mode="all",
        timeouts=[{"after": {"hours": 1}, "actions": [
            {"kind": "remind", "message": TEMPLATES[0]}]}]), end())).status_code == 200
    shop.submit("r")
    shop.clock.advance(timedelta(hours=2))
    run_due(shop.app.state.engine, shop.clock)
    [blind] = shop.bodies("blind", "reminder")
    [seen] = shop.bodies("fin", "reminder")
    assert "123456.78" in seen and "123456.78" not in blind
