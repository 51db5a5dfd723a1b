"""The interpreter core: instances, tokens (node executions) and steps.

A step is everything that happens in one transaction: a trigger starts an
instance and runs it until every token waits (an approval, a delay, a join,
a queued HTTP call) or the instance ends; a task action, a due timer or a
finished job moves one token and runs on the same way. Every step first
locks the instance row (an ``UPDATE … RETURNING`` that bumps its
``row_version``), so two steps of one instance never interleave, whichever
process runs them.

Within a step the run keeps what it writes to its own state tables
(executions, new tasks, history, the instance row) and writes it in a few
statements when the step ends — or earlier, before any statement that reads
or changes those tables (:meth:`Run.execute`, :meth:`Run.change`). It also knows
the instance's live state (active executions and their open or queued tasks)
when it read that state under the lock or created it in this step, so the
common step needs no re-reads; any write it cannot follow makes it forget that
knowledge and read again.

    iid = start_instance(ctx, app="crm", flow="contract_approval", record_id=rid,
                         started_by=user_id, trigger="submitted")
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import date, datetime
from typing import Any, cast

import sqlalchemy as sa

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.db.prepared import Batch, Prepared
from tangram.db.returning import returned_subquery
from tangram.db.upsert import prepared_upsert
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
from tangram.engines.forms.typed import typed_values
from tangram.engines.notify.service import Text
from tangram.errors import Conflict, NotFound, TangramError
from tangram.i18n import text as catalog_text
from tangram.metamodel import flows as fl
from tangram.metamodel.common import localize
from tangram.metamodel.flows import BusinessCalendar, Flow
from tangram.metamodel.storage import definition_versions_table, definitions_table

MAX_STEPS_PER_TRANSACTION = 500
Execution = dict[str, Any]


class FlowError(TangramError):
    """A step cannot go on (no branch matched, no assignee, action failed);
    the instance is marked failed with this message."""

    code = "flow_failed"
    # Whether trying again later may succeed (see :class:`TransientFlowError`).
    transient = False


class TransientFlowError(FlowError):
    """An action failed for a reason that may pass (a remote service down or
    slow): the worker tries it again with backoff before failing the instance.
    Every other error fails the instance at once — retrying a missing record
    or a type error only delays the administrator's news."""

    transient = True


def error_text(exc: TangramError) -> str:
    """An error as an instance's error shows it: with each listed problem
    (a refused record change says which field and why, not only "1
    validation error(s)")."""
    if not exc.errors:
        return exc.message
    problems = "; ".join(f"{e.field or e.path}: {e.message}" if (e.field or e.path)
                         else e.message for e in exc.errors)
    return f"{exc.message} — {problems}"


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

_d, _v = definitions_table, definition_versions_table
_VERSION_BASE = (sa.select(_v.c.id, _v.c.version).join(_d, _d.c.id == _v.c.definition_id)
                 .where(_d.c.app == sa.bindparam("app"), _d.c.kind == "flow",
                        _d.c.key == sa.bindparam("flow")))
_VERSION_ROW = Prepared(_VERSION_BASE.where(_v.c.version == sa.bindparam("version")))
_LATEST_ROW = Prepared(_VERSION_BASE.where(_v.c.version == _d.c.latest_version))
_VERSION_BODY = Prepared(sa.select(_v.c.body).where(_v.c.id == sa.bindparam("id")))


def load_version(session: Any, *, app: str, flow: str, version: int | None = None) -> Loaded:
    """The given version of a flow (default: the newest published one).

    Versions are immutable, so the parsed flow is cached by the id of the
    version row; a new version is a new row, never a stale cache entry."""
    if version is None:
        row = _LATEST_ROW.first(session, {"app": app, "flow": flow})
    else:
        row = _VERSION_ROW.first(session, {"app": app, "flow": flow, "version": version})
    if row is None:
        raise NotFound(f"flow {flow!r} of app {app!r} is not published"
                       + (f" at version {version}" if version is not None else ""))
    return _loaded(session, app=app, flow=flow, version=row["version"], version_id=row["id"])


