"""Factories for permission tests: departments, users with memberships, roles
and assignments, written straight through the services."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from tangram.db import new_id
from tangram.engines.context import Actor
from tangram.engines.directory import departments_table, users_table
from tangram.platform.auth.service import get_user
from tangram.platform.permissions import roles
from tangram.platform.permissions.organization import apply_memberships

NOW = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def department(session: Session, name: str, parent: uuid.UUID | None = None) -> uuid.UUID:
    dept_id = new_id()
    session.execute(departments_table.insert().values(id=dept_id, name=name, parent_id=parent,
                                                      created_at=NOW))
    return dept_id


def user(session: Session, username: str, *departments: uuid.UUID,
         heads: Iterable[uuid.UUID] = ()) -> uuid.UUID:
    """A user without password (made by an import, say) in ``departments``."""
    user_id = new_id()
    session.execute(users_table.insert().values(
        id=user_id, username=username, display_name=username, is_admin=False,
        status="active", created_at=NOW, updated_at=NOW))
    move(session, user_id, *departments, heads=heads)
    return user_id


def move(session: Session, user_id: uuid.UUID, *departments: uuid.UUID,
         heads: Iterable[uuid.UUID] = ()) -> None:
    head_set = set(heads)
    apply_memberships(session, user_id=user_id, wanted={d: d in head_set for d in departments},
                      primary=departments[0] if departments else None, now=NOW)


def actor(session: Session, user_id: uuid.UUID) -> Actor:
    return get_user(session, user_id).as_actor()


def grant(form: str, actions: Iterable[str], scope: str = "own", *,
          filter: dict[str, Any] | None = None, fields: dict[str, str] | None = None
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"actions": list(actions), "scope": scope}
    if filter is not None:
        out["filter"] = filter
    if fields:
        out["fields"] = fields
    return {form: out}


def role(session: Session, app: str, key: str, *grants: dict[str, Any]) -> str:
    forms: dict[str, Any] = {}
    for g in grants:
        forms.update(g)
    roles.publish_role(session, app=app, body={"key": key, "label": {"en": key},
                                               "forms": forms}, actor_id=None, now=NOW)
    return key


def assign(session: Session, app: str, role_key: str, *, user_id: uuid.UUID | None = None,
           department_id: uuid.UUID | None = None) -> None:
    roles.assign_role(session, app=app, role=role_key, user_id=user_id,
                      department_id=department_id, actor_id=None, now=NOW)
