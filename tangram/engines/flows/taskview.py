"""What a task shows of its record and which fields the approver may edit there.

Three layers of field rules, narrowest wins: the **form** (a computed or
read-only field is never edited by a person at a task — only defaults,
formulas and flow actions set it), the approver's **role** rules on the form
(a hidden field is never shown, a read-only one never edited — the task
grants reading the record, not more than the roles allow of its fields) and
the **node**'s ``visible_fields`` / ``editable_fields``. The task view, the
edit an approval carries, and anything else that serializes a task's record
read the same :class:`TaskFields`.

    rules = task_fields(ctx, app="crm", form="contract", node=node)
    view = rules.narrow(record_json)       # hidden fields and their titles gone
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tangram.engines.context import EngineContext
from tangram.errors import NotFound, PermissionDenied
from tangram.i18n import Msg

# Always part of a task's record, whatever the node shows.
ALWAYS_SHOWN = ("id", "version")
# System user fields whose display names come along with the record.
SYSTEM_USER_FIELDS = ("owner", "created_by", "updated_by")


@dataclass(frozen=True)
class TaskFields:
    hidden: frozenset[str]  # by the approver's roles
    read_only: frozenset[str]  # by the approver's roles
    visible: frozenset[str] | None  # by the node (None: every field)
    node_editable: tuple[str, ...]
    # Fields the form itself never takes from a person, and why (form_fixed_fields).
    fixed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def hiding(cls, hidden: frozenset[str]) -> TaskFields:
        """Rules that only hide ``hidden``: what a notice's reader may see of a record."""
        return cls(hidden=hidden, read_only=frozenset(), visible=None, node_editable=())

    def shows(self, key: str) -> bool:
        if key in ALWAYS_SHOWN:
            return True
        if key in self.hidden:
            return False
        return self.visible is None or key in self.visible

    @property
    def editable(self) -> list[str]:
        """The node's editable fields the approver may see and change."""
        return [k for k in self.node_editable
                if self.shows(k) and k not in self.read_only and k not in self.fixed]

    def narrow(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record as the records API returns it, cut to what the task shows —
        the ``_display`` titles included (a hidden relation's title is a value)."""
        out = {k: v for k, v in record.items() if k != "_display" and self.shows(k)}
        display = record.get("_display")
        if isinstance(display, dict):
            kept = {k: v for k, v in display.items()
                    if k in out or (k in SYSTEM_USER_FIELDS and self.visible is None)}
            if kept:
                out["_display"] = kept
        return out

    def check_edit(self, keys: Any, node_key: str) -> None:
        """Refuse edits of fields the node does not open or the roles close."""
        allowed = set(self.editable)
        refused = sorted(set(keys) - allowed)
        if not refused:
            return
        closed = [k for k in refused if k in self.node_editable]
        if closed:
            # Name the rule that closes it: the node's own visible_fields (a
            # version published before publishing refused that), or the roles.
            key = closed[0]
            why: Msg | str
            if key in self.fixed:
                why = _FIXED_WHY.get(self.fixed[key]) or f"the form {self.fixed[key]}"
            elif key in self.hidden:
                why = Msg("why_roles_hide")
            elif not self.shows(key):
                why = Msg("why_node_hides")
            else:
                why = Msg("why_roles_read_only")
            raise PermissionDenied(Msg("task_field_refused", field=key, node=node_key,
                                       reason=why), details={"field": key})
        raise PermissionDenied(Msg("task_fields_refused", fields=", ".join(refused),
                                   node=node_key,
                                   editable=", ".join(self.editable) or {"en": "none",
                                                                         "zh": "无"}))


# The reasons of form_fixed_fields, as messages.
_FIXED_WHY = {"computes it": Msg("why_form_computes"),
              "makes it read-only": Msg("why_form_read_only")}


def task_fields(ctx: EngineContext, *, app: str, form: str, node: Any) -> TaskFields:
    """The field rules of a task at ``node`` of a flow on ``form``, for ``ctx.actor``."""
    access = ctx.policy.field_access(ctx.actor, app, form) if form else {}
    visible = getattr(node, "visible_fields", None)
    editable = tuple(getattr(node, "editable_fields", ()))
    return TaskFields(
        hidden=frozenset(k for k, v in access.items() if v == "hidden"),
        read_only=frozenset(k for k, v in access.items() if v == "read_only"),
        visible=None if visible is None else frozenset(visible),
        node_editable=editable,
        fixed=form_fixed_fields(ctx.session, app, form) if form and editable else {})


def form_fixed_fields(session: Session, app: str, form: str) -> dict[str, str]:
    """The fields of ``form`` no approver may edit at a node, whatever the node
    lists, and why: computed ones (formulas, rollups, autonumbers — an edit
    would overwrite what the platform computes) and those the form marks
    read-only (only defaults, formulas and flow actions set them).

    >>> form_fixed_fields(session, "crm", "lead")["follow_ups"]  # doctest: +SKIP
    'computes it'
    """
    from tangram.engines.forms.registry import get_runtime

    try:
        plans = get_runtime(session, app, form).validator.fields
    except NotFound:
        return {}
    return {k: "computes it" if p.computed else "makes it read-only"
            for k, p in plans.items() if p.read_only}