def _loaded(session: Any, *, app: str, flow: str, version: int,
            version_id: uuid.UUID) -> Loaded:
    loaded = _cache.get(version_id)
    if loaded is None:
        found = _VERSION_BODY.first(session, {"id": version_id})
        assert found is not None
        body = found["body"]
        model = Flow.model_validate(body)
        loaded = Loaded(app=app, key=flow, version=version, version_id=version_id,
                        flow=model, nodes={n.key: n for n in model.nodes})
        with _cache_lock:
            _cache[version_id] = loaded
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

def typed_record(ctx: EngineContext, app: str, form: str, record_id: Any, *,
                 deleted_first: bool = False) -> dict[str, Any]:
    """The record as expressions see it: decimals as Decimal, dates as date.

    ``deleted_first``: the record is looked for in the recycle bin first, then
    among live records (a flow started by ``record_deleted`` reads the record
    that was deleted — or restored since)."""
    from tangram.engines.forms.records import get_record

    if deleted_first:
        try:
            data = get_record(ctx, app=app, form=form, record_id=record_id, deleted=True)
        except NotFound:
            data = get_record(ctx, app=app, form=form, record_id=record_id)
    else:
        data = get_record(ctx, app=app, form=form, record_id=record_id)
    return typed_values(ctx, app, form, data)


def system_context(ctx: EngineContext) -> EngineContext:
    return dataclasses.replace(ctx, actor=SYSTEM_ACTOR, policy=AllowAll())


# --- statements of a step (built once; a new construct per call costs more than
# the database round trip on SQLite) ---------------------------------------------------

_i, _e, _t = instances_table, executions_table, tasks_table
_EXECUTION_COLUMNS = tuple(c.name for c in _e.c)
_EXECUTION_CHANGES = ("status", "data", "decision", "left_at")
_INSTANCE_CHANGES = ("status", "outcome", "error", "ended_at", "variables")
_VERSION_ID = returned_subquery(
    sa.select(_v.c.id).join(_d, _d.c.id == _v.c.definition_id)
    .where(_d.c.app == _i.c.app, _d.c.kind == "flow", _d.c.key == _i.c.flow,
           _v.c.version == _i.c.version)).label("version_id")
# Locking is bumping: the UPDATE takes the row lock (and waits for it), so the
# step's later statements see everything the previous holder committed.
LOCK = (_i.update().values(row_version=_i.c.row_version + 1)
         .returning(*_i.c, _VERSION_ID))
LOCK_BY_ID = Prepared(LOCK.where(_i.c.id == sa.bindparam("instance_id")))
_INSTANCE_INSERT = Prepared(_i.insert(), column_keys=[c.name for c in _i.c])
_INSTANCE_UPDATE = Prepared(_i.update().where(_i.c.id == sa.bindparam("_id"))
                            .values({c: sa.bindparam(c) for c in _INSTANCE_CHANGES}))
_EXECUTIONS_WRITE = prepared_upsert(_e, update=_EXECUTION_CHANGES)
_TASKS_INSERT = Prepared(_t.insert(), column_keys=[c.name for c in _t.c])
_HISTORY_INSERT = Prepared(history_table.insert(),
                           column_keys=[c.name for c in history_table.c])
_TIMER_INSERT = Prepared(timers_table.insert(), column_keys=[c.name for c in timers_table.c])
def _waiting(t: sa.Table) -> sa.ColumnElement[bool]:
    # Not IN (…): a literal list is an "expanding" parameter, which prepared
    # statements cannot take.
    return sa.or_(t.c.status == "open", t.c.status == "queued")


