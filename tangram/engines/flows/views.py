"""The read side of running flows: the inbox, a task's record view, an
instance's graph and history, and a record's flows panel — each response with
the names, titles and labels a UI shows beside the ids (one query per kind).

    inbox_page(ctx, box="todo", limit=50)
    task_view(ctx, task_id=task_id)
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.cursors import cursor_invalid, decode_cursor, encode_cursor
from tangram.engines.directory import user_names
from tangram.engines.flows.registry import NODE_TYPES, successors
from tangram.engines.flows.runtime import Loaded, load_version, system_context
from tangram.engines.flows.tables import (
    executions_table,
    history_table,
    instances_table,
    tasks_table,
    triggers_table,
)
from tangram.engines.flows.tasks import approver_acted, my_open_task
from tangram.engines.flows.taskview import task_fields
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.query import CursorInvalid
from tangram.engines.forms.titles import FORM_PREFIX, form_reference, load_titles
from tangram.errors import NotFound, PermissionDenied
from tangram.metamodel import flows as fl
from tangram.metamodel.common import localize
from tangram.metamodel.flows import Flow

# --- reading -------------------------------------------------------------------------------

def _iso(value: Any) -> Any:
    # The records API's own rendering: datetimes in UTC with "Z", dates as dates.
    if isinstance(value, datetime):
        return FIELD_KINDS["datetime"].to_json(value)
    if isinstance(value, date):
        return FIELD_KINDS["date"].to_json(value)
    return value


def as_json(row: Any) -> dict[str, Any]:
    """A row of the state tables as the API shows it: ids as text, times in
    UTC with "Z" (as the records API writes them)."""
    return {k: _json(v) for k, v in dict(row).items()}


_row = as_json


def _json(value: Any) -> Any:
    """A column value as the API shows it (JSON columns too: the datetimes a
    step noted in an execution's data or the history's details)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, str) and _ISO_UTC.match(value):
        return value[:-6] + "Z"
    return _iso(value)


# A datetime stored in JSON by an earlier version (isoformat, "+00:00").
_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


# --- what one response shows besides its rows ---------------------------------------------

def node_label(ctx: EngineContext, loaded: Loaded | None, key: str) -> str:
    """A node as people read it: its label, else its type's ("结束", "Branch"), in
    the caller's language; its key when the version does not know it."""
    node = loaded.nodes.get(key) if loaded is not None else None
    if node is None:
        return key
    if node.label:
        return localize(node.label, ctx.language)
    spec = NODE_TYPES.get(node.type)
    return localize(spec.label, ctx.language) if spec is not None else key


