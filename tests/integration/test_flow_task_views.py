"""A flow task's record is narrowed by the approver's role field rules and by
the node's field rules together: hidden fields (and their display titles)
never appear in a task payload, and read-only ones are not editable there."""

from __future__ import annotations

from typing import Any

import pytest

from tangram.engines.context import EngineContext
from tangram.engines.flows import tasks, views
from tangram.errors import PermissionDenied
from tangram.platform.permissions.policy import RolePolicy
from tests import permission_factories as pf
from tests.flow_factories import FlowWorld, approval, end, flow_body, start


@pytest.fixture
def world(engine) -> FlowWorld:
    w = FlowWorld(engine)
    for name in ("alice", "bob"):
        w.user(name)
    with w.sessions.begin() as s:
        pf.role(s, w.app, "approver", pf.grant(
            "contract", ["read"], "all",
            fields={"amount": "hidden", "manager": "hidden", "status": "read_only"}))
        pf.assign(s, w.app, "approver", user_id=w.users["bob"])
    return w


def _flow(world: FlowWorld, **node: Any) -> None:
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob", **node), end()))


def _as_bob(world: FlowWorld, fn: Any) -> Any:
    """Run ``fn(ctx)`` as bob with the platform's role policy (as over HTTP)."""
    with world.sessions.begin() as s:
        ctx = EngineContext(session=s, actor=world.actor_of("bob"), clock=world.clock,
                            policy=RolePolicy(s, clock=world.clock))
        return fn(ctx)


def _submitted(world: FlowWorld) -> tuple[Any, dict[str, Any]]:
    rid = world.contract(manager=str(world.users["alice"]))
    iid = world.submit("f", "alice", rid)
    return iid, world.open_task(iid, "bob")


def test_role_hidden_fields_and_their_titles_never_reach_the_task(world):
    _flow(world, editable_fields=["title", "amount", "status"])
    _, task = _submitted(world)
    view = _as_bob(world, lambda ctx: views.task_view(ctx, task_id=task["id"]))
    record = view["record"]
    assert "amount" not in record and "manager" not in record
    assert record["title"] == "HT-1" and record["status"] == "draft"
    assert "manager" not in record.get("_display", {})
    assert "1000" not in str(view) and "alice" not in str(record.get("_display", {}))
    # Read-only by the role, hidden by the role: not editable at the node either.
    assert view["editable_fields"] == ["title"]


def test_node_rules_narrow_further_and_titles_follow_them(world):
    _flow(world, visible_fields=["title", "amount", "manager"], editable_fields=["title"])
    _, task = _submitted(world)
    view = _as_bob(world, lambda ctx: views.task_view(ctx, task_id=task["id"]))
    assert set(view["record"]) == {"id", "version", "title"}
    assert view["editable_fields"] == ["title"]


def test_the_approval_edit_follows_the_same_rules(world):
    _flow(world, editable_fields=["title", "amount", "status"])
    iid, task = _submitted(world)

    def act(values: dict[str, Any]) -> Any:
        return _as_bob(world, lambda ctx: tasks.act_on_task(
            ctx, task_id=task["id"], action="approve",
            params=tasks.ActionParams(values=values)))

    for field in ("amount", "status"):
        with pytest.raises(PermissionDenied) as info:
            act({field: "approved" if field == "status" else "1"})
        assert info.value.details == {"field": field}
    act({"title": "HT-1b"})
    assert world.record(world.instance(iid)["record_id"])["title"] == "HT-1b"
