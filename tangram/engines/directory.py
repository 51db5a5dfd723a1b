"""The organization directory engines read: users and departments.

Engines resolve user/department fields, assignees and owner scopes from these
tables; the platform (auth, org import, permissions) manages them. They sit in
the engines layer so that no engine has to import the platform. The lookups at
the end are what every signed-in user may see of them (pickers).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime
from tangram.engines.cursors import cursor_invalid, decode_cursor, encode_cursor

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


# --------------------------------------------------------------------------- lookups

def lookup_users(session: Session, *, search: str | None = None, limit: int = 20,
                 after: str | None = None) -> dict[str, Any]:
    """Active users any colleague may pick (a user field, an approver to add):
    id, display name as ``title``, username and primary department — never
    contact details. ``search`` words must each occur in the display name or
    the username; ordered by display name, in keyset pages.

    >>> lookup_users(session, search="王", limit=20)["items"][0]["title"]
    '王芳'
    """
    u, d = users_table, departments_table
    stmt = (sa.select(u.c.id, u.c.display_name.label("title"), u.c.username,
                      d.c.id.label("department_id"), d.c.name.label("department_name"))
            .outerjoin(d, d.c.id == u.c.primary_department_id)
            .where(u.c.status == "active"))
    page = _page(session, stmt, title=u.c.display_name, ident=u.c.id,
                 words=[u.c.display_name, u.c.username], search=search, limit=limit,
                 after=after)
    return {"items": [{"id": str(r.id), "title": r.title, "username": r.username,
                       "department": None if r.department_id is None else
                       {"id": str(r.department_id), "name": r.department_name}}
                      for r in page.rows], "next_cursor": page.next_cursor}


def lookup_departments(session: Session, *, search: str | None = None, limit: int = 20,
                       after: str | None = None) -> dict[str, Any]:
    """Departments any colleague may pick: id, name as ``title`` and
    ``parent_id`` (to show the tree); ``search`` words must each occur in the
    name; ordered by name, in keyset pages."""
    d = departments_table
    stmt = sa.select(d.c.id, d.c.name.label("title"), d.c.parent_id)
    page = _page(session, stmt, title=d.c.name, ident=d.c.id, words=[d.c.name], search=search,
                 limit=limit, after=after)
    return {"items": [{"id": str(r.id), "title": r.title,
                       "parent_id": None if r.parent_id is None else str(r.parent_id)}
                      for r in page.rows], "next_cursor": page.next_cursor}


@dataclass
class _Page:
    rows: list[sa.Row[Any]]
    next_cursor: str | None


def _page(session: Session, stmt: sa.Select[Any], *, title: sa.ColumnElement[str],
          ident: sa.ColumnElement[uuid.UUID], words: list[sa.ColumnElement[str]],
          search: str | None, limit: int, after: str | None) -> _Page:
    """One keyset page of ``stmt`` ordered by (title, id); the cursor holds both."""
    for word in (search or "").split():
        stmt = stmt.where(sa.or_(*(c.icontains(word, autoescape=True) for c in words)))
    if after:
        last_title, last_id = _decode_cursor(after)
        stmt = stmt.where(sa.or_(title > last_title,
                                 sa.and_(title == last_title, ident > last_id)))
    rows = list(session.execute(stmt.order_by(title, ident).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more and rows:
        cursor = encode_cursor([rows[-1].title, str(rows[-1].id)])
    return _Page(rows=rows, next_cursor=cursor)


def _decode_cursor(token: str) -> tuple[str, uuid.UUID]:
    payload = decode_cursor(token, of="list")
    try:
        title, ident = payload
        return str(title), uuid.UUID(ident)
    except (ValueError, TypeError, AttributeError):
        raise cursor_invalid("not a cursor", of="list") from None
