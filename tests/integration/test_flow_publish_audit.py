"""Publishing refuses what is statically wrong in a flow, each problem at the
JSON path of the property that is wrong and naming its node (the flows audit:
D1, D6, D7, D10, D11, D12), and the designer palette reads as plain text (D19).
Every check goes through the HTTP API as a builder (or user) would see it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.access import AllowAll
from tangram.engines.directory import users_table
from tests.factories import label
from tests.flow_factories import approval, contract_app_admin, end, flow_body, start


class Builder:
    """An admin who designs flows in app ``crm`` (form ``contract``), and users by name."""

    def __init__(self, app: Any, admin: TestClient, make_user: Any) -> None:
        self.app = app
        self.admin = admin
        self.make_user = make_user
        self.ids: dict[str, str] = {}
        self.clients: dict[str, TestClient] = {}

    def user(self, name: str) -> TestClient:
        uid, token = self.make_user(name, app=self.app)
        self.ids[name] = str(uid)
        self.clients[name] = TestClient(self.app, headers={"Authorization": f"Bearer {token}"})
        return self.clients[name]

    def validate(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        res = self.admin.post(f"/api/apps/crm/flows/{body['key']}/validate",
                              json={"definition": body})
        assert res.status_code == 200, res.text
        return res.json()["errors"]

    def publish(self, body: dict[str, Any]) -> Any:
        res = self.admin.put(f"/api/apps/crm/flows/{body['key']}/draft",
                             json={"definition": body})
        assert res.status_code == 200, res.text
        return self.admin.post(f"/api/apps/crm/flows/{body['key']}/publish", json={})

    def refused(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The errors of ``body``: validate lists them and publish refuses with the same."""
        errors = self.validate(body)
        res = self.publish(body)
        assert res.status_code == 422, res.text
        assert res.json()["code"] == "definition_invalid"
        assert res.json()["errors"] == errors
        return errors


@pytest.fixture
def builder(app_factory, make_user) -> Builder:
    app = app_factory(clock=FrozenClock(), policy=AllowAll(), session_hours=24 * 365)
    admin = contract_app_admin(app, make_user)
    return Builder(app, admin, make_user)


def found(errors: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["path"], e["code"]) for e in errors}


def action(key: str, act: dict[str, Any], next: str = "end") -> dict[str, Any]:
    return {"type": "action", "key": key, "action": act, "next": next}


def log(key: str, next: str = "end") -> dict[str, Any]:
    return action(key, {"kind": "update_record", "values": {"title": "x"}}, next)


# --- D1: time zones and cron ------------------------------------------------------------

def test_an_unknown_schedule_time_zone_is_refused_not_a_500(builder):
    body = flow_body("badtz", start("schedule", cron="* * * * *", timezone="Mars/Base",
                                    next="end"), end(), form=None)
    errors = builder.refused(body)
    assert found(errors) == {("$.nodes[0].trigger.timezone", "timezone_invalid")}
    assert errors[0]["message"].startswith("node 'start': unknown time zone 'Mars/Base'")
    assert errors[0]["details"]["node"] == "start"
    good = flow_body("badtz", start("schedule", cron="0 9 * * 1-5", timezone="Europe/Paris",
                                    next="end"), end(), form=None)
    assert builder.publish(good).status_code == 200


def test_a_cron_that_never_fires_or_has_six_fields_is_refused(builder):
    for cron in ("0 0 30 2 *", "* * * * * *"):
        body = flow_body("badcron", start("schedule", cron=cron, next="end"), end(),
                         form=None)
        assert found(builder.refused(body)) == {("$.nodes[0].trigger.cron", "cron_invalid")}


def test_a_business_calendar_with_an_unknown_time_zone_is_refused(builder):
    from tangram.metamodel import storage

    for bad, where in (({"timezone": "Mars/Base"}, "$.timezone"),
                       ({"holidays": ["2026-02-30"]}, "$.holidays[0]"),
                       ({"weekend": [7]}, "$.weekend[0]")):
        with pytest.raises(Exception) as caught:
            storage.parse_definition("calendar", {"key": "cal", "label": label("cal"), **bad})
        assert [e.path for e in caught.value.errors] == [where], caught.value.errors


# --- D6: users named literally ---------------------------------------------------------

