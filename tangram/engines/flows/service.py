"""Flow definitions (drafts, validation, publishing) and the read side of
running flows: inboxes, a task's record view, an instance's graph and
history, and the administrator's failed/stuck lists with retry and cancel.

    publish_flow(ctx, app="crm", key="contract_approval")
    inbox(ctx, box="todo")
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.flows.registry import successors
from tangram.engines.flows.runtime import load_version, open_run, system_context
from tangram.engines.flows.tables import (
    executions_table,
    history_table,
    instances_table,
    jobs_table,
    notifications_table,
    tasks_table,
    timers_table,
    triggers_table,
)
from tangram.engines.flows.tasks import my_open_task
from tangram.engines.flows.taskview import task_fields
from tangram.engines.flows.triggers import sync_trigger
from tangram.engines.flows.validate import check_flow, require_valid
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.errors import Conflict, ErrorItem, NotFound, PermissionDenied
from tangram.metamodel import storage
from tangram.metamodel.common import localize
from tangram.metamodel.flows import Flow

# --- definitions -------------------------------------------------------------------------


def save_flow_draft(ctx: EngineContext, *, app: str, key: str,
                    body: dict[str, Any]) -> dict[str, Any]:
    row = storage.save_draft(ctx.session, app=app, kind="flow", key=key, body=body,
                             user_id=ctx.actor.id, now=ctx.now())
    return {"key": key, "draft": row.draft, "latest_version": row.latest_version}


def validate_flow(ctx: EngineContext, *, app: str, key: str,
                  body: dict[str, Any] | None = None) -> list[ErrorItem]:
    """Every problem of the given body (default: the stored draft)."""
    if body is None:
        body = storage.get_definition(ctx.session, app=app, kind="flow", key=key).draft or {}
    flow = storage.parse_definition("flow", {**body, "key": key})
    assert isinstance(flow, Flow)
    return check_flow(ctx.session, app, flow)


def publish_flow(ctx: EngineContext, *, app: str, key: str, note: str | None = None,
                 check_users: bool = True) -> dict[str, Any]:
    """Validate the draft and store it as the next version. Running instances
    keep their version; new starts use this one. (``check_users``: see
    :func:`~tangram.engines.flows.validate.check_flow`.)"""
    d = storage.get_definition(ctx.session, app=app, kind="flow", key=key, lock=True)
    if d.draft is None:
        raise NotFound(f"flow {key!r} has no draft to publish")
    flow = storage.parse_definition("flow", d.draft)
    assert isinstance(flow, Flow)
    require_valid(ctx.session, app, flow, check_users=check_users)
    body = storage.dump(flow)
    version = storage.record_version(ctx.session, definition=d, body=body,
                                     user_id=ctx.actor.id, now=ctx.now(), note=note)
    loaded = load_version(ctx.session, app=app, flow=key, version=version)
    token = sync_trigger(ctx, loaded)
    out: dict[str, Any] = {"key": key, "version": version}
    if token:
        out["webhook_token"] = token
    return out


def publish_calendar(ctx: EngineContext, *, app: str, body: dict[str, Any]) -> int:
    key = body.get("key", "")
    storage.save_draft(ctx.session, app=app, kind="calendar", key=key, body=body,
                       user_id=ctx.actor.id, now=ctx.now())
    d = storage.get_definition(ctx.session, app=app, kind="calendar", key=key, lock=True)
    assert d.draft is not None
    return storage.record_version(ctx.session, definition=d, body=d.draft,
                                  user_id=ctx.actor.id, now=ctx.now())


# --- reading -------------------------------------------------------------------------------

def _iso(value: Any) -> Any:
    # The records API's own rendering: datetimes in UTC with "Z", dates as dates.
    if isinstance(value, datetime):
        return FIELD_KINDS["datetime"].to_json(value)
    if isinstance(value, date):
        return FIELD_KINDS["date"].to_json(value)
    return value


def as_json(row: Any) -> dict[str, Any]:
    """A row of the state tables as the API shows it: ids as text, times in
    UTC with "Z" (as the records API writes them)."""
    return {k: _json(v) for k, v in dict(row).items()}


_row = as_json


def _json(value: Any) -> Any:
    """A column value as the API shows it (JSON columns too: the datetimes a
    step noted in an execution's data or the history's details)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, str) and _ISO_UTC.match(value):
        return value[:-6] + "Z"
    return _iso(value)