class _Lookups:
    """What a response shows beside its rows, each read once for the whole
    response (never per row): the flow versions it names (labels), users'
    display names (one query) and records' titles (one query per form)."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._flows: dict[tuple[str, str, int], Loaded | None] = {}
        self.names: dict[uuid.UUID, str] = {}
        self.titles: dict[tuple[str, str, uuid.UUID], str | None] = {}

    def flow(self, app: str, flow: str, version: int) -> Loaded | None:
        key = (app, flow, version)
        if key not in self._flows:
            try:
                self._flows[key] = load_version(self.ctx.session, app=app, flow=flow,
                                                version=version)
            except NotFound:
                self._flows[key] = None
        return self._flows[key]

    def flow_label(self, app: str, flow: str, version: int) -> str:
        loaded = self.flow(app, flow, version)
        return localize(loaded.flow.label, self.ctx.language) if loaded else flow

    def node_label(self, app: str, flow: str, version: int, node: str | None) -> str | None:
        return None if node is None else node_label(self.ctx, self.flow(app, flow, version),
                                                    node)

    def load_names(self, ids: Iterable[Any]) -> None:
        self.names.update(user_names(self.ctx.session, {
            i for i in ids if isinstance(i, uuid.UUID) and i not in self.names}))

    def name(self, user_id: Any) -> str | None:
        return self.names.get(user_id) if isinstance(user_id, uuid.UUID) else None

    def load_titles(self, refs: Iterable[tuple[str, str | None, uuid.UUID | None]]) -> None:
        """Titles of records (tangram.engines.forms.titles: as the records
        API's ``_display`` shows them, unless the caller's roles hide the title
        field). They do not depend on the record's row scope: an approver may
        see what a task is about without the right to list the record."""
        by_app: dict[str, dict[str, set[uuid.UUID]]] = defaultdict(lambda: defaultdict(set))
        for app, form, record_id in refs:
            if form and record_id is not None:
                by_app[app][form_reference(form)].add(record_id)
        for app, wanted in by_app.items():
            for (ref, rid), text in load_titles(self.ctx, app, wanted).items():
                self.titles[(app, ref.removeprefix(FORM_PREFIX), rid)] = text or None

    def title(self, app: str, form: str | None, record_id: uuid.UUID | None) -> str | None:
        return self.titles.get((app, form, record_id)) if form and record_id else None


def _user_ids(details: Any) -> list[uuid.UUID]:
    """The users a history entry's details name (``to`` of a transfer,
    ``users`` of a CC, an added signer, an urge)."""
    out = []
    for key in ("to", "users"):
        for value in (details or {}).get(key) or ():
            try:
                out.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
            except ValueError:
                continue
    return out


# The instance columns every list item and task carries (``version`` is the
# flow's version: ``flow_version`` in every response, next to a task's own
# ``version``, its optimistic lock).
_INSTANCE_COLUMNS = (instances_table.c.app, instances_table.c.flow,
                     instances_table.c.version.label("flow_version"), instances_table.c.form,
                     instances_table.c.record_id,
                     instances_table.c.status.label("instance_status"),
                     instances_table.c.outcome, instances_table.c.started_by,
                     instances_table.c.started_at)
_TASK_COLUMNS = tuple(tasks_table.c[k] for k in (
    "id", "instance_id", "node", "kind", "assignee_id", "status", "due_at", "decision",
    "comment", "acted_by", "acted_at", "read_at", "created_at", "version"))


def _current(ctx: EngineContext, instance_ids: Collection[uuid.UUID]
             ) -> dict[uuid.UUID, list[str]]:
    """The nodes each instance waits at now, in the order it reached them."""
    e = executions_table
    out: dict[uuid.UUID, list[str]] = {}
    if instance_ids:
        for iid, node in ctx.session.execute(
                sa.select(e.c.instance_id, e.c.node).where(e.c.instance_id.in_(instance_ids),
                                                           e.c.status == "active")
                .order_by(e.c.entered_at, e.c.id)):
            out.setdefault(iid, []).append(node)
    return out


def _items(ctx: EngineContext, rows: Sequence[Any], look: _Lookups) -> list[dict[str, Any]]:
    """Inbox items, one shape for every box: a task's rows (``id`` the task's)
    or an instance's (``submitted``: ``id`` the instance's, no task keys)."""
    current = _current(ctx, {r["instance_id"] for r in rows})
    look.load_names(x for r in rows for x in (r["started_by"], r.get("assignee_id"),
                                             r.get("acted_by")))
    look.load_titles((r["app"], r["form"], r["record_id"]) for r in rows)
    items = []
    for r in rows:
        task = "kind" in r
        app, flow, version = r["app"], r["flow"], r["flow_version"]
        here = current.get(r["instance_id"], [])
        node = r["node"] if task else (here[0] if here else None)
        items.append({
            "id": _json(r["id"] if task else r["instance_id"]),
            "task_id": _json(r["id"]) if task else None,
            "instance_id": _json(r["instance_id"]),
            "kind": r["kind"] if task else None,
            "status": r["status"] if task else r["instance_status"],
            "app": app, "flow": flow, "flow_label": look.flow_label(app, flow, version),
            "flow_version": version,
            "node": node, "node_label": look.node_label(app, flow, version, node),
            "current": [{"key": k, "label": look.node_label(app, flow, version, k)}
                        for k in here],
            "form": r["form"], "record_id": _json(r["record_id"]),
            "record_title": look.title(app, r["form"], r["record_id"]),
            "instance_status": r["instance_status"], "outcome": r["outcome"],
            "started_by": _json(r["started_by"]), "started_by_name": look.name(r["started_by"]),
            "started_at": _json(r["started_at"]),
            "assignee_id": _json(r.get("assignee_id")),
            "assignee_name": look.name(r.get("assignee_id")),
            "created_at": _json(r["created_at"] if task else r["started_at"]),
            "due_at": _json(r.get("due_at")), "read_at": _json(r.get("read_at")),
            "decision": r.get("decision"), "comment": r.get("comment"),
            "acted_by": _json(r.get("acted_by")), "acted_by_name": look.name(r.get("acted_by")),
            "acted_at": _json(r.get("acted_at")),
            "version": r["version"] if task else None,
        })
    return items


def _instance_json(ctx: EngineContext, row: Any, look: _Lookups) -> dict[str, Any]:
    """An instance as every response shows it (the state columns that only
    the engine reads, ``row_version`` and ``dedupe_key``, left out)."""
    app, flow, version = row["app"], row["flow"], row["version"]
    return {
        **{k: _json(row[k]) for k in ("id", "app", "flow")},
        "flow_label": look.flow_label(app, flow, version), "flow_version": version,
        "form": row["form"], "record_id": _json(row["record_id"]),
        "record_title": look.title(app, row["form"], row["record_id"]),
        **{k: _json(row[k]) for k in ("status", "outcome", "variables", "error",
                                      "started_by")},
        "started_by_name": look.name(row["started_by"]),
        "started_at": _json(row["started_at"]), "ended_at": _json(row["ended_at"]),
    }


def instances_json(ctx: EngineContext, rows: Sequence[Any]) -> list[dict[str, Any]]:
    look = _Lookups(ctx)
    look.load_names(r["started_by"] for r in rows)
    look.load_titles((r["app"], r["form"], r["record_id"]) for r in rows)
    return [_instance_json(ctx, r, look) for r in rows]


# --- the inbox -----------------------------------------------------------------------------

INBOXES = ("todo", "done", "cc", "submitted")
# An open approval task of a running request: what "to do" counts.
TO_DO = (tasks_table.c.status == "open", tasks_table.c.kind == "approve",
          instances_table.c.status == "running")


@dataclass(frozen=True)
class _Box:
    stmt: sa.Select[Any]
    sort: sa.ColumnElement[Any]  # what the box is ordered by, then the id
    id: sa.ColumnElement[Any]
    descending: bool
    sort_key: str  # their keys in a result row
    id_key: str


def _box(ctx: EngineContext, box: str, app: str | None) -> _Box:
    t, i = tasks_table, instances_table
    me = ctx.actor.id
    if box == "submitted":
        found = _Box(sa.select(i.c.id.label("instance_id"), *_INSTANCE_COLUMNS)
                     .where(i.c.started_by == me),
                     i.c.started_at, i.c.id, True, "started_at", "instance_id")
    else:
        stmt = sa.select(*_TASK_COLUMNS, *_INSTANCE_COLUMNS).join(
            i, i.c.id == t.c.instance_id).where(t.c.assignee_id == me)
        if box == "todo":
            found = _Box(stmt.where(*TO_DO), t.c.created_at, t.c.id, False, "created_at", "id")
        elif box == "done":
            found = _Box(stmt.where(t.c.kind == "approve", t.c.acted_by == me),
                         t.c.acted_at, t.c.id, True, "acted_at", "id")
        elif box == "cc":
            found = _Box(stmt.where(t.c.kind == "cc"), t.c.created_at, t.c.id, True,
                         "created_at", "id")
        else:
            raise NotFound(f"no inbox {box!r}; inboxes: {', '.join(INBOXES)}")
    if app is not None:
        found = dataclasses.replace(found, stmt=found.stmt.where(i.c.app == app))
    return found


def _cursor(box: str, row: Any, b: _Box) -> str:
    return encode_cursor({"box": box, "v": [row[b.sort_key].isoformat(), str(row[b.id_key])]})


def _read_cursor(box: str, token: str) -> tuple[datetime, uuid.UUID]:
    def bad(why: str) -> CursorInvalid:
        return cursor_invalid(why, of="inbox")

    payload = decode_cursor(token, of="inbox")
    try:
        sort, ident = payload["v"]
        at, row_id = datetime.fromisoformat(sort), uuid.UUID(ident)
    except (ValueError, TypeError, KeyError):
        raise bad("not a cursor") from None
    if payload.get("box") != box:
        raise bad(f"it was made for box {payload.get('box')!r}")
    if at.tzinfo is None:
        raise bad("not a cursor")
    return at, row_id


def inbox(ctx: EngineContext, *, box: str, limit: int = 100) -> list[dict[str, Any]]:
    """The first ``limit`` items of one of the calling user's inbox boxes."""
    items: list[dict[str, Any]] = inbox_page(ctx, box=box, limit=limit)["items"]
    return items


