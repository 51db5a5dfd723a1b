"""What people do to tasks and instances: one entry per action in
:data:`TASK_ACTIONS` (who may use it, what it does).

Two people acting on one task at once: the step locks the instance row,
then changes the task with ``UPDATE … WHERE status = 'open' AND version =
:v``; the loser finds the task no longer open (or at another version) and
gets :class:`~tangram.errors.Conflict` (409) naming what happened.

    act_on_task(ctx, task_id=t, action="approve", params=ActionParams(comment="ok"))
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db.prepared import Prepared
from tangram.engines.access import AllowAll
from tangram.engines.context import EngineContext
from tangram.engines.flows import approvals
from tangram.engines.flows.assignees import lookup_users
from tangram.engines.flows.runtime import (
    LIVE_BY_ID,
    LOCK,
    LOCK_BY_ID,
    Execution,
    Run,
    live_state,
    open_run,
)
from tangram.engines.flows.tables import executions_table, instances_table, tasks_table
from tangram.engines.flows.taskview import task_fields
from tangram.errors import Conflict, ErrorItem, NotFound, PermissionDenied, ValidationFailed
from tangram.i18n import Msg, status_word
from tangram.metamodel import flows as fl
from tangram.metamodel.common import localize


@dataclass
class ActionParams:
    comment: str | None = None
    version: int | None = None  # the task version the client read; stale → 409
    users: list[str] = field(default_factory=list)  # transfer / add_signer / cc targets
    node: str | None = None  # return target
    position: str = "after"  # add_signer: before | after
    values: dict[str, Any] = field(default_factory=dict)  # record edits at the node


@dataclass(frozen=True)
class TaskActionSpec:
    kind: str
    label: dict[str, str]
    doc: str
    by: str  # assignee (of an open task) | submitter | involved
    apply: Callable[[Run, Execution | None, dict[str, Any] | None, ActionParams], None]
    closes: str | None = None  # the status the acted task ends in (conditional update)


def _close_statement(*where: sa.ColumnElement[bool],
                     task: sa.ColumnElement[Any] = sa.bindparam("_id")) -> Prepared:
    t = tasks_table
    return Prepared(
        t.update().where(t.c.id == task, t.c.status == "open", *where)
        .values(status=sa.bindparam("status"), decision=sa.bindparam("decision"),
                comment=sa.bindparam("comment"), acted_by=sa.bindparam("acted_by"),
                acted_at=sa.bindparam("acted_at"), version=t.c.version + 1)
        .returning(t.c.id))


_CLOSE = _close_statement(tasks_table.c.version == sa.bindparam("_version"))
# Sent with the instance lock by act_on_task, before the task is read: it
# closes the task only if it is the actor's open approval task (at the
# version the client read, if it says); the checks that follow decide
# whether the step goes on, and a refused step rolls the close back.
_CLOSE_MINE = _close_statement(
    tasks_table.c.assignee_id == sa.bindparam("_actor"), tasks_table.c.kind == "approve",
    sa.or_(sa.bindparam("_version", type_=sa.Integer).is_(None),
           tasks_table.c.version == sa.bindparam("_version", type_=sa.Integer)))
# The caller's open approval task in an instance, oldest first (what
# my_open_task finds), for acting on "my task" in a request without its id.
_MY_OPEN_TASK_SQL = (
    sa.select(tasks_table.c.id).where(
        tasks_table.c.assignee_id == sa.bindparam("_actor"),
        tasks_table.c.status == "open", tasks_table.c.kind == "approve",
        tasks_table.c.instance_id == sa.bindparam("instance_id"))
    .order_by(tasks_table.c.created_at, tasks_table.c.id).limit(1))
_CLOSE_MY_OLDEST = _close_statement(
    tasks_table.c.assignee_id == sa.bindparam("_actor"), tasks_table.c.kind == "approve",
    task=_MY_OPEN_TASK_SQL.scalar_subquery())


def _close(run: Run, task: dict[str, Any], status: str, params: ActionParams,
           decision: str | None = None) -> None:
    # The instance lock already serializes actions on this task; the
    # condition on status and version is the second line of defence.
    values = {"status": status, "decision": decision or status, "comment": params.comment,
              "acted_by": run.ctx.actor.id, "acted_at": run.ctx.now()}
    if run.preclosed is not None and run.preclosed[0] == task["id"]:
        # Closed with the lock (act_on_task), with these values.
        _, values = run.preclosed
        changed = 1
        run.preclosed = None
    else:
        run.flush()
        changed = _CLOSE.execute(run.ctx.session,
                                 {"_id": task["id"], "_version": task["version"], **values})
    if changed != 1:
        raise Conflict(Msg("task_race"))
    task.update(values, version=task["version"] + 1)


def _targets(run: Run, params: ActionParams, what: str, *, one: bool = False
             ) -> list[uuid.UUID]:
    users = lookup_users(run.ctx.session, params.users)
    if not users or (one and len(users) != 1):
        raise ValidationFailed([ErrorItem.localized("users", Msg(
            "task_users_one" if one else "task_users_many", action=_action_name(what),
            users=params.users), field="users")])
    return users


def _action_name(kind: str) -> dict[str, str]:
    """A task action as messages name it: its key in English, its label in Chinese."""
    return {"en": kind, "zh": TASK_ACTIONS[kind].label["zh"]}


def _node_name(node: fl.NodeBase) -> dict[str, str]:
    """A node as messages name it: its key in English, its label in Chinese."""
    return {"en": node.key, "zh": localize(node.label, "zh") or node.key}


def _check_deciders(run: Run, users: list[uuid.UUID]) -> None:
    """The users a transfer or an added signer makes decide at this node:
    none of them the submitter (segregation of duties: nobody decides their
    own request), and each allowed to approve the record (below)."""
    for user in users:
        if user == run.inst["started_by"]:
            problem = Msg("decider_is_submitter", user=_user_name(run, user))
        else:
            refusal = _approve_refusal(run, user)
            if refusal is None:
                continue
            problem = Msg("decider_refused", user=_user_name(run, user), reason=refusal)
        raise ValidationFailed([ErrorItem.localized("users", problem, field="users",
                                                    details={"user": str(user)})])


def _approve_refusal(run: Run, user_id: uuid.UUID) -> Msg | None:
    """Why ``user_id`` may not approve the flow's record, or None: a role of
    theirs must grant ``approve`` on the flow's form with the record in that
    grant's scope — what ``submit`` is to submitting. A flow without a form
    needs no such right."""
    from tangram.engines.forms.records import get_record
    from tangram.engines.notify.webhooks import act_as_owner

    app, form, record_id = run.inst["app"], run.inst["form"], run.inst["record_id"]
    if not form:
        return None
    actor, policy = act_as_owner(run.ctx, user_id)
    try:
        policy.check_form_action(actor, app, form, "approve")
    except PermissionDenied:
        return Msg("approve_no_role", form=form)
    if record_id is None:
        return None
    record = run.record()
    as_user = dataclasses.replace(run.ctx, actor=actor, policy=policy)
    try:
        get_record(as_user, app=app, form=form, record_id=record_id, also="approve",
                   deleted=record is not None and record.get("deleted_at") is not None)
    except (PermissionDenied, NotFound):
        return Msg("approve_out_of_scope")
    return None


def _edit_record(run: Run, execution: Execution, params: ActionParams) -> None:
    if not params.values:
        return
    node: fl.ApprovalNode = run.node(execution["node"])
    # The node's editable fields, less those the approver's roles hide or make read-only.
    task_fields(run.ctx, app=run.inst["app"], form=run.inst["form"],
                node=node).check_edit(params.values, node.key)
    from tangram.engines.forms.records import update_record

    # The node grants these edits, whatever the approver's own form rights.
    ctx = EngineContext(session=run.ctx.session, actor=run.ctx.actor, clock=run.ctx.clock,
                        language=run.ctx.language, timezone=run.ctx.timezone,
                        policy=AllowAll())
    update_record(ctx, app=run.inst["app"], form=run.inst["form"],
                  record_id=run.inst["record_id"], changes=params.values,
                  expected_version=None, source="flow", allow_read_only=True)
    run.forget_record()


def _approve(run: Run, execution: Execution | None, task: dict[str, Any] | None,
             params: ActionParams) -> None:
    assert execution is not None and task is not None
    _edit_record(run, execution, params)
    _close(run, task, "approved", params, "approve")
    run.history("approve", node=task["node"], comment=params.comment)
    approvals.after_approve(run, execution, task)


def _reject(run: Run, execution: Execution | None, task: dict[str, Any] | None,
            params: ActionParams) -> None:
    assert execution is not None and task is not None
    _close(run, task, "rejected", params, "reject")
    run.history("reject", node=task["node"], comment=params.comment)
    approvals.complete(run, execution, "rejected")


def _return(run: Run, execution: Execution | None, task: dict[str, Any] | None,
            params: ActionParams) -> None:
    assert execution is not None and task is not None
    target = params.node
    allowed = return_targets(run.ctx.session, run.flow, run.id, execution["node"])
    if target not in allowed:
        if not allowed:
            problem = Msg("return_nowhere")
        elif target is None:
            problem = Msg("return_which", allowed=", ".join(allowed))
        else:
            problem = Msg("return_not_earlier", node=target, allowed=", ".join(allowed))
        raise ValidationFailed([ErrorItem.localized("node", problem, field="node")])
    _close(run, task, "returned", params, "return")
    run.history("return", node=task["node"], comment=params.comment, to=target)
    approvals.return_to(run, execution, cast(str, target))


def return_targets(session: Session, flow: fl.Flow, instance_id: uuid.UUID, node_key: str
                   ) -> list[str]:
    """The earlier approvals a task at ``node_key`` may be returned to: those
    that lead here and that this request went through (a small contract that
    skipped risk control is not returned to it)."""
    earlier = returnable_nodes(flow, node_key)
    if not earlier:
        return []
    e = executions_table
    passed = set(session.execute(sa.select(e.c.node).where(
        e.c.instance_id == instance_id, e.c.node.in_(earlier),
        e.c.status == "completed")).scalars())
    return [k for k in earlier if k in passed]


def returnable_nodes(flow: fl.Flow, node_key: str) -> list[str]:
    """Approval nodes from which ``node_key`` can be reached (earlier steps)."""
    from tangram.engines.flows.registry import successors

    preds: dict[str, set[str]] = {}
    for n in flow.nodes:
        for s in successors(n):
            preds.setdefault(s, set()).add(n.key)
    seen: set[str] = set()
    stack = [node_key]
    while stack:
        for p in preds.get(stack.pop(), ()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return [n.key for n in flow.nodes
            if n.key in seen and n.key != node_key and n.type == "approval"]


def _transfer(run: Run, execution: Execution | None, task: dict[str, Any] | None,
              params: ActionParams) -> None:
    assert execution is not None and task is not None
    to = _targets(run, params, "transfer", one=True)
    if to[0] == task["assignee_id"]:
        raise ValidationFailed([ErrorItem.localized("users", Msg("transfer_to_self"),
                                                    field="users")])
    others = approvals.open_tasks(run, execution, ("open", "queued"))
    if any(t["assignee_id"] == to[0] and t["id"] != task["id"] for t in others):
        raise ValidationFailed([ErrorItem.localized("users", Msg(
            "transfer_has_task", user=_user_name(run, to[0]),
            node=_node_name(run.node(task["node"]))), field="users")])
    _check_deciders(run, to)
    _close(run, task, "transferred", params, "transfer")
    new = approvals.add_tasks(run, execution, to, start_position=task["position"],
                              waits_for=task["waits_for"])
    # Whatever waited for the old task now waits for the new one.
    t = tasks_table
    run.change(t.update().where(t.c.waits_for == task["id"], t.c.status == "queued")
               .values(waits_for=new[0]))
    run.history("transfer", node=task["node"], comment=params.comment, to=to)


def _user_name(run: Run, user_id: uuid.UUID) -> dict[str, str]:
    """A user as messages name them (a localized map, see ``i18n.Msg``)."""
    from tangram.engines.directory import users_table

    u = users_table
    name = run.ctx.session.execute(sa.select(u.c.username).where(u.c.id == user_id)).scalar()
    return ({"en": repr(name), "zh": f"用户“{name}”"} if name
            else {"en": f"user {user_id}", "zh": f"用户 {user_id} "})


def _add_signer(run: Run, execution: Execution | None, task: dict[str, Any] | None,
                params: ActionParams) -> None:
    assert execution is not None and task is not None
    users = _targets(run, params, "add_signer")
    _check_deciders(run, users)
    t = tasks_table
    if params.position == "before":
        # The new signers decide first; this task waits for the last of them.
        ids = approvals.add_tasks(run, execution, users, start_position=task["position"])
        res = run.change(
            t.update().where(t.c.id == task["id"], t.c.status == "open",
                             t.c.version == task["version"])
            .values(status="queued", waits_for=ids[-1], version=t.c.version + 1))
        if cast(sa.CursorResult[Any], res).rowcount != 1:
            raise Conflict(Msg("task_race"))
        for earlier, later in zip(ids, ids[1:], strict=False):
            run.change(t.update().where(t.c.id == later)
                       .values(status="queued", waits_for=earlier))
    elif params.position == "after":
        previous = task["id"]
        for u in users:
            previous = approvals.add_tasks(run, execution, [u], status="queued",
                                           start_position=task["position"] + 1,
                                           waits_for=previous)[0]
    else:
        raise ValidationFailed([ErrorItem.localized("position", Msg("signer_position"),
                                                    field="position")])
    run.history("add_signer", node=task["node"], comment=params.comment, users=users,
                position=params.position)


def _cc(run: Run, execution: Execution | None, task: dict[str, Any] | None,
        params: ActionParams) -> None:
    assert execution is not None and task is not None
    users = _targets(run, params, "cc")
    approvals.add_tasks(run, execution, users, kind="cc")
    run.history("cc", node=task["node"], comment=params.comment, users=users)


def _comment(run: Run, execution: Execution | None, task: dict[str, Any] | None,
             params: ActionParams) -> None:
    if not params.comment:
        raise ValidationFailed([ErrorItem.localized("required", Msg("comment_required"),
                                                    field="comment")])
    run.history("comment", node=task["node"] if task else None, comment=params.comment)


def approver_acted(instance_id: uuid.UUID, started_by: uuid.UUID | None) -> sa.Select[Any]:
    """The approvals of an instance decided by someone other than its
    submitter: once there is one, the submitter may no longer withdraw
    (unless the flow allows it)."""
    t = tasks_table
    return (sa.select(t.c.node, t.c.acted_by)
            .where(t.c.instance_id == instance_id, t.c.kind == "approve",
                   t.c.acted_by.is_not(None), t.c.acted_by != started_by).limit(1))


def _withdraw(run: Run, execution: Execution | None, task: dict[str, Any] | None,
              params: ActionParams) -> None:
    if not run.flow.allow_withdraw_after_action:
        acted = run.execute(approver_acted(run.id, run.inst["started_by"])).first()
        if acted is not None:
            raise Conflict(Msg("withdraw_after_action", node=_node_name(run.node(acted.node))))
    _on_withdraw(run)
    run.finish("withdrawn", status="withdrawn", comment=params.comment)


def _on_withdraw(run: Run) -> None:
    """The flow's ``on_withdraw`` actions (the record back to draft, …), in
    this request: one that fails refuses the withdrawal, nothing changed."""
    from tangram.engines.flows.actions import ActionFailed, run_end_actions

    try:
        run_end_actions(run, "on_withdraw")
    except ActionFailed as failed:
        raise Conflict(Msg("withdraw_refused", reason=failed.message)) from None


def _urge(run: Run, execution: Execution | None, task: dict[str, Any] | None,
          params: ActionParams) -> None:
    t = tasks_table
    users = list(run.execute(
        sa.select(t.c.assignee_id).where(t.c.instance_id == run.id, t.c.status == "open",
                                         t.c.kind == "approve")).scalars())
    run.notify(users, kind="urge", title=run.say("flow_urge"),
               body=params.comment or run.say("flow_urge_body"))
    run.history("urge", comment=params.comment, users=users)


TASK_ACTIONS: dict[str, TaskActionSpec] = {spec.kind: spec for spec in (
    TaskActionSpec("approve", {"zh": "同意", "en": "Approve"},
                   "Approve (with edits to the node's editable fields).", "assignee",
                   _approve, closes="approved"),
    TaskActionSpec("reject", {"zh": "拒绝", "en": "Reject"},
                   "Reject: the node takes its rejection path.", "assignee", _reject,
                   closes="rejected"),
    TaskActionSpec("return", {"zh": "退回", "en": "Return"},
                   "Send the request back to an earlier approval node.", "assignee", _return,
                   closes="returned"),
    TaskActionSpec("transfer", {"zh": "转交", "en": "Transfer"},
                   "Give this task to another user.", "assignee", _transfer,
                   closes="transferred"),
    TaskActionSpec("add_signer", {"zh": "加签", "en": "Add signer"},
                   "Ask others to decide before or after you.", "assignee", _add_signer),
    TaskActionSpec("cc", {"zh": "抄送", "en": "CC"}, "Copy other users.", "assignee", _cc),
    TaskActionSpec("comment", {"zh": "评论", "en": "Comment"}, "Add a comment to the history.",
                   "involved", _comment),
    TaskActionSpec("withdraw", {"zh": "撤回", "en": "Withdraw"},
                   "The submitter takes the request back (before any approver acted).",
                   "submitter", _withdraw),
    TaskActionSpec("urge", {"zh": "催办", "en": "Urge"},
                   "The submitter reminds the current approvers.", "submitter", _urge),
)}
INSTANCE_ACTIONS = ("withdraw", "urge", "comment")


_TASK = Prepared(sa.select(tasks_table).where(tasks_table.c.id == sa.bindparam("id")))
_INSTANCE_OF_TASK = sa.select(tasks_table.c.instance_id).where(
    tasks_table.c.id == sa.bindparam("task_id")).scalar_subquery()
_LOCK_BY_TASK = Prepared(LOCK.where(instances_table.c.id == _INSTANCE_OF_TASK))
_LIVE_BY_TASK = live_state(_INSTANCE_OF_TASK)


# The caller's open approval task in an instance, oldest first: an indexed
# lookup by assignee and status, prepared (it starts the transaction of a
# step that acts on it, so on PostgreSQL the BEGIN travels with it).
_MY_OPEN_TASK = Prepared(_MY_OPEN_TASK_SQL)


def my_open_task(ctx: EngineContext, *, instance_id: uuid.UUID) -> uuid.UUID | None:
    """The id of the calling user's open approval task in an instance (what a
    record page's approve and reject buttons act on), or None."""
    row = _MY_OPEN_TASK.first(ctx.session, {"_actor": ctx.actor.id,
                                            "instance_id": instance_id})
    return row["id"] if row is not None else None