def test_unknown_or_disabled_users_named_in_rules_are_refused(builder):
    builder.user("risk")
    builder.user("gone")
    with builder.app.state.sessions.begin() as s:
        s.execute(users_table.update().where(users_table.c.username == "gone")
                  .values(status="disabled"))
    body = flow_body(
        "ghosts", start("submitted"),
        approval("a", "risk", "nobody_here", next="tell",
                 cc=[{"kind": "user", "users": ["ghost_cc"]}],
                 timeouts=[{"after": {"hours": 1}, "actions": [
                     {"kind": "escalate", "to": [{"kind": "user", "users": ["gone"]}]}]}]),
        action("tell", {"kind": "notify", "to": [{"kind": "user", "users": [
            str(uuid.UUID(int=7))]}], "title": "hi"}, "own"),
        action("own", {"kind": "assign_owner", "users": [{"kind": "user", "users": ["ghost"]}],
                       "fallback": [{"kind": "user", "users": ["risk"]}]}),
        end())
    errors = builder.refused(body)
    assert found(errors) == {
        ("$.nodes[1].assignees[0].users[1]", "unknown_user"),
        ("$.nodes[1].cc[0].users[0]", "unknown_user"),
        ("$.nodes[1].timeouts[0].actions[0].to[0].users[0]", "inactive_user"),
        ("$.nodes[2].action.to[0].users[0]", "unknown_user"),
        ("$.nodes[3].action.users[0].users[0]", "unknown_user")}, errors
    by_path = {e["path"]: e for e in errors}
    assert by_path["$.nodes[1].assignees[0].users[1]"]["message"] == (
        "node 'a': no user 'nobody_here' (a username or a user id)")
    assert by_path["$.nodes[1].assignees[0].users[1]"]["details"] == {
        "node": "a", "user": "nobody_here"}
    assert "disabled" in by_path["$.nodes[1].timeouts[0].actions[0].to[0].users[0]"]["message"]
    # Usernames are matched as sign-in matches them (case-insensitively), ids as ids.
    ok = flow_body("ghosts", start("submitted"),
                   approval("a", "RISK", builder.ids["risk"]), end())
    assert builder.publish(ok).status_code == 200


def test_the_history_names_the_user_an_expression_named_but_does_not_exist(builder):
    rep = builder.user("rep")
    body = flow_body("ghost_expr", start("submitted"),
                     approval("a", assignees=[{"kind": "expression",
                                               "expression": '"ghost_user"'}]), end())
    # A username written as it is in an expression is checked at publish…
    assert found(builder.refused(body)) == {("$.nodes[1].assignees[0].expression",
                                             "unknown_user")}
    # …one the record gives is known only when the instance runs.
    body["nodes"][1]["assignees"][0]["expression"] = "record.title"
    assert builder.publish(body).status_code == 200
    rec = rep.post("/api/apps/crm/forms/contract/records",
                   json={"values": {"title": "ghost_user", "amount": "5"}}).json()
    res = rep.post("/api/apps/crm/flows/ghost_expr/start", json={"record_id": rec["id"]})
    assert res.status_code == 201, res.text
    history = builder.admin.get(f"/api/flows/instances/{res.json()['id']}").json()["history"]
    [entry] = [h for h in history if h["action"] == "assigned_to_admin"]
    assert entry["details"]["reason"] == "user 'ghost_user' does not exist", entry


# --- D7: a parallel branch entered without its split -------------------------------------

def test_a_parallel_branch_reachable_around_its_split_is_refused(builder):
    body = flow_body(
        "bypass", start("submitted", next="br"),
        {"type": "branch", "key": "br", "conditions": [
            {"when": "record.amount > 100", "next": "x"}], "default": "sp"},
        {"type": "parallel_split", "key": "sp", "branches": ["x", "y"]},
        log("x", "j"), log("y", "j"),
        {"type": "parallel_join", "key": "j", "split": "sp", "next": "end"},
        end())
    errors = builder.refused(body)
    assert found(errors) == {("$.nodes[3]", "split_bypassed")}, errors
    assert errors[0]["message"] == ("node 'x': reachable without passing through parallel "
                                    "split 'sp', whose join 'j' would wait for it forever")
    assert errors[0]["details"] == {"node": "x", "split": "sp"}
    fine = {**body, "nodes": [{**n, "conditions": [{"when": "record.amount > 100",
                                                    "next": "end"}]}
                              if n["key"] == "br" else n for n in body["nodes"]]}
    assert builder.publish(fine).status_code == 200


# --- D10 / D11: approval fields and paths ------------------------------------------------