def inbox_page(ctx: EngineContext, *, box: str, limit: int = 50, after: str | None = None,
               app: str | None = None, include_total: bool = False) -> dict[str, Any]:
    """One page of the calling user's tasks to do, done or CC'd, or of the
    requests they submitted, as list items of one shape (:func:`_items`);
    ``next_cursor`` (for ``after``) when there is more.

        inbox_page(ctx, box="todo", limit=20)   # {"items": [...], "next_cursor": "…"}
    """
    b = _box(ctx, box, app)
    stmt = b.stmt
    if after:
        at, row_id = _read_cursor(box, after)
        beyond = (sa.or_(b.sort < at, sa.and_(b.sort == at, b.id < row_id)) if b.descending
                  else sa.or_(b.sort > at, sa.and_(b.sort == at, b.id > row_id)))
        stmt = stmt.where(beyond)
    order = (b.sort.desc(), b.id.desc()) if b.descending else (b.sort, b.id)
    rows = ctx.session.execute(stmt.order_by(*order).limit(limit + 1)).mappings().all()
    page = rows[:limit]
    out: dict[str, Any] = {
        "items": _items(ctx, page, _Lookups(ctx)),
        "next_cursor": _cursor(box, page[-1], b) if len(rows) > limit else None}
    if include_total:
        out["total"] = ctx.session.execute(
            sa.select(sa.func.count()).select_from(b.stmt.subquery())).scalar_one()
    return out