def _task(ctx: EngineContext, task_id: uuid.UUID) -> dict[str, Any]:
    row = _TASK.first(ctx.session, {"id": task_id})
    if row is None:
        raise NotFound(Msg("task_missing", task=task_id))
    return row


def act_on_task(ctx: EngineContext, *, task_id: uuid.UUID, action: str,
                params: ActionParams) -> dict[str, Any]:
    """Apply ``action`` to an open task of the calling user, as one step."""
    return _act(ctx, action, params, task_id=task_id)


def act_on_my_task(ctx: EngineContext, *, instance_id: uuid.UUID, action: str,
                   params: ActionParams) -> dict[str, Any]:
    """Apply ``action`` to the calling user's open approval task in an
    instance (the oldest, as :func:`my_open_task` finds it), as one step:
    what a record page's approve and reject buttons do, without the task id."""
    return _act(ctx, action, params, instance_id=instance_id)


def _act(ctx: EngineContext, action: str, params: ActionParams, *,
         task_id: uuid.UUID | None = None, instance_id: uuid.UUID | None = None
         ) -> dict[str, Any]:
    spec = TASK_ACTIONS.get(action)
    if spec is None or spec.by == "submitter":
        kinds = [k for k, s in TASK_ACTIONS.items() if s.by != "submitter"]
        raise NotFound(Msg("task_action_unknown", action=action, allowed=_action_names(kinds)))
    # Lock the instance, read its live state and (for a closing action)
    # close the task, in one batch: what is read after the lock is what the
    # last step committed.
    closing: dict[str, Any] | None = None
    values: dict[str, Any] = {}
    if spec.closes is not None:
        values = {"status": spec.closes, "decision": action, "comment": params.comment,
                  "acted_by": ctx.actor.id, "acted_at": ctx.now()}
        closing = {"_id": task_id, "instance_id": instance_id, "_actor": ctx.actor.id,
                   "_version": params.version, **values}
    by_task = task_id is not None
    close = _CLOSE_MINE if by_task else _CLOSE_MY_OLDEST
    run = open_run(ctx, instance_id, require_running=False,
                   lock=_LOCK_BY_TASK if by_task else LOCK_BY_ID,
                   live=_LIVE_BY_TASK if by_task else LIVE_BY_ID,
                   params={"task_id": task_id, "instance_id": instance_id, **(closing or {})},
                   missing=f"task {task_id} does not exist" if by_task else None,
                   also=(lambda batch: close.send(batch, closing)) if closing else None)
    closed = run.batched.first() if closing else None
    if closed is not None:
        run.preclosed = (closed["id"], values)  # _close finds it closed with these values
    if task_id is None:
        task_id = closed["id"] if closed is not None else _mine_in(run, ctx.actor.id)
    task = run.live_task(task_id)
    if task is None:  # not open or queued: read it for the message
        task = _task(ctx, task_id)
    if task["assignee_id"] != ctx.actor.id:
        raise PermissionDenied(Msg("task_not_yours"))
    if task["kind"] != "approve":
        raise Conflict(Msg("task_is_cc"))
    if params.version is not None and params.version != task["version"]:
        raise Conflict(Msg("task_stale", current=task["version"], yours=params.version),
                       details={"current_version": task["version"]})
    if task["status"] != "open":
        raise Conflict(_closed_message(task))
    if not run.running:
        raise Conflict(_request_closed(run))
    node = run.node(task["node"])
    if action not in node.actions:
        raise PermissionDenied(Msg("action_not_allowed", action=_action_name(action),
                                   node=_node_name(node),
                                   allowed=_action_names(node.actions)))
    execution = run.get_execution(task["execution_id"])
    spec.apply(run, execution, task, params)
    run.end_step()
    # A closing action changed the run's copy of the task; others may have
    # changed the row through statements the run does not follow.
    return dict(task) if spec.closes else _task(ctx, task_id)