def live_state(instance: sa.ColumnElement[Any]) -> Prepared:
    """The active executions of an instance with their open or queued tasks."""
    return Prepared(
        sa.select(_e, *[c.label("task_" + c.name) for c in _t.c])
        .outerjoin(_t, sa.and_(_t.c.execution_id == _e.c.id, _waiting(_t)))
        .where(_e.c.instance_id == instance, _e.c.status == "active")
        .order_by(_e.c.entered_at, _e.c.id, _t.c.position, _t.c.created_at))


LIVE_BY_ID = live_state(sa.bindparam("instance_id"))
_EXECUTION_BY_ID = Prepared(sa.select(_e).where(_e.c.id == sa.bindparam("id")))
_ACTIVE_EXECUTIONS = Prepared(
    sa.select(_e).where(_e.c.instance_id == sa.bindparam("instance_id"),
                        _e.c.status == "active").order_by(_e.c.entered_at, _e.c.id))
_CANCEL_TASKS = Prepared(
    _t.update().where(_t.c.execution_id == sa.bindparam("b_execution"), _waiting(_t))
    .values(status="cancelled", version=_t.c.version + 1))
_CANCEL_TIMERS = Prepared(
    timers_table.update().where(timers_table.c.execution_id == sa.bindparam("b_execution"),
                                timers_table.c.status == "pending")
    .values(status="cancelled"))
_CANCEL_JOBS = Prepared(
    jobs_table.update().where(jobs_table.c.execution_id == sa.bindparam("b_execution"),
                              sa.or_(jobs_table.c.status == "queued",
                                     jobs_table.c.status == "running"))
    .values(status="cancelled"))


def _split_live_state(rows: Any) -> tuple[dict[uuid.UUID, Execution],
                                          dict[uuid.UUID, list[dict[str, Any]]]]:
    executions: dict[uuid.UUID, Execution] = {}
    tasks: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in rows:
        exe = executions.get(row["id"])
        if exe is None:
            exe = executions[row["id"]] = {c: row[c] for c in _EXECUTION_COLUMNS}
            tasks[exe["id"]] = []
        if row["task_id"] is not None:
            tasks[exe["id"]].append({c.name: row["task_" + c.name] for c in _t.c})
    return executions, tasks


# --- a run: one step of one instance ---------------------------------------------------