def inbox_counts(ctx: EngineContext, *, app: str | None = None) -> dict[str, Any]:
    """How many items each box holds, and how many tasks to do and copies
    are unread (one query): the inbox's tabs and badges."""
    t = tasks_table
    counts = {box: sa.select(sa.func.count()).select_from(_box(ctx, box, app).stmt.subquery())
              .scalar_subquery().label(box) for box in INBOXES}
    unread = {box: sa.select(sa.func.count()).select_from(
        _box(ctx, box, app).stmt.where(t.c.read_at.is_(None)).subquery())
        .scalar_subquery().label(f"{box}_unread") for box in ("todo", "cc")}
    row = ctx.session.execute(sa.select(*counts.values(), *unread.values())).mappings().one()
    return {**{box: row[box] for box in INBOXES},
            "unread": {box: row[f"{box}_unread"] for box in unread}}


# --- a task, an instance -------------------------------------------------------------------

def task_view(ctx: EngineContext, *, task_id: uuid.UUID, mark_read: bool = True
              ) -> dict[str, Any]:
    """A task as an inbox item, with its record as the node shows it (visible
    fields only, and which of them the approver may edit here) and what the
    caller may do: ``actions`` on the task (only its assignee, while it is
    open), ``instance_actions`` on its request."""
    from tangram.engines.flows.tasks import TASK_ACTIONS, return_targets

    t, i = tasks_table, instances_table
    row = ctx.session.execute(
        sa.select(*_TASK_COLUMNS, *_INSTANCE_COLUMNS)
        .join(i, i.c.id == t.c.instance_id).where(t.c.id == task_id)).mappings().first()
    if row is None:
        raise NotFound(f"task {task_id} does not exist")
    mine = row["assignee_id"] == ctx.actor.id
    if not mine and not ctx.actor.is_admin:
        raise PermissionDenied("this task is assigned to someone else")
    look = _Lookups(ctx)
    [out] = _items(ctx, [row], look)
    loaded = load_version(ctx.session, app=row["app"], flow=row["flow"],
                          version=row["flow_version"])
    node = loaded.nodes[row["node"]]
    # What POST /api/flows/tasks/{id}/{action} would accept from the caller
    # (tasks._act): the assignee's open approval task of a running request.
    actionable = (mine and row["status"] == "open" and row["kind"] == "approve"
                  and row["instance_status"] == "running")
    actions = [a for a in getattr(node, "actions", []) if a in TASK_ACTIONS
               and TASK_ACTIONS[a].by != "submitter"] if actionable else []
    earlier = (return_targets(ctx.session, loaded.flow, row["instance_id"], row["node"])
               if "return" in actions else [])
    out["actions"] = [a for a in actions if a != "return" or earlier]
    out["return_to"] = [{"key": k, "label": node_label(ctx, loaded, k)} for k in earlier]
    out["instance_actions"] = _instance_actions(
        ctx, instance_id=row["instance_id"], started_by=row["started_by"],
        running=row["instance_status"] == "running", flow=loaded.flow, involved=True)
    record = None
    rules = task_fields(ctx, app=row["app"], form=row["form"] or "", node=node)
    if row["record_id"] is not None and row["form"]:
        from tangram.engines.forms.records import get_record

        # The task grants reading the record, narrowed by the approver's role
        # field rules and the node's visible fields (taskview.TaskFields).
        sys = system_context(ctx)
        try:
            full = get_record(sys, app=row["app"], form=row["form"], record_id=row["record_id"])
        except NotFound:
            # Deleted (a record_deleted flow, or deleted while in approval): the
            # approver still sees what the request is about, with its deleted_at.
            full = get_record(sys, app=row["app"], form=row["form"],
                              record_id=row["record_id"], deleted=True)
        record = rules.narrow(full)
    out["record"] = record
    out["editable_fields"] = rules.editable
    if mark_read and mine and row["read_at"] is None:
        ctx.session.execute(t.update().where(t.c.id == task_id).values(read_at=ctx.now()))
    return out


