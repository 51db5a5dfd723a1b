"""Managing the organization: the department tree with heads, users'
memberships (one primary department) and user status. Audited.

    dept = create_department(session, name="华东销售", parent_id=root, actor_id=a, now=now)
    set_memberships(session, user_id=u, departments=[(dept, True)], primary=dept, ...)
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import FrozenClock
from tangram.db import new_id
from tangram.engines.directory import (
    departments_table,
    existing_department_ids,
    user_departments_table,
    users_table,
)
from tangram.errors import Conflict, ErrorItem, NotFound, ValidationFailed
from tangram.platform.auth.service import get_user, set_user_active
from tangram.platform.permissions import audit


def _parents(session: Session) -> dict[uuid.UUID, uuid.UUID | None]:
    d = departments_table
    return {r.id: r.parent_id for r in session.execute(sa.select(d.c.id, d.c.parent_id))}


def _check_parent(session: Session, dept_id: uuid.UUID | None,
                  parent_id: uuid.UUID | None) -> None:
    if parent_id is None:
        return
    parents = _parents(session)
    if parent_id not in parents:
        raise NotFound(f"parent department {parent_id} does not exist")
    at: uuid.UUID | None = parent_id
    while at is not None:
        if at == dept_id:
            raise Conflict("a department cannot be moved below itself or its own "
                           "sub-departments")
        at = parents.get(at)


def create_department(session: Session, *, name: str, parent_id: uuid.UUID | None,
                      actor_id: uuid.UUID | None, now: datetime,
                      external_id: str | None = None) -> uuid.UUID:
    _check_name(name)
    _check_parent(session, None, parent_id)
    dept_id = new_id()
    session.execute(departments_table.insert().values(
        id=dept_id, parent_id=parent_id, name=name.strip(), external_id=external_id,
        created_at=now))
    audit.record(session, action="department.create", target=name, actor_id=actor_id, at=now,
                 department=dept_id, parent=parent_id)
    return dept_id


def update_department(session: Session, *, dept_id: uuid.UUID, name: str | None = None,
                      parent_id: uuid.UUID | None = None, move: bool = False,
                      actor_id: uuid.UUID | None, now: datetime) -> None:
    """Rename and/or (``move=True``) move a department under ``parent_id``."""
    if not existing_department_ids(session, [dept_id]):
        raise NotFound(f"department {dept_id} does not exist")
    values: dict[str, Any] = {}
    if name is not None:
        _check_name(name)
        values["name"] = name.strip()
    if move:
        _check_parent(session, dept_id, parent_id)
        values["parent_id"] = parent_id
    if values:
        d = departments_table
        session.execute(d.update().where(d.c.id == dept_id).values(**values))
        audit.record(session, action="department.update", target=str(dept_id),
                     actor_id=actor_id, at=now, **values)


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 200:
        raise ValidationFailed([ErrorItem(code="length", field="name",
                                          message="use 1 to 200 characters")])


def department_tree(session: Session) -> list[dict[str, Any]]:
    """Every department as a nested tree, with heads and member counts."""
    d, ud = departments_table, user_departments_table
    members: dict[uuid.UUID, int] = defaultdict(int)
    heads: dict[uuid.UUID, list[str]] = defaultdict(list)
    for m in session.execute(sa.select(ud.c.department_id, ud.c.user_id, ud.c.is_head)):
        members[m.department_id] += 1
        if m.is_head:
            heads[m.department_id].append(str(m.user_id))
    nodes: dict[uuid.UUID, dict[str, Any]] = {}
    order = session.execute(sa.select(d.c.id, d.c.parent_id, d.c.name, d.c.external_id)
                            .order_by(d.c.name, d.c.id)).all()
    for r in order:
        nodes[r.id] = {"id": str(r.id), "name": r.name, "external_id": r.external_id,
                       "heads": sorted(heads[r.id]), "member_count": members[r.id],
                       "children": []}
    roots: list[dict[str, Any]] = []
    for r in order:
        parent = nodes.get(r.parent_id) if r.parent_id else None
        (parent["children"] if parent else roots).append(nodes[r.id])
    return roots


def set_memberships(session: Session, *, user_id: uuid.UUID,
                    departments: list[tuple[uuid.UUID, bool]], primary: uuid.UUID | None,
                    actor_id: uuid.UUID | None, now: datetime) -> None:
    """Replace the user's departments (``(department id, is head)``) and primary one."""
    get_user(session, user_id)
    wanted = dict(departments)
    missing = set(wanted) - existing_department_ids(session, wanted)
    if missing:
        raise NotFound(f"department(s) {', '.join(sorted(map(str, missing)))} do not exist")
    if primary is not None and primary not in wanted:
        raise ValidationFailed([ErrorItem(code="primary", field="primary_department_id",
                                          message="the primary department must be one of "
                                          "the user's departments")])
    if apply_memberships(session, user_id=user_id, wanted=wanted, primary=primary, now=now):
        audit.record(session, action="user.departments", target=str(user_id),
                     actor_id=actor_id, at=now, departments=[
                         {"id": d, "is_head": h} for d, h in sorted(wanted.items())],
                     primary=primary)


def apply_memberships(session: Session, *, user_id: uuid.UUID,
                      wanted: dict[uuid.UUID, bool], primary: uuid.UUID | None,
                      now: datetime) -> bool:
    """Make the user's memberships exactly ``wanted``; True when anything changed."""
    ud, u = user_departments_table, users_table
    current = {r.department_id: bool(r.is_head) for r in session.execute(
        sa.select(ud.c.department_id, ud.c.is_head).where(ud.c.user_id == user_id))}
    changed = False
    gone = set(current) - set(wanted)
    if gone:
        session.execute(ud.delete().where(ud.c.user_id == user_id,
                                          ud.c.department_id.in_(gone)))
        changed = True
    for dept, is_head in wanted.items():
        if dept not in current:
            session.execute(ud.insert().values(user_id=user_id, department_id=dept,
                                               is_head=is_head))
            changed = True
        elif current[dept] != is_head:
            session.execute(ud.update().where(ud.c.user_id == user_id,
                                              ud.c.department_id == dept)
                            .values(is_head=is_head))
            changed = True
    if primary is None and wanted:
        primary = sorted(wanted)[0]
    old_primary = session.execute(sa.select(u.c.primary_department_id)
                                  .where(u.c.id == user_id)).scalar_one()
    if old_primary != primary:
        session.execute(u.update().where(u.c.id == user_id)
                        .values(primary_department_id=primary, updated_at=now))
        changed = True
    return changed


def set_status(session: Session, *, user_id: uuid.UUID, active: bool,
               actor_id: uuid.UUID | None, now: datetime) -> None:
    """Enable or disable a user. A disabled user's sessions and API tokens stop
    working at once (both check the user's status on every request)."""
    if actor_id == user_id and not active:
        raise Conflict("you cannot disable your own account")
    set_user_active(session, user_id=user_id, active=active, clock=FrozenClock(now))
    audit.record(session, action="user.enable" if active else "user.disable",
                 target=str(user_id), actor_id=actor_id, at=now)
