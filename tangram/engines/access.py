"""The access-policy check points engines call on every data path.

Engines only know this protocol; the platform's permissions package supplies
the real policy (roles, row scopes, field rules). ``AllowAll`` is what system
jobs and the foundation's tests use until roles exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa

if TYPE_CHECKING:
    from tangram.engines.context import Actor

FormAction = Literal["read", "create", "update", "delete", "restore", "export", "import",
                     "print", "submit", "approve"]
FieldAccess = Literal["hidden", "read_only", "editable"]


class AccessPolicy(Protocol):
    def check_form_action(self, actor: Actor, app: str, form: str, action: FormAction) -> None:
        """Raise PermissionDenied unless ``actor`` may do ``action`` on the form."""

    def row_predicate(self, actor: Actor, app: str, form: str, table: sa.Table,
                      action: FormAction) -> sa.ColumnElement[bool] | None:
        """An SQL condition limiting rows to the actor's scope (None = all rows)."""

    def check_row(self, actor: Actor, app: str, form: str, row: dict[str, Any],
                  action: FormAction) -> None:
        """Raise PermissionDenied (or NotFound) unless the single row is in scope."""

    def field_access(self, actor: Actor, app: str, form: str) -> dict[str, FieldAccess]:
        """Access per field key; fields not named are editable."""


class AllowAll:
    def check_form_action(self, actor: Actor, app: str, form: str, action: FormAction) -> None:
        return None

    def row_predicate(self, actor: Actor, app: str, form: str, table: sa.Table,
                      action: FormAction) -> sa.ColumnElement[bool] | None:
        return None

    def check_row(self, actor: Actor, app: str, form: str, row: dict[str, Any],
                  action: FormAction) -> None:
        return None

    def field_access(self, actor: Actor, app: str, form: str) -> dict[str, FieldAccess]:
        return {}