def _mine_in(run: Run, actor_id: uuid.UUID | None) -> uuid.UUID:
    """The actor's open approval task in the run's live state (oldest first);
    a queued one (an earlier signer decides first) when there is no open one."""
    mine = [t for t in run.all_live_tasks()
            if t["assignee_id"] == actor_id and t["kind"] == "approve"]
    for status in ("open", "queued"):
        found = sorted((t for t in mine if t["status"] == status),
                       key=lambda t: (t["created_at"], str(t["id"])))
        if found:
            return found[0]["id"]  # type: ignore[no-any-return]
    if not run.running:
        raise Conflict(_request_closed(run, with_outcome=True))
    raise Conflict(Msg("no_open_task"))


def _closed_message(task: dict[str, Any]) -> Msg:
    status = task["status"]
    if status == "cancelled":
        return Msg("task_cancelled")
    if status == "queued":
        return Msg("task_queued")
    return Msg("task_decided", status=status_word(status))


def _request_closed(run: Run, *, with_outcome: bool = False) -> Msg:
    status, outcome = status_word(run.inst["status"]), run.inst["outcome"]
    if with_outcome and outcome:
        return Msg("request_closed_outcome", status=status, outcome=status_word(outcome))
    return Msg("request_closed", status=status)


def _action_names(kinds: Any) -> dict[str, str]:
    """Task actions listed: keys in English, labels in Chinese."""
    return {"en": ", ".join(kinds),
            "zh": "、".join(TASK_ACTIONS[k].label["zh"] if k in TASK_ACTIONS else k
                           for k in kinds)}


