"""Publishing checks of a flow graph. Every problem is reported at once,
each naming the node (``$.nodes[3]`` and its key) and what is wrong.

Checks: one start; keys unique; every target exists; every node reachable
from the start; every node can reach an end; a branch has a default (or says
``require_match``); each join closes a split whose branches all reach it, and
no node of a split's branches is reachable around the split; every loop
passes a waiting node (approval, delay); expressions compile, read fields the
form has, and read ``old`` only where the trigger has old values; a delay's
``until`` field is a date; the form, fields, roles, calendars, group
channels, flows and users named exist; time zones and cron expressions are
valid; templates read only fields the form has; values an action writes as
they are suit their fields (type, options, limits; no computed field); an
approval opens no field the form computes or makes read-only.

Each error's ``path`` is the property that is wrong
(``$.nodes[1].timeouts[0].actions[0].next``), its message names the node.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.expressions import ExpressionError, compile_expression
from tangram.engines.flows.assignees import EXPRESSION_NAMES, user_key, user_statuses
from tangram.engines.flows.registry import NODE_TYPES, successors
from tangram.engines.flows.taskview import form_fixed_fields
from tangram.engines.templates import record_fields_read
from tangram.errors import DefinitionInvalid, ErrorItem, NotFound
from tangram.metamodel import flows as fl
from tangram.metamodel import storage
from tangram.metamodel.forms import SYSTEM_FIELDS

_SYSTEM_USER_FIELDS = {"owner", "created_by", "updated_by"}
# Fields every record has besides the form's, and their types.
_SYSTEM_FIELD_TYPES = {"id": "id", "owner": "user", "created_by": "user",
                       "updated_by": "user", "created_at": "datetime",
                       "updated_at": "datetime", "version": "integer"}
# The triggers whose instances have the record's values before the change.
_TRIGGERS_WITH_OLD = ("record_updated", "record_deleted")


def targets(node: Any) -> list[tuple[str, str]]:
    """``(property path, node key)`` of every node ``node`` may go to, so an
    error names the property (``.on_reject``, ``.conditions[1].next``)."""
    if isinstance(node, fl.ApprovalNode):
        out = [(".next", node.next)]
        if node.on_reject:
            out.append((".on_reject", node.on_reject))
        out += [(f".timeouts[{i}].actions[{j}].next", a.next)
                for i, stage in enumerate(node.timeouts)
                for j, a in enumerate(stage.actions) if isinstance(a, fl.TakePathAction)]
        return out
    if isinstance(node, fl.BranchNode):
        out = [(f".conditions[{i}].next", c.next) for i, c in enumerate(node.conditions)]
        return out + ([(".default", node.default)] if node.default else [])
    if isinstance(node, fl.ParallelSplitNode):
        return [(f".branches[{i}]", b) for i, b in enumerate(node.branches)]
    if hasattr(node, "next") and successors(node) == [node.next]:
        return [(".next", node.next)]
    return [("", key) for key in successors(node)]  # a node type of a plugin


class _Checker:
    def __init__(self, session: Session, app: str, flow: fl.Flow) -> None:
        self.session = session
        self.app = app
        self.flow = flow
        self.errors: list[ErrorItem] = []
        self.index = {n.key: i for i, n in enumerate(flow.nodes)}
        self.form_fields: dict[str, str] | None = None
        self.trigger_kind = flow.start.trigger.kind if flow.start else None
        # Users named literally: (node, path, username or id), checked at once.
        self.named_users: list[tuple[Any, str, str]] = []
        # Stand-in nodes of the flow's own actions (on_withdraw): their paths.
        self.paths: dict[str, str] = {}

    def error(self, node: Any, code: str, message: str, suffix: str = "", *,
              details: dict[str, Any] | None = None) -> None:
        if node is not None and node.key in self.paths:
            where, suffix = self.paths[node.key], suffix.removeprefix(".action")
            prefix = f"{node.key}: "
        else:
            where = f"$.nodes[{self.index.get(node.key, 0)}]" if node is not None else "$"
            prefix = f"node {node.key!r}: " if node is not None else ""
        self.errors.append(ErrorItem(code=code, message=prefix + message, path=where + suffix,
                                     details={**({"node": node.key} if node is not None
                                                 else {}), **(details or {})}))

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
            for suffix, target in targets(n):
                what = f"{suffix.lstrip('.')} points" if suffix else "points"
                if target not in self.index:
                    self.error(n, "unknown_target", f"{what} to {target!r}, which is not a "
                               "node", suffix)
                elif isinstance(flow.node(target), fl.StartNode):
                    self.error(n, "start_target", "no path may lead back to the start node",
                               suffix)
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
        self.loops()

    def _walk(self, roots: list[str], *, forward: bool,
              avoid: frozenset[str] = frozenset()) -> set[str]:
        """The nodes reachable from ``roots`` (forward or backward), never
        going into or through the nodes in ``avoid``."""
        edges: dict[str, list[str]] = {}
        for n in self.flow.nodes:
            for s in successors(n):
                if forward:
                    edges.setdefault(n.key, []).append(s)
                else:
                    edges.setdefault(s, []).append(n.key)
        seen = {r for r in roots if r not in avoid}
        stack = list(seen)
        while stack:
            for nxt in edges.get(stack.pop(), []):
                if nxt not in seen and nxt not in avoid:
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
            self.bypass(split, n)
        for key, split in splits.items():
            if key not in joined:
                self.error(split, "split_unjoined", "no parallel_join closes this split")

    def bypass(self, split: fl.ParallelSplitNode, join: fl.ParallelJoinNode) -> None:
        """No node of the split's branches (nor its join) may be reached
        without passing through the split: the join would wait for branches
        that were never started."""
        fence = frozenset({split.key, join.key})
        # The branches: what the split's targets reach before the join, and
        # that goes on to the join (a way back to before the split is not in them).
        inside = self._walk(list(split.branches), forward=True, avoid=fence) & \
            self._walk([p for p, _ in self._predecessors(join.key)], forward=False,
                       avoid=frozenset({split.key}))
        inside.add(join.key)
        start = self.flow.start
        assert start is not None
        around = self._walk([start.key], forward=True, avoid=frozenset({split.key}))
        for n in self.flow.nodes:
            if n.key in inside and n.key in around and any(
                    p in around and p not in inside for p, _ in self._predecessors(n.key)):
                self.error(n, "split_bypassed", "reachable without passing through parallel "
                           f"split {split.key!r}, whose join {join.key!r} would wait for it "
                           "forever", details={"split": split.key})

    def _predecessors(self, key: str) -> list[tuple[str, str]]:
        return [(n.key, suffix) for n in self.flow.nodes for suffix, t in targets(n)
                if t == key]

    def loops(self) -> None:
        """A loop of nothing but branches, splits and joins runs away at once:
        nothing in it waits (approval, delay) or changes what its conditions
        read (an action). A loop through an action may end (a counter the
        action raises); one that does not stops at the run's step limit, a
        visible instance failure."""
        breaks = {n.key for n in self.flow.nodes
                  if n.type == "action" or {"tasks", "timers"} & set(NODE_TYPES[n.type].holds)}
        edges = {n.key: [s for s in successors(n) if s not in breaks and s in self.index]
                 for n in self.flow.nodes if n.key not in breaks}
        for component in _cycles(edges):
            first = min(component, key=lambda k: self.index[k])
            way = _cycle_through(first, edges, component)
            self.error(self.flow.node(first), "loop_without_wait", "loop without a waiting "
                       f"node: {' → '.join(way)}; nothing on it waits or changes the record, so "
                       "it would never end: put an approval, a delay or an action on the way "
                       "back", details={"loop": way})

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

    def expression(self, node: Any, source: str | None, suffix: str) -> Any:
        """Check one expression; the compiled expression (None when it fails)."""
        if source is None:
            return None
        try:
            compiled = compile_expression(source, allowed_names=EXPRESSION_NAMES)
        except ExpressionError as exc:
            self.error(node, "expression_invalid", exc.message, suffix)
            return None
        if "old" in compiled.referenced_fields and self.trigger_kind is not None \
                and self.trigger_kind not in _TRIGGERS_WITH_OLD:
            self.error(node, "no_old_values", f"the expression reads old, but a "
                       f"{self.trigger_kind} trigger has no old values (only "
                       f"{' and '.join(_TRIGGERS_WITH_OLD)} flows do)", suffix)
        fields = self.fields()
        if fields:
            for name in ("record", "old"):
                for f in compiled.referenced_fields.get(name, set()):
                    if f not in fields and f not in {"id", "owner", "created_by",
                                                     "created_at", "updated_at", "version"}:
                        self.error(node, "unknown_field", f"expression reads {name}.{f}, "
                                   f"which form {self.flow.form!r} lacks", suffix)
        return compiled

    def assignees(self, node: Any, rules: list[Any], suffix: str) -> None:
        for i, rule in enumerate(rules):
            at = f"{suffix}[{i}]"
            if isinstance(rule, fl.UserAssignee):
                self.named_users += [(node, f"{at}.users[{k}]", ref)
                                     for k, ref in enumerate(rule.users)]
            elif isinstance(rule, fl.RoleAssignee | fl.DepartmentMembersAssignee):
                if rule.role is not None and storage.find_definition(
                        self.session, app=self.app, kind="role", key=rule.role) is None:
                    self.error(node, "unknown_role", f"role {rule.role!r} does not exist in "
                               "this app", at + ".role")
            elif isinstance(rule, fl.FieldAssignee):
                self.field(node, rule.field, at + ".field", user=True)
            elif isinstance(rule, fl.DepartmentHeadAssignee) and rule.of:
                self.field(node, rule.of, at + ".of", user=True)
            elif isinstance(rule, fl.ExpressionAssignee):
                compiled = self.expression(node, rule.expression, at + ".expression")
                self.named_users += [(node, at + ".expression", ref)
                                     for ref in _literal_texts(compiled)]

    def users(self) -> None:
        """The users rules name literally exist and are active (by username, as
        sign-in matches it, or by id)."""
        if not self.named_users:
            return
        status = user_statuses(self.session, [ref for _, _, ref in self.named_users])
        for node, path, ref in self.named_users:
            key = user_key(ref)
            if key not in status:
                self.error(node, "unknown_user", f"no user {ref!r} (a username or a user id)",
                           path, details={"user": ref})
            elif status[key] != "active":
                self.error(node, "inactive_user", f"user {ref!r} is {status[key]}; the rule "
                           "would name nobody", path, details={"user": ref})

    def node_fields(self, n: fl.ApprovalNode) -> None:
        """The fields an approval shows and opens exist, it shows those it
        opens, and it opens none the form computes or makes read-only."""
        for i, key in enumerate(n.visible_fields or []):
            self.field(n, key, f".visible_fields[{i}]")
        fixed = form_fixed_fields(self.session, self.app, self.flow.form) \
            if n.editable_fields and self.flow.form else {}
        for i, key in enumerate(n.editable_fields):
            before = len(self.errors)
            self.field(n, key, f".editable_fields[{i}]")
            if len(self.errors) == before and key in fixed:
                self.error(n, "read_only", f"editable field {key!r}: form "
                           f"{self.flow.form!r} {fixed[key]}, so no approver may edit it; "
                           "remove it from editable_fields", f".editable_fields[{i}]",
                           details={"field": key})
            elif len(self.errors) == before and n.visible_fields is not None \
                    and key not in n.visible_fields:
                self.error(n, "not_visible", f"editable field {key!r} is not in "
                           "visible_fields; add it there or stop making it editable",
                           f".editable_fields[{i}]")

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
                self.node_fields(n)
                for i, stage in enumerate(n.timeouts):
                    self.calendar(n, stage.calendar, f".timeouts[{i}].calendar")
                    for j, a in enumerate(stage.actions):
                        if isinstance(a, fl.EscalateAction):
                            self.assignees(n, a.to, f".timeouts[{i}].actions[{j}].to")
                        if isinstance(a, fl.RemindAction) and a.message is not None:
                            for template in fl.texts_of(a.message):
                                self.template(n, template,
                                              f".timeouts[{i}].actions[{j}].message")
            elif isinstance(n, fl.BranchNode):
                for i, c in enumerate(n.conditions):
                    self.expression(n, c.when, f".conditions[{i}].when")
            elif isinstance(n, fl.DelayNode):
                self.until(n)
                self.calendar(n, n.calendar, ".calendar")
            elif isinstance(n, fl.ActionNode):
                self.action(n, n.action)
        self.end_actions()

    def end_actions(self) -> None:
        """The flow's withdraw and cancel actions, checked as action nodes
        are; they run in the request that ends the instance, so nothing the
        worker must do (http)."""
        from tangram.engines.flows.actions import ACTION_KINDS

        for name, actions in (("on_withdraw", self.flow.on_withdraw),
                              ("on_cancel", self.flow.on_cancel)):
            for i, a in enumerate(actions):
                stand_in = fl.ActionNode.model_construct(type="action", key=f"{name}[{i}]",
                                                         action=a, next="")
                self.paths[stand_in.key] = f"$.{name}[{i}]"
                if ACTION_KINDS[a.kind].run is None:
                    self.error(stand_in, "not_allowed", f"a {a.kind!r} action runs on the "
                               f"worker; {name} actions run in the request that ends the "
                               "instance (update or create a record, notify)", ".action.kind")
                self.action(stand_in, a)

    def until(self, n: fl.DelayNode) -> None:
        """A delay ``until`` a field waits for a date or datetime field. (Other
        expressions' types are known only at run time: a value that is not a
        date fails the instance then, saying what it was.)"""
        compiled = self.expression(n, n.until, ".until")
        key = _record_field(compiled)
        if key is None or not self.flow.form:
            return
        kind = {**_SYSTEM_FIELD_TYPES, **self.fields()}.get(key)
        if kind is not None and kind not in ("date", "datetime"):
            self.error(n, "field_type", f"until reads field {key!r}, a {kind} field; it "
                       "needs a date or datetime", ".until")

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
            self.cron(n, trig.cron)
            if trig.timezone is not None:
                try:
                    ZoneInfo(trig.timezone)
                except (ZoneInfoNotFoundError, ValueError):
                    self.error(n, "timezone_invalid", f"unknown time zone {trig.timezone!r} "
                               "(an IANA name such as 'Asia/Shanghai'; default: the "
                               "organization's)", ".trigger.timezone")

    def cron(self, n: fl.StartNode, cron: str) -> None:
        """Five fields (croniter would read a sixth as seconds) that name a
        time that comes: "0 0 30 2 *" (30 February) never does."""
        from croniter import CroniterBadDateError, croniter

        problem = None
        if not croniter.is_valid(cron) or (
                not cron.startswith("@") and len(cron.split()) != 5):
            problem = "is not a cron expression (minute hour day month weekday)"
        else:
            try:
                croniter(cron, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
            except CroniterBadDateError:
                problem = "names no time that ever comes"
        if problem:
            self.error(n, "cron_invalid", f"{cron!r} {problem}", ".trigger.cron")

    def action(self, n: fl.ActionNode, a: Any) -> None:
        if isinstance(a, fl.AssignOwnerAction) and not self.flow.form:
            self.error(n, "no_form", f"{a.kind} needs the flow's form", ".action")
        if self.trigger_kind == "record_deleted" and (
                isinstance(a, fl.AssignOwnerAction) or isinstance(a, fl.UpdateRecordAction)
                and isinstance(a.target, fl.SelfTarget)):
            self.error(n, "deleted_record", f"{a.kind} would change the deleted record, which "
                       "is in the recycle bin: a flow on deletion may read it and change "
                       "related records (target), not the record itself", ".action")
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
                self.written_fields(n, a, a.form, keys)
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
        self.written_fields(n, a, form, keys)
        self.literal_values(n, form, a.values)
        if a.owner is not None and a.owner.to:
            self.assignees(n, a.owner.to, ".action.owner.to")

    def written_fields(self, n: fl.ActionNode, a: Any, form: str, keys: set[str]) -> None:
        """The fields an action sets (``values``, ``expressions``) or empties
        (``clear``) are fields of its form."""
        paths = [*((f".action.values.{k}", k) for k in a.values),
                 *((f".action.expressions.{k}", k) for k in a.expressions),
                 *((f".action.clear[{i}]", k) for i, k in enumerate(getattr(a, "clear", [])))]
        for path, key in paths:
            if key not in keys:
                self.error(n, "unknown_field", f"form {form!r} has no field {key!r}", path)

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



def _literal_texts(compiled: Any) -> list[str]:
    """The usernames or ids an expression gives as they are (``"li.lei"``,
    ``["a", "b"]``): those are checked like a user rule's."""
    if compiled is None:
        return []
    tree = compiled.tree
    items = tree.elts if isinstance(tree, ast.List | ast.Tuple) else [tree]
    texts = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return texts if len(texts) == len(items) else []


