"""Flows over HTTP: definitions (drafts, validation, publishing, versions),
starting, the task inbox and task actions, instance views, administration
and the inbound webhook."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, status
from pydantic import Field

from tangram.engines import catalogs
from tangram.engines.flows import service, tasks, triggers, views
from tangram.errors import ErrorItem, NotAuthenticated
from tangram.metamodel import storage
from tangram.platform.api.body import Body
from tangram.platform.deps import (
    AdminActor,
    BuilderActor,
    ClockDep,
    ContextDep,
    MemberContextDep,
    SessionDep,
    SettingsDep,
    SignedInActor,
)

router = APIRouter(tags=["flows"])


# --- definitions ------------------------------------------------------------------------

class FlowDraftBody(Body):
    definition: dict[str, Any] = Field(description="The flow definition (see the flow schema).")


class PublishFlowBody(Body):
    note: str | None = Field(None, max_length=2000)


@router.get("/api/meta/flows")
def flow_metadata(_user: SignedInActor) -> dict[str, Any]:
    """Node types, triggers, assignee rules, actions: the designer's palette."""
    return catalogs.flows()


@router.get("/api/apps/{app}/flows")
def list_flows(app: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """The app's flows (members of the app: administrators, its builders and
    holders of one of its roles)."""
    return [{"key": d.key, "latest_version": d.latest_version,
             "label": (d.draft or {}).get("label")}
            for d in storage.list_definitions(ctx.session, app=app, kind="flow")]


@router.get("/api/apps/{app}/flows/{flow}/draft")
def get_flow_draft(app: str, flow: str, ctx: ContextDep, _b: BuilderActor) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="flow", key=flow)
    return {"key": flow, "draft": d.draft, "latest_version": d.latest_version}


@router.put("/api/apps/{app}/flows/{flow}/draft")
def save_flow_draft(app: str, flow: str, body: FlowDraftBody, ctx: ContextDep,
                    _b: BuilderActor) -> dict[str, Any]:
    return service.save_flow_draft(ctx, app=app, key=flow, body=body.definition)


@router.post("/api/apps/{app}/flows/{flow}/validate")
def validate_flow(app: str, flow: str, ctx: ContextDep, _b: BuilderActor,
                  body: FlowDraftBody | None = None) -> dict[str, Any]:
    """Check a body (or the stored draft) as publishing would; 200 with the errors."""
    errors: list[ErrorItem] = service.validate_flow(
        ctx, app=app, key=flow, body=body.definition if body else None)
    return {"valid": not errors, "errors": [e.as_dict() for e in errors]}


@router.post("/api/apps/{app}/flows/{flow}/publish")
def publish_flow(app: str, flow: str, body: PublishFlowBody, ctx: ContextDep,
                 _b: BuilderActor) -> dict[str, Any]:
    """Publish the draft as a new version; a webhook flow's token is shown once."""
    return service.publish_flow(ctx, app=app, key=flow, note=body.note)


@router.post("/api/apps/{app}/flows/{flow}/webhook-token")
def rotate_webhook_token(app: str, flow: str, ctx: ContextDep,
                         _b: BuilderActor) -> dict[str, Any]:
    return {"webhook_token": triggers.rotate_webhook_token(ctx, app=app, flow=flow)}


@router.get("/api/apps/{app}/flows/{flow}/versions")
def list_flow_versions(app: str, flow: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    d = storage.get_definition(ctx.session, app=app, kind="flow", key=flow)
    return storage.list_versions(ctx.session, d)


@router.get("/api/apps/{app}/flows/{flow}/versions/{version}")
def get_flow_version(app: str, flow: str, version: int, ctx: MemberContextDep
                     ) -> dict[str, Any]:
    d = storage.get_definition(ctx.session, app=app, kind="flow", key=flow)
    return storage.get_version(ctx.session, d, version)


# --- starting ---------------------------------------------------------------------------

class StartBody(Body):
    record_id: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)


@router.post("/api/apps/{app}/flows/{flow}/start", status_code=status.HTTP_201_CREATED)
def start_flow(app: str, flow: str, body: StartBody, ctx: ContextDep,
               _u: SignedInActor) -> dict[str, Any]:
    """Submit a record for approval, or start a manual flow."""
    iid = triggers.start_by_user(ctx, app=app, flow=flow, record_id=body.record_id,
                                 variables=body.variables)
    return views.instance_view(ctx, instance_id=iid)["instance"]


@router.post("/api/hooks/flows/{app}/{flow}", status_code=status.HTTP_202_ACCEPTED)
def webhook(app: str, flow: str, session: SessionDep, clock: ClockDep, settings: SettingsDep,
            request_body: dict[str, Any],
            x_tangram_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Inbound webhook: starts the flow with the JSON body as ``vars.payload``.
    Authenticated by the flow's token (header ``X-Tangram-Token``), not a user."""
    from tangram.engines.context import EngineContext

    if not x_tangram_token:
        raise NotAuthenticated("send the flow's webhook token in the X-Tangram-Token header")
    ctx = EngineContext(session=session, clock=clock, timezone=settings.timezone)
    iid = triggers.start_by_webhook(ctx, app=app, flow=flow, token=x_tangram_token,
                                    payload=request_body)
    return {"instance_id": str(iid)}


# --- tasks ------------------------------------------------------------------------------

class TaskActionBody(Body):
    comment: str | None = Field(None, max_length=4000)
    version: int | None = Field(None, description="The task version you read; stale → 409.")
    users: list[str] = Field(default_factory=list, description="transfer / add_signer / cc")
    node: str | None = Field(None, description="return: the earlier node")
    position: Literal["before", "after"] = "after"
    values: dict[str, Any] = Field(default_factory=dict, description="Edits of the "
                                   "node's editable fields (approve).")


AppKey = Annotated[str | None, Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$",
                                      description="Only requests of this app.")]