class Run:
    """The state of one instance inside one transaction."""

    def __init__(self, ctx: EngineContext, instance: Mapping[str, Any], loaded: Loaded, *,
                 new: bool = False) -> None:
        self.ctx = ctx
        self._sys: EngineContext | None = None
        self.inst = dict(instance)
        self.loaded = loaded
        self.flow = loaded.flow
        self._record: dict[str, Any] | None = None
        self._queue: list[tuple[str, uuid.UUID | None]] = []
        self._steps = 0
        self._submitter: dict[str, Any] | None = None
        self.old: Mapping[str, Any] | None = None
        # Writes not yet sent (see the module docstring).
        self._new_instance = new
        self._instance_changed = False
        self._executions_out: dict[uuid.UUID, Execution] = {}
        self._tasks_out: list[dict[str, Any]] = []
        self._history_out: list[dict[str, Any]] = []
        self._notifications_out: list[dict[str, Any]] = []
        # The live state when known: active executions (by id, in entry order)
        # and the open/queued tasks of each (approve and CC, by position).
        self._live: dict[uuid.UUID, Execution] | None = {} if new else None
        self._live_tasks: dict[uuid.UUID, list[dict[str, Any]]] | None = {} if new else None
        self.batched: Any = None  # what ``open_run(also=…)`` sent with the lock
        # A task the lock batch closed already, with the values it was closed with.
        self.preclosed: tuple[uuid.UUID, dict[str, Any]] | None = None

    @property
    def id(self) -> uuid.UUID:
        return cast(uuid.UUID, self.inst["id"])

    @property
    def sys(self) -> EngineContext:
        """The step's context as the system (what flows do to records)."""
        if self._sys is None:
            self._sys = system_context(self.ctx)
        return self._sys

    @property
    def running(self) -> bool:
        return bool(self.inst["status"] == "running")

    def node(self, key: str) -> Any:
        return self.loaded.nodes[key]

    # statements on the flow's own tables
    def execute(self, statement: Any, params: Any = None) -> Any:
        """Execute a statement on the state tables after writing what is pending
        (a change through it must be applied to the run's copies by the caller)."""
        self.flush()
        return self.ctx.session.execute(statement, params)

    def change(self, statement: Any, params: Any = None) -> Any:
        """Execute a statement that changes tasks or executions in a way the run
        does not follow: from here on it reads the live state from the tables."""
        self.flush()
        self._live = self._live_tasks = None
        return self.ctx.session.execute(statement, params)

    def flush(self) -> None:
        """Write the pending rows: instance, executions, tasks, history."""
        s = self.ctx.session
        if not (self._new_instance or self._instance_changed or self._executions_out
                or self._tasks_out or self._history_out or self._notifications_out):
            return
        from tangram.engines.notify.service import NOTIFICATION_INSERT

        # One batch, in the order the foreign keys need.
        with Batch(s) as batch:
            if self._new_instance:
                _INSTANCE_INSERT.send(batch, self.inst)
            elif self._instance_changed:
                _INSTANCE_UPDATE.send(batch, {"_id": self.id,
                                              **{c: self.inst[c] for c in _INSTANCE_CHANGES}})
            if self._executions_out:
                _EXECUTIONS_WRITE.send(batch, many=list(self._executions_out.values()))
            if self._tasks_out:
                _TASKS_INSERT.send(batch, many=self._tasks_out)
            if self._history_out:
                _HISTORY_INSERT.send(batch, many=self._history_out)
            if self._notifications_out:
                NOTIFICATION_INSERT.send(batch, many=self._notifications_out)
        self._new_instance = self._instance_changed = False
        self._executions_out.clear()
        self._tasks_out = []
        self._history_out = []
        self._notifications_out = []

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint around an action: on an error, what the action wrote —
        in the database or still pending here — is undone, and the error goes on."""
        self.flush()
        savepoint = self.ctx.session.begin_nested()
        try:
            yield
            self.flush()
        except BaseException:
            self._history_out, self._tasks_out, self._notifications_out = [], [], []
            self._executions_out.clear()
            self._live = self._live_tasks = None
            savepoint.rollback()
            raise
        savepoint.commit()

    def know_live_state(self, rows: list[dict[str, Any]]) -> None:
        """The active executions and their open or queued tasks, read under the lock."""
        self._live, self._live_tasks = _split_live_state(rows)

    def live_task(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        return next((t for t in self.all_live_tasks() if t["id"] == task_id), None)

    def all_live_tasks(self) -> list[dict[str, Any]]:
        """Every open and queued task of the instance the run knows of."""
        return [t for tasks in (self._live_tasks or {}).values() for t in tasks]

    def live_tasks(self, execution: Execution) -> list[dict[str, Any]] | None:
        """Open and queued tasks of an execution, if the run knows them."""
        if self._live_tasks is None:
            return None
        return self._live_tasks.get(execution["id"], [])

    def track_tasks(self, execution: Execution, rows: list[dict[str, Any]]) -> None:
        """Tasks this step created (written at the end of the step)."""
        self._tasks_out.extend(rows)
        if self._live_tasks is not None:
            self._live_tasks.setdefault(execution["id"], []).extend(
                r for r in rows if r["status"] in ("open", "queued"))

    # values
    def record(self) -> dict[str, Any] | None:
        if self._record is None and self.inst["record_id"] is not None and self.inst["form"]:
            self._record = typed_record(self.sys, self.inst["app"], self.inst["form"],
                                        self.inst["record_id"],
                                        deleted_first=self.on_deleted_record)
        return self._record

    @property
    def on_deleted_record(self) -> bool:
        """Whether the flow starts when its record is deleted: it then reads the
        record from the recycle bin (and may not change it)."""
        start = self.flow.start
        return start is not None and start.trigger.kind == "record_deleted"

    def live_record_id(self, what: str) -> Any:
        """The flow's record id for an action that changes it; refused (for
        good: retrying cannot help) when the record is in the recycle bin."""
        record_id = self.inst["record_id"]
        if record_id is None:
            raise FlowError(f"{what} needs a record, and this instance has none")
        record = self.record() if self.on_deleted_record else None
        if record is not None and record.get("deleted_at") is not None:
            raise FlowError(
                f"{what} cannot change record {record_id} of form {self.inst['form']!r}: "
                "it was deleted (it is in the recycle bin). A flow that starts when a "
                "record is deleted may read it (notify, create_record, update related "
                "records) but not change it")
        return record_id

    def forget_record(self) -> None:
        self._record = None

    def submitter_variables(self) -> dict[str, Any]:
        if self._submitter is None:
            actor = asg.actor_for(self.ctx.session, self.inst["started_by"])
            self._submitter = actor.as_variables() if actor else SYSTEM_ACTOR.as_variables()
        return self._submitter

    def variables(self, names: Collection[str] | None = None) -> dict[str, Any]:
        """Expression variables; ``names`` limits them to those an expression
        mentions (reading the record or the submitter costs queries)."""
        out: dict[str, Any] = {"old": self.old or {}, "vars": self.inst["variables"]}
        if names is None or "record" in names:
            out["record"] = self.record() or {}
        if names is None or "user" in names:
            out["user"] = self.submitter_variables()
        return out

    def eval_context(self) -> EvalContext:
        return EvalContext(now=self.ctx.now(), timezone=self.ctx.timezone)

    def evaluate(self, source: str) -> Any:
        compiled = compile_expression(source, allowed_names=asg.EXPRESSION_NAMES)
        return compiled.evaluate(self.variables(compiled.referenced_fields),
                                 context=self.eval_context())

    def scope(self) -> asg.Scope:
        return asg.Scope(session=self.ctx.session, app=self.inst["app"],
                         submitter_id=self.inst["started_by"], record=self.record(),
                         variables=self.variables(), eval_context=self.eval_context())

    def resolve(self, rules: list[Any]) -> list[uuid.UUID]:
        return asg.resolve(rules, self.scope_for(rules))

    def scope_for(self, rules: list[Any]) -> asg.Scope:
        """A scope that reads the record and the submitter only if a rule may need them."""
        if all(r.kind == "user" for r in rules):
            return asg.Scope(session=self.ctx.session, app=self.inst["app"],
                             submitter_id=self.inst["started_by"], record=None,
                             variables={}, eval_context=None)
        return self.scope()

    def due(self, start: datetime, duration: fl.Duration, time: str,
            calendar: str | None) -> datetime:
        return add_time(start, duration, time=time,
                        calendar=load_calendar(self.ctx.session, self.inst["app"], calendar),
                        timezone=self.ctx.timezone)

    # records of history and notifications
    def history(self, action: str, *, node: str | None = None, comment: str | None = None,
                actor_id: uuid.UUID | None = None, **details: Any) -> None:
        self._history_out.append({
            "id": new_id(), "instance_id": self.id, "at": self.ctx.now(),
            "actor_id": actor_id if actor_id is not None else self.ctx.actor.id,
            "node": node, "action": action, "comment": comment,
            "details": _jsonable(details)})

    def notify(self, user_ids: list[uuid.UUID], *, kind: str, title: Text, body: Text = "",
               task_id: uuid.UUID | None = None, group_channels: list[str] | None = None
               ) -> None:
        # Through the notification channels: in-app, and email for users who
        # chose it; group robots when a notify action names them.
        from tangram.engines.notify.service import notify

        if not user_ids and not group_channels:
            return
        notify(self.ctx, user_ids=user_ids, title=title, body=body, kind=kind,
               group_channels=group_channels or (), instance_id=self.id, task_id=task_id,
               in_app_rows=self._notifications_out)

    def say(self, code: str, node: str | None = None) -> Callable[[str], str]:
        """A notification text in each reader's language: the catalog's
        ``code`` (tangram.i18n.TEXTS) with the flow's label, ``node``'s label and
        the record's title filled in."""
        subject = self.subject()

        def text(language: str) -> str:
            found = self.loaded.nodes.get(node) if node else None
            node_label = (localize(found.label, language) if found is not None and found.label
                          else node or "")
            return catalog_text(code, language, flow=localize(self.flow.label, language),
                                node=node_label, subject=f" · {subject}" if subject else "")
        return text

    def subject(self) -> str:
        """The record's title (its form's title field), or "" without one."""
        if self.inst["record_id"] is None or not self.inst["form"]:
            return ""
        from tangram.engines.forms.registry import get_runtime

        title_field = get_runtime(self.ctx.session, self.inst["app"],
                                  self.inst["form"]).form.effective_title_field
        record = self.record() if title_field else None
        value = record.get(title_field) if record is not None and title_field else None
        return "" if value is None else str(value)[:100]

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
                self.fail(f"node {key!r}: {error_text(exc)}", execution=execution)

    def _new_execution(self, node: Any, scope_id: uuid.UUID | None) -> Execution:
        execution = {"id": new_id(), "instance_id": self.id, "node": node.key,
                     "node_type": node.type, "status": "active", "scope_id": scope_id,
                     "data": {}, "decision": None, "entered_at": self.ctx.now(),
                     "left_at": None}
        self._executions_out[execution["id"]] = execution
        if self._live is not None:
            self._live[execution["id"]] = execution
        return execution

    def update_execution(self, execution: Execution, **values: Any) -> None:
        execution.update(values)
        self._executions_out[execution["id"]] = execution
        if self._live is not None and execution["id"] in self._live:
            self._live[execution["id"]] = execution

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
        spec = NODE_TYPES[execution["node_type"]]
        holds = spec.holds
        if not holds:
            return
        s = self.ctx.session
        exe = {"b_execution": execution["id"]}
        if "tasks" in holds:
            known = self.live_tasks(execution)
            waiting = None if known is None else [
                t for t in known if t["status"] in ("open", "queued")]
            if waiting is None or waiting:
                self.flush()
                _CANCEL_TASKS.execute(s, exe)
            for task in waiting or ():
                task["status"] = "cancelled"
                task["version"] += 1
        if "timers" in holds and spec.timed(self.node(execution["node"])):
            _CANCEL_TIMERS.execute(s, exe)
        if "jobs" in holds and execution["data"].get("queued", True):
            _CANCEL_JOBS.execute(s, exe)

    def active_executions(self) -> list[Execution]:
        if self._live is not None:
            return [e for e in self._live.values() if e["status"] == "active"]
        self.flush()
        return _ACTIVE_EXECUTIONS.all(self.ctx.session, {"instance_id": self.id})

    def as_execution(self, row: Mapping[str, Any]) -> Execution:
        """The run's own copy of an execution read from the table (one object per row)."""
        if self._live is not None and row["id"] in self._live:
            return self._live[row["id"]]
        if row["id"] in self._executions_out:
            return self._executions_out[row["id"]]
        return dict(row)

    def get_execution(self, execution_id: uuid.UUID) -> Execution | None:
        if self._live is not None and execution_id in self._live:
            return self._live[execution_id]
        if execution_id in self._executions_out:
            return self._executions_out[execution_id]
        self.flush()
        return _EXECUTION_BY_ID.first(self.ctx.session, {"id": execution_id})

    def add_timer(self, execution: Execution, *, kind: str, due_at: datetime,
                  payload: dict[str, Any]) -> None:
        self.flush()  # the timer's execution row first
        _TIMER_INSERT.execute(self.ctx.session, {
            "id": new_id(), "instance_id": self.id, "execution_id": execution["id"],
            "kind": kind, "payload": payload, "due_at": due_at, "status": "pending",
            "claimed_by": None, "lease_until": None, "fired_at": None})

    # the instance as a whole
    def set_variable(self, name: str, value: Any) -> None:
        """Set ``vars.<name>`` for the rest of the instance."""
        self._set_instance(variables={**self.inst["variables"], name: _jsonable(value)})

    def _set_instance(self, **values: Any) -> None:
        self.inst.update(values)
        self._instance_changed = True

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

    def end_step(self) -> None:
        """Run what is queued and write everything: the last call of every step."""
        self.drain()
        self.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# --- opening a run --------------------------------------------------------------------