def _instance_actions(ctx: EngineContext, *, instance_id: uuid.UUID, started_by: Any,
                      running: bool, flow: Flow, involved: bool) -> list[str]:
    """What ``POST /api/flows/instances/{id}/{action}`` accepts from the caller
    (tasks.act_on_instance): withdraw and urge for the submitter and
    administrators while it runs — withdraw only until an approver acted,
    unless the flow allows it — and comment for anyone involved."""
    out = []
    submitter = started_by == ctx.actor.id or ctx.actor.is_admin
    if running and submitter:
        if flow.allow_withdraw_after_action or ctx.session.execute(
                approver_acted(instance_id, started_by)).first() is None:
            out.append("withdraw")
        out.append("urge")
    if submitter or involved:
        out.append("comment")
    return out


# The kinds of an instance graph's edges, with the label an edge of that kind
# shows when the definition gives it none.
EDGE_KINDS: dict[str, dict[str, str] | None] = {
    "next": None,  # the one way on (start, approval, join, delay, action)
    "on_reject": {"zh": "拒绝", "en": "Rejected"},  # an approval's rejection path
    "timeout": {"zh": "超时", "en": "Timed out"},  # a timeout stage's take_path
    "condition": None,  # a branch condition: its label, else its expression
    "default": {"zh": "其他情况", "en": "Otherwise"},  # a branch's default path
    "parallel": None,  # a parallel split's branch
}


