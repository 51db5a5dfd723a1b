"""Role definitions and who holds them: save, publish, assign, unassign.

Every change is written to the security audit log in the same transaction.

    publish_role(session, app="crm", body={...}, actor_id=admin.id, now=now)
    assign_role(session, app="crm", role="sales_rep", user_id=rep.id, actor_id=..., now=now)
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK
from tangram.db import new_id
from tangram.engines.directory import existing_department_ids, existing_user_ids
from tangram.engines.forms.query import QueryContext, validate_filter
from tangram.engines.forms.registry import get_runtime
from tangram.errors import DefinitionInvalid, ErrorItem, NotFound, ValidationFailed
from tangram.metamodel import storage
from tangram.metamodel.roles import Role
from tangram.platform.permissions import audit
from tangram.platform.permissions.placeholders import (
    PLACEHOLDERS,
    names_used,
    sample_facts,
    substitute,
)
from tangram.platform.permissions.tables import app_builders_table, role_assignments_table


def check_role(session: Session, app: str, role: Role) -> None:
    """Cross-checks pydantic cannot do: named forms and fields exist (for
    published forms) and expression filters compile with every placeholder."""
    errors: list[ErrorItem] = []
    sample = sample_facts(session)
    for form, at, grant in role.all_grants():
        try:
            rt = get_runtime(session, app, form)
        except NotFound:
            if (storage.find_definition(session, app=app, kind="form", key=form) is None
                    and not any(e.path == f"$.forms.{form}" for e in errors)):
                errors.append(ErrorItem(code="unknown_form", path=f"$.forms.{form}",
                                        message=f"app {app!r} has no form {form!r}"))
            continue  # a draft form: checked again when the role is next published
        for key in grant.fields:
            if rt.field(key) is None:
                errors.append(ErrorItem(code="unknown_field", path=f"{at}.fields.{key}",
                                        message=f"form {form!r} has no field {key!r}"))
        if grant.filter is None:
            continue
        unknown = names_used(grant.filter) - set(PLACEHOLDERS)
        if unknown:
            errors.append(ErrorItem(code="unknown_placeholder", path=f"{at}.filter", message=(
                f"unknown placeholder(s) {sorted(unknown)}; known: {', '.join(PLACEHOLDERS)}")))
            continue
        qctx = QueryContext(resolve=lambda key: get_runtime(session, app, key).tables,
                            today=SYSTEM_CLOCK.today("UTC"), timezone="UTC",
                            now=SYSTEM_CLOCK.now())
        for e in validate_filter(substitute(grant.filter, sample), tables=rt.tables,
                                 qctx=qctx):
            errors.append(ErrorItem(code=e.code, message=e.message,
                                    path=f"{at}.filter" + (e.path or "$")[1:]))
    if errors:
        raise DefinitionInvalid(f"role {role.key!r} is not valid for app {app!r}",
                                errors=errors)


def publish_role(session: Session, *, app: str, body: dict[str, Any],
                 actor_id: uuid.UUID | None, now: datetime, note: str | None = None
                 ) -> dict[str, Any]:
    """Save ``body`` as the role's draft and publish it as the next version."""
    key = body.get("key")
    if not isinstance(key, str):
        raise DefinitionInvalid("a role needs a key", errors=[ErrorItem(
            code="missing", path="$.key", message="give the role a key, e.g. \"sales_rep\"")])
    row = storage.save_draft(session, app=app, kind="role", key=key, body=body,
                             user_id=actor_id, now=now,
                             check=lambda m: check_role(session, app, Role.model_validate(m)))
    locked = storage.get_definition(session, app=app, kind="role", key=key, lock=True)
    assert row.draft is not None
    version = storage.record_version(session, definition=locked, body=row.draft,
                                     user_id=actor_id, now=now, note=note)
    audit.record(session, action="role.publish", target=f"{app}/{key}", actor_id=actor_id,
                 at=now, version=version, body=row.draft)
    return {"key": key, "version": version, "definition": row.draft}


def list_roles(session: Session, *, app: str) -> list[dict[str, Any]]:
    out = []
    for d in storage.list_definitions(session, app=app, kind="role"):
        body = storage.latest_body(session, app=app, kind="role", key=d.key)
        out.append({"key": d.key, "version": d.latest_version, "definition": body,
                    "draft": d.draft})
    return out


def parse_holder(session: Session, user_id: uuid.UUID | None,
            department_id: uuid.UUID | None) -> tuple[str, uuid.UUID]:
    if (user_id is None) == (department_id is None):
        raise ValidationFailed([ErrorItem(code="holder", field="user_id", message=(
            "give exactly one of user_id and department_id"))])
    if user_id is not None:
        if not existing_user_ids(session, [user_id]):
            raise NotFound(f"user {user_id} does not exist")
        return "user", user_id
    assert department_id is not None
    if not existing_department_ids(session, [department_id]):
        raise NotFound(f"department {department_id} does not exist")
    return "department", department_id


