"""update_record beyond the flow's own record: a related record (through a
relation path), records found by a filter on another form, clearing fields
and the owner, reassigning the owner — all through the form engine (audit,
validation) as the system. And flow API datetimes as the records API writes
them (ISO 8601 with "Z")."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from tangram.engines.flows import views
from tangram.engines.forms.records import create_record, get_record
from tangram.engines.forms.systables import audit_log_table
from tangram.errors import DefinitionInvalid
from tests.factories import field, form_body
from tests.flow_factories import FlowWorld, approval, end, flow_body, start

VISIT = form_body("visit", field("summary"), field("day", "date"),
                  field("contract", "relation", target="contract"),
                  field("mark", "text"))


@pytest.fixture
def world(engine) -> FlowWorld:
    w = FlowWorld(engine)
    for name in ("alice", "bob", "carol"):
        w.user(name)
    w.user("root", admin=True)
    w.publish(VISIT)
    return w


def action_flow(key: str, action: dict[str, Any], *, form: str = "visit",
                trigger: str = "record_created") -> dict[str, Any]:
    return flow_body(key, start(trigger, next="act"),
                     {"type": "action", "key": "act", "next": "end", "action": action},
                     end(), form=form)


def visit(world: FlowWorld, **values: Any) -> str:
    return world.run(lambda ctx: create_record(ctx, app=world.app, form="visit",
                                               data={"summary": "call", **values}))["id"]


def read(world: FlowWorld, form: str, record_id: str) -> dict[str, Any]:
    return world.run(lambda ctx: get_record(ctx, app=world.app, form=form,
                                            record_id=record_id))


def test_a_created_record_updates_the_record_its_relation_points_to(world):
    world.publish_flow(action_flow("write_back", {
        "kind": "update_record", "target": {"kind": "related", "path": "contract"},
        "expressions": {"due_date": "record.day"}, "values": {"status": "in_approval"}}))
    rid = world.contract()
    visit(world, contract=rid, day="2026-03-04")
    contract = read(world, "contract", rid)
    assert contract["due_date"] == "2026-03-04"
    assert contract["status"] == "in_approval"
    # Through the form engine: audited as a flow change, version bumped.
    with world.sessions.begin() as s:
        a = audit_log_table
        sources = list(s.execute(sa.select(a.c.source).where(
            a.c.record_id == uuid.UUID(rid), a.c.action == "update")).scalars())
    assert sources == ["flow"]
    assert contract["version"] == 2


def test_an_empty_relation_updates_nothing_and_the_flow_goes_on(world):
    world.publish_flow(action_flow("write_back", {
        "kind": "update_record", "target": {"kind": "related", "path": "contract"},
        "values": {"status": "in_approval"}}))
    vid = visit(world)
    with world.sessions.begin() as s:
        from tangram.engines.flows.tables import instances_table as i

        inst = s.execute(sa.select(i).where(i.c.record_id == uuid.UUID(vid))).mappings().one()
    assert inst["status"] == "completed"


def test_a_filter_updates_every_matching_record_of_another_form(world):
    world.publish_flow(action_flow("mark_visits", {
        "kind": "update_record",
        "target": {"kind": "filter", "form": "visit", "where": {"contract": "record.id"}},
        "values": {"mark": "approved"}}, form="contract", trigger="submitted"))
    rid, other = world.contract(), world.contract()
    mine = [visit(world, contract=rid) for _ in range(2)]
    theirs = visit(world, contract=other)
    iid = world.submit("mark_visits", "alice", rid)
    assert [read(world, "visit", v)["mark"] for v in mine] == ["approved", "approved"]
    assert read(world, "visit", theirs)["mark"] is None
    assert "records_updated" in world.history(iid)


def test_a_flow_clears_fields_and_the_owner_and_reassigns_the_owner(world):
    world.publish_flow(action_flow("to_pool", {
        "kind": "update_record", "clear": ["manager", "due_date"],
        "owner": {"clear": True}}, form="contract", trigger="submitted"))
    rid = world.contract(by="alice", manager=str(world.users["bob"]), due_date="2026-01-02")
    assert read(world, "contract", rid)["owner"] == str(world.users["alice"])
    world.submit("to_pool", "alice", rid)
    contract = read(world, "contract", rid)
    assert contract["manager"] is None and contract["due_date"] is None
    assert contract["owner"] is None

    world.publish_flow(action_flow("give", {
        "kind": "update_record", "owner": {"to": [{"kind": "user", "users": ["carol"]}]}},
        form="contract", trigger="submitted"))
    world.submit("give", "alice", rid)
    assert read(world, "contract", rid)["owner"] == str(world.users["carol"])


def test_a_record_update_that_the_form_refuses_fails_visibly_at_once(world):
    # Computed when the flow runs (a value written as it is would be refused
    # at publish). Retrying cannot make the form accept it: the instance
    # fails at once, saying which field and why.
    world.publish_flow(action_flow("bad", {
        "kind": "update_record", "target": {"kind": "related", "path": "contract"},
        "expressions": {"status": "'no_such_option'"}}))
    rid = world.contract()
    visit(world, contract=rid)
    with world.sessions.begin() as s:
        from tangram.engines.flows.tables import instances_table as i
        from tangram.engines.flows.tables import jobs_table as j

        assert s.execute(sa.select(j)).first() is None
        inst = s.execute(sa.select(i).where(i.c.flow == "bad")).mappings().one()
    assert inst["status"] == "failed" and "status" in inst["error"]
    assert read(world, "contract", rid)["status"] == "draft"


@pytest.mark.parametrize(("action", "code"), [
    ({"kind": "update_record", "target": {"kind": "related", "path": "summary"},
      "values": {"status": "x"}}, "not_relation"),
    ({"kind": "update_record", "target": {"kind": "related", "path": "contract"},
      "values": {"no_field": "x"}}, "unknown_field"),
    ({"kind": "update_record", "target": {"kind": "related", "path": "contract"},
      "values": {"status": "no_such_option"}}, "value_invalid"),
    ({"kind": "update_record", "target": {"kind": "filter", "form": "visit",
                                          "where": {"nope": "record.id"}},
      "values": {"mark": "x"}}, "unknown_field"),
    ({"kind": "update_record", "target": {"kind": "filter", "form": "ghost",
                                          "where": {"id": "record.id"}},
      "values": {"mark": "x"}}, "unknown_form"),
    ({"kind": "update_record", "target": {"kind": "filter", "form": "visit",
                                          "where": {"contract": "record.id +"}},
      "values": {"mark": "x"}}, "expression_invalid"),
])
def test_publishing_checks_the_target_form_and_fields(world, action, code):
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(action_flow("f", action))
    assert code in {e.code for e in refused.value.errors}


def test_an_update_that_changes_nothing_is_refused(world):
    with pytest.raises(DefinitionInvalid):
        world.publish_flow(action_flow("f", {"kind": "update_record"}))


def test_flow_datetimes_are_iso_8601_utc_with_z(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob"), end()))
    iid = world.submit("f", "alice")
    view = world.run(lambda ctx: views.instance_view(ctx, instance_id=iid),
                     actor=world.actor_of("root"))
    stamps = [view["instance"]["started_at"], *(h["at"] for h in view["history"]),
              *(t["created_at"] for t in view["tasks"])]
    assert stamps and all(s.endswith("Z") and "+00:00" not in s for s in stamps)
    todo = world.run(lambda ctx: views.inbox(ctx, box="todo"), actor=world.actor_of("bob"))
    assert todo[0]["created_at"].endswith("Z")
