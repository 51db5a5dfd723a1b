"""Approval nodes: tasks for the assignees, completion by mode (any-one 或签,
all 会签, in sequence), added signers (加签), and timeout stages.

Completion is decided inside the step that changed a task, with the
instance row locked, so "all approved" is seen by exactly one step however
close together the last approvers act.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tangram.db import new_id
from tangram.engines.flows import assignees as asg
from tangram.engines.flows.registry import NodeTypeSpec, register_node
from tangram.engines.flows.runtime import Execution, FlowError, Run
from tangram.engines.flows.tables import tasks_table, timers_table
from tangram.metamodel import flows as fl


def open_tasks(run: Run, execution: Execution, statuses: tuple[str, ...] = ("open",)
               ) -> list[dict[str, Any]]:
    known = run.live_tasks(execution)
    if known is not None and set(statuses) <= {"open", "queued"}:
        return sorted((t for t in known if t["kind"] == "approve" and t["status"] in statuses),
                      key=lambda t: (t["position"], t["created_at"]))
    t = tasks_table
    rows = run.execute(
        sa.select(t).where(t.c.execution_id == execution["id"], t.c.status.in_(statuses),
                           t.c.kind == "approve").order_by(t.c.position, t.c.created_at)
    ).mappings().all()
    return [dict(r) for r in rows]


def add_tasks(run: Run, execution: Execution, user_ids: list[uuid.UUID], *,
              status: str = "open", kind: str = "approve", start_position: int = 0,
              waits_for: uuid.UUID | None = None) -> list[uuid.UUID]:
    now = run.ctx.now()
    due = execution["data"].get("due_at")
    rows = [{"id": new_id(), "instance_id": run.id, "execution_id": execution["id"],
             "node": execution["node"], "kind": kind, "assignee_id": u,
             "status": status if kind == "approve" else "cc",
             "position": start_position + i, "waits_for": waits_for,
             "due_at": _dt(due), "decision": None, "comment": None, "acted_by": None,
             "acted_at": None, "read_at": None, "created_at": now, "version": 1}
            for i, u in enumerate(user_ids)]
    if rows:
        run.track_tasks(execution, rows)
        opened = [r for r in rows if r["status"] == "open"]
        for r in opened:
            run.notify([r["assignee_id"]], kind="task", task_id=r["id"],
                       title=run.say("flow_task", execution["node"]),
                       body=run.say("flow_task_body"))
        for r in rows if kind == "cc" else ():
            # Each reader's notice points at their own CC task.
            run.notify([r["assignee_id"]], kind="cc", task_id=r["id"], title=run.say("flow_cc"),
                       body=run.say("flow_cc_body", execution["node"]))
    return [r["id"] for r in rows]


def _dt(value: Any) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _enter_approval(run: Run, node: fl.ApprovalNode, execution: Execution) -> None:
    users = run.resolve(node.assignees)
    if not users:
        reason = asg.empty_reason(node.assignees, run.scope_for(node.assignees))
        if node.on_empty == "auto_approve":
            run.history("auto_approved", node=node.key, reason=reason)
            run.leave(execution, [node.next], decision="approved")
            return
        if node.on_empty == "fail":
            raise FlowError(f"the assignee rules found nobody ({reason})")
        users = asg.admins(run.ctx.session)
        if not users:
            raise FlowError(f"the assignee rules found nobody ({reason}) and there is no "
                            "administrator")
        run.history("assigned_to_admin", node=node.key, reason=reason)
    now = run.ctx.now()
    stages = []
    for i, stage in enumerate(node.timeouts):
        due = run.due(now, stage.after, stage.time, stage.calendar)
        stages.append(due)
        run.add_timer(execution, kind="timeout", due_at=due, payload={"stage": i})
    if stages:
        run.update_execution(execution, data={**execution["data"],
                                              "due_at": min(stages).isoformat()})
    add_tasks(run, execution, users[:1] if node.mode == "sequence" else users)
    if node.mode == "sequence" and len(users) > 1:
        add_tasks(run, execution, users[1:], status="queued", start_position=1)
    if node.cc:
        add_tasks(run, execution, run.resolve(node.cc), kind="cc")
    run.history("tasks_created", node=node.key, assignees=users, mode=node.mode)


register_node(NodeTypeSpec(
    "approval", {"zh": "审批", "en": "Approval"}, fl.ApprovalNode,
    lambda n: [n.next] + ([n.on_reject] if n.on_reject else [])
    + [a.next for s in n.timeouts for a in s.actions if isinstance(a, fl.TakePathAction)],
    _enter_approval, waits=True, holds=("tasks", "timers"), timed=lambda n: bool(n.timeouts),
    doc="Tasks for the assignees; completes by mode any-one, all or in sequence."))


# --- completion ------------------------------------------------------------------------

_OPEN_TASKS = (tasks_table.update().where(tasks_table.c.id.in_(sa.bindparam("ids",
                                                                             expanding=True)))
               .values(status="open", version=tasks_table.c.version + 1))


def _open(run: Run, execution: Execution, tasks: list[dict[str, Any]]) -> None:
    """Queued tasks whose turn came."""
    run.execute(_OPEN_TASKS, {"ids": [t["id"] for t in tasks]})
    for task in tasks:  # the run's copies (when it knows them) follow
        task["status"] = "open"
        task["version"] += 1


def after_approve(run: Run, execution: Execution, task: Mapping[str, Any]) -> None:
    """A task was approved: open what waited for it, else complete by mode."""
    node: fl.ApprovalNode = run.node(execution["node"])
    pending = open_tasks(run, execution, ("open", "queued"))
    waiting = [r for r in pending if r["status"] == "queued" and r["waits_for"] == task["id"]]
    if waiting:
        _open(run, execution, waiting)
        return
    if node.mode == "any":
        complete(run, execution, "approved")
        return
    if node.mode == "all":
        if not pending:
            complete(run, execution, "approved")
        return
    if any(r["status"] == "open" for r in pending):
        return
    queued = [r for r in pending if r["waits_for"] is None]
    if queued:
        _open(run, execution, queued[:1])
        run.notify([queued[0]["assignee_id"]], kind="task", task_id=queued[0]["id"],
                   title=run.say("flow_task", execution["node"]),
                   body=run.say("flow_task_body"))
        return
    complete(run, execution, "approved")


def complete(run: Run, execution: Execution, decision: str) -> None:
    node: fl.ApprovalNode = run.node(execution["node"])
    run.history("node_" + decision, node=node.key)
    if decision == "approved":
        run.leave(execution, [node.next], decision="approved")
    elif node.on_reject:
        run.leave(execution, [node.on_reject], decision="rejected")
    else:
        run.update_execution(execution, status="completed", decision="rejected",
                             left_at=run.ctx.now())
        run.close_waits(execution)
        run.finish("rejected", node=node.key)


def return_to(run: Run, execution: Execution, target: str) -> None:
    run.update_execution(execution, status="completed", decision="returned",
                         left_at=run.ctx.now())
    run.close_waits(execution)
    run.enter(target, execution["scope_id"])


# --- timeouts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeoutActionSpec:
    kind: str
    label: dict[str, str]
    model: type[Any]
    apply: Callable[[Run, Execution, Any], None]


def _remind(run: Run, execution: Execution, action: fl.RemindAction) -> None:
    """Remind the assignees of open tasks. ``message`` is a template (one, or
    one per language) rendered like a notify action's body: each reader gets
    their language, without the record fields their roles hide."""
    from tangram.engines.flows.actions import by_hidden_fields, render_text

    users = [t["assignee_id"] for t in open_tasks(run, execution)]
    title = run.say("flow_reminder")
    default = run.say("flow_reminder_body", execution["node"])
    if action.message is None:
        run.notify(users, kind="reminder", title=title, body=default)
    else:
        for hidden, readers in by_hidden_fields(run, (action.message,), users).items():
            body: Any
            try:
                body = render_text(action.message, run, hidden)
            except FlowError as exc:
                # A reminder is not worth failing the request for: the
                # platform's text goes out, and the history says why.
                run.history("reminder_message_failed", node=execution["node"],
                            error=exc.message)
                body = default
            run.notify(readers, kind="reminder", title=title, body=body)
    run.history("reminded", node=execution["node"], users=users)


def _escalate(run: Run, execution: Execution, action: fl.EscalateAction) -> None:
    targets = run.resolve(action.to)
    current = open_tasks(run, execution)
    if not targets:
        run.history("escalation_found_nobody", node=execution["node"])
        return
    if action.replace:
        t = tasks_table
        run.change(t.update().where(t.c.id.in_([c["id"] for c in current]))
                                .values(status="cancelled", version=t.c.version + 1))
    have = {c["assignee_id"] for c in current} if not action.replace else set()
    new = [u for u in targets if u not in have]
    add_tasks(run, execution, new, start_position=len(current) + 1)
    run.history("escalated", node=execution["node"], to=new, replace=action.replace)


def _auto_decide(run: Run, execution: Execution, action: fl.AutoDecideAction) -> None:
    """Decide the node, not the tasks: nobody approved or rejected, so every
    waiting task — open (the original assignees', an escalation's) or queued
    (never anyone's turn) — is cancelled, with a comment saying why; the
    decision is the node's and the history's (``auto_decided``)."""
    t = tasks_table
    waiting = open_tasks(run, execution, ("open", "queued"))
    if waiting:
        run.change(t.update().where(t.c.id.in_([task["id"] for task in waiting])).values(
            status="cancelled", comment=f"the step was decided automatically after the "
            f"timeout ({action.decision})", version=t.c.version + 1))
    run.history("auto_decided", node=execution["node"], decision=action.decision)
    complete(run, execution, "approved" if action.decision == "approve" else "rejected")


def _take_path(run: Run, execution: Execution, action: fl.TakePathAction) -> None:
    run.history("timeout_path", node=execution["node"], next=action.next)
    run.leave(execution, [action.next], decision="timeout")


TIMEOUT_ACTIONS: dict[str, TimeoutActionSpec] = {spec.kind: spec for spec in (
    TimeoutActionSpec("remind", {"zh": "提醒", "en": "Remind"}, fl.RemindAction, _remind),
    TimeoutActionSpec("escalate", {"zh": "升级", "en": "Escalate"}, fl.EscalateAction,
                      _escalate),
    TimeoutActionSpec("auto_decide", {"zh": "自动审批", "en": "Decide automatically"},
                      fl.AutoDecideAction, _auto_decide),
    TimeoutActionSpec("take_path", {"zh": "转到其他路径", "en": "Take another path"},
                      fl.TakePathAction, _take_path),
)}


_PENDING_STAGES = (sa.select(sa.func.min(timers_table.c.due_at))
                   .where(timers_table.c.execution_id == sa.bindparam("execution"),
                          timers_table.c.kind == "timeout",
                          timers_table.c.status == "pending"))


def fire_timeout(run: Run, execution: Execution, payload: Mapping[str, Any]) -> None:
    node: fl.ApprovalNode = run.node(execution["node"])
    stage = node.timeouts[int(payload["stage"])]
    run.history("timeout", node=node.key, stage=int(payload["stage"]))
    # The tasks are due by the next stage still to come (this stage's timer
    # is fired already); after the last one, tasks keep their (past) due
    # time and tasks made now (an escalation's) have none.
    next_due = _dt(run.execute(_PENDING_STAGES, {"execution": execution["id"]}).scalar())
    run.update_execution(execution, data={
        **execution["data"], "due_at": next_due.isoformat() if next_due else None})
    for action in stage.actions:
        if execution["status"] != "active" or not run.running:
            break
        TIMEOUT_ACTIONS[action.kind].apply(run, execution, action)
    if next_due is not None and execution["status"] == "active" and run.running:
        _set_due(run, execution, next_due)


def _set_due(run: Run, execution: Execution, due: Any) -> None:
    """Move the due time of the node's waiting tasks."""
    t = tasks_table
    waiting = [task for task in open_tasks(run, execution, ("open", "queued"))
               if task["due_at"] != due]
    if not waiting:
        return
    run.execute(t.update().where(t.c.id.in_([task["id"] for task in waiting]))
                .values(due_at=due))
    for task in waiting:  # the run's copies (when it knows them) follow
        task["due_at"] = due