def act_on_instance(ctx: EngineContext, *, instance_id: uuid.UUID, action: str,
                    params: ActionParams) -> dict[str, Any]:
    """Withdraw, urge (the submitter) or comment (anyone involved) as one step."""
    if action not in INSTANCE_ACTIONS:
        raise NotFound(Msg("instance_action_unknown", action=action,
                           allowed=_action_names(INSTANCE_ACTIONS)))
    run = open_run(ctx, instance_id, require_running=False)
    spec = TASK_ACTIONS[action]
    is_submitter = run.inst["started_by"] == ctx.actor.id
    if spec.by == "submitter" and not (is_submitter or ctx.actor.is_admin):
        raise PermissionDenied(Msg("submitter_only", action=_action_name(action)))
    if spec.by == "involved" and not (is_submitter or ctx.actor.is_admin
                                      or _involved(run, ctx.actor.id)):
        raise PermissionDenied(Msg("comment_involved_only"))
    if action != "comment" and not run.running:
        raise Conflict(_request_closed(run))
    spec.apply(run, None, None, params)
    run.end_step()
    return {"id": str(run.id), "status": run.inst["status"], "outcome": run.inst["outcome"]}


def _involved(run: Run, user_id: uuid.UUID | None) -> bool:
    t = tasks_table
    return run.execute(sa.select(t.c.id).where(t.c.instance_id == run.id,
                                               t.c.assignee_id == user_id)).first() is not None
