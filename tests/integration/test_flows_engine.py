"""The flow engine on SQLite and PostgreSQL: node types, approval modes and
actions, timeouts with an advanced clock, triggers, versions, failures."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tangram.db import session_factory
from tangram.engines.flows import service, tasks, views
from tangram.engines.flows.tables import jobs_table, timers_table
from tangram.engines.flows.worker import LeaseLost, Worker
from tangram.errors import Conflict, DefinitionInvalid, ValidationFailed
from tests.flow_factories import FlowWorld, approval, end, flow_body, start


@pytest.fixture
def world(engine) -> FlowWorld:
    w = FlowWorld(engine)
    for name in ("alice", "bob", "carol", "dave", "erin"):
        w.user(name)
    w.user("root", admin=True)
    return w


def simple(world: FlowWorld, key: str = "f", *, mode: str = "any",
           users: tuple[str, ...] = ("bob",), **options) -> None:
    world.publish_flow(flow_body(key, start(next="a"),
                                 approval("a", *users, mode=mode, **options), end()))


# --- approval modes ---------------------------------------------------------------------

def test_any_one_completes_on_first_approval_and_cancels_the_others(world):
    simple(world, users=("bob", "carol", "dave"))
    iid = world.submit("f", "alice")
    world.act(iid, "carol")
    assert world.instance(iid)["status"] == "completed"
    assert world.instance(iid)["outcome"] == "approved"
    statuses = {t["assignee_id"]: t["status"] for t in world.tasks(iid)}
    assert statuses[world.users["carol"]] == "approved"
    assert statuses[world.users["bob"]] == statuses[world.users["dave"]] == "cancelled"
    bob_task = world.tasks(iid, user="bob")[0]
    with pytest.raises(Conflict, match="completed by another decision"):
        world.act_on(bob_task["id"], "bob")


def test_all_completes_once_whatever_the_order(world):
    simple(world, mode="all", users=("bob", "carol", "dave"))
    iid = world.submit("f", "alice")
    world.act(iid, "dave")
    world.act(iid, "bob")
    assert world.instance(iid)["status"] == "running"
    world.act(iid, "carol")
    assert world.instance(iid)["status"] == "completed"
    assert world.history(iid).count("node_approved") == 1


def my_task(world, iid, who: str, action: str = "approve") -> dict:
    return world.run(lambda ctx: tasks.act_on_my_task(
        ctx, instance_id=iid, action=action, params=tasks.ActionParams()),
        actor=world.actor_of(who))


def test_sequence_goes_one_after_another(world):
    simple(world, mode="sequence", users=("bob", "carol"))
    iid = world.submit("f", "alice")
    assert world.tasks(iid, user="carol")[0]["status"] == "queued"
    # Acting on "my task" in the request: carol's waits for bob.
    with pytest.raises(Conflict, match="not yet yours"):
        my_task(world, iid, "carol")
    assert my_task(world, iid, "bob")["status"] == "approved"
    assert world.instance(iid)["status"] == "running"
    world.act(iid, "carol")
    assert world.instance(iid)["outcome"] == "approved"


def test_all_with_the_last_two_approving_at_the_same_moment(world):
    simple(world, mode="all", users=("bob", "carol", "dave"))
    iid = world.submit("f", "alice")
    world.act(iid, "bob")
    tasks = {n: world.open_task(iid, n)["id"] for n in ("carol", "dave")}
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def approve(name: str) -> None:
        barrier.wait()
        try:
            world.act_on(tasks[name], name)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(n,)) for n in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert world.instance(iid)["status"] == "completed"
    assert world.history(iid).count("node_approved") == 1
    assert world.history(iid).count("ended") == 1


# --- approval actions -------------------------------------------------------------------

def test_reject_ends_rejected_or_takes_the_rejection_path(world):
    simple(world)
    iid = world.submit("f", "alice")
    world.act(iid, "bob", "reject", comment="too expensive")
    assert world.instance(iid)["outcome"] == "rejected"
    world.publish_flow(flow_body("g", start(next="a"),
                                 approval("a", "bob", on_reject="mark"),
                                 {"type": "action", "key": "mark", "next": "no",
                                  "action": {"kind": "update_record",
                                             "values": {"status": "rejected"}}},
                                 end(), end("no", "rejected")))
    rid = world.contract()
    iid = world.submit("g", "alice", rid)
    world.act(iid, "bob", "reject")
    assert world.record(rid)["status"] == "rejected"
    assert world.instance(iid)["outcome"] == "rejected"


def test_return_to_an_earlier_node(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob", next="b"),
                                 approval("b", "carol"), end()))
    iid = world.submit("f", "alice")
    world.act(iid, "bob")
    with pytest.raises(ValidationFailed) as refused:
        world.act(iid, "carol", "return", node="b")
    assert "not an earlier approval" in refused.value.errors[0].message
    world.act(iid, "carol", "return", node="a", comment="fix the amount")
    assert world.open_task(iid, "bob")
    world.act(iid, "bob")
    world.act(iid, "carol")
    assert world.instance(iid)["outcome"] == "approved"


def test_transfer_gives_the_task_to_another_user(world):
    simple(world)
    iid = world.submit("f", "alice")
    world.act(iid, "bob", "transfer", users=["erin"])
    assert world.tasks(iid, user="bob")[0]["status"] == "transferred"
    world.act(iid, "erin")
    assert world.instance(iid)["outcome"] == "approved"


def test_add_signer_before_and_after(world):
    simple(world)
    iid = world.submit("f", "alice")
    world.act(iid, "bob", "add_signer", users=["carol"], position="before")
    assert world.tasks(iid, user="bob")[0]["status"] == "queued"
    world.act(iid, "carol")
    assert world.instance(iid)["status"] == "running"
    world.act(iid, "bob", "add_signer", users=["dave"], position="after")
    world.act(iid, "bob")
    assert world.instance(iid)["status"] == "running"
    world.act(iid, "dave")
    assert world.instance(iid)["outcome"] == "approved"


def test_withdraw_before_and_after_an_approver_acted(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob", next="b"),
                                 approval("b", "carol"), end()))
    iid = world.submit("f", "alice")
    world.run(lambda ctx: _instance_action(ctx, iid, "withdraw"), actor=world.actor_of("alice"))
    assert world.instance(iid)["status"] == "withdrawn"
    assert world.tasks(iid, user="bob")[0]["status"] == "cancelled"

    iid = world.submit("f", "alice")
    world.act(iid, "bob")
    with pytest.raises(Conflict, match="approver already acted"):
        world.run(lambda ctx: _instance_action(ctx, iid, "withdraw"),
                  actor=world.actor_of("alice"))
    with pytest.raises(Exception, match="only the submitter"):
        world.run(lambda ctx: _instance_action(ctx, iid, "withdraw"),
                  actor=world.actor_of("dave"))


def _instance_action(ctx, iid, action, **params):
    from tangram.engines.flows.tasks import ActionParams, act_on_instance

    return act_on_instance(ctx, instance_id=iid, action=action, params=ActionParams(**params))


def test_urge_comment_and_cc_notify_people(world):
    simple(world, cc=[{"kind": "user", "users": ["erin"]}])
    iid = world.submit("f", "alice")
    world.run(lambda ctx: _instance_action(ctx, iid, "urge", comment="please"),
              actor=world.actor_of("alice"))
    assert world.notifications("bob", "urge")
    assert world.notifications("erin", "cc")
    world.act(iid, "bob", "cc", users=["dave"])
    assert world.notifications("dave", "cc")
    world.act(iid, "bob", "comment", comment="looking")
    assert "comment" in world.history(iid)


def test_edits_only_the_fields_the_node_allows(world):
    simple(world, editable_fields=["amount"], visible_fields=["title", "amount"])
    rid = world.contract()
    iid = world.submit("f", "alice", rid)
    task = world.open_task(iid, "bob")
    view = world.run(lambda ctx: views.task_view(ctx, task_id=task["id"]),
                     actor=world.actor_of("bob"))
    assert set(view["record"]) == {"id", "version", "title", "amount"}
    assert view["editable_fields"] == ["amount"]
    with pytest.raises(Exception, match="cannot be edited"):
        world.act(iid, "bob", values={"status": "approved"})
    world.act(iid, "bob", values={"amount": "900"})
    assert world.record(rid)["amount"] == "900.00"


def test_empty_assignees_auto_approve_or_go_to_admin(world):
    world.publish_flow(flow_body("f", start(next="a"), approval(
        "a", assignees=[{"kind": "field", "field": "manager"}], on_empty="auto_approve"),
        end()))
    assert world.instance(world.submit("f", "alice"))["outcome"] == "approved"
    world.publish_flow(flow_body("g", start(next="a"), approval(
        "a", assignees=[{"kind": "field", "field": "manager"}], on_empty="admin"), end()))
    iid = world.submit("g", "alice")
    world.act(iid, "root")
    assert world.instance(iid)["outcome"] == "approved"


def test_department_head_and_field_assignees(world):
    top = world.department("top")
    sales = world.department("sales", parent=top)
    world.user("boss", department=top, head=True)
    world.user("mgr", department=sales, head=True)
    world.user("rep", department=sales)
    world.publish_flow(flow_body("f", start(next="a"), approval(
        "a", assignees=[{"kind": "department_head"}], next="b"), approval(
        "b", assignees=[{"kind": "department_head", "levels": 2}], next="c"), approval(
        "c", assignees=[{"kind": "field", "field": "manager"}]), end()))
    rid = world.contract(manager=str(world.users["erin"]))
    iid = world.submit("f", "rep", rid)
    world.act(iid, "mgr")
    world.act(iid, "boss")
    world.act(iid, "erin")
    assert world.instance(iid)["outcome"] == "approved"


def test_department_head_levels_count_heads_up_the_chain(world):
    # docs/flows.md: departments without a head are passed over, not counted
    # (a group without a lead: level 1 is the region's head, level 2 the
    # head above); a chain too short for the level follows on_empty.
    top = world.department("centre")
    region = world.department("region", parent=top)
    group = world.department("group", parent=region)
    world.user("director", department=top, head=True)
    world.user("regional", department=region, head=True)
    world.user("member", department=group)
    world.publish_flow(flow_body("f", start(next="a"), approval(
        "a", assignees=[{"kind": "department_head"}], next="b"), approval(
        "b", assignees=[{"kind": "department_head", "levels": 2}], next="c"), approval(
        "c", assignees=[{"kind": "department_head", "levels": 3}], on_empty="admin"), end()))
    iid = world.submit("f", "member")
    assert [t["assignee_id"] for t in world.tasks(iid, status="open")] == \
        [world.users["regional"]]
    world.act(iid, "regional")
    assert [t["assignee_id"] for t in world.tasks(iid, status="open")] == \
        [world.users["director"]]
    world.act(iid, "director")
    world.act(iid, "root")  # no third head: the administrators
    assert world.instance(iid)["outcome"] == "approved"


def test_concurrent_actions_on_one_task_exactly_one_wins(world):
    simple(world)
    iid = world.submit("f", "alice")
    task = world.open_task(iid, "bob")
    with pytest.raises(Conflict, match="changed since you read it"):
        world.act_on(task["id"], "bob", version=task["version"] + 5)
    results: list[str] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        try:
            world.act_on(task["id"], "bob")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]


# --- branch, parallel, delay, action, end --------------------------------------------------

def branch_flow(default: str | None = "small", **options) -> dict:
    return flow_body("f", start(next="br"), {
        "type": "branch", "key": "br", "conditions": [
            {"when": "record.amount > 500000", "next": "big"}],
        **({"default": default} if default else {}), **options},
        end("big", "big"), *([end("small", "small")] if default else []))


def test_branch_takes_the_first_matching_condition_else_the_default(world):
    world.publish_flow(branch_flow())
    assert world.instance(world.submit("f", "alice", world.contract(amount="600000"))
                          )["outcome"] == "big"
    assert world.instance(world.submit("f", "alice", world.contract(amount="10"))
                          )["outcome"] == "small"


def test_no_branch_matching_and_no_default_is_a_visible_error(world):
    world.publish_flow(branch_flow(default=None, require_match=True))
    iid = world.submit("f", "alice", world.contract(amount="10"))
    inst = world.instance(iid)
    assert inst["status"] == "failed"
    assert "no condition matched" in inst["error"]
    failed = world.run(lambda ctx: service.admin_instances(ctx, status="failed"),
                       actor=world.actor_of("root"))
    assert [f["id"] for f in failed] == [str(iid)]


def test_parallel_join_fires_once(world):
    world.publish_flow(flow_body(
        "f", start(next="split"),
        {"type": "parallel_split", "key": "split", "branches": ["a", "b"]},
        approval("a", "bob", next="join"), approval("b", "carol", next="join"),
        {"type": "parallel_join", "key": "join", "split": "split", "next": "end"}, end()))
    iid = world.submit("f", "alice")
    world.act(iid, "carol")
    assert world.instance(iid)["status"] == "running"
    world.act(iid, "bob")
    assert world.instance(iid)["outcome"] == "approved"
    assert world.history(iid).count("joined") == 1


def test_parallel_join_first_n_cancels_the_rest(world):
    world.publish_flow(flow_body(
        "f", start(next="split"),
        {"type": "parallel_split", "key": "split", "branches": ["a", "b", "c"]},
        approval("a", "bob", next="join"), approval("b", "carol", next="join"),
        approval("c", "dave", next="join"),
        {"type": "parallel_join", "key": "join", "split": "split", "mode": "first_n",
         "n": 2, "next": "end"}, end()))
    iid = world.submit("f", "alice")
    world.act(iid, "carol")
    world.act(iid, "bob")
    assert world.instance(iid)["outcome"] == "approved"
    assert world.tasks(iid, user="dave")[0]["status"] == "cancelled"


def test_delay_by_duration_and_until_a_date(world):
    world.publish_flow(flow_body("f", start(next="d"), {
        "type": "delay", "key": "d", "duration": {"hours": 2}, "next": "end"}, end()))
    iid = world.submit("f", "alice")
    world.clock.advance(hours=1)
    world.work()
    assert world.instance(iid)["status"] == "running"
    world.clock.advance(hours=1, minutes=1)
    world.work()
    assert world.instance(iid)["status"] == "completed"
    world.publish_flow(flow_body("g", start(next="d"), {
        "type": "delay", "key": "d", "until": "record.due_date", "next": "end"}, end()))
    iid = world.submit("g", "alice", world.contract(due_date="2026-02-01"))
    world.work()
    assert world.instance(iid)["status"] == "running"
    world.clock.advance(days=30)
    world.work()
    assert world.instance(iid)["status"] == "completed"


def test_actions_update_create_notify_and_start_flow(world):
    world.publish_flow(flow_body("child", start("manual", next="end"), end(), form=None))
    world.publish_flow(flow_body(
        "f", start(next="u"),
        {"type": "action", "key": "u", "next": "c", "action": {
            "kind": "update_record", "expressions": {"title": "record.title + ' ok'"}}},
        {"type": "action", "key": "c", "next": "n", "action": {
            "kind": "create_record", "form": "contract", "values": {"title": "copy"},
            "save_as": "copy"}},
        {"type": "action", "key": "n", "next": "s", "action": {
            "kind": "notify", "to": [{"kind": "submitter"}],
            "title": "{{ record.title }} done", "body": "copy {{ vars.copy }}"}},
        {"type": "action", "key": "s", "next": "end", "action": {
            "kind": "start_flow", "flow": "child", "same_record": False}},
        end()))
    rid = world.contract()
    iid = world.submit("f", "alice", rid)
    assert world.instance(iid)["outcome"] == "approved"
    assert world.record(rid)["title"] == "HT-1 ok"
    assert [n["title"] for n in world.notifications("alice", "notify")] == ["HT-1 ok done"]
    assert "flow_started" in world.history(iid)
    # The created record's id was kept for the nodes after (save_as), and stays.
    copy = world.instance(iid)["variables"]["copy"]
    assert world.record(copy)["title"] == "copy"
    assert world.notifications("alice", "notify")[0]["body"] == f"copy {copy}"


def test_create_record_may_find_instead_of_creating(world):
    world.publish_flow(flow_body("f", start(next="c"), {
        "type": "action", "key": "c", "next": "end", "action": {
            "kind": "create_record", "form": "contract", "save_as": "made",
            "values": {"amount": "1"}, "expressions": {"title": "concat(record.title, ' 副本')"},
            "unless_exists": {"title": "concat(record.title, ' 副本')"}}}, end()))
    rid = world.contract(title="HT-9")
    first = world.submit("f", "alice", rid)
    second = world.submit("f", "alice", rid)
    from tangram.engines.forms.query import ListQuery
    from tangram.engines.forms.records import list_records

    copies = world.run(lambda ctx: list_records(ctx, app=world.app, form="contract", query=(
        ListQuery(filter={"field": "title", "op": "eq", "value": "HT-9 副本"}))))["items"]
    assert len(copies) == 1
    made = [world.instance(i)["variables"]["made"] for i in (first, second)]
    assert made == [copies[0]["id"]] * 2
    assert "record_reused" in world.history(second)
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(flow_body("g", start(next="c"), {
            "type": "action", "key": "c", "next": "end", "action": {
                "kind": "create_record", "form": "contract",
                "unless_exists": {"titel": "record.title"}}}, end()))
    assert [e.path for e in refused.value.errors] == ["$.nodes[1].action.unless_exists.titel"]


def test_action_templates_are_checked_at_publish_and_run_in_the_sandbox(world):
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(flow_body("f", start(next="a"), {
            "type": "action", "key": "a", "next": "b", "action": {
                "kind": "notify", "to": [{"kind": "submitter"}],
                "title": "{{ record.title"}}, {
            "type": "action", "key": "b", "next": "end", "action": {
                "kind": "notify", "to": [{"kind": "submitter"}], "title": "x",
                "body": "{{ record.__class__.__mro__ }}"}}, end()))
    found = {(e.path, e.code): e.message for e in refused.value.errors}
    assert "syntax error" in found[("$.nodes[1].action.title", "template_invalid")]
    assert "'__class__'" in found[("$.nodes[2].action.body", "template_invalid")]
    # A key of a record or of vars wins over a dict method of the same name;
    # a missing value prints as nothing.
    world.publish_flow(flow_body("g", start(next="a"), {
        "type": "action", "key": "a", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "submitter"}],
            "title": "{{ vars.items }}|{{ vars.missing }}|{{ record.title }}"}}, end()))
    world.submit("g", "alice", items="三件")
    assert [n["title"] for n in world.notifications("alice", "notify")] == ["三件||HT-1"]


def test_assign_owner_round_robin(world):
    world.publish_flow(flow_body("f", start("record_created", next="o"), {
        "type": "action", "key": "o", "next": "end", "action": {
            "kind": "assign_owner", "users": [{"kind": "user", "users": ["bob", "carol"]}]}},
        end()))
    owners = [world.record(world.contract(by="alice"))["owner"] for _ in range(3)]
    assert owners == [str(world.users[n]) for n in ("bob", "carol", "bob")]


def test_assign_owner_among_department_members_with_a_fallback(world):
    # Contracts over 1,000 go to the east region (its teams below it count);
    # the others to a region no department is called yet: the fallback.
    from tangram.engines.directory import departments_table

    east = world.department("华东大区")
    team = world.department("华东一组", parent=east)
    with world.sessions.begin() as s:
        s.execute(departments_table.update().where(departments_table.c.id == east)
                  .values(external_id="east"))
    world.user("zoe", department=team)
    world.user("yan", department=east)
    world.publish_flow(flow_body("f", start("record_created", next="big"), {
        "type": "branch", "key": "big", "conditions": [
            {"when": "record.amount > 1000", "next": "east"}], "default": "west"}, {
        "type": "action", "key": "east", "next": "end", "action": {
            "kind": "assign_owner", "users": [
                {"kind": "department_members", "departments": ["east"]}]}}, {
        "type": "action", "key": "west", "next": "end", "action": {
            "kind": "assign_owner", "users": [
                {"kind": "department_members", "departments": ["west", str(team)],
                 "subtree": False}],
            "fallback": [{"kind": "user", "users": ["dave"]}]}}, end()))
    owners = [world.record(world.contract(by="alice", amount=a))["owner"]
              for a in ("5000", "5000", "10", "10")]
    # yan and zoe by username; "west" is unknown but the team is named by id.
    assert owners == [str(world.users[n]) for n in ("yan", "zoe", "zoe", "zoe")]
    world.publish_flow(flow_body("f", start("record_created", next="o"), {
        "type": "action", "key": "o", "next": "end", "action": {
            "kind": "assign_owner", "users": [
                {"kind": "department_members", "departments": ["west"]}],
            "fallback": [{"kind": "user", "users": ["dave"]}]}}, end()))
    assert world.record(world.contract(by="alice"))["owner"] == str(world.users["dave"])


def test_failing_action_retries_with_backoff_then_fails_then_admin_retries(world):
    world.publish_flow(flow_body("f", start(next="h"), {
        "type": "action", "key": "h", "next": "end", "action": {
            "kind": "http", "url": "http://127.0.0.1:9/{{ record.title }}", "retries": 1,
            "backoff_seconds": 60, "timeout_seconds": 1}}, end()))
    iid = world.submit("f", "alice")
    world.work()
    assert world.instance(iid)["status"] == "running"
    world.clock.advance(seconds=61)
    world.work()
    inst = world.instance(iid)
    assert inst["status"] == "failed" and "after 2 attempts" in inst["error"]
    world.run(lambda ctx: service.retry_instance(ctx, instance_id=iid),
              actor=world.actor_of("root"))
    assert world.instance(iid)["status"] == "running"


def test_expired_lease_cannot_complete_the_job(world):
    world.publish_flow(flow_body("f", start(next="h"), {
        "type": "action", "key": "h", "next": "end", "action": {
            "kind": "http", "url": "http://127.0.0.1:9/x"}}, end()))
    iid = world.submit("f", "alice")
    slow = Worker(session_factory(world.engine), world.clock, "slow", lease=timedelta(seconds=30))
    assert len(slow.claim_jobs()) == 1
    world.clock.advance(seconds=31)
    fast = Worker(session_factory(world.engine), world.clock, "fast")
    [job_id] = fast.claim_jobs()
    with pytest.raises(LeaseLost):
        slow.complete_job(job_id, result={"status": 200}, error=None)
    assert fast.complete_job(job_id, result={"status": 200}, error=None)
    assert world.instance(iid)["status"] == "completed"
    assert world.history(iid).count("action_done") == 1


# --- timeouts -----------------------------------------------------------------------------

def test_timeout_remind_then_escalate(world):
    simple(world, timeouts=[
        {"after": {"hours": 24}, "actions": [{"kind": "remind"}]},
        {"after": {"hours": 48}, "actions": [{"kind": "escalate", "to": [
            {"kind": "user", "users": ["erin"]}]}]}])
    iid = world.submit("f", "alice")
    world.clock.advance(hours=24, minutes=1)
    world.work()
    assert world.notifications("bob", "reminder")
    assert not world.tasks(iid, user="erin")
    world.clock.advance(hours=24)
    world.work()
    world.act(iid, "erin")
    assert world.instance(iid)["outcome"] == "approved"


def test_timeout_auto_decide_and_alternate_path(world):
    simple(world, timeouts=[{"after": {"hours": 1}, "actions": [
        {"kind": "auto_decide", "decision": "reject"}]}])
    iid = world.submit("f", "alice")
    world.clock.advance(hours=2)
    world.work()
    assert world.instance(iid)["outcome"] == "rejected"
    world.publish_flow(flow_body("g", start(next="a"), approval("a", "bob", timeouts=[
        {"after": {"hours": 1}, "actions": [{"kind": "take_path", "next": "late"}]}]),
        end(), end("late", "late")))
    iid = world.submit("g", "alice")
    world.clock.advance(hours=2)
    world.work()
    assert world.instance(iid)["outcome"] == "late"


def test_timeout_in_working_time_skips_nights_weekends_and_holidays(world):
    world.run(lambda ctx: service.publish_calendar(ctx, app=world.app, body={
        "key": "cn", "label": {"zh": "中国"}, "holidays": ["2026-01-06"],
        "workdays": ["2026-01-10"]}))
    simple(world, timeouts=[{"after": {"hours": 9}, "time": "working", "calendar": "cn",
                             "actions": [{"kind": "remind"}]}])
    # Monday 2026-01-05 09:00 in Shanghai: 8 working hours on Monday, Tuesday is a
    # holiday, the ninth hour is Wednesday 09:00-10:00.
    iid = world.submit("f", "alice")
    with world.sessions.begin() as s:
        due = s.execute(sa.select(timers_table.c.due_at)
                        .where(timers_table.c.instance_id == iid)).scalar_one()
    assert due.isoformat() == "2026-01-07T02:00:00+00:00"
    from datetime import UTC, datetime

    from tangram.engines.flows.calendar import add_time
    from tangram.metamodel.flows import BusinessCalendar, Duration

    cal = BusinessCalendar(key="cn", label={"zh": "中国"}, workdays=["2026-01-10"])
    friday_5pm = datetime(2026, 1, 9, 9, 0, tzinfo=UTC)
    # Saturday 10 January is a make-up working day; without it, Monday.
    assert add_time(friday_5pm, Duration(hours=2), time="working", calendar=cal,
                    timezone="Asia/Shanghai").isoformat() == "2026-01-10T02:00:00+00:00"
    plain = BusinessCalendar(key="p", label={"zh": "p"})
    assert add_time(friday_5pm, Duration(hours=2), time="working", calendar=plain,
                    timezone="Asia/Shanghai").isoformat() == "2026-01-12T02:00:00+00:00"
    assert add_time(friday_5pm, Duration(days=1), time="working", calendar=plain,
                    timezone="Asia/Shanghai").isoformat() == "2026-01-12T09:00:00+00:00"


def test_a_timer_whose_task_was_completed_does_nothing(world):
    simple(world, timeouts=[{"after": {"hours": 1}, "actions": [{"kind": "remind"}]}])
    iid = world.submit("f", "alice")
    worker = Worker(session_factory(world.engine), world.clock, "w")
    world.clock.advance(hours=2)
    [timer_id] = worker.claim_timers()
    world.act(iid, "bob")  # completes the node (and cancels the timer) meanwhile
    assert worker.fire_timer(timer_id) is False
    assert not world.notifications("bob", "reminder")


# --- triggers and versions ----------------------------------------------------------------

def test_an_update_trigger_can_watch_the_owner(world):
    # owner is a system field, but the one that changes (transfers): a flow
    # may start when it does, and only then.
    world.publish_flow(flow_body("on_owner", start("record_updated", next="end",
                                                   fields=["owner"]), end()))
    rid = world.contract(amount="500")
    from tangram.engines.flows.tables import instances_table
    from tangram.engines.forms.ownership import transfer_owner
    from tangram.engines.forms.records import update_record

    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract", record_id=rid,
                                        changes={"title": "x"}, expected_version=None))
    world.run(lambda ctx: transfer_owner(ctx, app=world.app, form="contract",
                                         record_ids=[rid], new_owner=world.users["bob"]))
    with world.sessions.begin() as s:
        rows = s.execute(sa.select(instances_table.c.flow)).scalars().all()
    assert rows == ["on_owner"]


def test_a_write_returns_what_its_flows_made_of_the_record(world):
    # A flow started by a write changes the same record in the same
    # transaction: the write's answer is the stored record, and its version
    # works for the next write (no 409).
    world.publish_flow(flow_body("stamp", start("record_created", next="u"), {
        "type": "action", "key": "u", "next": "end", "action": {
            "kind": "update_record", "values": {"status": "approved"}}}, end()))
    world.publish_flow(flow_body("retitle", start("record_updated", next="u",
                                                  fields=["amount", "owner"]), {
        "type": "action", "key": "u", "next": "end", "action": {
            "kind": "update_record", "expressions": {"title": "concat(record.title, \"!\")"}}},
        end()))
    from tangram.engines.forms.ownership import transfer_owner
    from tangram.engines.forms.records import create_record, get_record, update_record

    created = world.run(lambda ctx: create_record(ctx, app=world.app, form="contract",
                                                  data={"title": "t", "amount": "10"}))
    stored = world.run(lambda ctx: get_record(ctx, app=world.app, form="contract",
                                              record_id=created["id"]))
    assert created["status"] == "approved" and created["version"] == stored["version"] == 2
    updated = world.run(lambda ctx: update_record(
        ctx, app=world.app, form="contract", record_id=created["id"],
        changes={"amount": "20"}, expected_version=created["version"]))
    assert updated["title"] == "t!" and updated["version"] == 4
    [moved] = world.run(lambda ctx: transfer_owner(ctx, app=world.app, form="contract",
                                                   record_ids=[created["id"]],
                                                   new_owner=world.users["bob"]))
    assert moved["version"] == 6
    again = world.run(lambda ctx: update_record(
        ctx, app=world.app, form="contract", record_id=created["id"],
        changes={"status": "draft"}, expected_version=moved["version"]))
    assert again["title"] == "t!!" and again["version"] == 7


def test_record_triggers_start_in_the_same_transaction(world):
    world.publish_flow(flow_body("on_create", start("record_created", next="end",
                                                    condition="record.amount > 100"), end()))
    world.publish_flow(flow_body("on_update", start("record_updated", next="end",
                                                    fields=["status"]), end()))
    rid = world.contract(amount="500")
    world.contract(amount="50")
    from tangram.engines.forms.records import update_record

    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract", record_id=rid,
                                        changes={"title": "x"}, expected_version=None))
    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract", record_id=rid,
                                        changes={"status": "approved"}, expected_version=None))
    from tangram.engines.flows.tables import instances_table

    with world.sessions.begin() as s:
        rows = s.execute(sa.select(instances_table.c.flow)).scalars().all()
    assert sorted(rows) == ["on_create", "on_update"]

    def failing(ctx):
        from tangram.engines.forms.records import create_record

        create_record(ctx, app=world.app, form="contract", data={"title": "t",
                                                                "amount": "900"})
        raise RuntimeError("the request failed after the write")

    with pytest.raises(RuntimeError):
        world.run(failing)
    with world.sessions.begin() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(instances_table)).scalar() == 2


def test_record_triggers_may_start_only_for_some_sources(world):
    # People's changes start "live"; rows loaded as history (a package, an
    # import) do not; "any" (no sources) starts for all of them.
    world.publish_flow(flow_body("live", start("record_created", next="end",
                                               sources=["api", "public_form"]), end()))
    world.publish_flow(flow_body("any", start("record_created", next="end"), end()))
    world.publish_flow(flow_body("edits", start("record_updated", next="end",
                                                sources=["api"]), end()))
    from tangram.engines.flows.tables import instances_table
    from tangram.engines.forms.records import bulk_create, update_record

    def started() -> list[str]:
        with world.sessions.begin() as s:
            return sorted(s.execute(sa.select(instances_table.c.flow)).scalars().all())

    rid = world.contract(amount="5")
    assert started() == ["any", "live"]
    world.run(lambda ctx: bulk_create(ctx, app=world.app, form="contract", source="package",
                                      rows=[{"title": "old", "amount": "1"}]))
    world.run(lambda ctx: bulk_create(ctx, app=world.app, form="contract", source="import",
                                      rows=[{"title": "older", "amount": "2"}]))
    assert started() == ["any", "any", "any", "live"]
    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract", record_id=rid,
                                        changes={"title": "x"}, expected_version=None,
                                        source="import"))
    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract", record_id=rid,
                                        changes={"title": "y"}, expected_version=None))
    assert started() == ["any", "any", "any", "edits", "live"]


def test_a_trigger_names_only_known_sources(world):
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(flow_body("bad", start("record_created", next="end",
                                                  sources=["api", "flow"]), end()))
    assert [e.path for e in refused.value.errors] == ["$.nodes[0].trigger.sources[1]"]


def test_schedule_runs_once_after_missed_ticks(world):
    world.publish_flow(flow_body("tick", start("schedule", next="end", cron="0 9 * * *"),
                                 end(), form=None))
    world.publish_flow(flow_body("skip", start("schedule", next="end", cron="0 9 * * *",
                                               missed="skip"), end(), form=None))
    world.clock.advance(days=3)  # three ticks missed
    world.work()
    from tangram.engines.flows.tables import instances_table

    with world.sessions.begin() as s:
        flows = s.execute(sa.select(instances_table.c.flow)).scalars().all()
    assert flows == ["tick"]
    world.clock.advance(days=1)  # on time: both run
    world.work()
    with world.sessions.begin() as s:
        flows = s.execute(sa.select(instances_table.c.flow)).scalars().all()
    assert sorted(flows) == ["skip", "tick", "tick"]


def test_date_relative_trigger_three_days_before(world):
    world.publish_flow(flow_body("remind", start("date_relative", next="end", field="due_date",
                                                 offset_days=-3), end()))
    hit = world.contract(due_date="2026-01-09")
    world.contract(due_date="2026-01-20")
    world.clock.advance(days=1)  # Tuesday 09:00 in Shanghai: 3 days before Friday
    world.work()
    world.work()
    from tangram.engines.flows.tables import instances_table

    with world.sessions.begin() as s:
        records = s.execute(sa.select(instances_table.c.record_id)).scalars().all()
    assert [str(r) for r in records] == [hit]


def test_date_relative_days_missed_while_no_worker_ran(world):
    # Three days before due_date. The worker is down from Tuesday to Thursday:
    # on recovery "run_once" starts once for each record a missed day matched;
    # "skip" only for today's. Nothing starts twice afterwards.
    world.publish_flow(flow_body("catch", start("date_relative", next="end", field="due_date",
                                                offset_days=-3), end()))
    world.publish_flow(flow_body("skip", start("date_relative", next="end", field="due_date",
                                               offset_days=-3, missed="skip"), end()))
    due = {d: world.contract(due_date=f"2026-01-{d:02d}") for d in (9, 10, 11, 12, 20)}
    from tangram.engines.flows.tables import instances_table

    def started() -> dict[str, list[str]]:
        with world.sessions.begin() as s:
            rows = s.execute(sa.select(instances_table.c.flow, instances_table.c.record_id,
                                       instances_table.c.variables)).all()
        out: dict[str, list[str]] = {}
        for flow, rid, variables in rows:
            day = next(d for d, r in due.items() if r == str(rid))
            out.setdefault(flow, []).append(f"{day}{'*' if variables['late'] else ''}")
        return {k: sorted(v) for k, v in out.items()}

    world.clock.advance(days=3)  # Thursday 01-08 09:00; Tuesday's and Wednesday's missed
    world.work()
    world.work()
    # * marks a late start (its day was missed).
    assert started() == {"catch": ["10*", "11", "9*"], "skip": ["11"]}
    world.clock.advance(days=1)  # Friday, on time
    world.work()
    world.work()
    assert started() == {"catch": ["10*", "11", "12", "9*"], "skip": ["11", "12"]}


def test_running_instances_stay_on_their_version(world):
    simple(world)
    old = world.submit("f", "alice")
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "carol", next="b"),
                                 approval("b", "dave"), end()))
    new = world.submit("f", "alice")
    world.act(old, "bob")
    assert world.instance(old)["outcome"] == "approved"
    assert world.instance(old)["version"] == 1 and world.instance(new)["version"] == 2
    world.act(new, "carol")
    world.act(new, "dave")
    assert world.instance(new)["outcome"] == "approved"


def test_instance_view_shows_position_and_history(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob", next="b"),
                                 approval("b", "carol"), end()))
    iid = world.submit("f", "alice")
    world.act(iid, "bob", comment="fine")
    view = world.run(lambda ctx: views.instance_view(ctx, instance_id=iid),
                     actor=world.actor_of("alice"))
    assert view["current"] == ["b"]
    assert view["my_task"] is None  # alice submitted; the open task is carol's
    as_carol = world.run(lambda ctx: views.instance_view(ctx, instance_id=iid),
                         actor=world.actor_of("carol"))
    carols = world.run(lambda ctx: tasks.my_open_task(ctx, instance_id=iid),
                       actor=world.actor_of("carol"))
    assert as_carol["my_task"] == str(carols) and carols is not None
    assert world.run(lambda ctx: tasks.my_open_task(ctx, instance_id=iid),
                     actor=world.actor_of("bob")) is None  # bob's task is decided
    states = {n["key"]: n["state"] for n in view["graph"]["nodes"]}
    assert states == {"start": "visited", "a": "visited", "b": "active", "end": "pending"}
    assert [h["comment"] for h in view["history"] if h["action"] == "approve"] == ["fine"]
    todo = world.run(lambda ctx: views.inbox(ctx, box="todo"), actor=world.actor_of("carol"))
    assert [t["node"] for t in todo] == ["b"]
    done = world.run(lambda ctx: views.inbox(ctx, box="done"), actor=world.actor_of("bob"))
    assert len(done) == 1
    mine = world.run(lambda ctx: views.inbox(ctx, box="submitted"), actor=world.actor_of("alice"))
    assert [m["id"] for m in mine] == [str(iid)]


def test_jobs_table_is_empty_after_inline_actions(world):
    world.publish_flow(flow_body("f", start(next="u"), {
        "type": "action", "key": "u", "next": "end", "action": {
            "kind": "update_record", "values": {"status": "approved"}}}, end()))
    world.submit("f", "alice")
    with world.sessions.begin() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(jobs_table)).scalar() == 0


def test_publishing_lists_every_graph_problem_by_node(world):
    body = flow_body(
        "bad", start(next="br"),
        {"type": "branch", "key": "br", "conditions": [
            {"when": "record.amount >", "next": "split"},
            {"when": "record.nope == 1", "next": "loop"}]},
        {"type": "parallel_split", "key": "split", "branches": ["a", "b"]},
        approval("a", "bob", next="join"), approval("b", "bob", next="end"),
        {"type": "parallel_join", "key": "join", "split": "split", "next": "end"},
        approval("loop", "bob", next="loop"),
        approval("orphan", assignees=[{"kind": "role", "role": "ghost"}]), end())
    with pytest.raises(DefinitionInvalid) as refused:
        world.publish_flow(body)
    found = {(e.details.get("node"), e.code) for e in refused.value.errors}
    assert found >= {
        ("br", "expression_invalid"), ("br", "unknown_field"), ("br", "branch_default"),
        ("join", "join_branch"), ("loop", "no_end_path"), ("orphan", "unreachable"),
        ("orphan", "unknown_role")}
    assert all(e.path.startswith("$.nodes[") for e in refused.value.errors)
    with world.sessions.begin() as s:
        from tangram.metamodel import storage

        assert storage.latest_body(s, app=world.app, kind="flow", key="bad") is None