# A datetime stored in JSON by an earlier version (isoformat, "+00:00").
_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def _task_json(ctx: EngineContext, row: Any) -> dict[str, Any]:
    out = _row(row)
    if "flow" in out:
        try:
            loaded = load_version(ctx.session, app=row["app"], flow=row["flow"],
                                  version=row["flow_version"])
            out["flow_label"] = localize(loaded.flow.label, ctx.language)
            out["node_label"] = _node_label(ctx, loaded, row["node"])
        except NotFound:
            pass
    return out


INBOXES = ("todo", "done", "cc", "submitted")
# An open approval task of a running request: what "to do" counts.
_TO_DO = (tasks_table.c.status == "open", tasks_table.c.kind == "approve",
          instances_table.c.status == "running")


def inbox(ctx: EngineContext, *, box: str, limit: int = 100) -> list[dict[str, Any]]:
    """The calling user's tasks: to do, done, CC'd, or requests they submitted."""
    t, i = tasks_table, instances_table
    me = ctx.actor.id
    if box == "submitted":
        rows = ctx.session.execute(
            sa.select(i).where(i.c.started_by == me).order_by(i.c.started_at.desc())
            .limit(limit)).mappings().all()
        return [_row(r) for r in rows]
    cols: list[Any] = [t, i.c.app, i.c.flow, i.c.version.label("flow_version"),
                       i.c.record_id, i.c.form, i.c.status.label("instance_status"),
                       i.c.started_by]
    stmt = sa.select(*cols).join(i, i.c.id == t.c.instance_id).where(t.c.assignee_id == me)
    if box == "todo":
        stmt = stmt.where(*_TO_DO).order_by(t.c.created_at)
    elif box == "done":
        stmt = stmt.where(t.c.kind == "approve", t.c.acted_by == me).order_by(
            t.c.acted_at.desc())
    elif box == "cc":
        stmt = stmt.where(t.c.kind == "cc").order_by(t.c.created_at.desc())
    else:
        raise NotFound(f"no inbox {box!r}; inboxes: {', '.join(INBOXES)}")
    return [_task_json(ctx, r) for r in ctx.session.execute(stmt.limit(limit)).mappings()]


def task_view(ctx: EngineContext, *, task_id: uuid.UUID) -> dict[str, Any]:
    """A task with its record as the node shows it: visible fields only,
    and which of them the approver may edit here."""
    t, i = tasks_table, instances_table
    row = ctx.session.execute(
        sa.select(t, i.c.app, i.c.flow, i.c.version.label("flow_version"), i.c.record_id,
                  i.c.form, i.c.started_by, i.c.status.label("instance_status"))
        .join(i, i.c.id == t.c.instance_id).where(t.c.id == task_id)).mappings().first()
    if row is None:
        raise NotFound(f"task {task_id} does not exist")
    if row["assignee_id"] != ctx.actor.id and not ctx.actor.is_admin:
        raise PermissionDenied("this task is assigned to someone else")
    loaded = load_version(ctx.session, app=row["app"], flow=row["flow"],
                          version=row["flow_version"])
    node = loaded.nodes[row["node"]]
    out = _task_json(ctx, row)
    actions = list(getattr(node, "actions", [])) if row["status"] == "open" and \
        row["kind"] == "approve" else []
    # "return" only where there is an earlier approval to return to.
    from tangram.engines.flows.tasks import return_targets

    earlier = (return_targets(ctx.session, loaded.flow, row["instance_id"], row["node"])
               if "return" in actions else [])
    out["actions"] = [a for a in actions if a != "return" or earlier]
    out["return_to"] = [{"key": k, "label": _node_label(ctx, loaded, k)} for k in earlier]
    record = None
    rules = task_fields(ctx, app=row["app"], form=row["form"] or "", node=node)
    if row["record_id"] is not None and row["form"]:
        from tangram.engines.forms.records import get_record

        # The task grants reading the record, narrowed by the approver's role
        # field rules and the node's visible fields (taskview.TaskFields).
        sys = system_context(ctx)
        try:
            full = get_record(sys, app=row["app"], form=row["form"], record_id=row["record_id"])
        except NotFound:
            # Deleted (a record_deleted flow, or deleted while in approval): the
            # approver still sees what the request is about, with its deleted_at.
            full = get_record(sys, app=row["app"], form=row["form"],
                              record_id=row["record_id"], deleted=True)
        record = rules.narrow(full)
    out["record"] = record
    out["editable_fields"] = rules.editable
    if ctx.actor.id == row["assignee_id"] and row["read_at"] is None:
        ctx.session.execute(t.update().where(t.c.id == task_id).values(read_at=ctx.now()))
    return out


