"""API tokens for integrations.

A token is created by a user, acts as that user narrowed to some apps and
actions, is shown once (``tgm_…``), stored as its SHA-256, can be revoked and
remembers when it was last used. A disabled user's tokens stop at once (the
user is checked on every use).

    issued = create_token(session, user_id=u, name="ERP sync", apps=["crm"],
                          actions=["read", "create"], now=now)
    requests.get(url, headers={"Authorization": f"Bearer {issued['token']}"})
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.engines.access import AccessPolicy, FieldAccess, FormAction
from tangram.engines.context import Actor
from tangram.errors import ErrorItem, NotFound, PermissionDenied, ValidationFailed
from tangram.metamodel.roles import ROLE_ACTIONS
from tangram.platform.permissions import audit
from tangram.platform.permissions.tables import api_tokens_table

TOKEN_PREFIX = "tgm_"  # noqa: S105  (a marker, not a secret)
ALL_APPS = "*"
# last_used_at is written at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenScope:
    id: uuid.UUID
    user_id: uuid.UUID
    apps: tuple[str, ...]
    actions: tuple[str, ...]

    def covers(self, app: str, action: str) -> bool:
        return (ALL_APPS in self.apps or app in self.apps) and action in self.actions


def is_api_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, user_id: uuid.UUID, name: str, apps: list[str],
                 actions: list[str], now: datetime, expires_at: datetime | None = None
                 ) -> dict[str, Any]:
    """A new token; the returned ``token`` is the only time it is shown."""
    errors = []
    if not name.strip() or len(name) > 100:
        errors.append(ErrorItem(code="length", field="name", message="use 1 to 100 characters"))
    if not apps:
        errors.append(ErrorItem(code="required", field="apps",
                                message=f"name the apps (or \"{ALL_APPS}\" for all)"))
    bad = sorted(set(actions) - set(ROLE_ACTIONS))
    if bad or not actions:
        errors.append(ErrorItem(code="options", field="actions", message=(
            f"use actions from: {', '.join(ROLE_ACTIONS)}" + (f" (not {bad})" if bad else ""))))
    if errors:
        raise ValidationFailed(errors)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = new_id()
    session.execute(api_tokens_table.insert().values(
        id=token_id, user_id=user_id, name=name.strip(), token_hash=_hash(token),
        prefix=token[:12], apps=sorted(set(apps)), actions=sorted(set(actions)),
        created_at=now, expires_at=expires_at))
    audit.record(session, action="token.create", target=name[:200], actor_id=user_id, at=now,
                 token=token_id, apps=sorted(set(apps)), actions=sorted(set(actions)))
    return {**_public(session, token_id), "token": token}


def _public(session: Session, token_id: uuid.UUID) -> dict[str, Any]:
    t = api_tokens_table
    r = session.execute(sa.select(t).where(t.c.id == token_id)).one()
    return _row(r)


def _row(r: Any) -> dict[str, Any]:
    iso = iso_utc
    return {"id": str(r.id), "name": r.name, "prefix": r.prefix, "apps": r.apps,
            "actions": r.actions, "created_at": iso(r.created_at),
            "expires_at": iso(r.expires_at), "last_used_at": iso(r.last_used_at),
            "revoked_at": iso(r.revoked_at)}


def list_tokens(session: Session, *, user_id: uuid.UUID) -> list[dict[str, Any]]:
    t = api_tokens_table
    rows = session.execute(sa.select(t).where(t.c.user_id == user_id)
                           .order_by(t.c.created_at.desc()))
    return [_row(r) for r in rows]


def revoke_token(session: Session, *, token_id: uuid.UUID, actor: Actor, now: datetime
                 ) -> None:
    """Revoke a token: its owner or an administrator may."""
    t = api_tokens_table
    row = session.execute(sa.select(t.c.user_id, t.c.name).where(t.c.id == token_id)).first()
    if row is None or (row.user_id != actor.id and not actor.is_admin):
        raise NotFound(f"API token {token_id} does not exist")
    session.execute(t.update().where(t.c.id == token_id, t.c.revoked_at.is_(None))
                    .values(revoked_at=now))
    audit.record(session, action="token.revoke", target=row.name, actor_id=actor.id, at=now,
                 token=token_id)


def resolve_api_token(session: Session, token: str, *, now: datetime) -> TokenScope | None:
    """The live token's scope, or None when it is unknown, revoked or expired."""
    t = api_tokens_table
    r = session.execute(sa.select(t).where(t.c.token_hash == _hash(token))).first()
    if r is None or r.revoked_at is not None or (r.expires_at and r.expires_at <= now):
        return None
    if r.last_used_at is None or now - r.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(t.update().where(t.c.id == r.id).values(last_used_at=now))
    return TokenScope(id=r.id, user_id=r.user_id, apps=tuple(r.apps), actions=tuple(r.actions))


class TokenScopedPolicy:
    """The user's policy narrowed to a token's apps and actions."""

    def __init__(self, inner: AccessPolicy, scope: TokenScope) -> None:
        self.inner = inner
        self.scope = scope

    def _check(self, app: str, action: str) -> None:
        if not self.scope.covers(app, action):
            raise PermissionDenied(
                f"this API token may not {action} in app {app!r} (it allows "
                f"{', '.join(self.scope.actions)} in {', '.join(self.scope.apps)})",
                details={"app": app, "action": action})

    def check_form_action(self, actor: Actor, app: str, form: str, action: FormAction) -> None:
        self._check(app, action)
        self.inner.check_form_action(actor, app, form, action)

    def row_predicate(self, actor: Actor, app: str, form: str, table: sa.Table,
                      action: FormAction) -> sa.ColumnElement[bool] | None:
        if not self.scope.covers(app, action):
            return sa.false()
        return self.inner.row_predicate(actor, app, form, table, action)

    def check_row(self, actor: Actor, app: str, form: str, row: dict[str, Any],
                  action: FormAction) -> None:
        self._check(app, action)
        self.inner.check_row(actor, app, form, row, action)

    def field_access(self, actor: Actor, app: str, form: str) -> dict[str, FieldAccess]:
        return self.inner.field_access(actor, app, form)