def assign_role(session: Session, *, app: str, role: str, user_id: uuid.UUID | None = None,
                department_id: uuid.UUID | None = None, include_sub_departments: bool = True,
                actor_id: uuid.UUID | None, now: datetime) -> dict[str, Any]:
    """Give ``role`` to a user or to a department's members — and, unless
    ``include_sub_departments=False``, to members of the departments below it.
    Idempotent; assigning again with another ``include_sub_departments``
    changes the existing assignment (audited)."""
    storage.get_definition(session, app=app, kind="role", key=role)
    kind, holder = parse_holder(session, user_id, department_id)
    ra = role_assignments_table
    column = ra.c.user_id if kind == "user" else ra.c.department_id
    existing = session.execute(sa.select(ra.c.id, ra.c.include_sub_departments).where(
        ra.c.app == app, ra.c.role == role, column == holder)).first()
    if existing is not None:
        assignment_id = existing.id
        if kind == "department" and existing.include_sub_departments != include_sub_departments:
            session.execute(ra.update().where(ra.c.id == assignment_id).values(
                include_sub_departments=include_sub_departments))
            audit.record(session, action="role.assign", target=f"{app}/{role}",
                         actor_id=actor_id, at=now, department=holder,
                         include_sub_departments=include_sub_departments)
    else:
        assignment_id = new_id()
        session.execute(ra.insert().values(
            id=assignment_id, app=app, role=role, user_id=user_id,
            department_id=department_id, include_sub_departments=include_sub_departments,
            created_at=now, created_by=actor_id))
        extra = {"include_sub_departments": include_sub_departments} \
            if kind == "department" else {}
        audit.record(session, action="role.assign", target=f"{app}/{role}", actor_id=actor_id,
                     at=now, **{kind: holder}, **extra)
    return _assignment_json(session, assignment_id)


def _assignment_json(session: Session, assignment_id: uuid.UUID) -> dict[str, Any]:
    ra = role_assignments_table
    r = session.execute(sa.select(ra).where(ra.c.id == assignment_id)).one()
    return _assignment(r)


def _assignment(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(r.id), "app": r.app, "role": r.role}
    if r.user_id is not None:
        out["user_id"] = str(r.user_id)
    else:
        out["department_id"] = str(r.department_id)
        out["include_sub_departments"] = bool(r.include_sub_departments)
    return out


def unassign_role(session: Session, *, app: str, assignment_id: uuid.UUID,
                  actor_id: uuid.UUID | None, now: datetime) -> None:
    ra = role_assignments_table
    row = session.execute(sa.select(ra).where(ra.c.id == assignment_id,
                                              ra.c.app == app)).first()
    if row is None:
        raise NotFound(f"role assignment {assignment_id} does not exist in app {app!r}")
    session.execute(ra.delete().where(ra.c.id == assignment_id))
    audit.record(session, action="role.unassign", target=f"{app}/{row.role}",
                 actor_id=actor_id, at=now, user=row.user_id, department=row.department_id)


def list_assignments(session: Session, *, app: str) -> list[dict[str, Any]]:
    ra = role_assignments_table
    rows = session.execute(sa.select(ra).where(ra.c.app == app)
                           .order_by(ra.c.role, ra.c.created_at))
    return [{"id": str(r.id), "role": r.role,
             "user_id": str(r.user_id) if r.user_id else None,
             "department_id": str(r.department_id) if r.department_id else None,
             "include_sub_departments": bool(r.include_sub_departments)
             if r.department_id else None}
            for r in rows]


# --- platform role: app builder ---------------------------------------------------------

def is_app_builder(session: Session, *, user_id: uuid.UUID | None, app: str) -> bool:
    ab = app_builders_table
    return user_id is not None and session.execute(sa.select(ab.c.app).where(
        ab.c.user_id == user_id, ab.c.app == app)).first() is not None


def set_app_builder(session: Session, *, app: str, user_id: uuid.UUID, granted: bool,
                    actor_id: uuid.UUID | None, now: datetime) -> None:
    """Make a user builder of an app (may edit its definitions), or stop it."""
    storage.get_app(session, app)
    parse_holder(session, user_id, None)
    ab = app_builders_table
    session.execute(ab.delete().where(ab.c.user_id == user_id, ab.c.app == app))
    if granted:
        session.execute(ab.insert().values(user_id=user_id, app=app, created_at=now))
    audit.record(session, action="app_builder.grant" if granted else "app_builder.revoke",
                 target=app, actor_id=actor_id, at=now, user=user_id)
