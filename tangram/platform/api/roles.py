"""Roles of an app (definitions; app builders edit them) and who holds them
(administrators assign them), plus the app-builder platform role."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.errors import NotFound
from tangram.platform.api.body import Body
from tangram.platform.deps import AdminActor, BuilderActor, ClockDep, SessionDep
from tangram.platform.permissions import roles

router = APIRouter(prefix="/api/apps/{app}", tags=["roles"])


class RoleBody(Body):
    definition: dict[str, Any] = Field(description="The role definition (schema: role).")
    note: str | None = Field(None, max_length=2000)


class AssignmentBody(Body):
    role: str
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    include_sub_departments: bool = Field(True, description="For a department: whether "
                                          "members of the departments below it hold the "
                                          "role too.")


class BuilderBody(Body):
    granted: bool = True


@router.get("/roles")
def list_roles(app: str, session: SessionDep, _builder: BuilderActor) -> list[dict[str, Any]]:
    return roles.list_roles(session, app=app)


@router.put("/roles/{key}")
def publish_role(app: str, key: str, body: RoleBody, session: SessionDep,
                 builder: BuilderActor, clock: ClockDep) -> dict[str, Any]:
    """Save and publish a role (a new immutable version; audited)."""
    if body.definition.get("key", key) != key:
        raise NotFound(f"body key {body.definition.get('key')!r} does not match role {key!r}")
    return roles.publish_role(session, app=app, body={**body.definition, "key": key},
                              actor_id=builder.id, now=clock.now(), note=body.note)


@router.get("/role-assignments")
def list_assignments(app: str, session: SessionDep, _admin: AdminActor
                     ) -> list[dict[str, Any]]:
    return roles.list_assignments(session, app=app)


@router.post("/role-assignments", status_code=status.HTTP_201_CREATED)
def assign(app: str, body: AssignmentBody, session: SessionDep, admin: AdminActor,
           clock: ClockDep) -> dict[str, Any]:
    return roles.assign_role(session, app=app, role=body.role, user_id=body.user_id,
                             department_id=body.department_id,
                             include_sub_departments=body.include_sub_departments,
                             actor_id=admin.id,
                             now=clock.now())


@router.delete("/role-assignments/{assignment_id}", status_code=status.HTTP_204_NO_CONTENT)
def unassign(app: str, assignment_id: uuid.UUID, session: SessionDep, admin: AdminActor,
             clock: ClockDep) -> None:
    roles.unassign_role(session, app=app, assignment_id=assignment_id, actor_id=admin.id,
                        now=clock.now())


@router.put("/builders/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def set_builder(app: str, user_id: uuid.UUID, body: BuilderBody, session: SessionDep,
                admin: AdminActor, clock: ClockDep) -> None:
    roles.set_app_builder(session, app=app, user_id=user_id, granted=body.granted,
                          actor_id=admin.id, now=clock.now())
