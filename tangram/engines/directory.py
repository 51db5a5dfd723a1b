"""The organization directory engines read: users and departments.

Engines resolve user/department fields, assignees and owner scopes from these
tables; the platform (auth, org import, permissions) manages them. They sit in
the engines layer so that no engine has to import the platform.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

users_table = sa.Table(
    "users", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("username", sa.String(100), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("mobile", sa.String(30), nullable=True),
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.String(20), nullable=False, server_default="active"),
    sa.Column("language", sa.String(10), nullable=False, server_default="zh"),
    sa.Column("timezone", sa.String(60), nullable=False, server_default="Asia/Shanghai"),
    sa.Column("primary_department_id", GUID, nullable=True),
    sa.Column("external_id", sa.String(100), nullable=True, unique=True),
    sa.Column("settings", JSONValue, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

departments_table = sa.Table(
    "departments", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("parent_id", GUID, sa.ForeignKey("departments.id"), nullable=True, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("external_id", sa.String(100), nullable=True, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

user_departments_table = sa.Table(
    "user_departments", metadata,
    sa.Column("user_id", GUID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("department_id", GUID, sa.ForeignKey("departments.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("is_head", sa.Boolean, nullable=False, server_default=sa.false()),
)


def existing_user_ids(session: Session, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = set(ids)
    if not wanted:
        return set()
    rows = session.execute(sa.select(users_table.c.id).where(users_table.c.id.in_(wanted)))
    return {r.id for r in rows}


def existing_department_ids(session: Session, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = set(ids)
    if not wanted:
        return set()
    rows = session.execute(sa.select(departments_table.c.id)
                           .where(departments_table.c.id.in_(wanted)))
    return {r.id for r in rows}


def user_names(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(sa.select(users_table.c.id, users_table.c.display_name)
                           .where(users_table.c.id.in_(wanted)))
    return {r.id: r.display_name for r in rows}


DepartmentChildren = dict[uuid.UUID, list[uuid.UUID]]


def department_children(session: Session) -> DepartmentChildren:
    """Every department's direct children (one query; keep it for a request)."""
    d = departments_table
    children: DepartmentChildren = {}
    for dept, parent in session.execute(sa.select(d.c.id, d.c.parent_id)):
        if parent is not None:
            children.setdefault(parent, []).append(dept)
    return children


def department_subtree(children: DepartmentChildren,
                       roots: Iterable[uuid.UUID]) -> frozenset[uuid.UUID]:
    """``roots`` and every department below them."""
    out: set[uuid.UUID] = set()
    stack = list(roots)
    while stack:
        dept = stack.pop()
        if dept in out:
            continue  # a cycle in imported data must not loop forever
        out.add(dept)
        stack.extend(children.get(dept, ()))
    return frozenset(out)
