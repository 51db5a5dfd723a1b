"""Action nodes: one entry per action kind in :data:`ACTION_KINDS`.

Actions that only touch the database (update or create a record, notify,
start a flow, assign an owner) run inside the step, in a savepoint: if one
fails, the savepoint is rolled back. Actions that call out (HTTP) always run
as jobs, outside any transaction, with an ``Idempotency-Key`` derived from
the instance and the step.

Only an error that may pass (:func:`is_transient`: a remote service down, a
lock or serialization conflict in the database, a concurrent change) is
retried — as a queued job, with backoff; after the last attempt the instance
is marked failed. Any other error (a missing record, nobody to assign, a type
error in an expression, a value the form refuses) cannot go away by waiting,
so it fails the instance at once with the error, for an administrator to
see, fix and retry.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from jinja2 import meta

from tangram.db import new_id
from tangram.db.upsert import increment_counter
from tangram.engines.flows.registry import NodeTypeSpec, register_node
from tangram.engines.flows.runtime import (
    Execution,
    FlowError,
    Run,
    TransientFlowError,
    error_text,
    start_instance,
)
from tangram.engines.flows.tables import counters_table, jobs_table
from tangram.engines.flows.taskview import TaskFields
from tangram.engines.templates import TemplateError, sandbox, template_problem
from tangram.errors import Conflict, NotFound, PermissionDenied, TangramError
from tangram.metamodel import flows as fl

# Action texts (titles, bodies, URLs): the platform's sandbox; a value the
# record lacks prints as "" (it may be hidden, or not filled yet).
_env = sandbox(html=False, undefined="lenient")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


_env.filters["tojson"] = lambda v: json.dumps(v, default=_json_default, ensure_ascii=False)


def template_error(source: str) -> str | None:
    """What is wrong with an action's template (title, body, URL): syntax, an
    attribute the sandbox refuses, an unknown filter — checked when a flow is
    published; None when it is fine."""
    return template_problem(source, filters=_env.filters)


def render(template: str, run: Run, hidden: frozenset[str] = frozenset()) -> str:
    """An action's template with the instance's values (without the record's
    ``hidden`` fields). A template that fails on them (an empty value in
    arithmetic, a macro calling itself) fails the action — retried, then a
    visible instance error — never the request."""
    variables = run.variables()
    record = variables["record"]
    if hidden:
        record = TaskFields.hiding(hidden).narrow(record)  # their display titles too
    try:
        return _env.from_string(template).render(
            record=record, vars=variables["vars"], user=variables["user"],
            instance={"id": str(run.id), "flow": run.inst["flow"], "app": run.inst["app"]})
    except RecursionError:
        raise FlowError("a template calls a macro within itself too deeply") from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise FlowError(f"a template failed: {exc}") from None


def idempotency_key(run: Run, execution: Execution) -> str:
    return f"tangram-flow-{run.id}-{execution['id']}"


@dataclass(frozen=True)
class ActionKindSpec:
    kind: str
    label: dict[str, str]
    model: type[Any]
    # Runs in the step's transaction. Returns nothing; raises on failure.
    run: Callable[[Run, Execution, Any], None] | None = None
    # Runs outside any transaction (the worker); returns a result for the history.
    call: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # Builds the call's request inside the step (templates need the record).
    prepare: Callable[[Run, Execution, Any], dict[str, Any]] | None = None


def _values(run: Run, values: Mapping[str, Any], expressions: Mapping[str, str]
            ) -> dict[str, Any]:
    out = dict(values)
    for key, source in expressions.items():
        value = run.evaluate(source)
        out[key] = str(value) if isinstance(value, Decimal) else value
    return out


def _update_record(run: Run, execution: Execution, action: fl.UpdateRecordAction) -> None:
    """Each target record goes through the form engine as the system: its
    validation, audit entry and record event (flows do not start on changes
    made by flows)."""
    from tangram.engines.forms.ownership import transfer_owner
    from tangram.engines.forms.records import update_record

    form, ids = _targets(run, action.target)
    changes = {**_values(run, action.values, action.expressions),
               **dict.fromkeys(action.clear)}
    owner: uuid.UUID | None = None
    if action.owner is not None and action.owner.to:
        found = run.resolve(action.owner.to)
        if not found:
            raise FlowError("update_record found no active user to make the owner")
        owner = found[0]
    app = run.inst["app"]
    for record_id in ids:
        if changes:
            update_record(run.sys, app=app, form=form, record_id=record_id, changes=changes,
                          expected_version=None, source="flow", allow_read_only=True)
        if action.owner is not None:
            transfer_owner(run.sys, app=app, form=form, record_ids=[record_id],
                           new_owner=owner, source="flow")
    if not isinstance(action.target, fl.SelfTarget):
        run.history("records_updated", node=execution["node"], form=form,
                    records=[str(i) for i in ids], fields=sorted(changes),
                    owner=("cleared" if action.owner and action.owner.clear else owner))
    run.forget_record()


def _targets(run: Run, target: Any) -> tuple[str, list[Any]]:
    """The form and ids of the records an update_record action changes."""
    from tangram.engines.forms.registry import get_runtime

    app = run.inst["app"]
    if isinstance(target, fl.SelfTarget):
        return run.inst["form"], [run.live_record_id("update_record")]
    if isinstance(target, fl.RelatedTarget):
        form, values = run.inst["form"], run.record()
        if values is None:
            raise FlowError("update_record of a related record needs the flow's record")
        record_id: Any = None
        for i, key in enumerate(target.path.split(".")):
            compiled = get_runtime(run.ctx.session, app, form).fields.get(key)
            reference = getattr(compiled, "reference", None)
            if compiled is None or not reference or reference[0] != "relation":
                raise FlowError(f"{key!r} of form {form!r} is not a relation field")
            record_id, form = values.get(key), reference[1]
            if record_id is None:
                return form, []  # an empty relation: nothing to update
            if i < target.path.count("."):
                from tangram.engines.flows.runtime import typed_record

                values = typed_record(run.sys, app, form, record_id)
        return form, [record_id]
    assert isinstance(target, fl.FilterTarget)
    return target.form, _matching(run, target.form, target.where, limit=target.limit,
                                  what="update_record filter")


def _matching(run: Run, form: str, where: Mapping[str, str], *, limit: int,
              what: str) -> list[Any]:
    """Ids of live records of ``form`` whose fields equal the expressions'
    values (oldest first); an empty value matches nothing."""
    from tangram.engines.forms.registry import get_runtime

    rt = get_runtime(run.ctx.session, run.inst["app"], form)
    table = rt.table
    conditions: list[sa.ColumnElement[bool]] = [table.c.deleted_at.is_(None)]
    for key, source in where.items():
        value = run.evaluate(source)
        if isinstance(value, Mapping):
            value = value.get("id")
        if value is None:
            return []
        compiled = rt.fields.get(key)
        try:
            value = compiled.convert(value) if compiled is not None else uuid.UUID(str(value))
        except Exception:  # noqa: BLE001 - any refusal is the same problem
            raise FlowError(f"{what} {key!r}: {value!r} is not a value of that field") \
                from None
        conditions.append(table.c[key] == value)
    return list(run.ctx.session.execute(
        sa.select(table.c.id).where(*conditions).order_by(table.c.id).limit(limit)).scalars())


def _create_record(run: Run, execution: Execution, action: fl.CreateRecordAction) -> None:
    from tangram.engines.forms.records import create_record

    if action.unless_exists:
        found = _matching(run, action.form, action.unless_exists, limit=1,
                          what="create_record unless_exists")
        if found:
            if action.save_as:
                run.set_variable(action.save_as, found[0])
            run.history("record_reused", node=execution["node"], form=action.form,
                        record=found[0])
            return
    owner = run.inst["started_by"]
    if action.owner:
        found = run.resolve(action.owner)
        owner = found[0] if found else owner
    rec = create_record(run.sys, app=run.inst["app"], form=action.form,
                        data=_values(run, action.values, action.expressions),
                        owner=owner, source="flow", allow_read_only=True)
    if action.save_as:
        run.set_variable(action.save_as, rec["id"])
    run.history("record_created", node=execution["node"], form=action.form, record=rec["id"])


def render_text(text: str | dict[str, str], run: Run,
                hidden: frozenset[str] = frozenset()) -> str | dict[str, str]:
    """A text's template rendered — per language when it has one per
    language (each recipient then reads their own)."""
    if isinstance(text, str):
        return render(text, run, hidden)
    return {language: render(template, run, hidden) for language, template in text.items()}


def _notify(run: Run, execution: Execution, action: fl.NotifyAction) -> None:
    users = run.resolve(action.to)
    channels: list[str] | None = action.channels
    for hidden, readers in by_hidden_fields(run, (action.title, action.body), users).items():
        run.notify(readers, kind="notify", title=render_text(action.title, run, hidden),
                   body=render_text(action.body, run, hidden), group_channels=channels)
        channels = None  # group robots get the message once
    if channels:
        run.notify([], kind="notify", title=render_text(action.title, run),
                   body=render_text(action.body, run), group_channels=channels)
    run.history("notified", node=execution["node"], users=users)


def by_hidden_fields(run: Run, texts: tuple[str | dict[str, str] | None, ...],
                     users: list[uuid.UUID]) -> dict[frozenset[str], list[uuid.UUID]]:
    """The recipients grouped by every record field their roles hide from
    them: each reads the notice without those, whatever the texts read of the
    record — ``record.amount``, ``{{ record | tojson }}`` or ``{% set r =
    record %}{{ r.amount }}`` alike (a rep is not told the contract amount
    hidden from them by a notice about it); a recipient who may not read the
    form reads none of its fields. Texts that never mention ``record`` need
    no grouping."""
    from tangram.engines.notify.webhooks import act_as_owner

    form = run.inst["form"]
    reads_record = any("record" in meta.find_undeclared_variables(_env.parse(t))
                       for text in texts for t in fl.texts_of(text))
    if not reads_record or not form or run.inst["record_id"] is None:
        return {frozenset(): users} if users else {}
    groups: dict[frozenset[str], list[uuid.UUID]] = {}
    for user_id in users:
        actor, policy = act_as_owner(run.ctx, user_id)
        try:
            policy.check_form_action(actor, run.inst["app"], form, "read")
        except (PermissionDenied, NotFound):
            # No role lets them read the form: the notice reaches them
            # without any of the record's fields.
            hidden = frozenset(run.variables()["record"])
        else:
            access = policy.field_access(actor, run.inst["app"], form)
            hidden = frozenset(k for k, v in access.items() if v == "hidden")
        groups.setdefault(hidden, []).append(user_id)
    return groups


def _start_flow(run: Run, execution: Execution, action: fl.StartFlowAction) -> None:
    child = start_instance(run.ctx, app=run.inst["app"], flow=action.flow,
                           record_id=run.inst["record_id"] if action.same_record else None,
                           variables={"parent": str(run.id)}, started_by=run.inst["started_by"],
                           trigger="start_flow")
    run.history("flow_started", node=execution["node"], child=child)


def _assign_owner(run: Run, execution: Execution, action: fl.AssignOwnerAction) -> None:

    users = run.resolve(action.users) or run.resolve(action.fallback)
    if not users:
        raise FlowError("assign_owner found no user to assign"
                        + (" (nor did its fallback)" if action.fallback else ""))
    run.live_record_id("assign_owner")
    if action.strategy == "round_robin":
        name = f"{run.inst['app']}:{run.inst['flow']}:{execution['node']}"
        n = increment_counter(run.ctx.session, counters_table, {"name": name})
        chosen = users[(n - 1) % len(users)]
    else:
        chosen = _least_loaded(run, users)
    _set_owner(run, chosen)
    if action.notify:
        run.notify([chosen], kind="assigned", title=run.say("flow_assigned"))
    run.history("owner_assigned", node=execution["node"], owner=chosen,
                strategy=action.strategy)


def _least_loaded(run: Run, users: list[uuid.UUID]) -> uuid.UUID:
    """The user owning the fewest live records of the form (ties: list order)."""
    from tangram.engines.forms.registry import get_runtime

    table = get_runtime(run.ctx.session, run.inst["app"], run.inst["form"]).table
    counts: dict[Any, int] = dict(run.ctx.session.execute(
        sa.select(table.c.owner, sa.func.count()).where(table.c.owner.in_(users),
                                                       table.c.deleted_at.is_(None))
        .group_by(table.c.owner)).all())
    return min(users, key=lambda u: (counts.get(u, 0), users.index(u)))


def _set_owner(run: Run, owner: uuid.UUID) -> None:
    # ``owner`` is a system column, which update_record does not take as a
    # change; the form engine's ownership entry point records the transfer.
    from tangram.engines.forms.ownership import transfer_owner

    transfer_owner(run.sys, app=run.inst["app"], form=run.inst["form"],
                   record_ids=[run.inst["record_id"]], new_owner=owner, source="flow")
    run.forget_record()


def _prepare_http(run: Run, execution: Execution, action: fl.HttpAction) -> dict[str, Any]:
    return {"method": action.method, "url": render(action.url, run),
            "headers": {k: render(v, run) for k, v in action.headers.items()},
            "body": render(action.body, run) if action.body is not None else None,
            "timeout": action.timeout_seconds,
            "idempotency_key": idempotency_key(run, execution)}


def _call_http(request: Mapping[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **request["headers"],
               "Idempotency-Key": request["idempotency_key"]}
    body = request["body"].encode() if request["body"] is not None else None
    if not str(request["url"]).startswith(("http://", "https://")):
        raise FlowError(f"HTTP action URL {request['url']!r} is not http(s)")
    req = urllib.request.Request(request["url"], data=body, headers=headers,  # noqa: S310
                                 method=request["method"])
    try:
        with urllib.request.urlopen(req, timeout=request["timeout"]) as res:  # noqa: S310
            return {"status": res.status}
    except urllib.error.HTTPError as exc:
        raise TransientFlowError(f"{request['method']} {request['url']} answered {exc.code}"
                                 ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TransientFlowError(f"{request['method']} {request['url']} failed: {exc}"
                                 ) from exc


ACTION_KINDS: dict[str, ActionKindSpec] = {spec.kind: spec for spec in (
    ActionKindSpec("update_record", {"zh": "更新记录", "en": "Update the record"},
                   fl.UpdateRecordAction, run=_update_record),
    ActionKindSpec("create_record", {"zh": "新建记录", "en": "Create a record"},
                   fl.CreateRecordAction, run=_create_record),
    ActionKindSpec("notify", {"zh": "发送通知", "en": "Notify"}, fl.NotifyAction, run=_notify),
    ActionKindSpec("http", {"zh": "调用接口", "en": "HTTP call"}, fl.HttpAction,
                   call=_call_http, prepare=_prepare_http),
    ActionKindSpec("start_flow", {"zh": "发起流程", "en": "Start a flow"}, fl.StartFlowAction,
                   run=_start_flow),
    ActionKindSpec("assign_owner", {"zh": "分配负责人", "en": "Assign owner"},
                   fl.AssignOwnerAction, run=_assign_owner),
)}


# --- the node ------------------------------------------------------------------------

def _enter_action(run: Run, node: fl.ActionNode, execution: Execution) -> None:
    spec = ACTION_KINDS[node.action.kind]
    if spec.run is None:
        enqueue(run, execution, node.action, attempts=0)
        return
    try:
        run_in_savepoint(run, execution, node.action)
    except ActionFailed as failed:
        run.history("action_failed", node=node.key, error=failed.message, attempt=1)
        if not failed.transient:
            run.fail(f"node {node.key!r}: {failed.message}", execution=execution)
            return
        enqueue(run, execution, node.action, attempts=1, error=failed.message)
        return
    run.leave(execution, [node.next], decision="done")


class ActionFailed(Exception):
    """What a database action's failure was, and whether retrying may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def run_in_savepoint(run: Run, execution: Execution, action: Any) -> None:
    """Run a database action in a savepoint; its failure (undone) becomes
    :class:`ActionFailed`. A database error that is not a lock or
    serialization conflict goes on as it is (a bug, not the action's)."""
    spec = ACTION_KINDS[action.kind]
    assert spec.run is not None
    try:
        with run.savepoint():
            spec.run(run, execution, action)
    except TangramError as exc:
        run.forget_record()
        raise ActionFailed(error_text(exc), transient=is_transient(exc)) from exc
    except sa.exc.DBAPIError as exc:
        if not is_transient(exc):
            raise
        run.forget_record()
        raise ActionFailed(f"the database was busy: {exc.orig}", transient=True) from exc


