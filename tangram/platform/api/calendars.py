"""Business calendars of an app over HTTP: the work hours, weekends, public
holidays and make-up working days (调休) that flow timeouts and delays count
in working time. A calendar is a definition (kind ``calendar``); saving one
publishes a new immutable version, as for roles — a flow reads the newest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from tangram.engines.flows.service import publish_calendar
from tangram.errors import DefinitionInvalid, ErrorItem, NotFound
from tangram.metamodel import storage
from tangram.platform.api.body import Body
from tangram.platform.deps import BuilderActor, ContextDep, MemberContextDep

router = APIRouter(prefix="/api/apps/{app}/calendars", tags=["flows"])


class CalendarBody(Body):
    definition: dict[str, Any] = Field(description="The calendar definition (schema: "
                                       "calendar): label, timezone, work_hours, weekend, "
                                       "holidays, workdays.")


@router.get("")
def list_calendars(app: str, ctx: MemberContextDep) -> list[dict[str, Any]]:
    """The app's published calendars (members of the app), newest version each."""
    out = []
    for d in storage.list_definitions(ctx.session, app=app, kind="calendar"):
        body = storage.latest_body(ctx.session, app=app, kind="calendar", key=d.key)
        if body is not None:
            out.append({"key": d.key, "version": d.latest_version, "label": body.get("label"),
                        "timezone": body.get("timezone")})
    return out


@router.get("/{key}")
def get_calendar(app: str, key: str, ctx: MemberContextDep) -> dict[str, Any]:
    body = storage.latest_body(ctx.session, app=app, kind="calendar", key=key)
    if body is None:
        raise NotFound(f"business calendar {key!r} of app {app!r} does not exist")
    d = storage.get_definition(ctx.session, app=app, kind="calendar", key=key)
    return {"key": key, "version": d.latest_version, "definition": body}


@router.put("/{key}")
def put_calendar(app: str, key: str, body: CalendarBody, ctx: ContextDep,
                 _builder: BuilderActor) -> dict[str, Any]:
    """Save and publish a calendar (app builders): validated like any
    definition (422 naming each problem); running timers keep the due times
    they were given, new waits count with the new version."""
    if body.definition.get("key", key) != key:
        raise DefinitionInvalid("the body's key does not match the URL", errors=[ErrorItem(
            code="key_mismatch", path="$.key",
            message=f"key is {body.definition.get('key')!r} but the calendar is {key!r}")])
    version = publish_calendar(ctx, app=app, body={**body.definition, "key": key})
    return {"key": key, "version": version}
