"""Flow definitions (drafts, validation, publishing) and the administrator's
side of running flows: failed and stuck lists with retry and cancel, flow
notifications and counts. What users read of running flows (inbox, task and
instance views) is in :mod:`tangram.engines.flows.views`.

    publish_flow(ctx, app="crm", key="contract_approval")
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.flows.runtime import load_version, open_run
from tangram.engines.flows.tables import (
    history_table,
    instances_table,
    jobs_table,
    notifications_table,
    tasks_table,
    timers_table,
)
from tangram.engines.flows.triggers import sync_trigger
from tangram.engines.flows.validate import check_flow, require_valid
from tangram.engines.flows.views import TO_DO, as_json, instances_json
from tangram.errors import Conflict, ErrorItem, NotFound, PermissionDenied
from tangram.metamodel import storage
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
    return instances_json(ctx, ctx.session.execute(stmt.limit(limit)).mappings().all())


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
    n, t = notifications_table, tasks_table
    # A CC's notification names its task; those written before it did
    # (one notification to all it copied) get the reader's CC task in that
    # request, the newest one made by then.
    cc_task = (sa.select(t.c.id).where(t.c.instance_id == n.c.instance_id,
                                       t.c.assignee_id == n.c.user_id, t.c.kind == "cc",
                                       t.c.created_at <= n.c.created_at)
               .order_by(t.c.created_at.desc(), t.c.id.desc()).limit(1).scalar_subquery())
    task_id = sa.case((sa.and_(n.c.kind == "cc", n.c.task_id.is_(None)), cc_task),
                      else_=n.c.task_id).label("task_id")
    stmt = sa.select(*(task_id if c.key == "task_id" else c for c in n.c)).where(
        n.c.user_id == ctx.actor.id)
    if unread_only:
        stmt = stmt.where(n.c.read_at.is_(None))
    return [as_json(r) for r in ctx.session.execute(stmt.order_by(n.c.created_at.desc())
                                                 .limit(limit)).mappings()]


def open_task_count(ctx: EngineContext, *, app: str) -> int:
    """The caller's open approval tasks in requests of the app (the inbox badge)."""
    t, i = tasks_table, instances_table
    return int(ctx.session.execute(
        sa.select(sa.func.count()).select_from(t).join(i, i.c.id == t.c.instance_id)
        .where(t.c.assignee_id == ctx.actor.id, i.c.app == app, *TO_DO)).scalar_one())


def pending_work(ctx: EngineContext) -> dict[str, int]:
    """Counts for health views: pending timers and queued jobs."""
    s = ctx.session
    return {
        "timers": s.execute(sa.select(sa.func.count()).select_from(timers_table)
                            .where(timers_table.c.status == "pending")).scalar_one(),
        "jobs": s.execute(sa.select(sa.func.count()).select_from(jobs_table)
                          .where(jobs_table.c.status.in_(("queued", "running")))).scalar_one(),
    }