def instance_view(ctx: EngineContext, *, instance_id: uuid.UUID) -> dict[str, Any]:
    """The flow's graph, where the instance is now, and its whole history."""
    inst = ctx.session.execute(sa.select(instances_table)
                               .where(instances_table.c.id == instance_id)).mappings().first()
    if inst is None:
        raise NotFound(f"flow instance {instance_id} does not exist")
    t = tasks_table
    involved = ctx.session.execute(sa.select(t.c.id).where(
        t.c.instance_id == instance_id, t.c.assignee_id == ctx.actor.id)).first()
    if not (ctx.actor.is_admin or inst["started_by"] == ctx.actor.id or involved):
        raise PermissionDenied("only people involved in this request may see it")
    loaded = load_version(ctx.session, app=inst["app"], flow=inst["flow"],
                          version=inst["version"])
    e = executions_table
    executions = ctx.session.execute(sa.select(e).where(e.c.instance_id == instance_id)
                                     .order_by(e.c.entered_at)).mappings().all()
    tasks = ctx.session.execute(sa.select(t).where(t.c.instance_id == instance_id)
                                .order_by(t.c.created_at)).mappings().all()
    h = history_table
    history = ctx.session.execute(sa.select(h).where(h.c.instance_id == instance_id)
                                  .order_by(h.c.at, h.c.id)).mappings().all()
    visited = {x["node"] for x in executions}
    # The viewer's own open task here, for the approve / reject buttons.
    mine = my_open_task(ctx, instance_id=instance_id)
    return {
        "instance": _row(inst),
        "graph": {
            "nodes": [{"key": n.key, "type": n.type,
                       "label": localize(n.label, ctx.language) if n.label else n.key,
                       "state": ("active" if any(x["node"] == n.key and x["status"] == "active"
                                                 for x in executions)
                                 else "visited" if n.key in visited else "pending")}
                      for n in loaded.flow.nodes],
            "edges": [{"from": n.key, "to": s} for n in loaded.flow.nodes for s in successors(n)],
        },
        "current": sorted({x["node"] for x in executions if x["status"] == "active"}),
        "my_task": str(mine) if mine is not None else None,
        "executions": [_row(x) for x in executions],
        "tasks": [_row(x) for x in tasks],
        "history": [_row(x) for x in history],
    }