def _record_field(compiled: Any) -> str | None:
    """The field an expression that is only ``record.<field>`` reads."""
    tree = compiled.tree if compiled is not None else None
    if isinstance(tree, ast.Attribute) and isinstance(tree.value, ast.Name) \
            and tree.value.id == "record":
        return tree.attr
    if isinstance(tree, ast.Subscript) and isinstance(tree.value, ast.Name) \
            and tree.value.id == "record" and isinstance(tree.slice, ast.Constant) \
            and isinstance(tree.slice.value, str):
        return tree.slice.value
    return None


def _cycles(edges: dict[str, list[str]]) -> list[set[str]]:
    """The strongly connected components of ``edges`` that hold a cycle
    (Tarjan's algorithm, iteratively: a flow may have many nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, [])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, []))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, []):
                    out.append(component)
    return out


def _cycle_through(first: str, edges: dict[str, list[str]], component: set[str]) -> list[str]:
    """One way round the loop, from ``first`` back to it (shortest first)."""
    came: dict[str, str] = {}
    queue = [first]
    for node in queue:
        for nxt in edges.get(node, []):
            if nxt == first:
                way = [node]
                while way[-1] != first:
                    way.append(came[way[-1]])
                return [*reversed(way), first]
            if nxt in component and nxt not in came:
                came[nxt] = node
                queue.append(nxt)
    return [first, first]


def check_flow(session: Session, app: str, flow: fl.Flow, *,
               check_users: bool = True) -> list[ErrorItem]:
    """Every problem of ``flow`` (empty when it may be published).

    ``check_users=False`` leaves out whether the users rules name exist: a
    package is installed before the org fixture that brings its users (a
    user who does not exist is then named in the instance history).
    """
    checker = _Checker(session, app, flow)
    checker.structure()
    checker.references()
    if check_users:
        checker.users()
    return checker.errors


def require_valid(session: Session, app: str, flow: fl.Flow, *,
                  check_users: bool = True) -> None:
    errors = check_flow(session, app, flow, check_users=check_users)
    if errors:
        raise DefinitionInvalid(f"flow {flow.key!r} cannot be published: {len(errors)} "
                                f"problem(s); first: {errors[0].message}", errors=errors)