def run_end_actions(run: Run, name: str, *, go_on: bool = False) -> None:
    """Run the flow's ``on_withdraw`` or ``on_cancel`` actions in this request,
    each in a savepoint. A failure raises :class:`ActionFailed` naming the
    action — or, with ``go_on``, is undone, named in the history, and the
    next action runs."""
    for i, action in enumerate(getattr(run.flow, name)):
        stand_in = {"id": run.id, "node": name, "node_type": "action", "status": "active",
                    "data": {}, "scope_id": None}
        try:
            run_in_savepoint(run, stand_in, action)
        except ActionFailed as failed:
            message = f"the flow's {name} action {i + 1} ({action.kind}) failed: {failed.message}"
            if not go_on:
                raise ActionFailed(message, transient=failed.transient) from None
            run.history("action_failed", node=name, error=message)


# PostgreSQL SQLSTATEs of conflicts that pass: serialization failure,
# deadlock, lock not available.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether an action that failed with ``exc`` may succeed if tried again
    later: a remote call's failure (:class:`TransientFlowError`), a concurrent
    change (``Conflict``, e.g. a record locked meanwhile), or a database lock or
    serialization conflict. Configuration and data errors are not."""
    if isinstance(exc, FlowError):
        return exc.transient
    if isinstance(exc, Conflict):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if state in _TRANSIENT_SQLSTATES:
            return True
        return "database is locked" in str(exc.orig)
    return False


def retries_of(action: Any) -> int:
    return int(getattr(action, "retries", 3))


def backoff(action: Any, attempt: int) -> timedelta:
    base = int(getattr(action, "backoff_seconds", 30))
    return timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), 6 * 3600))


def enqueue(run: Run, execution: Execution, action: Any, *, attempts: int,
            error: str | None = None) -> None:
    spec = ACTION_KINDS[action.kind]
    payload: dict[str, Any] = {"node": execution["node"], "kind": action.kind}
    if spec.prepare is not None:
        payload["request"] = spec.prepare(run, execution, action)
    run_at = run.ctx.now() + (backoff(action, attempts) if attempts else timedelta(0))
    run.execute(jobs_table.insert(), {
        "id": new_id(), "instance_id": run.id, "execution_id": execution["id"],
        "kind": "action", "payload": payload, "run_at": run_at, "status": "queued",
        "attempts": attempts, "max_attempts": retries_of(action) + 1, "last_error": error,
        "claimed_by": None, "lease_until": None, "finished_at": None})


register_node(NodeTypeSpec(
    "action", {"zh": "自动操作", "en": "Action"}, fl.ActionNode, lambda n: [n.next],
    _enter_action, holds=("jobs",),
    doc="Updates or creates a record, notifies, calls a URL, starts a flow or assigns an "
    "owner; failures that may pass (HTTP, database locks) retry with backoff, others fail "
    "the instance at once."))