def open_run(ctx: EngineContext, instance_id: uuid.UUID | None, *,
             require_running: bool = True, lock: Prepared = LOCK_BY_ID,
             live: Prepared = LIVE_BY_ID, params: Mapping[str, Any] | None = None,
             missing: str | None = None,
             also: Callable[[Batch], Any] | None = None) -> Run:
    """Lock the instance row (bumping its version) — the serialization point
    of a step — and read its live state. Both go to the database together:
    the read runs after the lock is granted, so it sees what the previous
    holder committed. ``also`` sends more statements in the same batch."""
    params = params or {"instance_id": instance_id}
    with Batch(ctx.session) as batch:
        locked = lock.send(batch, params)
        state = live.send(batch, params)
        extra = also(batch) if also is not None else None
    inst = locked.first()
    if inst is None:
        raise NotFound(missing or f"flow instance {instance_id} does not exist")
    version_id = inst.pop("version_id")
    if require_running and inst["status"] != "running":
        raise Conflict(f"flow instance {inst['id']} is {inst['status']}, not running")
    if version_id is None:
        raise NotFound(f"flow {inst['flow']!r} of app {inst['app']!r} is not published "
                       f"at version {inst['version']}")
    loaded = _loaded(ctx.session, app=inst["app"], flow=inst["flow"], version=inst["version"],
                     version_id=version_id)
    run = Run(ctx, inst, loaded)
    run.know_live_state(state.all())
    run.batched = extra
    return run