def record_flows(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                 limit: int = 50) -> dict[str, Any]:
    """A record page's flow panel, for anyone who may read the record: the
    requests about it, newest first — where each is now and the caller's own
    open task in it (for approve / reject) — and the flows the caller may
    start on it now (submit for approval, manual flows)."""
    from tangram.engines.flows.triggers import condition_holds, running_on
    from tangram.engines.forms.records import get_record
    from tangram.engines.forms.typed import typed_values

    record = get_record(ctx, app=app, form=form, record_id=record_id)  # may read it
    rid = uuid.UUID(record["id"])
    i, e, t = instances_table, executions_table, tasks_table
    rows = ctx.session.execute(
        sa.select(i).where(i.c.app == app, i.c.form == form, i.c.record_id == rid)
        .order_by(i.c.started_at.desc(), i.c.id).limit(limit)).mappings().all()
    ids = [r["id"] for r in rows]
    current: dict[uuid.UUID, list[str]] = {}
    mine: dict[uuid.UUID, uuid.UUID] = {}
    if ids:
        for iid, node in ctx.session.execute(
                sa.select(e.c.instance_id, e.c.node).where(e.c.instance_id.in_(ids),
                                                           e.c.status == "active")
                .order_by(e.c.entered_at, e.c.id)):
            current.setdefault(iid, []).append(node)
        for iid, tid in ctx.session.execute(
                sa.select(t.c.instance_id, t.c.id).where(
                    t.c.instance_id.in_(ids), t.c.assignee_id == ctx.actor.id,
                    t.c.status == "open", t.c.kind == "approve")
                .order_by(t.c.created_at.desc(), t.c.id.desc())):
            mine[iid] = tid  # the oldest wins: rows come newest first
    items = []
    for r in rows:
        loaded = load_version(ctx.session, app=app, flow=r["flow"], version=r["version"])
        items.append({
            # Not the error text (it may name internal systems): a failed
            # request is for the administrators' views.
            **{k: _json(r[k]) for k in ("id", "flow", "version", "status", "outcome",
                                        "started_by", "started_at", "ended_at")},
            "flow_label": localize(loaded.flow.label, ctx.language),
            "current": [{"key": n, "label": _node_label(ctx, loaded, n)}
                        for n in current.get(r["id"], [])],
            "my_task": _json(mine.get(r["id"]))})
    startable = []
    try:
        get_record(ctx, app=app, form=form, record_id=rid, also="submit")
        may_submit = True
    except (PermissionDenied, NotFound):
        may_submit = False
    if may_submit:
        tr = triggers_table
        typed = typed_values(system_context(ctx), app, form, record)
        for flow, kind in ctx.session.execute(
                sa.select(tr.c.flow, tr.c.kind).where(
                    tr.c.app == app, tr.c.form == form, tr.c.active.is_(True),
                    tr.c.kind.in_(["submitted", "manual"])).order_by(tr.c.flow)):
            loaded = load_version(ctx.session, app=app, flow=flow)
            condition = getattr(loaded.flow.start.trigger, "condition", None) \
                if loaded.flow.start else None
            if condition and not condition_holds(ctx, condition, typed):
                continue
            if kind == "submitted" and running_on(ctx, app=app, flow=flow, record_id=rid):
                continue  # in approval already
            startable.append({"flow": flow, "kind": kind,
                              "label": localize(loaded.flow.label, ctx.language)})
    return {"items": items, "startable": startable}


def _node_label(ctx: EngineContext, loaded: Any, key: str) -> str:
    node = loaded.nodes.get(key)
    return localize(node.label, ctx.language) if node is not None and node.label else key


ADMIN_STATUSES = ("failed", "stuck", "running", "completed", "cancelled", "withdrawn", "all")


def admin_instances(ctx: EngineContext, *, status: str, stuck_after: timedelta = timedelta(
        days=7), app: str | None = None, flow: str | None = None,
        limit: int = 200) -> list[dict[str, Any]]:
    """Instances for an administrator. The work lists, oldest first: failed
    ones, or running ones with no activity for ``stuck_after``. The record of
    what ran, newest first: instances by status (``all``: any), e.g. what a
    schedule or a delete trigger started; ``app`` and ``flow`` narrow both."""
    if not ctx.actor.is_admin:
        raise PermissionDenied("only administrators see all instances")
    i = instances_table
    if status == "failed":
        stmt = sa.select(i).where(i.c.status == "failed").order_by(i.c.started_at)
    elif status == "stuck":
        h = history_table
        last = sa.select(sa.func.max(h.c.at)).where(h.c.instance_id == i.c.id).scalar_subquery()
        stmt = sa.select(i).where(i.c.status == "running", last < ctx.now() - stuck_after
                                  ).order_by(i.c.started_at)
    elif status in ADMIN_STATUSES:
        stmt = sa.select(i).order_by(i.c.started_at.desc(), i.c.id.desc())
        if status != "all":
            stmt = stmt.where(i.c.status == status)
    else:
        raise NotFound(f"status is one of {', '.join(ADMIN_STATUSES)}")
    if app is not None:
        stmt = stmt.where(i.c.app == app)
    if flow is not None:
        stmt = stmt.where(i.c.flow == flow)
    return [_row(r) for r in ctx.session.execute(stmt.limit(limit)).mappings()]


