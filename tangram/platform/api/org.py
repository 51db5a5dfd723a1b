"""The organization: departments (a tree with heads), users' departments and
status, the org-chart import and the security audit log — administrators
only; and the directory every signed-in user may look people up in."""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field

from tangram.engines import directory
from tangram.platform.api.body import Body
from tangram.platform.auth.service import list_users, set_password
from tangram.platform.deps import AdminActor, ClockDep, CurrentActor, CurrentAuth, SessionDep
from tangram.platform.permissions import audit, organization
from tangram.platform.permissions.org_import import import_org, normalize

# One router for both: /api/org/… (administrators) and /api/directory/… (everyone).
router = APIRouter(prefix="/api")
ORG: list[str | Enum] = ["organization"]
NO_CONTENT = status.HTTP_204_NO_CONTENT

Limit = Annotated[int, Query(ge=1, le=100)]
Search = Annotated[str | None, Query(max_length=200, description="words to look for")]
After = Annotated[str | None, Query(description="next_cursor of the previous page")]


@router.get("/directory/users", tags=["directory"])
def directory_users(session: SessionDep, _actor: CurrentActor, search: Search = None,
                    limit: Limit = 20, after: After = None) -> dict[str, Any]:
    """Active users, as any colleague may see them (for user fields, report
    parameters, approvers to add): id, name as ``title``, username, primary
    department."""
    return directory.lookup_users(session, search=search, limit=limit, after=after)


@router.get("/directory/departments", tags=["directory"])
def directory_departments(session: SessionDep, _actor: CurrentActor, search: Search = None,
                          limit: Limit = 20, after: After = None) -> dict[str, Any]:
    """Departments: id, name as ``title``, parent_id."""
    return directory.lookup_departments(session, search=search, limit=limit, after=after)


class DepartmentBody(Body):
    name: str = Field(min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None


class DepartmentPatch(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    parent_id: uuid.UUID | None = Field(None, description="Moves the department when "
                                        "present (null: to the top level).")


class Membership(Body):
    department_id: uuid.UUID
    is_head: bool = False


class MembershipsBody(Body):
    departments: list[Membership]
    primary_department_id: uuid.UUID | None = None


@router.get("/org/departments", tags=ORG)
def department_tree(session: SessionDep, _admin: AdminActor) -> list[dict[str, Any]]:
    return organization.department_tree(session)


@router.post("/org/departments", tags=ORG, status_code=status.HTTP_201_CREATED)
def create_department(body: DepartmentBody, session: SessionDep, admin: AdminActor,
                      clock: ClockDep) -> dict[str, str]:
    dept_id = organization.create_department(session, name=body.name,
                                             parent_id=body.parent_id, actor_id=admin.id,
                                             now=clock.now())
    return {"id": str(dept_id)}


@router.patch("/org/departments/{dept_id}", tags=ORG, status_code=NO_CONTENT)
def update_department(dept_id: uuid.UUID, body: DepartmentPatch, session: SessionDep,
                      admin: AdminActor, clock: ClockDep) -> None:
    organization.update_department(session, dept_id=dept_id, name=body.name,
                                   parent_id=body.parent_id,
                                   move="parent_id" in body.model_fields_set,
                                   actor_id=admin.id, now=clock.now())


@router.get("/org/users", tags=ORG)
def users(session: SessionDep, _admin: AdminActor) -> list[dict[str, Any]]:
    return [{"id": str(u.id), "username": u.username, "display_name": u.display_name,
             "status": u.status, "is_admin": u.is_admin,
             "primary_department_id": str(u.primary_department_id)
             if u.primary_department_id else None,
             "departments": [{"id": str(d.id), "name": d.name, "is_head": d.is_head}
                             for d in u.departments]} for u in list_users(session)]


@router.put("/org/users/{user_id}/departments", tags=ORG, status_code=NO_CONTENT)
def set_departments(user_id: uuid.UUID, body: MembershipsBody, session: SessionDep,
                    admin: AdminActor, clock: ClockDep) -> None:
    organization.set_memberships(
        session, user_id=user_id,
        departments=[(m.department_id, m.is_head) for m in body.departments],
        primary=body.primary_department_id, actor_id=admin.id, now=clock.now())


@router.post("/org/users/{user_id}/disable", tags=ORG, status_code=NO_CONTENT)
def disable_user(user_id: uuid.UUID, session: SessionDep, admin: AdminActor,
                 clock: ClockDep) -> None:
    """Sessions and API tokens of the user stop working at once."""
    organization.set_status(session, user_id=user_id, active=False, actor_id=admin.id,
                            now=clock.now())


@router.post("/org/users/{user_id}/enable", tags=ORG, status_code=NO_CONTENT)
def enable_user(user_id: uuid.UUID, session: SessionDep, admin: AdminActor,
                clock: ClockDep) -> None:
    organization.set_status(session, user_id=user_id, active=True, actor_id=admin.id,
                            now=clock.now())


class PasswordBody(Body):
    password: str = Field(min_length=1, max_length=1000)


@router.post("/org/users/{user_id}/password", tags=ORG, status_code=NO_CONTENT)
def set_user_password(user_id: uuid.UUID, body: PasswordBody, session: SessionDep,
                      admin: AdminActor, auth: CurrentAuth, clock: ClockDep) -> None:
    """Set a user's password (a new account from the org import, a forgotten
    password). The password policy applies; the user's login sessions end
    (but the caller's own, when they set their own password)."""
    ended = set_password(session, user_id=user_id, password=body.password, clock=clock,
                         keep_session=auth.session_id if auth.user.id == user_id else None)
    audit.record(session, action="user.password_set", target=str(user_id),
                 actor_id=admin.id, at=clock.now(), sessions_ended=ended)


@router.post("/org/import", tags=ORG)
def import_chart(body: dict[str, Any], session: SessionDep, admin: AdminActor,
                 clock: ClockDep) -> dict[str, Any]:
    """Import a DingTalk/WeCom-shaped org chart (docs/permissions.md); idempotent."""
    return import_org(session, normalize(body), actor_id=admin.id, now=clock.now()).as_dict()


@router.get("/org/audit", tags=ORG)
def security_audit(session: SessionDep, _admin: AdminActor, action: str | None = None,
                   limit: int = 100) -> dict[str, Any]:
    """Changes of rights: roles, assignments, shares, tokens, users, org imports."""
    return {"items": audit.entries(session, action=action, limit=min(max(limit, 1), 500))}
