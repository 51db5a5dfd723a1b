"""Which roles a user holds in an app, their published definitions, and the
records shared with the user."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.directory import user_departments_table
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


def _my_departments(user_id: uuid.UUID) -> sa.Select[tuple[uuid.UUID]]:
    ud = user_departments_table
    return sa.select(ud.c.department_id).where(ud.c.user_id == user_id)


def held_roles(session: Session, *, app: str, user_id: uuid.UUID | None) -> list[Role]:
    """The newest published version of every role of ``app`` assigned to the
    user or to one of their current departments (one query; unpublished roles
    grant nothing)."""
    if user_id is None:
        return []
    ra, d, v = role_assignments_table, definitions_table, definition_versions_table
    assigned = sa.select(ra.c.role).where(ra.c.app == app, sa.or_(
        ra.c.user_id == user_id, ra.c.department_id.in_(_my_departments(user_id))))
    rows = session.execute(
        sa.select(v.c.id)
        .join(d, sa.and_(v.c.definition_id == d.c.id, v.c.version == d.c.latest_version))
        .where(d.c.app == app, d.c.kind == "role", d.c.key.in_(assigned))
        .order_by(d.c.key)).all()
    missing = [r.id for r in rows if r.id not in _parsed]
    if missing:
        for r in session.execute(sa.select(v.c.id, v.c.body).where(v.c.id.in_(missing))):
            _parsed[r.id] = Role.model_validate(r.body)
    return [_parsed[r.id] for r in rows]


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
