"""A read-only view of the organization for one request: memberships and the
department tree, each read at most once (the request sees the org as it is
now — a user moved a minute ago is seen in the new department)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.directory import (
    department_children,
    department_subtree,
    user_departments_table,
)


class OrgView:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._memberships: dict[uuid.UUID | None, frozenset[uuid.UUID]] = {None: frozenset()}
        self._children: dict[uuid.UUID, list[uuid.UUID]] | None = None

    def departments_of(self, user_id: uuid.UUID | None) -> frozenset[uuid.UUID]:
        """The departments ``user_id`` is a member of, now."""
        if user_id not in self._memberships:
            ud = user_departments_table
            rows = self.session.execute(sa.select(ud.c.department_id)
                                        .where(ud.c.user_id == user_id))
            self._memberships[user_id] = frozenset(r[0] for r in rows)
        return self._memberships[user_id]

    def preload(self, user_ids: Iterable[uuid.UUID | None]) -> None:
        """Read memberships of many users in one query (lists check many rows)."""
        wanted = {u for u in user_ids if u not in self._memberships}
        if not wanted:
            return
        ud = user_departments_table
        found: dict[uuid.UUID | None, set[uuid.UUID]] = {u: set() for u in wanted}
        for r in self.session.execute(sa.select(ud.c.user_id, ud.c.department_id)
                                      .where(ud.c.user_id.in_(wanted))):
            found[r.user_id].add(r.department_id)
        self._memberships.update({u: frozenset(d) for u, d in found.items()})

    def subtree(self, roots: Iterable[uuid.UUID]) -> frozenset[uuid.UUID]:
        """``roots`` and every department below them."""
        if self._children is None:
            self._children = department_children(self.session)
        return department_subtree(self._children, roots)
