"""Which roles a user holds in an app, their published definitions, and the
records shared with the user.

A role assigned to a department reaches the department's members and — when
the assignment's ``include_sub_departments`` is true (the default) — the
members of every department below it. Both directions (the roles a user
holds, the users holding a role) read the organization as it is now, so a
user moved out of the department loses the role with the next request.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.directory import departments_table, user_departments_table
from tangram.metamodel.roles import Role
from tangram.metamodel.storage import definition_versions_table, definitions_table
from tangram.platform.permissions.tables import record_shares_table, role_assignments_table

# Which share accesses widen the scope of each action. Delete and restore are
# never widened by a share: they stay with the record's owner side.
SHARE_ACCESS: dict[str, tuple[str, ...]] = {
    "read": ("read", "edit"),
    "export": ("read", "edit"),
    "print": ("read", "edit"),
    "update": ("edit",),
}


# Published role versions are immutable: parsed once per process, by version id.
_parsed: dict[uuid.UUID, Role] = {}


UserRef = uuid.UUID | sa.BindParameter[uuid.UUID]


def _my_departments(user_id: UserRef) -> sa.Select[tuple[uuid.UUID]]:
    ud = user_departments_table
    return sa.select(ud.c.department_id).where(ud.c.user_id == user_id)


def _my_departments_and_above(user_id: UserRef) -> sa.Select[tuple[uuid.UUID]]:
    """The user's departments and every department above them (a recursive
    query; UNION, not UNION ALL, so a cycle in imported data ends)."""
    d = departments_table
    chain = (sa.select(d.c.id, d.c.parent_id).where(d.c.id.in_(_my_departments(user_id)))
             .cte("department_chain", recursive=True))
    parent = d.alias("parent_department")
    chain = chain.union(sa.select(parent.c.id, parent.c.parent_id)
                        .join(chain, parent.c.id == chain.c.parent_id))
    return sa.select(chain.c.id)


def holds_assignment(user_id: UserRef) -> sa.ColumnElement[bool]:
    """Assignments that reach the user: given to the user, to one of their
    departments, or (``include_sub_departments``) to a department above one."""
    ra = role_assignments_table
    return sa.or_(ra.c.user_id == user_id,
                  ra.c.department_id.in_(_my_departments(user_id)),
                  sa.and_(ra.c.include_sub_departments.is_(True),
                          ra.c.department_id.in_(_my_departments_and_above(user_id))))


def _held_roles_statement() -> sa.Select[tuple[uuid.UUID]]:
    ra, d, v = role_assignments_table, definitions_table, definition_versions_table
    app: sa.BindParameter[str] = sa.bindparam("app")
    user: sa.BindParameter[uuid.UUID] = sa.bindparam("user_id")
    assigned = sa.select(ra.c.role).where(ra.c.app == app, holds_assignment(user))
    return (sa.select(v.c.id)
            .join(d, sa.and_(v.c.definition_id == d.c.id, v.c.version == d.c.latest_version))
            .where(d.c.app == app, d.c.kind == "role", d.c.key.in_(assigned))
            .order_by(d.c.key))


# Built once: SQLAlchemy does not reuse the compiled form of a recursive CTE
# rebuilt per call (it recompiled it on every request: ~5 ms each on
# PostgreSQL, more than the query itself); one statement object with bound
# parameters compiles once per process.
_HELD_ROLES = _held_roles_statement()


def held_roles(session: Session, *, app: str, user_id: uuid.UUID | None) -> list[Role]:
    """The newest published version of every role of ``app`` that reaches the
    user (:func:`holds_assignment`; one query; unpublished roles grant nothing)."""
    if user_id is None:
        return []
    v = definition_versions_table
    rows = session.execute(_HELD_ROLES, {"app": app, "user_id": user_id}).all()
    missing = [r.id for r in rows if r.id not in _parsed]
    if missing:
        for r in session.execute(sa.select(v.c.id, v.c.body).where(v.c.id.in_(missing))):
            _parsed[r.id] = Role.model_validate(r.body)
    return [_parsed[r.id] for r in rows]


def _role_holders_statement() -> sa.CompoundSelect[Any]:
    ra, ud, d = role_assignments_table, user_departments_table, departments_table
    app: sa.BindParameter[str] = sa.bindparam("app")
    role: sa.BindParameter[str] = sa.bindparam("role")
    direct = sa.select(ra.c.user_id.label("user_id")).where(
        ra.c.app == app, ra.c.role == role, ra.c.user_id.is_not(None))
    members = sa.select(ud.c.user_id).join(ra, ra.c.department_id == ud.c.department_id).where(
        ra.c.app == app, ra.c.role == role)
    below = (sa.select(ra.c.department_id.label("id"))
             .where(ra.c.app == app, ra.c.role == role, ra.c.department_id.is_not(None),
                    ra.c.include_sub_departments.is_(True))
             .cte("department_subtree", recursive=True))
    child = d.alias("child_department")
    below = below.union(sa.select(child.c.id).join(below, child.c.parent_id == below.c.id))
    in_subtree = sa.select(ud.c.user_id).where(ud.c.department_id.in_(sa.select(below.c.id)))
    return sa.union(direct, members, in_subtree)


_ROLE_HOLDERS = _role_holders_statement()


def role_holders(session: Session, *, app: str, role: str) -> list[uuid.UUID]:
    """Users the role reaches now: those it is given to, members of the
    departments it is given to and, for assignments with
    ``include_sub_departments``, members of every department below them."""
    rows: set[uuid.UUID] = set(session.execute(_ROLE_HOLDERS, {"app": app, "role": role})
                               .scalars())
    return sorted(rows, key=str)


def share_holder(user_id: uuid.UUID) -> sa.ColumnElement[bool]:
    """Shares given to the user or to one of their current departments."""
    s = record_shares_table
    return sa.or_(s.c.user_id == user_id, s.c.department_id.in_(_my_departments(user_id)))


def shared_record_ids(session: Session, *, app: str, form: str, user_id: uuid.UUID | None,
                      accesses: tuple[str, ...]) -> frozenset[uuid.UUID]:
    """Records of the form shared with the user or one of their departments."""
    if user_id is None or not accesses:
        return frozenset()
    s = record_shares_table
    holder = share_holder(user_id)
    rows = session.execute(sa.select(s.c.record_id).distinct().where(
        s.c.app == app, s.c.form == form, s.c.access.in_(accesses), holder))
    return frozenset(r[0] for r in rows)
