"""User placeholders in expression scopes: ``{"$user": "<name>"}`` stands for a
value of the user the scope is evaluated for.

    {"field": "owner", "op": "eq", "value": {"$user": "id"}}
    {"field": "region_dept", "op": "in", "value": {"$user": "department_tree"}}

Each entry is declared once here and read by substitution, validation and the
docs (docs/permissions.md lists every name; a test checks it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tangram.engines.context import Actor
from tangram.engines.forms.query import MATCH_ALL, MATCH_NONE
from tangram.platform.permissions.org import OrgView

PLACEHOLDER_KEY = "$user"


@dataclass(frozen=True)
class UserFacts:
    """What placeholders may refer to, for one user."""

    id: uuid.UUID | None
    username: str
    departments: frozenset[uuid.UUID]
    primary_department: uuid.UUID | None
    org: OrgView


@dataclass(frozen=True)
class Placeholder:
    name: str
    description: str
    value: Callable[[UserFacts], Any]


def _ids(values: frozenset[uuid.UUID]) -> list[str]:
    return sorted(str(v) for v in values)


PLACEHOLDERS: dict[str, Placeholder] = {p.name: p for p in (
    Placeholder("id", "the user's id (compare with owner, created_by or a user field)",
                lambda u: str(u.id) if u.id else None),
    Placeholder("username", "the user's login name", lambda u: u.username),
    Placeholder("department", "the user's primary department id",
                lambda u: str(u.primary_department) if u.primary_department else None),
    Placeholder("departments", "ids of every department the user is a member of (a list)",
                lambda u: _ids(u.departments)),
    Placeholder("department_tree", "ids of the user's departments and all departments "
                "below them (a list)", lambda u: _ids(u.org.subtree(u.departments))),
)}


class PlaceholderUnknown(ValueError):
    pass


# Operators that hold for every record when the user has no value to compare
# with (none of an empty list; "contains all of" nothing); every other
# operator then matches no record.
_TRUE_WHEN_EMPTY = frozenset({"ne", "not_in", "not_contains", "contains_all"})


def _is_placeholder(spec: Any) -> bool:
    return isinstance(spec, dict) and set(spec) == {PLACEHOLDER_KEY}


def substitute(spec: Any, facts: UserFacts) -> Any:
    """``spec`` with every ``{"$user": name}`` replaced by the user's value.

    A condition whose placeholder has no value for this user (no department)
    becomes a constant — false for ``eq``/``in``/…, true for
    ``ne``/``not_in``/… — so a view or scope of "my departments" shows a
    user in none nothing, instead of failing on an empty list.
    """
    if isinstance(spec, dict):
        if _is_placeholder(spec):
            name = spec[PLACEHOLDER_KEY]
            entry = PLACEHOLDERS.get(name) if isinstance(name, str) else None
            if entry is None:
                raise PlaceholderUnknown(
                    f"unknown placeholder {{\"$user\": {name!r}}}; known: "
                    f"{', '.join(PLACEHOLDERS)}")
            return entry.value(facts)
        filled = {k: substitute(v, facts) for k, v in spec.items()}
        if _is_placeholder(spec.get("value")) and filled["value"] in (None, []):
            return MATCH_ALL if spec.get("op") in _TRUE_WHEN_EMPTY else MATCH_NONE
        return filled
    if isinstance(spec, list):
        return [substitute(v, facts) for v in spec]
    return spec


def names_used(spec: Any) -> set[str]:
    """Placeholder names a filter uses (for validation)."""
    if isinstance(spec, dict):
        if set(spec) == {PLACEHOLDER_KEY}:
            return {str(spec[PLACEHOLDER_KEY])}
        return set().union(*(names_used(v) for v in spec.values())) if spec else set()
    if isinstance(spec, list):
        return set().union(*(names_used(v) for v in spec)) if spec else set()
    return set()


def facts_for(session: Session, actor: Actor, org: OrgView | None = None) -> UserFacts:
    """The placeholders' values for ``actor`` (an engine Actor), now."""
    org = org or OrgView(session)
    departments = org.departments_of(actor.id)
    primary = actor.primary_department_id
    if primary not in departments:
        primary = min(departments) if departments else None
    return UserFacts(id=actor.id, username=actor.username, departments=departments,
                     primary_department=primary, org=org)


def sample_facts(session: Session) -> UserFacts:
    """Made-up values, to check that a filter compiles with every placeholder."""
    return UserFacts(id=uuid.UUID(int=1), username="sample",
                     departments=frozenset({uuid.UUID(int=2)}),
                     primary_department=uuid.UUID(int=2), org=OrgView(session))