def _edges(ctx: EngineContext, node: Any) -> list[dict[str, Any]]:
    def edge(to: str, kind: str, label: dict[str, str] | None = None,
             **extra: Any) -> dict[str, Any]:
        label = label or EDGE_KINDS[kind]
        return {"from": node.key, "to": to, "kind": kind,
                "label": localize(label, ctx.language) if label else None, **extra}

    if isinstance(node, fl.ApprovalNode):
        return ([edge(node.next, "next")]
                + ([edge(node.on_reject, "on_reject")] if node.on_reject else [])
                + [edge(a.next, "timeout", stage=i) for i, s in enumerate(node.timeouts)
                   for a in s.actions if isinstance(a, fl.TakePathAction)])
    if isinstance(node, fl.BranchNode):
        out = [edge(c.next, "condition", c.label or {"zh": c.when, "en": c.when}, index=i,
                    when=c.when) for i, c in enumerate(node.conditions)]
        return out + ([edge(node.default, "default")] if node.default else [])
    if isinstance(node, fl.ParallelSplitNode):
        return [edge(b, "parallel", index=i) for i, b in enumerate(node.branches)]
    return [edge(s, "next") for s in successors(node)]  # one way on, or a plugin's


def instance_view(ctx: EngineContext, *, instance_id: uuid.UUID) -> dict[str, Any]:
    """The flow's graph, where the instance is now, its tasks and its whole
    history, with names beside user ids and what the caller may do."""
    inst = ctx.session.execute(sa.select(instances_table)
                               .where(instances_table.c.id == instance_id)).mappings().first()
    if inst is None:
        raise NotFound(f"flow instance {instance_id} does not exist")
    t = tasks_table
    involved = ctx.session.execute(sa.select(t.c.id).where(
        t.c.instance_id == instance_id, t.c.assignee_id == ctx.actor.id).limit(1)).first()
    if not (ctx.actor.is_admin or inst["started_by"] == ctx.actor.id or involved):
        raise PermissionDenied("only people involved in this request may see it")
    loaded = load_version(ctx.session, app=inst["app"], flow=inst["flow"],
                          version=inst["version"])
    e = executions_table
    executions = ctx.session.execute(sa.select(e).where(e.c.instance_id == instance_id)
                                     .order_by(e.c.entered_at)).mappings().all()
    tasks = ctx.session.execute(sa.select(t).where(t.c.instance_id == instance_id)
                                .order_by(t.c.created_at)).mappings().all()
    h = history_table
    history = ctx.session.execute(sa.select(h).where(h.c.instance_id == instance_id)
                                  .order_by(h.c.at, h.c.id)).mappings().all()
    look = _Lookups(ctx)
    look.load_names([inst["started_by"], *(x[k] for x in tasks for k in ("assignee_id",
                                                                         "acted_by")),
                     *(x["actor_id"] for x in history),
                     *(u for x in history for u in _user_ids(x["details"]))])
    look.load_titles([(inst["app"], inst["form"], inst["record_id"])])
    visited = {x["node"] for x in executions}
    active = {x["node"] for x in executions if x["status"] == "active"}
    # The viewer's own open task here, for the approve / reject buttons.
    mine = my_open_task(ctx, instance_id=instance_id)
    return {
        "instance": _instance_json(ctx, inst, look),
        "graph": {
            "nodes": [{"key": n.key, "type": n.type, "label": node_label(ctx, loaded, n.key),
                       "state": ("active" if n.key in active
                                 else "visited" if n.key in visited else "pending")}
                      for n in loaded.flow.nodes],
            "edges": [x for n in loaded.flow.nodes for x in _edges(ctx, n)],
        },
        "current": sorted(active),
        "my_task": str(mine) if mine is not None else None,
        "actions": _instance_actions(ctx, instance_id=instance_id,
                                     started_by=inst["started_by"],
                                     running=inst["status"] == "running", flow=loaded.flow,
                                     involved=involved is not None),
        "executions": [_row(x) for x in executions],
        "tasks": [{**_row(x), "node_label": node_label(ctx, loaded, x["node"]),
                   "assignee_name": look.name(x["assignee_id"]),
                   "acted_by_name": look.name(x["acted_by"])} for x in tasks],
        "history": [{**_row(x), "actor_name": look.name(x["actor_id"]),
                     "node_label": node_label(ctx, loaded, x["node"]) if x["node"] else None,
                     "user_names": {str(u): look.name(u) for u in _user_ids(x["details"])}}
                    for x in history],
    }