def test_an_editable_field_the_node_does_not_show_is_refused(builder):
    body = flow_body("edvis", start("submitted"),
                     approval("a", "admin", visible_fields=["title"],
                              editable_fields=["title", "amount"]), end())
    errors = builder.refused(body)
    assert found(errors) == {("$.nodes[1].editable_fields[1]", "not_visible")}
    assert errors[0]["message"] == ("node 'a': editable field 'amount' is not in "
                                    "visible_fields; add it there or stop making it editable")


def test_errors_point_at_the_property_that_is_wrong(builder):
    body = flow_body(
        "paths", start("submitted"),
        approval("a", "admin", next="b", visible_fields=["nofield"],
                 editable_fields=["nofield2"], on_reject="nowhere",
                 timeouts=[{"after": {"hours": 1}, "actions": [
                     {"kind": "take_path", "next": "nowhere2"}]}]),
        action("b", {"kind": "update_record", "values": {"bad1": 1},
                     "expressions": {"bad2": "1"}, "clear": ["bad3"]}, "c"),
        action("c", {"kind": "create_record", "form": "contract",
                     "values": {"bad4": 1}, "expressions": {"bad5": "1"}}),
        end())
    errors = builder.refused(body)
    assert found(errors) == {
        ("$.nodes[1].on_reject", "unknown_target"),
        ("$.nodes[1].timeouts[0].actions[0].next", "unknown_target"),
        ("$.nodes[1].visible_fields[0]", "unknown_field"),
        ("$.nodes[1].editable_fields[0]", "unknown_field"),
        ("$.nodes[2].action.values.bad1", "unknown_field"),
        ("$.nodes[2].action.expressions.bad2", "unknown_field"),
        ("$.nodes[2].action.clear[0]", "unknown_field"),
        ("$.nodes[3].action.values.bad4", "unknown_field"),
        ("$.nodes[3].action.expressions.bad5", "unknown_field")}, errors
    messages = {e["message"] for e in errors}
    assert "node 'a': on_reject points to 'nowhere', which is not a node" in messages
    assert ("node 'a': timeouts[0].actions[0].next points to 'nowhere2', which is not a node"
            in messages)


def test_a_delay_without_duration_or_until_names_the_node(builder):
    body = flow_body("nodelay", start("submitted", next="wait"),
                     {"type": "delay", "key": "wait", "next": "end"}, end())
    for res in (builder.admin.put("/api/apps/crm/flows/nodelay/draft",
                                  json={"definition": body}),
                builder.admin.post("/api/apps/crm/flows/nodelay/validate",
                                   json={"definition": body})):
        assert res.status_code == 422, res.text  # the shape: refused with the draft
        [error] = res.json()["errors"]
        assert error["path"] == "$.nodes[1]"
        assert error["message"] == ("node 'wait': a delay needs exactly one of duration or "
                                    "until")
    # A whole-object check of an action is located at the action, not its kind.
    body["nodes"][1] = action("wait", {"kind": "update_record"})
    res = builder.admin.put("/api/apps/crm/flows/nodelay/draft", json={"definition": body})
    assert [e["path"] for e in res.json()["errors"]] == ["$.nodes[1].action"]


# --- D12: what would fail every instance ----------------------------------------------------

def test_a_loop_without_a_waiting_node_is_refused(builder):
    itself = flow_body("selfloop", start("submitted", next="a"),
                       {"type": "branch", "key": "a", "conditions": [
                           {"when": "record.amount > 1", "next": "end"}], "default": "a"},
                       end())
    errors = builder.refused(itself)
    assert found(errors) == {("$.nodes[1]", "loop_without_wait")}
    assert errors[0]["message"].startswith("node 'a': loop without a waiting node: a → a; ")
    ring = flow_body("ring", start("submitted", next="a"),
                     {"type": "branch", "key": "a", "conditions": [
                         {"when": "record.amount > 1", "next": "b"}], "default": "end"},
                     {"type": "branch", "key": "b", "conditions": [
                         {"when": "record.amount > 2", "next": "a"}], "default": "end"},
                     end())
    errors = builder.refused(ring)
    assert found(errors) == {("$.nodes[1]", "loop_without_wait")}
    assert "a → b → a" in errors[0]["message"]
    # Through an action the loop may end (a counter the action raises): the
    # run's step limit stops one that does not, visibly.
    counter = flow_body("counter", start("submitted", next="a"), log("a", "b"),
                        {"type": "branch", "key": "b", "conditions": [
                            {"when": "record.amount > 1", "next": "a"}], "default": "end"},
                        end())
    assert builder.publish(counter).status_code == 200
    waiting = {**ring, "key": "waiting", "nodes": [*ring["nodes"][:2], {
        "type": "delay", "key": "pause", "duration": {"hours": 1}, "next": "a"}, *[
        {**n, "conditions": [{"when": "record.amount > 2", "next": "pause"}]}
        if n["key"] == "b" else n for n in ring["nodes"][2:]]]}
    assert builder.publish(waiting).status_code == 200


