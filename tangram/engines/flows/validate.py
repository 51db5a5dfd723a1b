"""Publishing checks of a flow graph. Every problem is reported at once,
each naming the node (``$.nodes[3]`` and its key) and what is wrong.

Checks: one start; keys unique; every target exists; every node reachable
from the start; every node can reach an end; a branch has a default (or says
``require_match``); each join closes a split whose branches all reach it;
expressions compile; the form, fields, roles, calendars, group channels and
flows named exist; templates read only fields the form has; values an
action writes as they are suit their fields (type, options, limits; no
computed field).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.expressions import ExpressionError, compile_expression
from tangram.engines.flows.assignees import EXPRESSION_NAMES
from tangram.engines.flows.registry import successors
from tangram.engines.templates import record_fields_read
from tangram.errors import DefinitionInvalid, ErrorItem, NotFound
from tangram.metamodel import flows as fl
from tangram.metamodel import storage
from tangram.metamodel.forms import SYSTEM_FIELDS

_SYSTEM_USER_FIELDS = {"owner", "created_by", "updated_by"}


class _Checker:
    def __init__(self, session: Session, app: str, flow: fl.Flow) -> None:
        self.session = session
        self.app = app
        self.flow = flow
        self.errors: list[ErrorItem] = []
        self.index = {n.key: i for i, n in enumerate(flow.nodes)}
        self.form_fields: dict[str, str] | None = None

    def error(self, node: Any, code: str, message: str, suffix: str = "") -> None:
        where = f"$.nodes[{self.index.get(node.key, 0)}]" if node is not None else "$"
        prefix = f"node {node.key!r}: " if node is not None else ""
        self.errors.append(ErrorItem(code=code, message=prefix + message, path=where + suffix,
                                     details={"node": node.key} if node is not None else {}))

    # structure
    def structure(self) -> None:
        flow = self.flow
        seen: set[str] = set()
        for n in flow.nodes:
            if n.key in seen:
                self.error(n, "duplicate_node", "another node has the same key")
            seen.add(n.key)
        starts = [n for n in flow.nodes if isinstance(n, fl.StartNode)]
        if len(starts) != 1:
            self.error(None, "start_count", f"a flow has exactly one start node; found "
                       f"{len(starts)}")
        for n in flow.nodes:
            for target in successors(n):
                if target not in self.index:
                    self.error(n, "unknown_target", f"points to {target!r}, which is not a node")
                elif isinstance(flow.node(target), fl.StartNode):
                    self.error(n, "start_target", "no path may lead back to the start node")
        if self.errors or not starts:
            return
        reachable = self._walk([starts[0].key], forward=True)
        for n in flow.nodes:
            if n.key not in reachable:
                self.error(n, "unreachable", "no path from the start reaches this node")
        ends = [n.key for n in flow.nodes if isinstance(n, fl.EndNode)]
        if not ends:
            self.error(None, "no_end", "a flow needs at least one end node")
        finishing = self._walk(ends, forward=False)
        for n in flow.nodes:
            if n.key in reachable and n.key not in finishing:
                self.error(n, "no_end_path", "no path from this node reaches an end node")
        for n in flow.nodes:
            if isinstance(n, fl.BranchNode) and n.default is None and not n.require_match:
                self.error(n, "branch_default", "a branch needs a default path (or "
                           "require_match: true to fail instances no condition matches)",
                           ".default")
        self.joins()

    def _walk(self, roots: list[str], *, forward: bool) -> set[str]:
        edges: dict[str, list[str]] = {}
        for n in self.flow.nodes:
            for s in successors(n):
                if forward:
                    edges.setdefault(n.key, []).append(s)
                else:
                    edges.setdefault(s, []).append(n.key)
        seen = set(roots)
        stack = list(roots)
        while stack:
            for nxt in edges.get(stack.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def joins(self) -> None:
        flow = self.flow
        splits = {n.key: n for n in flow.nodes if isinstance(n, fl.ParallelSplitNode)}
        joined: dict[str, str] = {}
        for n in flow.nodes:
            if not isinstance(n, fl.ParallelJoinNode):
                continue
            split = splits.get(n.split)
            if split is None:
                self.error(n, "join_split", f"closes {n.split!r}, which is not a parallel "
                           "split", ".split")
                continue
            if n.split in joined:
                self.error(n, "join_split", f"split {n.split!r} is already closed by join "
                           f"{joined[n.split]!r}", ".split")
            joined[n.split] = n.key
            if n.mode == "first_n" and n.n > len(split.branches):
                self.error(n, "join_n", f"waits for {n.n} branches but {n.split!r} has "
                           f"{len(split.branches)}", ".n")
            for branch in split.branches:
                if n.key not in self._walk([branch], forward=True):
                    self.error(n, "join_branch", f"branch {branch!r} of split {n.split!r} "
                               "never reaches this join")
        for key, split in splits.items():
            if key not in joined:
                self.error(split, "split_unjoined", "no parallel_join closes this split")

    # references
    def fields(self) -> dict[str, str]:
        if self.form_fields is None:
            self.form_fields = {}
            if self.flow.form:
                body = storage.latest_body(self.session, app=self.app, kind="form",
                                           key=self.flow.form)
                if body is None:
                    self.error(None, "unknown_form", f"form {self.flow.form!r} is not "
                               "published in this app")
                else:
                    self.form_fields = {f["key"]: f["type"] for f in body.get("fields", [])}
        return self.form_fields

    def field(self, node: Any, key: str, suffix: str, *, user: bool = False) -> None:
        fields = self.fields()
        if not self.flow.form:
            self.error(node, "no_form", f"names field {key!r} but the flow has no form",
                       suffix)
            return
        if user and key in _SYSTEM_USER_FIELDS:
            return
        if fields and key not in fields:
            self.error(node, "unknown_field", f"form {self.flow.form!r} has no field "
                       f"{key!r}", suffix)
        elif user and fields.get(key) not in ("user", "department"):
            self.error(node, "field_type", f"field {key!r} is a {fields.get(key)} field, "
                       "not a user or department field", suffix)

    def expression(self, node: Any, source: str | None, suffix: str) -> None:
        if source is None:
            return
        try:
            compiled = compile_expression(source, allowed_names=EXPRESSION_NAMES)
        except ExpressionError as exc:
            self.error(node, "expression_invalid", exc.message, suffix)
            return
        fields = self.fields()
        if fields:
            for name in ("record", "old"):
                for f in compiled.referenced_fields.get(name, set()):
                    if f not in fields and f not in {"id", "owner", "created_by",
                                                     "created_at", "updated_at", "version"}:
                        self.error(node, "unknown_field", f"expression reads {name}.{f}, "
                                   f"which form {self.flow.form!r} lacks", suffix)

    def assignees(self, node: Any, rules: list[Any], suffix: str) -> None:
        for i, rule in enumerate(rules):
            at = f"{suffix}[{i}]"
            if isinstance(rule, fl.RoleAssignee | fl.DepartmentMembersAssignee):
                if rule.role is not None and storage.find_definition(
                        self.session, app=self.app, kind="role", key=rule.role) is None:
                    self.error(node, "unknown_role", f"role {rule.role!r} does not exist in "
                               "this app", at + ".role")
            elif isinstance(rule, fl.FieldAssignee):
                self.field(node, rule.field, at + ".field", user=True)
            elif isinstance(rule, fl.DepartmentHeadAssignee) and rule.of:
                self.field(node, rule.of, at + ".of", user=True)
            elif isinstance(rule, fl.ExpressionAssignee):
                self.expression(node, rule.expression, at + ".expression")

    def calendar(self, node: Any, key: str | None, suffix: str) -> None:
        if key and storage.latest_body(self.session, app=self.app, kind="calendar",
                                       key=key) is None:
            self.error(node, "unknown_calendar", f"business calendar {key!r} is not published",
                       suffix)

    def references(self) -> None:
        self.fields()
        for n in self.flow.nodes:
            if isinstance(n, fl.StartNode):
                self.trigger(n)
            elif isinstance(n, fl.ApprovalNode):
                self.assignees(n, n.assignees, ".assignees")
                self.assignees(n, n.cc, ".cc")
                for key in [*(n.visible_fields or []), *n.editable_fields]:
                    self.field(n, key, ".editable_fields")
                for i, stage in enumerate(n.timeouts):
                    self.calendar(n, stage.calendar, f".timeouts[{i}].calendar")
                    for j, a in enumerate(stage.actions):
                        if isinstance(a, fl.EscalateAction):
                            self.assignees(n, a.to, f".timeouts[{i}].actions[{j}].to")
            elif isinstance(n, fl.BranchNode):
                for i, c in enumerate(n.conditions):
                    self.expression(n, c.when, f".conditions[{i}].when")
            elif isinstance(n, fl.DelayNode):
                self.expression(n, n.until, ".until")
                self.calendar(n, n.calendar, ".calendar")
            elif isinstance(n, fl.ActionNode):
                self.action(n, n.action)

    def trigger(self, n: fl.StartNode) -> None:
        trig = n.trigger
        self.expression(n, getattr(trig, "condition", None), ".trigger.condition")
        spec_needs_form = trig.kind in ("record_created", "record_updated", "record_deleted",
                                        "submitted", "date_relative")
        if spec_needs_form and not self.flow.form:
            self.error(n, "no_form", f"a {trig.kind} trigger needs the flow's form",
                       ".trigger")
        if isinstance(trig, fl.RecordUpdatedTrigger):
            for key in trig.fields:
                if key != "owner":  # the one system field that changes (transfers)
                    self.field(n, key, ".trigger.fields")
        if isinstance(trig, fl.DateRelativeTrigger):
            self.field(n, trig.field, ".trigger.field")
            if self.fields().get(trig.field) not in (None, "date", "datetime"):
                self.error(n, "field_type", f"field {trig.field!r} is not a date field",
                           ".trigger.field")
        if isinstance(trig, fl.ScheduleTrigger):
            from croniter import croniter

            if not croniter.is_valid(trig.cron):
                self.error(n, "cron_invalid", f"{trig.cron!r} is not a cron expression "
                           "(minute hour day month weekday)", ".trigger.cron")

    def action(self, n: fl.ActionNode, a: Any) -> None:
        if isinstance(a, fl.AssignOwnerAction) and not self.flow.form:
            self.error(n, "no_form", f"{a.kind} needs the flow's form", ".action")
        if isinstance(a, fl.UpdateRecordAction):
            self.update_target(n, a)
        if isinstance(a, fl.UpdateRecordAction | fl.CreateRecordAction):
            for key, source in a.expressions.items():
                self.expression(n, source, f".action.expressions.{key}")
        if isinstance(a, fl.CreateRecordAction):
            body = storage.latest_body(self.session, app=self.app, kind="form", key=a.form)
            if body is None:
                self.error(n, "unknown_form", f"form {a.form!r} is not published", ".action.form")
            else:
                keys = {f["key"] for f in body.get("fields", [])}
                for key in [*a.values, *a.expressions]:
                    if key not in keys:
                        self.error(n, "unknown_field", f"form {a.form!r} has no field {key!r}",
                                   ".action.values")
                self.literal_values(n, a.form, a.values)
                for key, source in a.unless_exists.items():
                    if key not in keys | {"id", "owner"}:
                        self.error(n, "unknown_field", f"form {a.form!r} has no field {key!r}",
                                   f".action.unless_exists.{key}")
                    self.expression(n, source, f".action.unless_exists.{key}")
            self.assignees(n, a.owner, ".action.owner")
        if isinstance(a, fl.NotifyAction):
            self.assignees(n, a.to, ".action.to")
            for text, suffix in ((a.title, ".action.title"), (a.body, ".action.body")):
                for template in fl.texts_of(text):
                    self.template(n, template, suffix)
            self.channels(n, a.channels)
        if isinstance(a, fl.AssignOwnerAction):
            self.assignees(n, a.users, ".action.users")
            self.assignees(n, a.fallback, ".action.fallback")
        if isinstance(a, fl.HttpAction):
            self.template(n, a.url, ".action.url")
            if a.body:
                self.template(n, a.body, ".action.body")
        if isinstance(a, fl.StartFlowAction) and a.flow != self.flow.key and \
                storage.find_definition(self.session, app=self.app, kind="flow",
                                        key=a.flow) is None:
            self.error(n, "unknown_flow", f"flow {a.flow!r} does not exist", ".action.flow")

    def _form_body(self, form: str) -> dict[str, Any] | None:
        return storage.latest_body(self.session, app=self.app, kind="form", key=form)

    def update_target(self, n: fl.ActionNode, a: fl.UpdateRecordAction) -> None:
        """The target form exists (through the relation path, if any) and has
        the fields the action sets, clears or filters on."""
        target = a.target
        if not isinstance(target, fl.FilterTarget) and not self.flow.form:
            self.error(n, "no_form", "update_record of the flow's record (or a related one) "
                       "needs the flow's form", ".action")
            return
        form = target.form if isinstance(target, fl.FilterTarget) else self.flow.form
        assert form is not None
        body = self._form_body(form)
        if body is None:
            self.error(n, "unknown_form", f"form {form!r} is not published", ".action.target")
            return
        if isinstance(target, fl.RelatedTarget):
            for key in target.path.split("."):
                f = next((f for f in body.get("fields", []) if f["key"] == key), None)
                if f is None or f.get("type") != "relation":
                    self.error(n, "not_relation", f"{key!r} is not a relation field of form "
                               f"{form!r}", ".action.target.path")
                    return
                form = f["target"]
                body = self._form_body(form)
                if body is None:
                    self.error(n, "unknown_form", f"form {form!r} is not published",
                               ".action.target.path")
                    return
        keys = {f["key"] for f in body.get("fields", [])}
        if isinstance(target, fl.FilterTarget):
            for key, source in target.where.items():
                if key not in keys | {"id", "owner"}:
                    self.error(n, "unknown_field", f"form {form!r} has no field {key!r}",
                               f".action.target.where.{key}")
                self.expression(n, source, f".action.target.where.{key}")
        for key in [*a.values, *a.expressions, *a.clear]:
            if key not in keys:
                self.error(n, "unknown_field", f"form {form!r} has no field {key!r}",
                           ".action.values")
        self.literal_values(n, form, a.values)
        if a.owner is not None and a.owner.to:
            self.assignees(n, a.owner.to, ".action.owner.to")

    def literal_values(self, n: fl.ActionNode, form: str, values: dict[str, Any]) -> None:
        """Values written as they are (not expressions) suit their fields now:
        the type, the options, the limits — and no computed field is set."""
        from tangram.engines.expressions import EvalContext
        from tangram.engines.forms.registry import get_runtime

        try:
            validator = get_runtime(self.session, self.app, form).validator
        except NotFound:
            return  # the form's absence is reported by the caller
        given: dict[str, Any] = {}
        for key, value in values.items():
            plan = validator.fields.get(key)
            if plan is None:
                continue  # an unknown field, reported by the caller
            if plan.computed:
                self.error(n, "read_only", f"field {key!r} of form {form!r} is computed; a "
                           "flow cannot set it", f".action.values.{key}")
            else:
                given[key] = value
        if not given:
            return
        outcome = validator.validate(given, old={}, user={}, eval_context=EvalContext(),
                                     language="en", allow_read_only=True)
        for e in outcome.errors:
            key = re.split(r"[.\[]", e.field or "")[0]
            # Only the values' own problems: rules and formulas need a record.
            if key in given and e.code not in ("rule", "expression"):
                self.error(n, "value_invalid", e.message, f".action.values.{key}")

    def channels(self, n: fl.ActionNode, keys: list[str]) -> None:
        """The group channels a notify action names are configured."""
        from tangram.engines.notify.tables import group_channels_table as g

        if not keys:
            return
        known = set(self.session.execute(sa.select(g.c.key).where(g.c.key.in_(keys))).scalars())
        for i, key in enumerate(keys):
            if key not in known:
                self.error(n, "unknown_channel", f"no group channel {key!r}; an administrator "
                           "adds it under /api/notifications/group-channels",
                           f".action.channels[{i}]")

    def template(self, n: Any, source: str, suffix: str) -> None:
        from tangram.engines.flows.actions import template_error

        problem = template_error(source)
        if problem is not None:
            self.error(n, "template_invalid", problem, suffix)
            return
        if not self.flow.form or self.fields() == {}:
            return
        known = set(self.fields()) | set(SYSTEM_FIELDS)
        for name in sorted(record_fields_read(source) - known):
            self.error(n, "unknown_field", f"the template reads record.{name}, but form "
                       f"{self.flow.form!r} has no field {name!r}", suffix)



def check_flow(session: Session, app: str, flow: fl.Flow) -> list[ErrorItem]:
    """Every problem of ``flow`` (empty when it may be published)."""
    checker = _Checker(session, app, flow)
    checker.structure()
    checker.references()
    return checker.errors


def require_valid(session: Session, app: str, flow: fl.Flow) -> None:
    errors = check_flow(session, app, flow)
    if errors:
        raise DefinitionInvalid(f"flow {flow.key!r} cannot be published: {len(errors)} "
                                f"problem(s); first: {errors[0].message}", errors=errors)
