"""Role definitions: what a role may do on each form of its app.

A role is data (definition kind ``"role"``), shipped in an app package or
edited by an analyst, versioned like every definition::

    {"key": "sales_rep", "label": {"zh": "销售代表", "en": "Sales rep"},
     "forms": {
       "account": {"actions": ["read", "create", "update"], "scope": "own"},
       "contract": {"actions": ["read"], "scope": "department",
                    "fields": {"amount": "hidden"}},
       "lead": {"actions": ["read", "update"], "scope": "expression",
                "filter": {"field": "owner", "op": "is_empty", "value": true}}}}

A form may also take a list of grants, each with its own actions and scope,
when actions reach different records — e.g. a manager who reads and works
the public pool but deletes and exports only the team's leads::

       "lead": [{"actions": ["read", "update"], "scope": "expression",
                 "filter": {"field": "in_pool", "op": "eq", "value": true}},
                {"actions": ["read", "update", "delete", "export"],
                 "scope": "department_tree"}]

The grants of a role, like several roles of one user, combine as a union
(see docs/permissions.md). The
platform compiles ``scope`` (and ``filter``) to an SQL predicate and to a
per-record check; the scope kinds are the entries of
``tangram.platform.permissions.scopes.SCOPES``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from tangram.metamodel.common import Definition, Key, Label, object_or_list
from tangram.metamodel.storage import register_kind

RoleAction = Literal["read", "create", "update", "delete", "restore", "export", "import",
                     "print", "submit", "approve"]
ROLE_ACTIONS: tuple[str, ...] = get_args(RoleAction)
ScopeKind = Literal["own", "department", "department_tree", "all", "expression"]
SCOPE_KINDS: tuple[str, ...] = get_args(ScopeKind)
FieldAccessLevel = Literal["hidden", "read_only", "editable"]


class FormGrant(Definition):
    """A role's rights on one form."""

    actions: list[RoleAction] = Field(default_factory=list, description="Allowed actions.")
    scope: ScopeKind = Field("own", description="Which records the actions apply to: own, "
                             "department, department_tree, all, or expression (with filter).")
    filter: dict[str, Any] | None = Field(None, description=(
        "For scope \"expression\": a filter in the records filter language "
        "(docs/filters.md) whose values may be user placeholders such as "
        "{\"$user\": \"id\"} (docs/permissions.md)."))
    fields: dict[Key, FieldAccessLevel] = Field(default_factory=dict, description=(
        "Per field: hidden, read_only or editable (fields not named are editable)."))

    @model_validator(mode="after")
    def _filter_matches_scope(self) -> FormGrant:
        if self.scope == "expression" and not self.filter:
            raise ValueError("scope \"expression\" needs a filter, e.g. "
                             "{\"field\": \"owner\", \"op\": \"is_empty\", \"value\": true}")
        if self.scope != "expression" and self.filter is not None:
            raise ValueError(f"a filter is only used with scope \"expression\", not "
                             f"{self.scope!r}")
        if len(set(self.actions)) != len(self.actions):
            raise ValueError("an action is listed twice")
        return self


class Role(Definition):
    """A named set of rights on the forms of one app."""

    key: Key
    label: Label
    description: Label | None = None
    forms: dict[Key, object_or_list(FormGrant)] = Field(  # type: ignore[valid-type]
        default_factory=dict, description=(
            "Rights per form key: a grant, or a list of grants whose actions reach "
            "different records (each with its own scope); forms not named are not "
            "accessible through this role."))

    def grants(self, form: str) -> list[FormGrant]:
        """The role's grants on a form (none if the form is not named)."""
        found = self.forms.get(form)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def all_grants(self) -> list[tuple[str, str, FormGrant]]:
        """(form, JSON path, grant) for every grant, in definition order."""
        out: list[tuple[str, str, FormGrant]] = []
        for form, found in self.forms.items():
            if isinstance(found, list):
                out.extend((form, f"$.forms.{form}[{i}]", g) for i, g in enumerate(found))
            else:
                out.append((form, f"$.forms.{form}", found))
        return out


register_kind("role", Role)