class InboxQuery(Body):
    """The inbox's query parameters; an unknown one is refused (422), as a
    misspelled ``limt`` would otherwise be silently ignored."""

    box: Literal["todo", "done", "cc", "submitted"] = "todo"
    app: AppKey = None
    limit: int = Field(50, ge=1, le=500)
    after: str | None = Field(None, max_length=500,
                              description="next_cursor of the previous page")
    total: bool = False


class InboxCountsQuery(Body):
    app: AppKey = None


@router.get("/api/flows/tasks")
def my_tasks(ctx: ContextDep, _u: SignedInActor, query: Annotated[InboxQuery, Query()]
             ) -> dict[str, Any]:
    """One page of the caller's inbox: tasks to do, done, CC'd, or the
    requests they submitted, newest or oldest first by box."""
    return views.inbox_page(ctx, box=query.box, app=query.app, limit=query.limit,
                              after=query.after, include_total=query.total)


@router.get("/api/flows/tasks/counts")
def my_task_counts(ctx: ContextDep, _u: SignedInActor,
                   query: Annotated[InboxCountsQuery, Query()]) -> dict[str, Any]:
    """How many items each inbox box holds, and how many are unread."""
    return views.inbox_counts(ctx, app=query.app)


@router.get("/api/flows/tasks/{task_id}")
def get_task(task_id: uuid.UUID, ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    return views.task_view(ctx, task_id=task_id)


@router.post("/api/flows/tasks/{task_id}/{action}")
def act_on_task(task_id: uuid.UUID, action: str, body: TaskActionBody, ctx: ContextDep,
                _u: SignedInActor) -> dict[str, Any]:
    """A task action; answers the task as ``GET /api/flows/tasks/{task_id}`` does."""
    task = tasks.act_on_task(ctx, task_id=task_id, action=action,
                             params=tasks.ActionParams(**body.model_dump()))
    return views.task_view(ctx, task_id=task["id"], mark_read=False)


@router.get("/api/flows/notifications")
def my_notifications(ctx: ContextDep, _u: SignedInActor, unread: bool = False
                     ) -> dict[str, Any]:
    return {"items": service.notifications(ctx, unread_only=unread)}


# --- instances --------------------------------------------------------------------------

@router.get("/api/apps/{app}/forms/{form}/records/{record_id}/flows")
def record_flows(app: str, form: str, record_id: str, ctx: ContextDep,
                 _u: SignedInActor) -> dict[str, Any]:
    """A record page's flow panel: the requests about the record (where each is,
    your open task in it) and the flows you may start on it now."""
    return views.record_flows(ctx, app=app, form=form, record_id=record_id)


@router.get("/api/flows/instances/{instance_id}")
def get_instance(instance_id: uuid.UUID, ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    """The graph with the current position, tasks and the full history."""
    return views.instance_view(ctx, instance_id=instance_id)


@router.post("/api/flows/instances/{instance_id}/my-task/{action}")
def act_on_my_task(instance_id: uuid.UUID, action: str, body: TaskActionBody,
                   ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    """A task action (approve, reject, …) on your open task in this request,
    without its id: a record page's approve and reject buttons. 409 when you
    have no open task in it."""
    task = tasks.act_on_my_task(ctx, instance_id=instance_id, action=action,
                                params=tasks.ActionParams(**body.model_dump()))
    return views.task_view(ctx, task_id=task["id"], mark_read=False)


@router.post("/api/flows/instances/{instance_id}/{action}")
def act_on_instance(instance_id: uuid.UUID, action: str, body: TaskActionBody,
                    ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    """withdraw / urge (the submitter), comment (anyone involved)."""
    return tasks.act_on_instance(ctx, instance_id=instance_id, action=action,
                                 params=tasks.ActionParams(**body.model_dump()))


@router.get("/api/admin/flows/instances")
def admin_instances(ctx: ContextDep, _a: AdminActor,
                    state: Annotated[Literal["failed", "stuck", "running", "completed",
                                             "cancelled", "withdrawn", "all"],
                                     Query(alias="status")] = "failed",
                    stuck_days: Annotated[int, Query(ge=0, le=3650)] = 7,
                    app: str | None = None, flow: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """Failed or stuck instances (oldest first), or instances by status
    (newest first); ``app``/``flow`` narrow the list."""
    from datetime import timedelta

    return {"items": service.admin_instances(ctx, status=state,
                                             stuck_after=timedelta(days=stuck_days),
                                             app=app, flow=flow, limit=limit)}


@router.post("/api/admin/flows/instances/{instance_id}/retry")
def retry_instance(instance_id: uuid.UUID, ctx: ContextDep, _a: AdminActor) -> dict[str, Any]:
    return service.retry_instance(ctx, instance_id=instance_id)


@router.post("/api/admin/flows/instances/{instance_id}/cancel")
def cancel_instance(instance_id: uuid.UUID, ctx: ContextDep, _a: AdminActor) -> dict[str, Any]:
    return service.cancel_instance(ctx, instance_id=instance_id)
