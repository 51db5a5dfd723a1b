"""Row scopes: one registry entry per kind, each with its SQL form (for lists,
counts, reports, exports) and its per-record form (for single reads and
writes). Both forms of an entry read the same facts — the owner column and
the organization tables as they are now — and a property test
(tests/integration/test_scope_property.py) holds them to the same answer.

Owner-based scopes follow the owner's *current* department: the SQL form is
``owner IN (SELECT user_id FROM user_departments WHERE department_id IN (…))``,
the record form looks the owner's memberships up in the same table.

Expression scopes are filters of the records filter language. Its semantics
(relation paths, empty values, text matching) are defined by its SQL
compilation, so the record form runs that same compiled condition on the one
record (a primary-key lookup) instead of re-implementing the language.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.directory import user_departments_table
from tangram.metamodel.roles import SCOPE_KINDS, FormGrant
from tangram.platform.permissions.org import OrgView
from tangram.platform.permissions.placeholders import UserFacts

Condition = sa.ColumnElement[bool]


@dataclass
class Viewer:
    """The user a scope is evaluated for, with what scopes need to know."""

    session: Session
    actor_id: uuid.UUID | None
    # The user's departments etc., read only when a scope needs them ("own"
    # does not), so the common case costs no membership query.
    facts_of: Callable[[], UserFacts]
    # Compiles an expression grant's filter for this user on ``table`` (None:
    # the filter cannot be compiled any more — the scope then matches nothing).
    expression: Callable[[FormGrant, sa.FromClause], Condition | None]
    # The form's own table (record checks of expressions run on it), looked up
    # only when needed.
    record_table: Callable[[], sa.Table]

    @property
    def facts(self) -> UserFacts:
        return self.facts_of()

    @property
    def org(self) -> OrgView:
        return self.facts.org

    def tree(self) -> frozenset[uuid.UUID]:
        return self.org.subtree(self.facts.departments)


@dataclass(frozen=True)
class Scope:
    key: str
    label: dict[str, str]
    description: str
    sql: Callable[[Viewer, FormGrant, sa.FromClause], Condition]
    check: Callable[[Viewer, FormGrant, Mapping[str, Any]], bool]


def _owner_in(departments: frozenset[uuid.UUID], table: sa.FromClause) -> Condition:
    if not departments:
        return sa.false()
    ud = user_departments_table
    return table.c.owner.in_(sa.select(ud.c.user_id)
                             .where(ud.c.department_id.in_(sorted(departments))))


def _owner_departments(v: Viewer, row: Mapping[str, Any]) -> frozenset[uuid.UUID]:
    owner = row.get("owner")
    return v.org.departments_of(owner) if owner is not None else frozenset()


def _expression_sql(v: Viewer, g: FormGrant, table: sa.FromClause) -> Condition:
    cond = v.expression(g, table)
    return sa.false() if cond is None else cond


def _expression_check(v: Viewer, g: FormGrant, row: Mapping[str, Any]) -> bool:
    table = v.record_table()
    cond = v.expression(g, table)
    if cond is None or row.get("id") is None:
        return False
    found = v.session.execute(sa.select(table.c.id)
                              .where(table.c.id == row["id"], cond)).first()
    return found is not None


SCOPES: dict[str, Scope] = {s.key: s for s in (
    Scope("own", {"zh": "本人", "en": "Own records"},
          "records the user owns",
          sql=lambda v, g, t: t.c.owner == v.actor_id if v.actor_id else sa.false(),
          check=lambda v, g, row: v.actor_id is not None and row.get("owner") == v.actor_id),
    Scope("department", {"zh": "本部门", "en": "Own department"},
          "records whose owner is now in one of the user's departments",
          sql=lambda v, g, t: _owner_in(v.facts.departments, t),
          check=lambda v, g, row: bool(_owner_departments(v, row) & v.facts.departments)),
    Scope("department_tree", {"zh": "本部门及下级部门", "en": "Department and below"},
          "records whose owner is now in one of the user's departments or a department "
          "below them",
          sql=lambda v, g, t: _owner_in(v.tree(), t),
          check=lambda v, g, row: bool(_owner_departments(v, row) & v.tree())),
    Scope("all", {"zh": "全部", "en": "All records"}, "every record of the form",
          sql=lambda v, g, t: sa.true(),
          check=lambda v, g, row: True),
    Scope("expression", {"zh": "条件", "en": "Expression"},
          "records matching the grant's filter (records filter language with user "
          "placeholders)",
          sql=_expression_sql, check=_expression_check),
)}

assert tuple(SCOPES) == SCOPE_KINDS, "every scope kind of the metamodel needs an entry"
