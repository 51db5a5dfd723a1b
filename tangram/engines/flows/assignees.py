"""Assignee rules: who gets a task, a notification or a record.

One entry per rule kind in :data:`ASSIGNEE_RULES` (read by execution,
validation, the metadata endpoint and the docs). Role membership lives in the
platform's permissions package; the platform installs a resolver with
:func:`set_role_resolver` (engines do not import the platform).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db.prepared import Prepared
from tangram.engines.context import Actor
from tangram.engines.directory import (
    department_children,
    department_subtree,
    departments_table,
    user_departments_table,
    users_table,
)
from tangram.engines.expressions import compile_expression
from tangram.engines.notify.service import remember_users
from tangram.engines.notify.tables import preferences_table
from tangram.metamodel import flows as fl

RoleResolver = Callable[[Session, str, str], list[uuid.UUID]]


def _no_roles(session: Session, app: str, role: str) -> list[uuid.UUID]:
    return []


_role_resolver: list[RoleResolver] = [_no_roles]


def set_role_resolver(fn: RoleResolver) -> None:
    """The platform tells the engine how to list the holders of an app role."""
    _role_resolver[0] = fn


def role_members(session: Session, app: str, role: str) -> list[uuid.UUID]:
    """The holders of an app role (directly or through their department),
    as the platform's resolver lists them."""
    return _role_resolver[0](session, app, role)


@dataclass
class Scope:
    """What a rule may look at: the instance's app, record, submitter, variables."""

    session: Session
    app: str
    submitter_id: uuid.UUID | None
    record: Mapping[str, Any] | None
    variables: Mapping[str, Any]  # expression variables (record, old, user, vars)
    eval_context: Any


