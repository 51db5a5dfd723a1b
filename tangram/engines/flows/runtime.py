"""The interpreter core: instances, tokens (node executions) and steps.

A step is everything that happens in one transaction: a trigger starts an
instance and runs it until every token waits (an approval, a delay, a join,
a queued HTTP call) or the instance ends; a task action, a due timer or a
finished job moves one token and runs on the same way. Every step first
locks the instance row (``SELECT … FOR UPDATE``), so two steps of one
instance never interleave, whichever process runs them.

    iid = start_instance(ctx, app="crm", flow="contract_approval", record_id=rid,
                         started_by=user_id, trigger="submitted")
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, cast

import sqlalchemy as sa

from tangram.db import new_id
from tangram.engines.access import AllowAll
from tangram.engines.context import SYSTEM_ACTOR, EngineContext
from tangram.engines.expressions import EvalContext, compile_expression
from tangram.engines.flows import assignees as asg
from tangram.engines.flows.calendar import add_time
from tangram.engines.flows.registry import NODE_TYPES, NodeTypeSpec, register_node
from tangram.engines.flows.tables import (
    executions_table,
    history_table,
    instances_table,
    jobs_table,
    tasks_table,
    timers_table,
)
from tangram.errors import Conflict, NotFound, TangramError
from tangram.metamodel import flows as fl
from tangram.metamodel.flows import BusinessCalendar, Flow
from tangram.metamodel.storage import definition_versions_table, definitions_table

MAX_STEPS_PER_TRANSACTION = 500
Execution = dict[str, Any]


class FlowError(TangramError):
    """A step cannot go on (no branch matched, no assignee, action failed);
    the instance is marked failed with this message."""

    code = "flow_failed"


# --- published versions -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Loaded:
    """One published version of a flow, parsed once per process."""

    app: str
    key: str
    version: int
    version_id: uuid.UUID
    flow: Flow
    nodes: dict[str, Any]


_cache: dict[uuid.UUID, Loaded] = {}
_cache_lock = threading.Lock()


def load_version(session: Any, *, app: str, flow: str, version: int | None = None) -> Loaded:
    """The given version of a flow (default: the newest published one).

    Versions are immutable, so the parsed flow is cached by the id of the
    version row; a new version is a new row, never a stale cache entry."""
    d, v = definitions_table, definition_versions_table
    stmt = (sa.select(v.c.id, v.c.version).join(d, d.c.id == v.c.definition_id)
            .where(d.c.app == app, d.c.kind == "flow", d.c.key == flow))
    stmt = (stmt.where(v.c.version == version) if version is not None
            else stmt.where(v.c.version == d.c.latest_version))
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound(f"flow {flow!r} of app {app!r} is not published"
                       + (f" at version {version}" if version is not None else ""))
    loaded = _cache.get(row.id)
    if loaded is None:
        body = session.execute(sa.select(v.c.body).where(v.c.id == row.id)).scalar_one()
        model = Flow.model_validate(body)
        loaded = Loaded(app=app, key=flow, version=row.version, version_id=row.id, flow=model,
                        nodes={n.key: n for n in model.nodes})
        with _cache_lock:
            _cache[row.id] = loaded
    return loaded


def load_calendar(session: Any, app: str, key: str | None) -> BusinessCalendar | None:
    if key is None:
        return None
    from tangram.metamodel.storage import latest_body

    body = latest_body(session, app=app, kind="calendar", key=key)
    if body is None:
        raise FlowError(f"business calendar {key!r} of app {app!r} is not published")
    return BusinessCalendar.model_validate(body)


# --- record values ------------------------------------------------------------------

def typed_record(ctx: EngineContext, app: str, form: str, record_id: Any) -> dict[str, Any]:
    """The record as expressions see it: decimals as Decimal, dates as date."""
    from tangram.engines.forms.records import get_record

    data = get_record(ctx, app=app, form=form, record_id=record_id)
    return typed_values(ctx, app, form, data)


def typed_values(ctx: EngineContext, app: str, form: str,
                 data: Mapping[str, Any]) -> dict[str, Any]:
    from tangram.engines.forms.registry import get_runtime

    rt = get_runtime(ctx.session, app, form)
    out: dict[str, Any] = dict(data)
    for key, compiled in rt.fields.items():
        value = data.get(key)
        if value is None or isinstance(value, list | dict):
            continue
        try:
            out[key] = compiled.convert(value)
        except Exception:  # noqa: S112 - a value the converter refuses stays as JSON
            continue
    return out


def system_context(ctx: EngineContext) -> EngineContext:
    return dataclasses.replace(ctx, actor=SYSTEM_ACTOR, policy=AllowAll())


# --- a run: one step of one instance ---------------------------------------------------

class Run:
    """The state of one instance inside one transaction."""

    def __init__(self, ctx: EngineContext, instance: Mapping[str, Any], loaded: Loaded) -> None:
        self.ctx = ctx
        self.sys = system_context(ctx)
        self.inst = dict(instance)
        self.loaded = loaded
        self.flow = loaded.flow
        self._record: dict[str, Any] | None = None
        self._queue: list[tuple[str, uuid.UUID | None]] = []
        self._steps = 0
        self._submitter: dict[str, Any] | None = None
        self.old: Mapping[str, Any] | None = None

    @property
    def id(self) -> uuid.UUID:
        return cast(uuid.UUID, self.inst["id"])

    @property
    def running(self) -> bool:
        return bool(self.inst["status"] == "running")

    def node(self, key: str) -> Any:
        return self.loaded.nodes[key]

    # values
    def record(self) -> dict[str, Any] | None:
        if self._record is None and self.inst["record_id"] is not None and self.inst["form"]:
            self._record = typed_record(self.sys, self.inst["app"], self.inst["form"],
                                        self.inst["record_id"])
        return self._record

    def forget_record(self) -> None:
        self._record = None

    def submitter_variables(self) -> dict[str, Any]:
        if self._submitter is None:
            actor = asg.actor_for(self.ctx.session, self.inst["started_by"])
            self._submitter = actor.as_variables() if actor else SYSTEM_ACTOR.as_variables()
        return self._submitter

    def variables(self) -> dict[str, Any]:
        return {"record": self.record() or {}, "old": self.old or {},
                "user": self.submitter_variables(), "vars": self.inst["variables"]}

    def eval_context(self) -> EvalContext:
        return EvalContext(now=self.ctx.now(), timezone=self.ctx.timezone)

    def evaluate(self, source: str) -> Any:
        return compile_expression(source, allowed_names=asg.EXPRESSION_NAMES).evaluate(
            self.variables(), context=self.eval_context())

    def scope(self) -> asg.Scope:
        return asg.Scope(session=self.ctx.session, app=self.inst["app"],
                         submitter_id=self.inst["started_by"], record=self.record(),
                         variables=self.variables(), eval_context=self.eval_context())

    def resolve(self, rules: list[Any]) -> list[uuid.UUID]:
        return asg.resolve(rules, self.scope())

    def due(self, start: datetime, duration: fl.Duration, time: str,
            calendar: str | None) -> datetime:
        return add_time(start, duration, time=time,
                        calendar=load_calendar(self.ctx.session, self.inst["app"], calendar),
                        timezone=self.ctx.timezone)

    # records of history and notifications
    def history(self, action: str, *, node: str | None = None, comment: str | None = None,
                actor_id: uuid.UUID | None = None, **details: Any) -> None:
        self.ctx.session.execute(history_table.insert(), {
            "id": new_id(), "instance_id": self.id, "at": self.ctx.now(),
            "actor_id": actor_id if actor_id is not None else self.ctx.actor.id,
            "node": node, "action": action, "comment": comment,
            "details": _jsonable(details)})

    def notify(self, user_ids: list[uuid.UUID], *, kind: str, title: str, body: str = "",
               task_id: uuid.UUID | None = None, group_channels: list[str] | None = None
               ) -> None:
        # Through the notification channels: in-app, and email for users who
        # chose it; group robots when a notify action names them.
        from tangram.engines.notify.service import notify

        if not user_ids and not group_channels:
            return
        notify(self.ctx, user_ids=user_ids, title=title, body=body, kind=kind,
               group_channels=group_channels or (), instance_id=self.id, task_id=task_id)

    def title(self) -> str:
        from tangram.metamodel.common import localize

        return localize(self.flow.label, self.ctx.language)

    # tokens
    def enter(self, node_key: str, scope_id: uuid.UUID | None) -> None:
        self._queue.append((node_key, scope_id))

    def drain(self) -> None:
        """Run queued tokens until each waits or the instance stops."""
        while self._queue and self.running:
            key, scope_id = self._queue.pop(0)
            self._steps += 1
            if self._steps > MAX_STEPS_PER_TRANSACTION:
                self.fail(f"the flow took more than {MAX_STEPS_PER_TRANSACTION} steps at once "
                          f"(a loop without a waiting node?); stopped at node {key!r}")
                return
            node = self.node(key)
            execution = self._new_execution(node, scope_id)
            try:
                NODE_TYPES[node.type].enter(self, node, execution)
            except TangramError as exc:
                self.fail(f"node {key!r}: {exc.message}", execution=execution)

    def _new_execution(self, node: Any, scope_id: uuid.UUID | None) -> Execution:
        execution = {"id": new_id(), "instance_id": self.id, "node": node.key,
                     "node_type": node.type, "status": "active", "scope_id": scope_id,
                     "data": {}, "decision": None, "entered_at": self.ctx.now(),
                     "left_at": None}
        self.ctx.session.execute(executions_table.insert(), execution)
        return execution

    def update_execution(self, execution: Execution, **values: Any) -> None:
        execution.update(values)
        self.ctx.session.execute(executions_table.update()
                                 .where(executions_table.c.id == execution["id"]).values(**values))

    def leave(self, execution: Execution, next_keys: list[str], *, decision: str | None = None,
              scope_id: Any = ...) -> None:
        """Complete ``execution`` and send a token to each of ``next_keys``."""
        self.update_execution(execution, status="completed", decision=decision,
                              left_at=self.ctx.now())
        self.close_waits(execution)
        scope = execution["scope_id"] if scope_id is ... else scope_id
        for key in next_keys:
            self.enter(key, scope)

    def cancel_execution(self, execution: Execution, decision: str = "cancelled") -> None:
        self.update_execution(execution, status="cancelled", decision=decision,
                              left_at=self.ctx.now())
        self.close_waits(execution)

    def close_waits(self, execution: Execution) -> None:
        """Cancel what still waits on a token that moved on: its open tasks,
        pending timers and queued jobs (a late timer then finds nothing)."""
        holds = NODE_TYPES[execution["node_type"]].holds
        if not holds:
            return
        s = self.ctx.session
        exe = execution["id"]
        if "tasks" in holds:
            t = tasks_table
            s.execute(t.update().where(t.c.execution_id == exe,
                                       t.c.status.in_(("open", "queued")))
                      .values(status="cancelled", version=t.c.version + 1))
        if "timers" in holds:
            s.execute(timers_table.update().where(timers_table.c.execution_id == exe,
                                                  timers_table.c.status == "pending")
                      .values(status="cancelled"))
        if "jobs" in holds:
            s.execute(jobs_table.update().where(jobs_table.c.execution_id == exe,
                                                jobs_table.c.status.in_(("queued", "running")))
                      .values(status="cancelled"))

    def active_executions(self) -> list[Execution]:
        rows = self.ctx.session.execute(
            sa.select(executions_table).where(executions_table.c.instance_id == self.id,
                                              executions_table.c.status == "active")
            .order_by(executions_table.c.entered_at)).mappings().all()
        return [dict(r) for r in rows]

    def add_timer(self, execution: Execution, *, kind: str, due_at: datetime,
                  payload: dict[str, Any]) -> None:
        self.ctx.session.execute(timers_table.insert(), {
            "id": new_id(), "instance_id": self.id, "execution_id": execution["id"],
            "kind": kind, "payload": payload, "due_at": due_at, "status": "pending",
            "claimed_by": None, "lease_until": None, "fired_at": None})

    # the instance as a whole
    def _set_instance(self, **values: Any) -> None:
        self.inst.update(values)
        self.ctx.session.execute(instances_table.update()
                                 .where(instances_table.c.id == self.id).values(**values))

    def finish(self, outcome: str, *, status: str = "completed", node: str | None = None,
               comment: str | None = None) -> None:
        for execution in self.active_executions():
            self.cancel_execution(execution)
        self._queue.clear()
        self._set_instance(status=status, outcome=outcome, ended_at=self.ctx.now(), error=None)
        self.history(status if status != "completed" else "ended", node=node, comment=comment,
                     outcome=outcome)

    def fail(self, message: str, *, execution: Execution | None = None) -> None:
        """Stop visibly: the instance shows the error; an admin may retry it,
        which enters the failed node again."""
        if execution is not None and execution["status"] == "active":
            self.update_execution(execution, data={**execution["data"], "failed": True})
        self._queue.clear()
        self._set_instance(status="failed", error=message)
        self.history("failed", node=execution["node"] if execution else None, error=message)

    def bump(self) -> None:
        self.ctx.session.execute(instances_table.update().where(instances_table.c.id == self.id)
                                 .values(row_version=instances_table.c.row_version + 1))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# --- opening a run --------------------------------------------------------------------

def lock_instance(ctx: EngineContext, instance_id: uuid.UUID) -> dict[str, Any]:
    """Read the instance row under a row lock: the serialization point of a step."""
    row = ctx.session.execute(sa.select(instances_table)
                              .where(instances_table.c.id == instance_id)
                              .with_for_update()).mappings().first()
    if row is None:
        raise NotFound(f"flow instance {instance_id} does not exist")
    return dict(row)


def open_run(ctx: EngineContext, instance_id: uuid.UUID, *, require_running: bool = True) -> Run:
    inst = lock_instance(ctx, instance_id)
    if require_running and inst["status"] != "running":
        raise Conflict(f"flow instance {instance_id} is {inst['status']}, not running")
    loaded = load_version(ctx.session, app=inst["app"], flow=inst["flow"],
                          version=inst["version"])
    return Run(ctx, inst, loaded)


def get_execution(run: Run, execution_id: uuid.UUID) -> Execution | None:
    row = run.ctx.session.execute(sa.select(executions_table)
                                  .where(executions_table.c.id == execution_id)).mappings().first()
    return dict(row) if row else None


def start_instance(ctx: EngineContext, *, app: str, flow: str, record_id: Any = None,
                   variables: Mapping[str, Any] | None = None, started_by: uuid.UUID | None,
                   trigger: str, dedupe_key: str | None = None,
                   old: Mapping[str, Any] | None = None,
                   loaded: Loaded | None = None) -> uuid.UUID:
    """Create an instance of the newest published version and run its first
    steps in the caller's transaction.

    >>> start_instance(ctx, app="crm", flow="contract_approval", record_id=rid,
    ...                started_by=user.id, trigger="submitted")  # doctest: +SKIP
    """
    loaded = loaded or load_version(ctx.session, app=app, flow=flow)
    start = loaded.flow.start
    if start is None:
        raise FlowError(f"flow {flow!r} has no single start node")
    instance = {"id": new_id(), "app": app, "flow": flow, "version": loaded.version,
                "form": loaded.flow.form, "record_id": _uuid(record_id), "status": "running",
                "outcome": None, "variables": _jsonable(dict(variables or {})), "error": None,
                "started_by": started_by, "started_at": ctx.now(), "ended_at": None,
                "row_version": 1, "dedupe_key": dedupe_key}
    ctx.session.execute(instances_table.insert(), instance)
    run = Run(ctx, instance, loaded)
    run.old = old
    run.history("started", node=start.key, actor_id=started_by, trigger=trigger,
                version=loaded.version)
    run.enter(start.key, None)
    run.drain()
    return run.id


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


# --- the simple node types ----------------------------------------------------------------

def _enter_start(run: Run, node: fl.StartNode, execution: Execution) -> None:
    run.leave(execution, [node.next])


def _enter_end(run: Run, node: fl.EndNode, execution: Execution) -> None:
    run.update_execution(execution, status="completed", decision=node.outcome,
                         left_at=run.ctx.now())
    run.finish(node.outcome, node=node.key)


def _enter_branch(run: Run, node: fl.BranchNode, execution: Execution) -> None:
    for i, cond in enumerate(node.conditions):
        if run.evaluate(cond.when) is True:
            run.history("branch", node=node.key, condition=i, next=cond.next)
            run.leave(execution, [cond.next], decision=f"condition_{i}")
            return
    if node.default is None:
        raise FlowError("no condition matched and the branch has no default path")
    run.history("branch", node=node.key, condition="default", next=node.default)
    run.leave(execution, [node.default], decision="default")


def _enter_split(run: Run, node: fl.ParallelSplitNode, execution: Execution) -> None:
    # Tokens on the branches run under this split's execution (their scope);
    # the matching join finds its siblings by that scope.
    run.leave(execution, node.branches, scope_id=execution["id"])


def _enter_join(run: Run, node: fl.ParallelJoinNode, execution: Execution) -> None:
    split_exec_id = execution["scope_id"]
    s = run.ctx.session
    e = executions_table
    waiting = s.execute(sa.select(e).where(e.c.instance_id == run.id, e.c.node == node.key,
                                           e.c.status == "active", e.c.scope_id == split_exec_id,
                                           e.c.id != execution["id"])).mappings().first()
    split = node.split
    needed = len(run.node(split).branches) if node.mode == "all" else node.n
    outer = None
    if split_exec_id is not None:
        parent = s.execute(sa.select(e.c.scope_id).where(e.c.id == split_exec_id)).first()
        outer = parent.scope_id if parent else None
    if waiting is None:
        arrived = 1
        joiner = execution
    else:
        # This token merges into the join's waiting token.
        joiner = dict(waiting)
        arrived = int(joiner["data"].get("arrived", 1)) + 1
        run.update_execution(execution, status="completed", decision="joined",
                             left_at=run.ctx.now())
    if arrived < needed:
        run.update_execution(joiner, data={**joiner["data"], "arrived": arrived})
        return
    run.update_execution(joiner, data={**joiner["data"], "arrived": arrived})
    if node.mode == "first_n":
        # The branches still running are no longer needed.
        others = s.execute(sa.select(e).where(e.c.instance_id == run.id,
                                              e.c.status == "active",
                                              e.c.scope_id == split_exec_id,
                                              e.c.id != joiner["id"])).mappings().all()
        for other in others:
            run.cancel_execution(dict(other))
    run.history("joined", node=node.key, arrived=arrived)
    run.leave(joiner, [node.next], scope_id=outer)


def _enter_delay(run: Run, node: fl.DelayNode, execution: Execution) -> None:
    now = run.ctx.now()
    if node.duration is not None:
        due = run.due(now, node.duration, node.time, node.calendar)
    else:
        assert node.until is not None
        value = run.evaluate(node.until)
        if isinstance(value, datetime):
            due = value
        elif isinstance(value, date):
            from zoneinfo import ZoneInfo

            due = datetime.combine(value, datetime.min.time(), ZoneInfo(run.ctx.timezone))
        elif value is None:
            due = now
        else:
            raise FlowError(f"delay until {node.until!r} gave {value!r}, not a date")
    if due <= now:
        run.leave(execution, [node.next], decision="elapsed")
        return
    run.add_timer(execution, kind="delay", due_at=due, payload={})


def fire_delay(run: Run, execution: Execution, payload: Mapping[str, Any]) -> None:
    run.leave(execution, [run.node(execution["node"]).next], decision="elapsed")


def _one(key: str) -> list[str]:
    return [key]


for _spec in (
    NodeTypeSpec("start", {"zh": "开始", "en": "Start"}, fl.StartNode,
                 lambda n: [n.next], _enter_start,
                 doc="Where an instance begins; its trigger says when one starts."),
    NodeTypeSpec("branch", {"zh": "条件分支", "en": "Branch"}, fl.BranchNode,
                 lambda n: [c.next for c in n.conditions] + ([n.default] if n.default else []),
                 _enter_branch,
                 doc="Takes the first path whose condition is true, else the default."),
    NodeTypeSpec("parallel_split", {"zh": "并行分支", "en": "Parallel split"},
                 fl.ParallelSplitNode, lambda n: list(n.branches), _enter_split,
                 doc="Runs every branch at once."),
    NodeTypeSpec("parallel_join", {"zh": "并行汇聚", "en": "Parallel join"},
                 fl.ParallelJoinNode, lambda n: [n.next], _enter_join, waits=True,
                 doc="Waits for all branches of its split (or the first n) and goes on once."),
    NodeTypeSpec("delay", {"zh": "延时", "en": "Delay"}, fl.DelayNode,
                 lambda n: [n.next], _enter_delay, waits=True, holds=("timers",),
                 doc="Waits a duration (calendar or working time) or until a date."),
    NodeTypeSpec("end", {"zh": "结束", "en": "End"}, fl.EndNode, lambda n: [], _enter_end,
                 doc="Ends the instance with an outcome."),
):
    register_node(_spec)
