"""Run-time behaviour the flows audit found wrong (D2, D3, D4, D13–D17 of
the analyst's report): flows on deleted records, reminder templates, what
`start` accepts as a record, which action errors are retried, what an
administrator's retry answers, due times across timeout stages, automatic
decisions and transfers — on the engine with an advanced clock, and over
HTTP where a user sees it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.directory import users_table
from tangram.engines.flows import service, triggers, views
from tangram.engines.flows.tables import jobs_table
from tangram.engines.forms.records import delete_record
from tangram.errors import DefinitionInvalid
from tests.factories import label
from tests.flow_factories import (
    FlowWorld,
    approval,
    contract_app_admin,
    end,
    flow_body,
    start,
)


@pytest.fixture
def world(engine) -> FlowWorld:
    w = FlowWorld(engine)
    for name in ("alice", "bob", "carol", "dave", "erin"):
        w.user(name)
    w.user("root", admin=True)
    return w


def action(key: str, next: str = "end", **spec: Any) -> dict[str, Any]:
    return {"type": "action", "key": key, "next": next, "action": spec}


def jobs(world: FlowWorld, iid: uuid.UUID) -> list[dict[str, Any]]:
    with world.sessions.begin() as s:
        return [dict(r) for r in s.execute(sa.select(jobs_table).where(
            jobs_table.c.instance_id == iid)).mappings()]


def only_instance(world: FlowWorld, flow: str) -> dict[str, Any]:
    from tangram.engines.flows.tables import instances_table as i

    with world.sessions.begin() as s:
        [row] = s.execute(sa.select(i).where(i.c.flow == flow)).mappings().all()
        return dict(row)


def set_language(world: FlowWorld, user: str, language: str) -> None:
    with world.sessions.begin() as s:
        s.execute(users_table.update().where(users_table.c.id == world.users[user])
                  .values(language=language))


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- D2: a record_deleted flow runs with the deleted record -----------------------------

def test_a_delete_flow_reads_the_deleted_record(world):
    world.publish_flow(flow_body(
        "ondel", start("record_deleted", next="tell"),
        action("tell", "copy", kind="notify", to=[{"kind": "user", "users": ["bob"]}],
               title="{{ record.title }} was deleted", body="amount {{ record.amount }}"),
        action("copy", kind="create_record", form="contract",
               expressions={"title": "concat(record.title, ' (deleted)')"}, save_as="copy"),
        end()))
    rid = world.contract(title="HT-7", amount="12.50")
    world.run(lambda ctx: delete_record(ctx, app=world.app, form="contract", record_id=rid))
    inst = only_instance(world, "ondel")
    assert (inst["status"], inst["error"]) == ("completed", None)
    assert [(n["title"], n["body"]) for n in world.notifications("bob", "notify")] == [
        ("HT-7 was deleted", "amount 12.50")]
    assert world.record(inst["variables"]["copy"])["title"] == "HT-7 (deleted)"


def test_a_delete_flow_may_not_change_the_deleted_record(world, monkeypatch):
    body = flow_body("ondel", start("record_deleted", next="mark"),
                     action("mark", kind="update_record", values={"status": "rejected"}),
                     end())
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(body)
    assert [e.code for e in refused.value.errors] == ["deleted_record"]
    # A version published before publish checked this fails at run time.
    monkeypatch.setattr(service, "require_valid", lambda *a, **k: None)
    world.publish_flow(body)
    rid = world.contract()
    world.run(lambda ctx: delete_record(ctx, app=world.app, form="contract", record_id=rid))
    inst = only_instance(world, "ondel")
    # Failed at once (it can never succeed), saying why — not retried by the worker.
    assert inst["status"] == "failed"
    assert "deleted" in inst["error"] and "recycle bin" in inst["error"]
    assert jobs(world, inst["id"]) == []


def test_an_approval_about_a_deleted_record_shows_it_to_the_approver(world):
    world.publish_flow(flow_body(
        "ondel", start("record_deleted", next="a"), approval("a", "bob", next="tell"),
        action("tell", kind="notify", to=[{"kind": "submitter"}],
               title="deletion of {{ record.title }} approved"), end()))
    rid = world.contract(title="HT-8")
    world.run(lambda ctx: delete_record(ctx, app=world.app, form="contract", record_id=rid),
              actor=world.actor_of("alice"))
    iid = only_instance(world, "ondel")["id"]
    task = world.open_task(iid, "bob")
    view = world.run(lambda ctx: views.task_view(ctx, task_id=task["id"]),
                     actor=world.actor_of("bob"))
    assert view["record"]["title"] == "HT-8" and view["record"]["deleted_at"]
    world.act(iid, "bob")
    assert world.instance(iid)["status"] == "completed"
    assert [n["title"] for n in world.notifications("alice", "notify")] == [
        "deletion of HT-8 approved"]


# --- D3: a reminder's message is a template, per language ---------------------------------

def test_a_reminder_message_is_rendered_in_each_readers_language(world):
    set_language(world, "bob", "en")
    world.publish_flow(flow_body("f", start(next="a"), approval(
        "a", "bob", "carol", mode="all", timeouts=[{"after": {"hours": 1}, "actions": [
            {"kind": "remind", "message": {"zh": "提醒：{{ record.title }}",
                                           "en": "Reminder: {{ record.title }}"}}]}]), end()))
    world.publish_flow(flow_body("g", start(next="a"), approval(
        "a", "dave", timeouts=[{"after": {"hours": 1}, "actions": [
            {"kind": "remind", "message": "Plain {{ record.title }}"}]}]), end()))
    world.submit("f", "alice", world.contract(title="HT-3"))
    world.submit("g", "alice", world.contract(title="HT-4"))
    world.clock.advance(hours=1, minutes=1)
    world.work()
    assert [n["body"] for n in world.notifications("bob", "reminder")] == ["Reminder: HT-3"]
    assert [n["body"] for n in world.notifications("carol", "reminder")] == ["提醒：HT-3"]
    assert [n["body"] for n in world.notifications("dave", "reminder")] == ["Plain HT-4"]


# --- D13: errors that cannot go away on retry fail the instance at once ------------------

def test_an_assign_owner_with_nobody_fails_at_once(world):
    world.publish_flow(flow_body("f", start(next="o"), action(
        "o", kind="assign_owner", users=[{"kind": "department_members",
                                          "departments": ["nowhere"]}]), end()))
    iid = world.submit("f", "alice")
    inst = world.instance(iid)
    assert inst["status"] == "failed" and "found no user to assign" in inst["error"]
    assert jobs(world, iid) == []
    assert world.history(iid).count("action_failed") == 1


def test_an_expression_type_error_fails_at_once_with_a_readable_message(world):
    world.publish_flow(flow_body("f", start("manual", next="c"), action(
        "c", kind="create_record", form="contract",
        expressions={"title": "concat('manual: ', vars.note)"}), end(), form=None))
    iid = world.run(lambda ctx: triggers.start_by_user(
        ctx, app=world.app, flow="f", variables={"note": {"a": 1}}),
        actor=world.actor_of("alice"))
    inst = world.instance(iid)
    assert inst["status"] == "failed"
    assert "an object cannot be turned into text" in inst["error"]
    assert jobs(world, iid) == []


def test_a_refused_record_update_fails_at_once(world):
    world.publish_flow(flow_body("f", start(next="u"), action(
        "u", kind="update_record", expressions={"amount": "record.title"}), end()))
    iid = world.submit("f", "alice")
    inst = world.instance(iid)
    assert inst["status"] == "failed" and "amount" in inst["error"]
    assert jobs(world, iid) == []


def test_an_http_failure_is_still_retried(world):
    world.publish_flow(flow_body("f", start(next="h"), action(
        "h", kind="http", url="http://127.0.0.1:9/x", retries=2, backoff_seconds=60,
        timeout_seconds=1), end()))
    iid = world.submit("f", "alice")
    world.work()
    assert world.instance(iid)["status"] == "running"
    [job] = jobs(world, iid)
    assert job["status"] == "queued" and job["attempts"] == 1


# --- D14: an administrator's retry says what it did ----------------------------------------

def test_retrying_a_queued_action_answers_that_it_is_queued(world):
    world.publish_flow(flow_body("f", start(next="h"), action(
        "h", kind="http", url="http://127.0.0.1:9/x", retries=0, timeout_seconds=1),
        end()))
    iid = world.submit("f", "alice")
    world.work()
    assert world.instance(iid)["status"] == "failed"
    answer = world.run(lambda ctx: service.retry_instance(ctx, instance_id=iid),
                       actor=world.actor_of("root"))
    assert answer == {"id": str(iid), "status": "running", "error": None, "queued": ["h"]}
    world.work()
    assert world.instance(iid)["status"] == "failed"


def test_retrying_an_inline_action_answers_its_new_failure(world):
    world.publish_flow(flow_body("f", start(next="o"), action(
        "o", kind="assign_owner", users=[{"kind": "department_members",
                                          "departments": ["nowhere"]}]), end()))
    iid = world.submit("f", "alice")
    answer = world.run(lambda ctx: service.retry_instance(ctx, instance_id=iid),
                       actor=world.actor_of("root"))
    assert answer["status"] == "failed" and "no user to assign" in answer["error"]
    assert answer["queued"] == []


# --- D15 / D16: due times across stages; automatic decisions decide only the node -------

def test_due_time_moves_to_the_next_stage_and_an_escalated_task_is_not_overdue(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob", timeouts=[
        {"after": {"hours": 1}, "actions": [{"kind": "remind"}]},
        {"after": {"hours": 2}, "actions": [{"kind": "escalate", "to": [
            {"kind": "user", "users": ["erin"]}]}]},
        {"after": {"hours": 3}, "actions": [{"kind": "remind"}]}]), end()))
    entered = world.clock.now()
    iid = world.submit("f", "alice")
    assert as_utc(world.open_task(iid, "bob")["due_at"]) == entered + timedelta(hours=1)
    world.clock.advance(hours=1, minutes=1)
    world.work()
    assert as_utc(world.open_task(iid, "bob")["due_at"]) == entered + timedelta(hours=2)
    world.clock.advance(hours=1)
    world.work()
    for who in ("bob", "erin"):
        due = as_utc(world.open_task(iid, who)["due_at"])
        assert due == entered + timedelta(hours=3) and due > world.clock.now()
    world.clock.advance(hours=1)
    world.work()
    # No stage left: the tasks keep the last one's time (overdue now).
    assert as_utc(world.open_task(iid, "bob")["due_at"]) == entered + timedelta(hours=3)


def test_an_automatic_decision_decides_the_node_not_the_tasks(world):
    world.publish_flow(flow_body("f", start(next="a"), approval(
        "a", "bob", "carol", mode="sequence", timeouts=[
            {"after": {"hours": 1}, "actions": [{"kind": "escalate", "replace": True,
                                                 "to": [{"kind": "user", "users": ["erin"]}]}]},
            {"after": {"hours": 2}, "actions": [
                {"kind": "auto_decide", "decision": "reject"}]}]), end()))
    iid = world.submit("f", "alice")
    world.clock.advance(hours=2, minutes=1)
    world.work()
    assert world.instance(iid)["outcome"] == "rejected"
    statuses = {t["assignee_id"]: (t["status"], t["decision"]) for t in world.tasks(iid)}
    # bob's task was replaced, carol's never became hers, erin's was decided for her.
    assert statuses == {world.users[n]: ("cancelled", None) for n in ("bob", "carol", "erin")}
    assert "auto_decided" in world.history(iid)
    world.publish_flow(flow_body("g", start(next="a"), approval("a", "bob", timeouts=[
        {"after": {"hours": 1}, "actions": [{"kind": "escalate", "to": [
            {"kind": "user", "users": ["erin"]}]}]},
        {"after": {"hours": 2}, "actions": [{"kind": "auto_decide", "decision": "approve"}]}]),
        end()))
    iid = world.submit("g", "alice")
    world.clock.advance(hours=2, minutes=1)
    world.work()
    assert world.instance(iid)["outcome"] == "approved"
    assert {t["status"] for t in world.tasks(iid)} == {"cancelled"}


# --- over HTTP: starting with a record (D4), transfers (D17) ----------------------------

class Http:
    def __init__(self, app: Any, admin: TestClient, make_user: Any) -> None:
        self.app = app
        self.admin = admin
        self.clients: dict[str, TestClient] = {}
        self.ids: dict[str, str] = {}
        for name in ("rep", "rep2", "boss", "deputy", "other"):
            uid, token = make_user(name)
            self.ids[name] = str(uid)
            self.clients[name] = TestClient(app, headers={"Authorization": f"Bearer {token}"})

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    def flow(self, body: dict[str, Any]) -> None:
        res = self.admin.put(f"/api/apps/crm/flows/{body['key']}/draft",
                             json={"definition": body})
        assert res.status_code == 200, res.text
        res = self.admin.post(f"/api/apps/crm/flows/{body['key']}/publish", json={})
        assert res.status_code == 200, res.text


@pytest.fixture
def http(app_factory, make_user) -> Http:
    app = app_factory(clock=FrozenClock(), session_hours=24 * 365)
    admin = contract_app_admin(app, make_user)
    world = Http(app, admin, lambda name: make_user(name, app=app))
    res = admin.put("/api/apps/crm/roles/rep", json={"definition": {
        "key": "rep", "label": label("rep"), "forms": {"contract": {
            "actions": ["read", "create", "update", "submit"], "scope": "own"}}}})
    assert res.status_code in (200, 201), res.text
    for name in ("rep", "rep2"):
        res = admin.post("/api/apps/crm/role-assignments",
                         json={"role": "rep", "user_id": world.ids[name]})
        assert res.status_code == 201, res.text
    return world


def test_start_refuses_record_ids_that_are_not_records_it_may_use(http):
    http.flow(flow_body("plain", start("manual", next="end"), end(), form=None))
    http.flow(flow_body("sub", start(next="a"), approval("a", "boss"), end()))
    for record_id in ("not-a-uuid", str(uuid.uuid4())):
        res = http["rep"].post("/api/apps/crm/flows/plain/start",
                               json={"record_id": record_id})
        assert res.status_code == 422, res.text
        assert "no form" in res.text and res.json()["errors"][0]["field"] == "record_id"
    assert http["rep"].post("/api/apps/crm/flows/plain/start", json={}).status_code == 201
    res = http["rep"].post("/api/apps/crm/flows/sub/start", json={"record_id": "not-a-uuid"})
    assert res.status_code == 404 and "not a record id" in res.text
    res = http["rep"].post("/api/apps/crm/flows/sub/start",
                           json={"record_id": str(uuid.uuid4())})
    assert res.status_code == 404, res.text
    theirs = http["rep2"].post("/api/apps/crm/forms/contract/records",
                               json={"values": {"title": "theirs"}})
    assert theirs.status_code == 201, theirs.text
    res = http["rep"].post("/api/apps/crm/flows/sub/start",
                           json={"record_id": theirs.json()["id"]})
    assert res.status_code == 404, res.text


def test_a_task_is_not_transferred_to_its_own_assignee_or_a_fellow_one(http):
    http.flow(flow_body("sub", start(next="a"), approval("a", "boss", "deputy"), end()))
    rec = http["rep"].post("/api/apps/crm/forms/contract/records",
                           json={"values": {"title": "HT-1"}}).json()
    res = http["rep"].post("/api/apps/crm/flows/sub/start", json={"record_id": rec["id"]})
    assert res.status_code == 201, res.text
    [task] = http["boss"].get("/api/flows/tasks", params={"box": "todo"}).json()["items"]
    url = f"/api/flows/tasks/{task['id']}/transfer"
    res = http["boss"].post(url, json={"users": [http.ids["boss"]]})
    assert res.status_code == 422, res.text
    assert "yourself" in res.json()["errors"][0]["message"]
    res = http["boss"].post(url, json={"users": [http.ids["deputy"]]})
    assert res.status_code == 422, res.text
    assert "deputy" in res.json()["errors"][0]["message"]
    assert "already" in res.json()["errors"][0]["message"]
    # A colleague who may decide (approve on the form) takes it over.
    res = http.admin.put("/api/apps/crm/roles/approver", json={"definition": {
        "key": "approver", "label": label("approver"), "forms": {"contract": {
            "actions": ["read", "approve"], "scope": "all"}}}})
    assert res.status_code in (200, 201), res.text
    res = http.admin.post("/api/apps/crm/role-assignments",
                          json={"role": "approver", "user_id": http.ids["other"]})
    assert res.status_code == 201, res.text
    res = http["boss"].post(url, json={"users": [http.ids["other"]]})
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "transferred"
