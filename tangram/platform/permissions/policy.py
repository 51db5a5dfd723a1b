"""``RolePolicy``: the platform's AccessPolicy, built from roles as data.

One instance serves one database session (one request or job) and reads the
organization, role assignments, role definitions and shares at most once per
user and app — so a change made by an administrator counts from the next
request on.

Rules of combination (docs/permissions.md):

- administrators may do everything (no predicate, no field rules);
- an action is allowed on a form when at least one of the user's roles grants
  it; the rows it applies to are the union of the scopes of those roles,
  widened by records shared with the user (``grants.SHARE_ACCESS``);
- a field's access is the most permissive any of the user's roles on the form
  gives (fields a role does not name are editable through that role).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK, Clock
from tangram.engines.access import FieldAccess, FormAction
from tangram.engines.context import Actor
from tangram.engines.forms.query import FilterInvalid, QueryContext, compile_filter
from tangram.engines.forms.registry import get_runtime
from tangram.errors import NotFound, PermissionDenied
from tangram.i18n import Msg, action_word
from tangram.metamodel.roles import FormGrant, Role
from tangram.platform.permissions import grants
from tangram.platform.permissions.org import OrgView
from tangram.platform.permissions.placeholders import (
    PlaceholderUnknown,
    UserFacts,
    facts_for,
    substitute,
)
from tangram.platform.permissions.scopes import SCOPES, Condition, Viewer
from tangram.platform.permissions.tables import record_shares_table

log = logging.getLogger(__name__)

_LEVEL = {"hidden": 0, "read_only": 1, "editable": 2}
# Beyond this many shared records a scope uses a subquery instead of a list.
MAX_INLINE_SHARES = 500


class RolePolicy:
    def __init__(self, session: Session, *, clock: Clock = SYSTEM_CLOCK,
                 timezone: str = "Asia/Shanghai") -> None:
        self.session = session
        self.clock = clock
        self.timezone = timezone
        self.org = OrgView(session)
        self._facts: dict[uuid.UUID | None, UserFacts] = {}
        self._roles: dict[tuple[uuid.UUID | None, str], list[Role]] = {}
        self._shares: dict[tuple[uuid.UUID | None, str, str, str], frozenset[uuid.UUID]] = {}
        self._access: dict[tuple[uuid.UUID | None, str, str], dict[str, FieldAccess]] = {}

    # --- what the user holds --------------------------------------------------------

    def facts(self, actor: Actor) -> UserFacts:
        if actor.id not in self._facts:
            self._facts[actor.id] = facts_for(self.session, actor, self.org)
        return self._facts[actor.id]

    def roles(self, actor: Actor, app: str) -> list[Role]:
        key = (actor.id, app)
        if key not in self._roles:
            self._roles[key] = grants.held_roles(self.session, app=app, user_id=actor.id)
        return self._roles[key]

    def grants_for(self, actor: Actor, app: str, form: str, action: str) -> list[FormGrant]:
        """The grants of the user's roles that allow ``action`` on the form."""
        return [g for role in self.roles(actor, app) for g in role.grants(form)
                if action in g.actions]

    def allows(self, actor: Actor, app: str, form: str, action: str) -> bool:
        """Whether ``action`` (any role action, also submit/approve) is allowed."""
        return actor.is_admin or bool(self.grants_for(actor, app, form, action))

    def _shared(self, actor: Actor, app: str, form: str, action: str) -> frozenset[uuid.UUID]:
        key = (actor.id, app, form, action)
        if key not in self._shares:
            self._shares[key] = grants.shared_record_ids(
                self.session, app=app, form=form, user_id=actor.id,
                accesses=grants.SHARE_ACCESS.get(action, ()))
        return self._shares[key]

    # --- AccessPolicy ---------------------------------------------------------------

    def check_form_action(self, actor: Actor, app: str, form: str, action: FormAction) -> None:
        if not self.allows(actor, app, form, action):
            raise PermissionDenied(
                Msg("form_action_denied", action=action_word(action), form=form, app=app),
                details={"app": app, "form": form, "action": action})

    def row_predicate(self, actor: Actor, app: str, form: str, table: sa.Table,
                      action: FormAction) -> sa.ColumnElement[bool] | None:
        if actor.is_admin:
            return None
        found = self.grants_for(actor, app, form, action)
        if any(g.scope == "all" for g in found):
            return None
        viewer = self._viewer(actor, app, form)
        conditions: list[Condition] = []
        seen: set[str] = set()
        for g in found:
            if g.scope != "expression" and g.scope in seen:
                continue
            seen.add(g.scope)
            conditions.append(SCOPES[g.scope].sql(viewer, g, table))
        shared = self._shared(actor, app, form, action)
        if shared:
            conditions.append(self._shares_sql(actor, app, form, action, shared, table))
        if not conditions:
            return sa.false()
        return conditions[0] if len(conditions) == 1 else sa.or_(*conditions)

    def in_scope(self, actor: Actor, app: str, form: str, row: Mapping[str, Any],
                 action: str) -> bool:
        """The per-record form of :meth:`row_predicate`."""
        if actor.is_admin:
            return True
        if row.get("id") in self._shared(actor, app, form, action):
            return True
        viewer = self._viewer(actor, app, form)
        return any(SCOPES[g.scope].check(viewer, g, row)
                   for g in self.grants_for(actor, app, form, action))

    def check_row(self, actor: Actor, app: str, form: str, row: dict[str, Any],
                  action: FormAction) -> None:
        if self.in_scope(actor, app, form, row, action):
            return
        if action != "read" and self.in_scope(actor, app, form, row, "read"):
            raise PermissionDenied(
                Msg("record_action_denied", record=row.get("id"), form=form,
                    action=action_word(action)),
                details={"app": app, "form": form, "action": action})
        # Out of sight: say "not found", as for a record that does not exist.
        raise NotFound(Msg("record_missing", record=row.get("id"), form=form))

    def field_access(self, actor: Actor, app: str, form: str) -> dict[str, FieldAccess]:
        if actor.is_admin:
            return {}
        cache_key = (actor.id, app, form)
        cached = self._access.get(cache_key)
        if cached is not None:
            return cached
        form_grants = [g for r in self.roles(actor, app) for g in r.grants(form) if g.actions]
        named = {key for g in form_grants for key in g.fields}
        out: dict[str, FieldAccess] = {}
        for key in sorted(named):
            best = max((g.fields.get(key, "editable") for g in form_grants),
                       key=_LEVEL.__getitem__)
            if best != "editable":
                out[key] = best
        # Forms whose computed fields read each other's see this form's own
        # rules while its closure is worked out.
        self._access[cache_key] = out
        out = {**out, **self._derived_hidden(actor, app, form, out, named)}
        self._access[cache_key] = out
        return out

    def _derived_hidden(self, actor: Actor, app: str, form: str,
                        access: Mapping[str, FieldAccess], named: set[str]
                        ) -> dict[str, FieldAccess]:
        """Computed fields hidden because they read a hidden field (see
        ``tangram.engines.forms.derived``); a field a role names explicitly
        keeps the role's rule."""
        from tangram.engines.forms.derived import hidden_by_sources

        hidden = {k for k, a in access.items() if a == "hidden"}
        try:
            rt = get_runtime(self.session, app, form)
        except NotFound:
            return {}

        def hidden_in(other: str) -> set[str]:
            try:
                if not self.allows(actor, app, other, "read"):
                    # A form the viewer may not read: none of its values,
                    # nor which records it has (a count over it).
                    return {"id", *get_runtime(self.session, app, other).fields}
                found = self.field_access(actor, app, other)
            except NotFound:
                return set()
            return {k for k, a in found.items() if a == "hidden"}

        derived = hidden_by_sources(rt, hidden, hidden_in=hidden_in, keep=named) - hidden
        return dict.fromkeys(sorted(derived), "hidden")

    # --- helpers --------------------------------------------------------------------

    def _viewer(self, actor: Actor, app: str, form: str) -> Viewer:
        def expression(g: FormGrant, table: sa.FromClause) -> Condition | None:
            return self._expression(self.facts(actor), app, form, g, table)

        return Viewer(session=self.session, actor_id=actor.id,
                      facts_of=lambda: self.facts(actor), expression=expression,
                      record_table=lambda: get_runtime(self.session, app, form).table)

    def _expression(self, facts: UserFacts, app: str, form: str, g: FormGrant,
                    table: sa.FromClause) -> Condition | None:
        rt = get_runtime(self.session, app, form)
        tables = rt.tables if table is rt.table else replace(rt.tables,
                                                             table=cast(sa.Table, table))
        qctx = QueryContext(resolve=lambda key: get_runtime(self.session, app, key).tables,
                            today=self.clock.today(self.timezone), timezone=self.timezone,
                            now=self.clock.now())
        try:
            cond = compile_filter(substitute(g.filter, facts), tables=tables, qctx=qctx)
        except (FilterInvalid, PlaceholderUnknown, NotFound) as exc:
            # Fail closed: a scope that does not compile for this user (a
            # field removed since) grants nothing.
            log.info("expression scope on %s.%s does not compile: %s", app, form, exc)
            return None
        return sa.true() if cond is None else cond

    def _shares_sql(self, actor: Actor, app: str, form: str, action: str,
                    shared: frozenset[uuid.UUID], table: sa.FromClause) -> Condition:
        if len(shared) <= MAX_INLINE_SHARES:
            return table.c.id.in_(sorted(shared))
        s = record_shares_table
        assert actor.id is not None  # only users have shares
        return table.c.id.in_(sa.select(s.c.record_id).where(
            s.c.app == app, s.c.form == form,
            s.c.access.in_(grants.SHARE_ACCESS.get(action, ())), grants.share_holder(actor.id)))