def get_execution(run: Run, execution_id: uuid.UUID) -> Execution | None:
    return run.get_execution(execution_id)


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
    run = Run(ctx, instance, loaded, new=True)
    if dedupe_key is not None:
        run.flush()  # a duplicate start fails here, before any other write
    run.old = old
    run.history("started", node=start.key, actor_id=started_by, trigger=trigger,
                version=loaded.version)
    run.enter(start.key, None)
    run.end_step()
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
    e = executions_table
    waiting = run.execute(sa.select(e).where(e.c.instance_id == run.id, e.c.node == node.key,
                                          e.c.status == "active", e.c.scope_id == split_exec_id,
                                          e.c.id != execution["id"])).mappings().first()
    split = node.split
    needed = len(run.node(split).branches) if node.mode == "all" else node.n
    outer = None
    if split_exec_id is not None:
        parent = run.get_execution(split_exec_id)
        outer = parent["scope_id"] if parent else None
    if waiting is None:
        arrived = 1
        joiner = execution
    else:
        # This token merges into the join's waiting token.
        joiner = run.as_execution(waiting)
        arrived = int(joiner["data"].get("arrived", 1)) + 1
        run.update_execution(execution, status="completed", decision="joined",
                             left_at=run.ctx.now())
    if arrived < needed:
        run.update_execution(joiner, data={**joiner["data"], "arrived": arrived})
        return
    run.update_execution(joiner, data={**joiner["data"], "arrived": arrived})
    if node.mode == "first_n":
        # The branches still running are no longer needed.
        others = run.execute(sa.select(e).where(e.c.instance_id == run.id,
                                             e.c.status == "active",
                                             e.c.scope_id == split_exec_id,
                                             e.c.id != joiner["id"])).mappings().all()
        for other in others:
            run.cancel_execution(run.as_execution(other))
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
