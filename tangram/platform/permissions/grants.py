"""Which roles a user holds in an app, their published definitions, and the
records shared with the user."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

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


def role_keys(session: Session, *, app: str, user_id: uuid.UUID | None,
              departments: Iterable[uuid.UUID]) -> set[str]:
    """Roles of ``app`` assigned to the user or to one of their departments."""
    if user_id is None:
        return set()
    ra = role_assignments_table
    holder = ra.c.user_id == user_id
    depts = sorted(departments)
    if depts:
        holder = sa.or_(holder, ra.c.department_id.in_(depts))
    return {r[0] for r in session.execute(sa.select(ra.c.role).distinct()
                                          .where(ra.c.app == app, holder))}


def published_roles(session: Session, *, app: str, keys: Iterable[str]) -> list[Role]:
    """The newest published version of each role in ``keys`` (unpublished roles
    grant nothing)."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    d, v = definitions_table, definition_versions_table
    rows = session.execute(
        sa.select(v.c.body)
        .join(d, sa.and_(v.c.definition_id == d.c.id, v.c.version == d.c.latest_version))
        .where(d.c.app == app, d.c.kind == "role", d.c.key.in_(wanted))
        .order_by(d.c.key))
    return [Role.model_validate(r.body) for r in rows]


def shared_record_ids(session: Session, *, app: str, form: str, user_id: uuid.UUID | None,
                      departments: Iterable[uuid.UUID], accesses: tuple[str, ...]
                      ) -> frozenset[uuid.UUID]:
    """Records of the form shared with the user or one of their departments."""
    if user_id is None or not accesses:
        return frozenset()
    s = record_shares_table
    holder = s.c.user_id == user_id
    depts = sorted(departments)
    if depts:
        holder = sa.or_(holder, s.c.department_id.in_(depts))
    rows = session.execute(sa.select(s.c.record_id).distinct().where(
        s.c.app == app, s.c.form == form, s.c.access.in_(accesses), holder))
    return frozenset(r[0] for r in rows)