def as_user_id(value: Any) -> uuid.UUID | str | None:
    """A user field value, an id string or a username → id (or username to look up)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and value:
        try:
            return uuid.UUID(value)
        except ValueError:
            return value
    return None


_ACTIVE_USERS = sa.select(users_table.c.id, users_table.c.username).where(
    sa.or_(users_table.c.id.in_(sa.bindparam("ids", expanding=True)),
           users_table.c.username.in_(sa.bindparam("names", expanding=True))),
    users_table.c.status == "active")
# With the user's notification preferences: a task's assignee is notified
# next, and this saves reading them again (remember_users).
_ACTIVE_USER = Prepared(
    sa.select(users_table.c.id, users_table.c.username, users_table.c.language,
              preferences_table.c.channel, preferences_table.c.enabled)
    .outerjoin(preferences_table, preferences_table.c.user_id == users_table.c.id)
    .where(sa.or_(users_table.c.id == sa.bindparam("id"),
                  users_table.c.username == sa.bindparam("name")),
           users_table.c.status == "active"))


def lookup_users(session: Session, refs: Iterable[Any]) -> list[uuid.UUID]:
    """Ids of the active users named by id or username, in the order given."""
    parsed = [r for r in (as_user_id(v) for v in refs) if r is not None]
    ids = {r for r in parsed if isinstance(r, uuid.UUID)}
    names = {r for r in parsed if isinstance(r, str)}
    if not ids and not names:
        return []
    if len(ids) + len(names) == 1:  # the common case: a prepared statement
        matched = _ACTIVE_USER.all(session, {"id": next(iter(ids), None),
                                             "name": next(iter(names), "").lower()})
        rows = [(r["id"], r["username"]) for r in matched]
        remember_users(session, [{**r, "user_id": r["id"]} for r in matched])
    else:
        rows = [(r.id, r.username) for r in session.execute(_ACTIVE_USERS, {
            "ids": list(ids), "names": sorted({n.lower() for n in names})})]
    by_ref: dict[Any, uuid.UUID] = {}
    for user_id, username in rows:
        by_ref[user_id] = user_id
        by_ref[username] = user_id
    out: list[uuid.UUID] = []
    for ref in parsed:
        found = by_ref.get(ref.lower() if isinstance(ref, str) else ref)
        if found is not None and found not in out:
            out.append(found)
    return out


def actor_for(session: Session, user_id: uuid.UUID | None) -> Actor | None:
    if user_id is None:
        return None
    u = users_table
    row = session.execute(sa.select(u).where(u.c.id == user_id)).first()
    if row is None:
        return None
    depts = tuple(session.execute(sa.select(user_departments_table.c.department_id)
                                  .where(user_departments_table.c.user_id == user_id))
                  .scalars())
    return Actor(id=row.id, username=row.username, display_name=row.display_name,
                 is_admin=row.is_admin, department_ids=depts,
                 primary_department_id=row.primary_department_id or (depts[0] if depts
                                                                      else None),
                 language=row.language, timezone=row.timezone)


def admins(session: Session) -> list[uuid.UUID]:
    u = users_table
    return list(session.execute(sa.select(u.c.id).where(u.c.is_admin.is_(True),
                                                        u.c.status == "active")
                                .order_by(u.c.username)).scalars())


def _primary_department(session: Session, user_id: uuid.UUID) -> uuid.UUID | None:
    actor = actor_for(session, user_id)
    return actor.primary_department_id if actor else None


def _heads(session: Session, department_id: uuid.UUID) -> list[uuid.UUID]:
    ud = user_departments_table
    return list(session.execute(sa.select(ud.c.user_id).where(ud.c.department_id == department_id,
                                                              ud.c.is_head.is_(True))
                                .order_by(ud.c.user_id)).scalars())


def _parent(session: Session, department_id: uuid.UUID) -> uuid.UUID | None:
    return session.execute(sa.select(departments_table.c.parent_id)
                           .where(departments_table.c.id == department_id)).scalar_one_or_none()


def department_head(session: Session, *, department_id: uuid.UUID | None,
                    levels: int, exclude: uuid.UUID | None) -> list[uuid.UUID]:
    """Heads ``levels`` up from a department. Level 1 is the department's own
    head — unless that is the person themselves (a manager's manager is the
    parent's head), in which case the search moves up one more."""
    dept = department_id
    level = 0
    while dept is not None:
        heads = [h for h in _heads(session, dept) if h != exclude]
        if heads:
            level += 1
            if level == levels:
                return heads
        dept = _parent(session, dept)
    return []


# --- the rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class AssigneeRuleSpec:
    kind: str
    label: dict[str, str]
    model: type[Any]
    resolve: Callable[[Any, Scope], list[uuid.UUID]]


def _resolve_user(rule: fl.UserAssignee, scope: Scope) -> list[uuid.UUID]:
    return lookup_users(scope.session, rule.users)


def _resolve_role(rule: fl.RoleAssignee, scope: Scope) -> list[uuid.UUID]:
    return role_members(scope.session, scope.app, rule.role)


def _resolve_department_head(rule: fl.DepartmentHeadAssignee, scope: Scope) -> list[uuid.UUID]:
    start: uuid.UUID | None = None
    person = scope.submitter_id
    if rule.of:
        value = as_user_id((scope.record or {}).get(rule.of))
        if isinstance(value, uuid.UUID):
            # a department field holds a department id; a user field a user id
            is_dept = scope.session.execute(sa.select(departments_table.c.id)
                                            .where(departments_table.c.id == value)).first()
            if is_dept:
                start, person = value, None
            else:
                person = value
    if start is None and person is not None:
        start = _primary_department(scope.session, person)
    return department_head(scope.session, department_id=start, levels=rule.levels,
                           exclude=person)


def _resolve_field(rule: fl.FieldAssignee, scope: Scope) -> list[uuid.UUID]:
    value = (scope.record or {}).get(rule.field)
    values = value if isinstance(value, list) else [value]
    return lookup_users(scope.session, values)


def _resolve_submitter(rule: fl.SubmitterAssignee, scope: Scope) -> list[uuid.UUID]:
    return [scope.submitter_id] if scope.submitter_id else []


def _resolve_expression(rule: fl.ExpressionAssignee, scope: Scope) -> list[uuid.UUID]:
    value = compile_expression(rule.expression, allowed_names=EXPRESSION_NAMES).evaluate(
        scope.variables, context=scope.eval_context)
    values = value if isinstance(value, list | tuple) else [value]
    return lookup_users(scope.session, values)


def _resolve_department_members(rule: fl.DepartmentMembersAssignee, scope: Scope
                                ) -> list[uuid.UUID]:
    d, ud, u = departments_table, user_departments_table, users_table
    ids = [i for i in (_as_uuid(ref) for ref in rule.departments) if i is not None]
    found = frozenset(scope.session.execute(sa.select(d.c.id).where(sa.or_(
        d.c.external_id.in_(rule.departments), d.c.id.in_(ids)))).scalars())
    if rule.subtree and found:
        found = department_subtree(department_children(scope.session), found)
    if not found:
        return []
    members = list(scope.session.execute(
        sa.select(u.c.id).join(ud, ud.c.user_id == u.c.id)
        .where(ud.c.department_id.in_(found), u.c.status == "active")
        .group_by(u.c.id, u.c.username).order_by(u.c.username)).scalars())
    if rule.role is not None:
        holders = set(role_members(scope.session, scope.app, rule.role))
        members = [m for m in members if m in holders]
    return members


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


EXPRESSION_NAMES = ("record", "old", "user", "vars")

ASSIGNEE_RULES: dict[str, AssigneeRuleSpec] = {spec.kind: spec for spec in (
    AssigneeRuleSpec("user", {"zh": "指定成员", "en": "Named users"}, fl.UserAssignee,
                     _resolve_user),
    AssigneeRuleSpec("role", {"zh": "角色", "en": "Role holders"}, fl.RoleAssignee,
                     _resolve_role),
    AssigneeRuleSpec("department_head", {"zh": "部门负责人", "en": "Department head"},
                     fl.DepartmentHeadAssignee, _resolve_department_head),
    AssigneeRuleSpec("field", {"zh": "表单中的成员字段", "en": "User field of the record"},
                     fl.FieldAssignee, _resolve_field),
    AssigneeRuleSpec("submitter", {"zh": "发起人", "en": "Submitter"}, fl.SubmitterAssignee,
                     _resolve_submitter),
    AssigneeRuleSpec("expression", {"zh": "表达式", "en": "Expression"},
                     fl.ExpressionAssignee, _resolve_expression),
    AssigneeRuleSpec("department_members", {"zh": "部门成员", "en": "Department members"},
                     fl.DepartmentMembersAssignee, _resolve_department_members),
)}


def user_key(ref: Any) -> Any:
    """How :func:`user_statuses` keys a user named by id or username."""
    parsed = as_user_id(ref)
    return parsed.lower() if isinstance(parsed, str) else parsed


def user_statuses(session: Session, refs: Iterable[Any]) -> dict[Any, str]:
    """The status (active, disabled) of the users named by id or username,
    in one query, keyed by :func:`user_key`; a user missing from it does not
    exist."""
    parsed = [r for r in (as_user_id(v) for v in refs) if r is not None]
    ids = [r for r in parsed if isinstance(r, uuid.UUID)]
    names = sorted({r.lower() for r in parsed if isinstance(r, str)})
    if not ids and not names:
        return {}
    u = users_table
    status: dict[Any, str] = {}
    for row in session.execute(sa.select(u.c.id, u.c.username, u.c.status).where(
            sa.or_(u.c.id.in_(ids), u.c.username.in_(names)))):
        status[row.id] = status[row.username.lower()] = row.status
    return status


def _named_refs(rule: Any, scope: Scope) -> list[Any]:
    """What a rule names users by (usernames, ids), for rules that name them."""
    if isinstance(rule, fl.UserAssignee):
        return list(rule.users)
    if isinstance(rule, fl.FieldAssignee):
        value = (scope.record or {}).get(rule.field)
        return value if isinstance(value, list) else [value]
    if isinstance(rule, fl.ExpressionAssignee):
        try:
            value = compile_expression(rule.expression, allowed_names=EXPRESSION_NAMES
                                       ).evaluate(scope.variables, context=scope.eval_context)
        except Exception:  # noqa: BLE001 - only explaining an empty result
            return []
        return list(value) if isinstance(value, list | tuple) else [value]
    return []


def empty_reason(rules: Iterable[Any], scope: Scope) -> str:
    """Why ``rules`` found nobody, for the history: the users they name that
    do not exist or are not active, else "no assignee".

    >>> empty_reason([fl.UserAssignee(users=["ghost"])], scope)  # doctest: +SKIP
    "user 'ghost' does not exist"
    """
    refs = [r for rule in rules for r in (as_user_id(v) for v in _named_refs(rule, scope))
            if r is not None]
    if not refs:
        return "no assignee"
    status = user_statuses(scope.session, refs)
    problems = []
    for ref in dict.fromkeys(refs):
        found = status.get(user_key(ref))
        if found is None:
            problems.append(f"user {str(ref)!r} does not exist")
        elif found != "active":
            problems.append(f"user {str(ref)!r} is {found}")
    return "; ".join(problems) or "no assignee"


def resolve(rules: Iterable[Any], scope: Scope) -> list[uuid.UUID]:
    """Every user the rules name, each once, in rule order."""
    out: list[uuid.UUID] = []
    for rule in rules:
        for user_id in ASSIGNEE_RULES[rule.kind].resolve(rule, scope):
            if user_id not in out:
                out.append(user_id)
    return out