def record_flows(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                 limit: int = 50) -> dict[str, Any]:
    """A record page's flow panel, for anyone who may read the record: the
    requests about it, newest first — where each is now and the caller's own
    open task in it (for approve / reject) — and the flows the caller may
    start on it now (submit for approval, manual flows)."""
    from tangram.engines.flows.triggers import condition_holds, running_on
    from tangram.engines.forms.records import get_record
    from tangram.engines.forms.typed import typed_values

    record = get_record(ctx, app=app, form=form, record_id=record_id)  # may read it
    rid = uuid.UUID(record["id"])
    i, t = instances_table, tasks_table
    rows = ctx.session.execute(
        sa.select(i).where(i.c.app == app, i.c.form == form, i.c.record_id == rid)
        .order_by(i.c.started_at.desc(), i.c.id).limit(limit)).mappings().all()
    ids = [r["id"] for r in rows]
    current = _current(ctx, ids)
    mine: dict[uuid.UUID, uuid.UUID] = {}
    if ids:
        for iid, tid in ctx.session.execute(
                sa.select(t.c.instance_id, t.c.id).where(
                    t.c.instance_id.in_(ids), t.c.assignee_id == ctx.actor.id,
                    t.c.status == "open", t.c.kind == "approve")
                .order_by(t.c.created_at.desc(), t.c.id.desc())):
            mine[iid] = tid  # the oldest wins: rows come newest first
    look = _Lookups(ctx)
    look.load_names(r["started_by"] for r in rows)
    items = []
    for r in rows:
        version = r["version"]
        items.append({
            # Not the error text (it may name internal systems): a failed
            # request is for the administrators' views.
            **{k: _json(r[k]) for k in ("id", "flow")},
            "flow_label": look.flow_label(app, r["flow"], version), "flow_version": version,
            **{k: _json(r[k]) for k in ("status", "outcome", "started_by")},
            "started_by_name": look.name(r["started_by"]),
            **{k: _json(r[k]) for k in ("started_at", "ended_at")},
            "current": [{"key": n, "label": look.node_label(app, r["flow"], version, n)}
                        for n in current.get(r["id"], [])],
            "my_task": _json(mine.get(r["id"]))})
    startable = []
    try:
        get_record(ctx, app=app, form=form, record_id=rid, also="submit")
        may_submit = True
    except (PermissionDenied, NotFound):
        may_submit = False
    if may_submit:
        tr = triggers_table
        typed = typed_values(system_context(ctx), app, form, record)
        for flow, kind in ctx.session.execute(
                sa.select(tr.c.flow, tr.c.kind).where(
                    tr.c.app == app, tr.c.form == form, tr.c.active.is_(True),
                    tr.c.kind.in_(["submitted", "manual"])).order_by(tr.c.flow)):
            loaded = load_version(ctx.session, app=app, flow=flow)
            condition = getattr(loaded.flow.start.trigger, "condition", None) \
                if loaded.flow.start else None
            if condition and not condition_holds(ctx, condition, typed):
                continue
            if kind == "submitted" and running_on(ctx, app=app, flow=flow, record_id=rid):
                continue  # in approval already
            startable.append({"flow": flow, "kind": kind,
                              "label": localize(loaded.flow.label, ctx.language)})
    return {"items": items, "startable": startable}