def test_reading_old_values_where_the_trigger_has_none_is_refused(builder):
    body = flow_body("oldread", start("submitted", next="br"),
                     {"type": "branch", "key": "br", "conditions": [
                         {"when": "old.amount != record.amount", "next": "end"}],
                      "default": "end"}, end())
    errors = builder.refused(body)
    assert found(errors) == {("$.nodes[1].conditions[0].when", "no_old_values")}
    assert errors[0]["message"] == ("node 'br': the expression reads old, but a submitted "
                                    "trigger has no old values (only record_updated and "
                                    "record_deleted flows do)")
    updated = {**body, "nodes": [start("record_updated", next="br"), *body["nodes"][1:]]}
    assert builder.publish(updated).status_code == 200


def test_a_delay_until_a_field_that_is_not_a_date_is_refused(builder):
    body = flow_body("until", start("submitted", next="wait"),
                     {"type": "delay", "key": "wait", "until": "record.title", "next": "end"},
                     end())
    errors = builder.refused(body)
    assert found(errors) == {("$.nodes[1].until", "field_type")}
    assert errors[0]["message"] == ("node 'wait': until reads field 'title', a text field; "
                                    "it needs a date or datetime")
    body["nodes"][1]["until"] = "record.due_date"
    assert builder.publish(body).status_code == 200


# --- D10 at run time -----------------------------------------------------------------------

def test_the_refusal_to_edit_a_field_names_its_true_cause():
    from tangram.engines.flows.taskview import TaskFields
    from tangram.errors import PermissionDenied

    # A version published before the check existed can still have this shape.
    rules = TaskFields(hidden=frozenset(), read_only=frozenset({"status"}),
                       visible=frozenset({"title", "status"}),
                       node_editable=("amount", "status"))
    with pytest.raises(PermissionDenied) as caught:
        rules.check_edit({"amount": "1"}, "a")
    assert caught.value.message == ("you may not set field 'amount' at node 'a': the node "
                                    "does not show it (it is not in its visible_fields)")
    with pytest.raises(PermissionDenied) as caught:
        rules.check_edit({"status": "x"}, "a")
    assert caught.value.message == ("you may not set field 'status' at node 'a': your roles "
                                    "make it read-only for you")


# --- D19: the palette reads as plain text ---------------------------------------------------

MARKUP = re.compile(r"``|:\w+:`|\n|  |\\")


def test_every_palette_entry_has_a_plain_bilingual_description(builder):
    meta = builder.user("rep").get("/api/meta/flows")
    assert meta.status_code == 200
    problems = []
    for registry, entries in meta.json().items():
        for entry in entries:
            doc = entry["description"]
            where = f"{registry}.{entry['kind']}"
            if set(doc) != {"zh", "en"} or not all(v.strip() for v in doc.values()):
                problems.append(f"{where}: {doc!r}")
            elif any(MARKUP.search(v) or v != v.strip() for v in doc.values()):
                problems.append(f"{where}: markup or a hard line break in {doc!r}")
            elif not re.search(r"[\u4e00-\u9fff]", doc["zh"]):
                problems.append(f"{where}: the zh text is not Chinese: {doc['zh']!r}")
    assert problems == []


def test_a_reminder_message_template_is_checked_at_publish(builder):
    # A reminder's message is a template like a notify action's text.
    node = approval("a", "admin", timeouts=[{"after": {"hours": 24}, "actions": [
        {"kind": "remind", "message": {"zh": "请处理 {{ record.nope }}",
                                       "en": "Please decide {{ record.title"}}]}])
    errors = builder.refused(flow_body("remind", start("submitted", next="a"), node, end()))
    assert found(errors) == {("$.nodes[1].timeouts[0].actions[0].message", "unknown_field"),
                             ("$.nodes[1].timeouts[0].actions[0].message", "template_invalid")}