def retry_instance(ctx: EngineContext, *, instance_id: uuid.UUID) -> dict[str, Any]:
    """Resume a failed instance: each failed step runs again, in this step.

    What cannot run here is named in ``queued``: an action the worker runs
    (an HTTP call — never made while the instance is locked — or a database
    action that failed on a lock and waits for its retry). Until the worker
    has run it, ``status`` is ``running``; the instance's page shows how it
    ended."""
    if not ctx.actor.is_admin:
        raise PermissionDenied("only administrators retry instances")
    run = open_run(ctx, instance_id, require_running=False)
    if run.inst["status"] != "failed":
        raise Conflict(f"instance {instance_id} is {run.inst['status']}, not failed")
    run._set_instance(status="running", error=None)
    run.history("retried")
    for execution in run.active_executions():
        if execution["data"].get("failed"):
            run.cancel_execution(execution, decision="retried")
            run.enter(execution["node"], execution["scope_id"])
    run.end_step()
    # An action node still active after the step waits for its job.
    queued = [e["node"] for e in run.active_executions() if e["node_type"] == "action"] \
        if run.running else []
    return {"id": str(instance_id), "status": run.inst["status"], "error": run.inst["error"],
            "queued": queued}


def cancel_instance(ctx: EngineContext, *, instance_id: uuid.UUID,
                    comment: str | None = None) -> dict[str, Any]:
    if not ctx.actor.is_admin:
        raise PermissionDenied("only administrators cancel instances")
    run = open_run(ctx, instance_id, require_running=False)
    if run.inst["status"] not in ("running", "failed"):
        raise Conflict(f"instance {instance_id} is already {run.inst['status']}")
    from tangram.engines.flows.actions import run_end_actions

    run_end_actions(run, "on_cancel", go_on=True)  # a cancel always ends it
    run.finish("cancelled", status="cancelled", comment=comment)
    run.flush()
    return {"id": str(instance_id), "status": "cancelled"}


def notifications(ctx: EngineContext, *, unread_only: bool = False,
                  limit: int = 100) -> list[dict[str, Any]]:
    n = notifications_table
    stmt = sa.select(n).where(n.c.user_id == ctx.actor.id)
    if unread_only:
        stmt = stmt.where(n.c.read_at.is_(None))
    return [_row(r) for r in ctx.session.execute(stmt.order_by(n.c.created_at.desc())
                                                 .limit(limit)).mappings()]


def open_task_count(ctx: EngineContext, *, app: str) -> int:
    """The caller's open approval tasks in requests of the app (the inbox badge)."""
    t, i = tasks_table, instances_table
    return int(ctx.session.execute(
        sa.select(sa.func.count()).select_from(t).join(i, i.c.id == t.c.instance_id)
        .where(t.c.assignee_id == ctx.actor.id, i.c.app == app, *_TO_DO)).scalar_one())


def pending_work(ctx: EngineContext) -> dict[str, int]:
    """Counts for health views: pending timers and queued jobs."""
    s = ctx.session
    return {
        "timers": s.execute(sa.select(sa.func.count()).select_from(timers_table)
                            .where(timers_table.c.status == "pending")).scalar_one(),
        "jobs": s.execute(sa.select(sa.func.count()).select_from(jobs_table)
                          .where(jobs_table.c.status.in_(("queued", "running")))).scalar_one(),
    }
