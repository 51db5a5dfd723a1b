"""Publishing a form creates and evolves its tables at run time.

Evolution diffs the new definition against the *layout* stored in
``form_tables`` (what exists physically, keyed by stable field id), never
against a guess, and never by key: a field whose key changed is renamed, its
data kept. It works in two phases:

- :func:`plan_evolution` is a dry run. It reads the database to count the rows
  each step touches and to try every type conversion on the existing values,
  and returns an :class:`EvolutionPlan` whose ``as_dict()`` is the report the
  designer shows before publishing. It changes nothing.
- :func:`apply_evolution` performs the plan's DDL and DML and writes the
  ``form_tables`` row, inside the caller's (publish) transaction: everything
  or nothing, on PostgreSQL and SQLite alike. A destructive plan needs
  ``confirm_destructive=True``; otherwise :class:`ConfirmationRequired` carries
  the dry run.

A removed field's data is kept (column renamed ``x_<field_id>``, tables
likewise) until :func:`purge_field`; publishing the field id again restores it.

Example::

    with engine.begin() as conn:
        state = load_state(conn, app="crm", form="lead")
        plan = plan_evolution(conn, app="crm", old=v1, new=v2, state=state)
        apply_evolution(conn, plan, confirm_destructive=user_confirmed, version=2)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from tangram import i18n
from tangram.db.types import GUID
from tangram.engines.forms import ddl
from tangram.engines.forms.fieldtypes import FIELD_KINDS, FieldProblem, TextKind
from tangram.engines.forms.systables import form_tables_table
from tangram.engines.forms.tables import (
    MAX_IDENTIFIER,
    bounded_name,
    build_child_table,
    build_join_table,
    build_tables,
    child_table_name,
    field_indexes,
    legacy_index_name,
)
from tangram.errors import (
    ConfirmationRequired,
    Conflict,
    DefinitionInvalid,
    ErrorItem,
    NotFound,
)
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize
from tangram.metamodel.forms import Form

MAX_LISTED = 20  # failures / duplicates listed per step; the total is counted
REFERENCE_TYPES = frozenset({"relation", "user", "department", "multi_relation"})
DECIMAL_TYPES = frozenset({"decimal", "currency", "percent"})
_TEXT_SOURCES = ("text", "email", "phone", "url", "autonumber", "select", "tree_select")

# Type changes that keep every value that converts (values that fail a check of
# the new type, e.g. a too long text, are still reported and need confirming).
# Any other change is narrowing: destructive as soon as a row has a value.
# Decimal-family changes compare scales instead (see _lossless).
LOSSLESS_CHANGES: frozenset[tuple[str, str]] = frozenset(
    {(t, "long_text") for t in _TEXT_SOURCES}
    | {(t, "text") for t in _TEXT_SOURCES if t != "text"}
    | {("integer", t) for t in (*DECIMAL_TYPES, "text", "long_text")}
    | {(t, u) for t in DECIMAL_TYPES for u in ("text", "long_text")}
    | {("date", "datetime"), ("select", "multi_select"), ("select", "tags"),
       ("multi_select", "tags")}
)

_TEXTS: dict[str, tuple[str, str]] = {
    "create_table": ("Create table {table} for form {form}", "为表单 {form} 创建数据表 {table}"),
    "add_child_table": ("Create sub-table {table} for field {key}",
                        "为子表字段 {key} 创建子表 {table}"),
    "add_join_table": ("Create link table {table} for field {key}",
                       "为多对多字段 {key} 创建关联表 {table}"),
    "add_field": ("Add field {key} ({sig}) to {table}", "在 {table} 中新增字段 {key}（{sig}）"),
    "restore_field": ("Restore field {key} with the data kept when it was removed",
                      "恢复字段 {key} 及其删除时保留的数据"),
    "rename_field": ("Rename field {old} to {new}; data kept",
                     "字段 {old} 重命名为 {new}，数据保留"),
    "change_type": ("Change {key} from {old_type} ({old_sig}) to {new_type} ({new_sig}): "
                    "{rows} value(s) converted, {failed} cannot be and would be cleared",
                    "字段 {key} 由 {old_type}（{old_sig}）改为 {new_type}（{new_sig}）："
                    "{rows} 个值可以转换，{failed} 个无法转换，将被清空"),
    "remove_field": ("Remove field {key}: {rows} record(s) have data, kept as {kept} until "
                     "purged", "删除字段 {key}：{rows} 条记录有数据，保留为 {kept} 直到彻底清除"),
    "remove_options": ("Remove option(s) {options} of {key}: {rows} record(s) use them and "
                       "would lose them", "删除字段 {key} 的选项 {options}：{rows} 条记录在使用，"
                       "将被清除"),
    "change_target": ("Change what {key} links to ({old} → {new}): {rows} existing link(s) "
                      "would be cleared", "字段 {key} 的关联目标改变（{old} → {new}）："
                      "{rows} 个现有关联将被清除"),
    "add_index": ("Add {index} index on {key}", "为字段 {key} 建立{index_zh}索引"),
    "drop_index": ("Drop {index} index on {key}", "删除字段 {key} 的{index_zh}索引"),
    "check_required": ("{key} becomes required: {rows} live record(s) have no value; the rule "
                       "applies to new writes", "字段 {key} 改为必填：{rows} 条现有记录没有值；"
                       "规则仅对新的写入生效"),
    "check_values": ("{key} has new rules: {rows} existing value(s) break them; the rules "
                     "apply to new writes", "字段 {key} 的规则已改变：{rows} 个现有值不符合；"
                     "规则仅对新的写入生效"),
}


@dataclass
class Step:
    """One operation of a plan; ``params`` is what apply needs (not reported)."""

    op: str
    field: str | None
    description: dict[str, str]
    destructive: bool = False
    affected_rows: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # at most MAX_LISTED
    failure_count: int = 0
    table: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "field": self.field, "table": self.table,
                "description": self.description, "destructive": self.destructive,
                "affected_rows": self.affected_rows, "failures": self.failures,
                "failure_count": self.failure_count}


@dataclass
class EvolutionPlan:
    app: str
    form_key: str
    table_name: str
    steps: list[Step]
    new_layout: dict[str, Any]
    new_retired: list[dict[str, Any]]
    base_version: int | None = None  # form_tables.version the plan was made against
    time_zone: str = "Asia/Shanghai"
    language: str = "en"  # of the failure messages

    @property
    def destructive(self) -> bool:
        return any(step.destructive for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        """The dry-run report (JSON-able)."""
        return {"app": self.app, "form": self.form_key, "table": self.table_name,
                "destructive": self.destructive,
                "steps": [step.as_dict() for step in self.steps]}


@dataclass
class FormTableState:
    """A ``form_tables`` row: what exists physically for one form."""

    app: str
    form: str
    table_name: str
    version: int
    layout: dict[str, Any]
    retired: list[dict[str, Any]]
    data_version: int = 0


@dataclass
class _Ctx:
    """A table being diffed: its name after the preceding steps (apply time)
    and its name now (plan time: the dry run reads what exists)."""

    table: str
    read_table: str
    soft_delete: bool
    parent: str | None = None  # sub-table field id, for a child table
    parent_key: str | None = None  # and its key (history entries name it)


@dataclass
class _Live:
    """A field that exists and stays: its layout entry (names as of apply
    time) and where its data is now (plan time)."""

    entry: dict[str, Any]
    read_key: str
    read_table: str | None


@dataclass
class _Scan:
    with_values: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failure_count: int = 0
    duplicates: list[dict[str, Any]] = dataclasses.field(default_factory=list)


# What applying a plan cleared, for the records' history: record id -> the
# audit entry's changes ({field: {"old": .., "new": ..}}; a sub-table field
# lists the changed rows: {"old": [{"id": .., key: ..}], "new": [...]}).
Losses = dict[uuid.UUID, dict[str, Any]]


Rewrite = Callable[[Any], tuple[Any, tuple[str, dict[str, Any]] | None]]


# --- public API ---------------------------------------------------------------

def load_state(connection: sa.Connection, *, app: str, form: str) -> FormTableState | None:
    t = form_tables_table
    row = connection.execute(sa.select(t).where(t.c.app == app, t.c.form == form)).first()
    if row is None:
        return None
    return FormTableState(app=row.app, form=row.form, table_name=row.table_name,
                          version=row.version, layout=row.layout, retired=list(row.retired),
                          data_version=row.data_version)


def plan_evolution(connection: sa.Connection, *, app: str, old: Form | None, new: Form,
                   state: FormTableState | None, time_zone: str = "Asia/Shanghai",
                   language: str = "en") -> EvolutionPlan:
    """Dry run: the steps that turn what exists (``state``) into tables for
    ``new``, with affected row counts and failing conversions. Changes nothing.

    ``old`` (the previously published definition) adds the checks that need
    it (removed options, ``required`` turned on, tightened rules). Failure
    messages are in ``language`` and name fields by their label.
    Raises DefinitionInvalid when the change is impossible (duplicates under a
    new unique index, a storage change, a key taken by kept data).
    """
    missing = [f.key for f in new.all_fields() if not f.id]
    if missing:
        raise DefinitionInvalid(
            "every field needs an id before publishing (assigned when the draft is saved)",
            errors=[ErrorItem(code="field_id", message=f"field {k!r} has no id", field=k)
                    for k in missing])
    return _Planner(connection, app=app, old=old, new=new, state=state,
                    time_zone=time_zone, language=language).plan()


def apply_evolution(connection: sa.Connection, plan: EvolutionPlan, *,
                    confirm_destructive: bool, version: int) -> Losses:
    """Perform ``plan`` and record the layout as ``version`` in ``form_tables``.

    Runs in a savepoint of the caller's transaction, so a failure undoes every
    step. Steps re-check the data (it may have changed since the dry run): a
    step that turns out destructive still needs confirmation. Returns the
    values each record lost (cleared or cut options, cleared links), for the
    caller to write to the records' history.
    """
    if plan.destructive and not confirm_destructive:
        raise ConfirmationRequired(
            f"publishing form {plan.form_key!r} changes existing data; review the plan and "
            "confirm", details=plan.as_dict())
    with connection.begin_nested():
        state = load_state(connection, app=plan.app, form=plan.form_key)
        if (state.version if state else None) != plan.base_version:
            raise Conflict(f"form {plan.form_key!r} was published meanwhile; plan again")
        applier = _Applier(connection, plan, confirm=confirm_destructive)
        for step in plan.steps:
            _HANDLERS[step.op](applier, step)
        retired = [dict(r, removed_in_version=r.get("removed_in_version") or version)
                   for r in plan.new_retired]
        values = {"table_name": plan.table_name, "version": version,
                  "layout": plan.new_layout, "retired": retired}
        t = form_tables_table
        if state is None:
            connection.execute(sa.insert(t).values(app=plan.app, form=plan.form_key, **values))
        else:
            connection.execute(sa.update(t).where(t.c.app == plan.app, t.c.form == plan.form_key)
                               .values(**values))
    return applier.losses


def purge_field(connection: sa.Connection, *, app: str, form: str, field_id: str) -> int:
    """Drop a removed field's kept data for good; returns how many records had data.

    Only retired fields can be purged (a live field must be removed first).
    """
    state = load_state(connection, app=app, form=form)
    entries = [r for r in (state.retired if state else []) if r["field_id"] == field_id]
    if state is None or not entries:
        kept = [r["field_id"] for r in (state.retired if state else [])]
        raise NotFound(f"form {form!r} has no removed field with id {field_id!r} "
                       f"(removed fields with kept data: {kept or 'none'})")
    op = ddl.operations(connection)
    rows = 0
    retired = list(state.retired)
    with connection.begin_nested():
        for entry in entries:
            if entry["storage"] == "column":
                rows += ddl.count_values(connection, entry["table"], entry["column"])
                ddl.drop_column(op, entry["table"], entry["column"])
            else:
                rows += ddl.count_owners(connection, entry["table"], entry["storage"])
                ddl.drop_table(op, entry["table"])
                # its sub-fields' kept columns went with the table
                retired = [r for r in retired if r.get("parent") != field_id]
            retired.remove(entry)
        t = form_tables_table
        connection.execute(sa.update(t).where(t.c.app == app, t.c.form == form)
                           .values(retired=retired))
    return rows


# --- planning -----------------------------------------------------------------

class _Planner:
    def __init__(self, connection: sa.Connection, *, app: str, old: Form | None, new: Form,
                 state: FormTableState | None, time_zone: str, language: str) -> None:
        self.conn = connection
        self.app = app
        self.new = new
        self.state = state
        self.tz = time_zone
        self.language = language
        self.main = state.table_name if state else bounded_name(app, new.key)
        self.old_defs = {f.id: f for f in old.all_fields() if f.id} if old else {}
        self.retired: list[dict[str, Any]] = copy.deepcopy(state.retired) if state else []
        self.steps: list[Step] = []

    def plan(self) -> EvolutionPlan:
        ctx = _Ctx(self.main, self.main, soft_delete=True)
        if self.state is None:
            fields = self._create()
        else:
            fields = self._diff(ctx, self.state.layout.get("fields", {}), list(self.new.fields))
        return EvolutionPlan(app=self.app, form_key=self.new.key, table_name=self.main,
                             steps=self.steps, new_layout={"fields": fields},
                             new_retired=self.retired,
                             base_version=self.state.version if self.state else None,
                             time_zone=self.tz, language=self.language)

    def _create(self) -> dict[str, Any]:
        tables = build_tables(self.app, self.new, table_name=self.main)
        self._step("create_table", None, table=self.main, params={"table": tables.table},
                   form=self.new.key)
        out: dict[str, Any] = {}
        for f in self.new.fields:
            out[_fid(f)] = self._entry(_Ctx(self.main, self.main, True), f)
            if isinstance(f, fm.SubTableField):
                self._step("add_child_table", f.key, table=tables.children[f.key].name,
                           params={"table": tables.children[f.key]}, key=f.key)
            elif isinstance(f, fm.MultiRelationField):
                self._step("add_join_table", f.key, table=tables.joins[f.key].name,
                           params={"table": tables.joins[f.key]}, key=f.key)
        return out

    def _diff(self, ctx: _Ctx, old_entries: dict[str, Any], new_defs: list[fm.FieldBase]
              ) -> dict[str, Any]:
        """Steps for one table, in an order that frees names before they are reused:
        removals, renames, restores, changes of kept fields, additions."""
        defs = {_fid(f): f for f in new_defs}
        kept_columns = {r["column"]: r for r in self.retired
                        if r["storage"] == "column" and r["table"] == ctx.table}
        for f in new_defs:
            other = kept_columns.get(f.key)
            if other is not None and other["field_id"] != f.id:
                raise DefinitionInvalid(
                    f"field key {f.key!r} is the name of a removed field's kept data (field id "
                    f"{other['field_id']}); purge that field first or choose another key",
                    errors=[ErrorItem(code="key_taken", message="key taken", field=f.key)])
        taken = {e["key"] for e in old_entries.values()} | set(kept_columns) | {
            f.key for f in new_defs}
        for fid, entry in old_entries.items():
            if fid not in defs:
                self._remove(ctx, fid, entry, taken)
        live = {fid: _Live(dict(entry), entry["key"], entry.get("table"))
                for fid, entry in old_entries.items() if fid in defs}
        self._renames(ctx, live, defs)
        for fid, f in defs.items():
            if fid not in live:
                restored = self._restore(ctx, f)
                if restored is not None:
                    live[fid] = restored
        out: dict[str, Any] = {fid: self._evolve(ctx, live[fid], f)
                               for fid, f in defs.items() if fid in live}
        for fid, f in defs.items():
            if fid not in live:
                out[fid] = self._add(ctx, f)
        return {fid: out[fid] for fid in defs}

    def _remove(self, ctx: _Ctx, fid: str, entry: dict[str, Any], taken: set[str]) -> None:
        retired: dict[str, Any] = {
            "field_id": fid, "key": entry["key"], "type": entry["type"],
            "column_sig": entry.get("column_sig"), "storage": entry["storage"],
            "removed_in_version": None, "parent": ctx.parent}
        if entry["storage"] == "column":
            name = _free_name(f"x_{fid}", taken)
            taken.add(name)
            rows = ddl.count_values(self.conn, ctx.read_table, entry["key"])
            retired.update(column=name, table=ctx.table)
            params = {"storage": "column", "table": ctx.table, "from": entry["key"], "to": name,
                      "drop": _index_names(ctx.table, entry)}
        else:
            name = self._retired_table_name(fid)
            rows = ddl.count_owners(self.conn, entry["table"], entry["storage"])
            retired.update(column=None, table=name, target=entry.get("target"),
                           children={k: dict(v, unique=False, indexed=False)
                                     for k, v in entry.get("children", {}).items()})
            for r in self.retired:
                if r.get("parent") == fid:
                    r["table"] = name
            params = {"storage": entry["storage"], "from": entry["table"], "to": name}
        self.retired.append(retired)
        self._step("remove_field", entry["key"], table=entry.get("table") or ctx.table,
                   destructive=True,
                   affected_rows=rows, params=params, key=entry["key"], rows=rows, kept=name)

    def _renames(self, ctx: _Ctx, live: dict[str, _Live], defs: dict[str, fm.FieldBase]
                 ) -> None:
        columns, tables = [], []
        for fid, item in live.items():
            new_key = defs[fid].key
            if item.entry["key"] == new_key:
                continue
            if item.entry["storage"] == "column":
                columns.append((fid, item.entry["key"], new_key))
            else:
                tables.append((fid, item.entry["table"], child_table_name(self.main, new_key)))
        for fid, src, dst in _order_moves(columns, lambda fid: f"_r_{fid}"):
            entry = live[fid].entry
            self._step("rename_field", defs[fid].key, table=ctx.table, old=src, new=dst, params={
                "storage": "column", "table": ctx.table, "from": src, "to": dst,
                "drop": _index_names(ctx.table, dict(entry, key=src)),
                "create": _indexes(ctx, dict(entry, key=dst))})
        for fid, src, dst in _order_moves(tables, lambda fid: _bounded(f"t_{self.main}_{fid}")):
            entry, f = live[fid].entry, defs[fid]
            final = dst == child_table_name(self.main, f.key)
            create = _structural_indexes(self.main, f) if final else []
            if final and entry["storage"] == "child_table":
                child = _Ctx(dst, dst, soft_delete=False, parent=fid)
                create += [ix for e in entry.get("children", {}).values()
                           for ix in _indexes(child, e)]
            self._step("rename_field", f.key, table=src, old=src, new=dst, params={
                "storage": entry["storage"], "from": src, "to": dst, "create": create})
        for fid, item in live.items():
            item.entry["key"] = defs[fid].key
            if item.entry["storage"] != "column":
                item.entry["table"] = child_table_name(self.main, defs[fid].key)
                for r in self.retired:
                    if r.get("parent") == fid and r["storage"] == "column":
                        r["table"] = item.entry["table"]

    def _restore(self, ctx: _Ctx, f: fm.FieldBase) -> _Live | None:
        storage = FIELD_KINDS[_type(f)].storage
        for r in self.retired:
            if (r["field_id"] == f.id and r["storage"] == storage
                    and r.get("parent") == ctx.parent
                    and (storage != "column" or r["table"] == ctx.table)):
                break
        else:
            return None
        self.retired.remove(r)
        if storage == "column":
            self._step("restore_field", f.key, table=ctx.table, key=f.key, params={
                "storage": storage, "table": ctx.table, "from": r["column"], "to": f.key})
            entry = {"key": f.key, "type": r["type"], "column_sig": r["column_sig"],
                     "storage": storage, "table": None, "unique": False, "indexed": False}
            return _Live(entry, r["column"], None)
        dst = child_table_name(self.main, f.key)
        self._step("restore_field", f.key, table=dst, key=f.key, params={
            "storage": storage, "from": r["table"], "to": dst,
            "create": _structural_indexes(self.main, f)})
        for nested in self.retired:
            if nested.get("parent") == f.id:
                nested["table"] = dst
        entry = {"key": f.key, "type": r["type"], "column_sig": None, "storage": storage,
                 "table": dst, "unique": False, "indexed": False, "target": r.get("target"),
                 "children": r.get("children") or {}}
        return _Live(entry, f.key, r["table"])

    def _evolve(self, ctx: _Ctx, live: _Live, f: fm.FieldBase) -> dict[str, Any]:
        entry, new_entry = live.entry, self._entry(ctx, f, children=False)
        storage = new_entry["storage"]
        if storage != entry["storage"]:
            raise DefinitionInvalid(
                f"field {f.key!r} cannot change from {entry['type']} to {new_entry['type']}: "
                f"they are stored differently ({entry['storage']} vs {storage}); add a new "
                "field and remove this one instead",
                errors=[ErrorItem(code="type_change", message="unsupported", field=f.key)])
        old_def = self.old_defs.get(_fid(f))
        if storage == "child_table":
            assert isinstance(f, fm.SubTableField)
            child = _Ctx(entry["table"], live.read_table or entry["table"], soft_delete=False,
                         parent=f.id, parent_key=f.key)
            new_entry["children"] = self._diff(child, entry.get("children", {}),
                                               _physical_subfields(f))
        elif storage == "join_table":
            if entry.get("target") != new_entry.get("target"):
                self._change_target(ctx, live, f, new_entry)
        elif (entry["type"] in REFERENCE_TYPES and new_entry["type"] in REFERENCE_TYPES
              and (entry["type"], entry.get("target"))
              != (new_entry["type"], new_entry.get("target"))):
            self._change_target(ctx, live, f, new_entry)
            self._index_toggles(ctx, live, f, new_entry)
        elif (entry["type"], entry["column_sig"]) != (new_entry["type"], new_entry["column_sig"]):
            self._change_type(ctx, live, f, new_entry)
        else:
            self._option_changes(ctx, live, f, old_def)
            self._rule_changes(ctx, live, f, old_def)
            self._index_toggles(ctx, live, f, new_entry)
        if f.required and not (old_def is not None and old_def.required):
            self._required(ctx, f, new_entry, live)
        return new_entry

    def _change_type(self, ctx: _Ctx, live: _Live, f: fm.FieldBase,
                     new_entry: dict[str, Any]) -> None:
        entry = live.entry
        scan = _scan(self.conn, ctx=ctx, table=ctx.read_table, column=live.read_key,
                     sig=entry["column_sig"], rewrite=_converter(entry["type"], f, self.tz),
                     label=self._label(f), language=self.language, old_type=entry["type"],
                     unique=new_entry["unique"])
        _refuse_duplicates(f.key, scan.duplicates)
        lossless = _lossless(entry["type"], entry["column_sig"], new_entry["type"],
                             new_entry["column_sig"])
        destructive = scan.failure_count > 0 or (not lossless and scan.with_values > 0)
        self._step("change_type", f.key, table=ctx.table, destructive=destructive,
                   affected_rows=scan.with_values, scan=scan,
                   key=f.key, old_type=entry["type"], old_sig=entry["column_sig"],
                   new_type=new_entry["type"], new_sig=new_entry["column_sig"],
                   rows=scan.with_values - scan.failure_count, failed=scan.failure_count,
                   params={
                       "table": ctx.table, "key": f.key, "fid": _fid(f), "ctx": ctx,
                       "old_type": entry["type"], "old_sig": entry["column_sig"],
                       "new_sig": new_entry["column_sig"], "definition": f,
                       "lossless": lossless, "unique": new_entry["unique"],
                       "drop": _index_names(ctx.table, entry),
                       "create": _indexes(ctx, new_entry)})

    def _change_target(self, ctx: _Ctx, live: _Live, f: fm.FieldBase,
                       new_entry: dict[str, Any]) -> None:
        entry = live.entry
        if entry["storage"] == "join_table":
            rows = ddl.count_rows(self.conn, live.read_table or entry["table"])
            params = {"storage": "join_table", "table": entry["table"]}
        else:
            rows = ddl.count_values(self.conn, ctx.read_table, live.read_key)
            params = {"storage": "column", "table": ctx.table, "key": f.key, "ctx": ctx}
        old = entry.get("target") or entry["type"]
        new = new_entry.get("target") or new_entry["type"]
        self._step("change_target", f.key, table=params["table"], destructive=rows > 0,
                   affected_rows=rows, params=params, key=f.key, old=old, new=new, rows=rows)

    def _option_changes(self, ctx: _Ctx, live: _Live, f: fm.FieldBase,
                        old_def: fm.FieldBase | None) -> None:
        removed = sorted(set(_option_values(old_def)) - set(_option_values(f)))
        if not removed or old_def is None:
            return
        rewrite = _option_rewrite(set(removed), multi=isinstance(f, fm.MultiSelectField),
                                  allowed=", ".join(_option_values(f)[:20]))
        scan = _scan(self.conn, ctx=ctx, table=ctx.read_table, column=live.read_key,
                     sig=live.entry["column_sig"], rewrite=rewrite, label=self._label(f),
                     language=self.language, old_type=_type(f))
        self._step("remove_options", f.key, table=ctx.table, destructive=scan.failure_count > 0,
                   affected_rows=scan.failure_count, scan=scan, key=f.key,
                   options=", ".join(removed), rows=scan.failure_count, params={
                       "table": ctx.table, "key": f.key, "ctx": ctx, "removed": removed,
                       "sig": live.entry["column_sig"], "definition": f})

    def _rule_changes(self, ctx: _Ctx, live: _Live, f: fm.FieldBase,
                      old_def: fm.FieldBase | None) -> None:
        if old_def is None or FIELD_KINDS[_type(f)].computed:
            return
        if _rules(old_def) == _rules(f):
            return
        scan = _scan(self.conn, ctx=ctx, table=ctx.read_table, column=live.read_key,
                     sig=live.entry["column_sig"], rewrite=_converter(_type(f), f, self.tz),
                     label=self._label(f), language=self.language, old_type=_type(f))
        if scan.failure_count:
            self._step("check_values", f.key, table=ctx.table, affected_rows=scan.failure_count,
                       scan=scan, key=f.key, rows=scan.failure_count)

    def _index_toggles(self, ctx: _Ctx, live: _Live, f: fm.FieldBase,
                       new_entry: dict[str, Any]) -> None:
        entry = live.entry
        if (entry["unique"], entry["indexed"]) == (new_entry["unique"], new_entry["indexed"]):
            return
        if entry["unique"] or entry["indexed"]:
            kind = "unique" if entry["unique"] else "plain"
            self._step("drop_index", f.key, table=ctx.table, key=f.key, index=kind,
                       index_zh=_INDEX_ZH[kind],
                       params={"table": ctx.table, "drop": _index_names(ctx.table, entry)})
        if new_entry["unique"]:
            _refuse_duplicates(f.key, _duplicates(self.conn, ctx, ctx.read_table, live.read_key,
                                                  entry["column_sig"]))
        if new_entry["unique"] or new_entry["indexed"]:
            kind = "unique" if new_entry["unique"] else "plain"
            self._step("add_index", f.key, table=ctx.table, key=f.key, index=kind,
                       index_zh=_INDEX_ZH[kind], params={
                           "table": ctx.table, "key": f.key, "ctx": ctx,
                           "sig": new_entry["column_sig"], "unique": new_entry["unique"],
                           "create": _indexes(ctx, new_entry)})

    def _required(self, ctx: _Ctx, f: fm.FieldBase, entry: dict[str, Any],
                  live: _Live | None) -> None:
        """``required`` turned on (or a new required field): count live records
        without a value. A warning only; the rule applies to new writes."""
        if live is None:
            rows = ddl.count_rows(self.conn, ctx.read_table, live_only=ctx.soft_delete)
        elif entry["storage"] == "column":
            rows = ddl.count_empty(self.conn, ctx.read_table, live.read_key,
                                   ddl.type_from_sig(live.entry["column_sig"]),
                                   soft_delete=ctx.soft_delete)
        else:
            rows = ddl.count_without_rows(self.conn, ctx.read_table,
                                       live.read_table or entry["table"], entry["storage"])
        if rows:
            self._step("check_required", f.key, table=ctx.table, affected_rows=rows,
                       key=f.key, rows=rows)

    def _add(self, ctx: _Ctx, f: fm.FieldBase) -> dict[str, Any]:
        entry = self._entry(ctx, f)
        if isinstance(f, fm.SubTableField):
            table = build_child_table(sa.MetaData(), self.main, f)
            self._step("add_child_table", f.key, table=table.name, key=f.key,
                       params={"table": table})
        elif isinstance(f, fm.MultiRelationField):
            table = build_join_table(sa.MetaData(), self.main, f)
            self._step("add_join_table", f.key, table=table.name, key=f.key,
                       params={"table": table})
        else:
            self._step("add_field", f.key, table=ctx.table, key=f.key, sig=entry["column_sig"],
                       params={"table": ctx.table, "key": f.key, "sig": entry["column_sig"],
                               "create": _indexes(ctx, entry)})
        if f.required:
            self._required(ctx, f, entry, None)
        return entry

    def _entry(self, ctx: _Ctx, f: fm.FieldBase, *, children: bool = True) -> dict[str, Any]:
        """The layout entry of ``f`` as it will exist in table ``ctx.table``."""
        kind = FIELD_KINDS[_type(f)]
        out: dict[str, Any] = {"key": f.key, "type": kind.name, "column_sig": None,
                               "storage": kind.storage, "table": None, "unique": False,
                               "indexed": False}
        col_type = kind.column_type(f)
        if kind.storage == "column" and col_type is not None:
            out["column_sig"] = ddl.column_sig(col_type)
            indexes = field_indexes(ctx.table, f, soft_delete=ctx.soft_delete)
            out["unique"] = any(ix.unique for ix in indexes)
            out["indexed"] = any(not ix.unique for ix in indexes)
        else:
            out["table"] = child_table_name(self.main, f.key)
        if isinstance(f, (fm.RelationField, fm.MultiRelationField)):
            out["target"] = f.target
        if isinstance(f, fm.SubTableField):
            child = _Ctx(out["table"], out["table"], soft_delete=False, parent=f.id)
            out["children"] = {_fid(sf): self._entry(child, sf)
                               for sf in _physical_subfields(f)} if children else {}
        return out

    def _label(self, f: fm.FieldBase) -> str:
        return localize(f.label, self.language)

    def _retired_table_name(self, fid: str) -> str:
        used = {r["table"] for r in self.retired}
        base = f"x_{self.main}__{fid}"
        name, n = _bounded(base), 1
        while name in used:
            n += 1
            name = _bounded(f"{base}_{n}")
        return name

    def _step(self, op: str, field_key: str | None, *, table: str | None = None,
              destructive: bool = False, affected_rows: int = 0, scan: _Scan | None = None,
              params: dict[str, Any] | None = None, **text: Any) -> None:
        en, zh = _TEXTS[op]
        text.setdefault("table", table)
        self.steps.append(Step(
            op=op, field=field_key, table=table, destructive=destructive,
            affected_rows=affected_rows, description={"en": en.format(**text),
                                                      "zh": zh.format(**text)},
            failures=scan.failures if scan else [],
            failure_count=scan.failure_count if scan else 0, params=params or {}))


_INDEX_ZH = {"unique": "唯一", "plain": "普通"}


def _type(f: fm.FieldBase) -> str:
    return str(f.type)  # type: ignore[attr-defined]  # every concrete field model has one


def _fid(f: fm.FieldBase) -> str:
    assert f.id, "plan_evolution checks that every field has an id"
    return f.id


def _physical_subfields(f: fm.SubTableField) -> list[fm.FieldBase]:
    # Child tables hold columns only (tables.build_child_table skips the rest).
    return [sf for sf in f.fields if FIELD_KINDS[sf.type].storage == "column"]


def _bounded(name: str) -> str:
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def _free_name(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _order_moves(moves: list[tuple[str, str, str]], temp: Callable[[str], str]
                 ) -> list[tuple[str, str, str]]:
    """Order renames so that no target is still in use; a cycle (a↔b) goes
    through a temporary name."""
    pending, out = list(moves), []
    while pending:
        sources = {src for _, src, _ in pending}
        ready = [m for m in pending if m[2] not in sources]
        if not ready:
            fid, src, dst = pending[0]
            out.append((fid, src, temp(fid)))
            pending[0] = (fid, temp(fid), dst)
            continue
        out.extend(ready)
        pending = [m for m in pending if m not in ready]
    return out


def _index_names(table: str, entry: dict[str, Any]) -> list[str]:
    """The field's index, under its name and its older one (dropped if there)."""
    ix = ddl.field_index(table, entry["key"], unique=entry["unique"],
                         indexed=entry["indexed"], soft_delete=False)
    if ix is None or not ix.name:
        return []
    kind = "uq" if entry["unique"] else "ix"
    return list(dict.fromkeys([str(ix.name), legacy_index_name(table, entry["key"], kind)]))


def _indexes(ctx: _Ctx, entry: dict[str, Any]) -> list[sa.Index]:
    ix = ddl.field_index(ctx.table, entry["key"], unique=entry["unique"],
                         indexed=entry["indexed"], soft_delete=ctx.soft_delete)
    return [ix] if ix is not None else []


def _structural_indexes(main: str, f: fm.FieldBase) -> list[sa.Index]:
    """parent_id / target_id indexes of the child or join table of ``f``."""
    md = sa.MetaData()
    if isinstance(f, fm.SubTableField):
        table = build_child_table(md, main, f)
        return [ix for ix in table.indexes if [c.name for c in ix.columns] == ["parent_id"]]
    assert isinstance(f, fm.MultiRelationField)
    return list(build_join_table(md, main, f).indexes)


def _option_values(f: fm.FieldBase | None) -> list[str]:
    if isinstance(f, fm.SelectField):
        return [o.value for o in f.options]
    if isinstance(f, fm.TreeSelectField):
        return fm.tree_values(f.options)
    return []


_RULE_EXCLUDE = {"id", "key", "label", "help", "required", "required_when", "visible_when",
                 "read_only", "default", "default_expr", "unique", "indexed", "options",
                 "suggestions", "currency", "pattern_message"}


def _rules(f: fm.FieldBase) -> dict[str, Any]:
    return f.model_dump(exclude=_RULE_EXCLUDE)


def _lossless(old_type: str, old_sig: str | None, new_type: str, new_sig: str | None) -> bool:
    old_dec, new_dec = ddl.decimal_sig(old_sig), ddl.decimal_sig(new_sig)
    if old_dec and new_dec and (old_type == new_type or {old_type, new_type} <= DECIMAL_TYPES):
        # Only a smaller scale rounds values; a value too large for fewer
        # integer digits fails the precision check and is reported as a failure.
        return new_dec[1] >= old_dec[1]
    return (old_type, new_type) in LOSSLESS_CHANGES


# --- values -------------------------------------------------------------------

def _bridge(old_type: str, new_type: str, value: Any, tz: str) -> Any:
    """A stored value of the old type as input for the new type's convert()."""
    if new_type == "datetime" and isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=ZoneInfo(tz))  # midnight, org zone
    if new_type == "date" and isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz)).date()
    if isinstance(value, bool):
        return "true" if value else "false"
    kind = FIELD_KINDS.get(old_type)
    out = kind.to_json(value) if kind else value
    if isinstance(out, int) and FIELD_KINDS[new_type].expected == TextKind.expected:
        return str(out)  # integer to text is lossless: 42 becomes "42"
    return out


def _converter(old_type: str, f: fm.FieldBase, tz: str) -> Rewrite:
    """Try the new type's convert() and checks on one stored value."""
    compiled = FIELD_KINDS[_type(f)].compile(f)

    def run(value: Any) -> tuple[Any, tuple[str, dict[str, Any]] | None]:
        try:
            new = compiled.convert(_bridge(old_type, compiled.type, value, tz))
        except FieldProblem as problem:
            return None, (problem.code, problem.params)
        for check in compiled.checks:
            failed = check(new)
            if failed:
                return None, failed
        return new, None

    return run


def _option_rewrite(removed: set[str], *, multi: bool, allowed: str) -> Rewrite:
    def run(value: Any) -> tuple[Any, tuple[str, dict[str, Any]] | None]:
        values = value if multi and isinstance(value, list) else [value]
        gone = [v for v in values if v in removed]
        if not gone:
            return value, None
        problem = ("option", {"value": gone[0], "allowed": allowed})
        if multi and isinstance(value, list):
            return [v for v in value if v not in removed] or None, problem
        return None, problem

    return run


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _scan(connection: sa.Connection, *, ctx: _Ctx, table: str, column: str, sig: str,
          rewrite: Rewrite, label: str, old_type: str, unique: bool = False,
          language: str = "en",
          write: Callable[[list[tuple[uuid.UUID, Any, Any]]], None] | None = None,
          losses: Losses | None = None) -> _Scan:
    """Run ``rewrite`` over every stored value of ``column``: count values,
    list failures (up to MAX_LISTED), find duplicates among live results, and
    hand each batch of (id, old, new) to ``write`` when applying, noting each
    failure (a value cleared or cut) in ``losses``."""
    child = ctx.parent is not None
    stub = ddl.stub_table(table, {column: ddl.type_from_sig(sig)}, child=child,
                          soft_delete=ctx.soft_delete)
    result, seen = _Scan(), dict[str, list[uuid.UUID]]()
    old_kind = FIELD_KINDS.get(old_type)

    def as_json(v: Any) -> Any:
        return _jsonable(old_kind.to_json(v) if old_kind else v)
    for rows in ddl.iter_rows(connection, stub, column):
        batch = []
        for row in rows:
            value = row._mapping[column]
            if value is None:  # JSON null
                continue
            result.with_values += 1
            new, problem = rewrite(value)
            batch.append((row.id, value, new))
            if problem is not None:
                result.failure_count += 1
                if losses is not None:
                    # A failure leaves None or part of the old value (options
                    # cut from a list): the old type renders both.
                    _note_loss(losses, ctx, row, column, as_json(value),
                               None if new is None else as_json(new))
                if len(result.failures) < MAX_LISTED:
                    code, params = problem
                    failure = {"record_id": str(row.parent_id if child else row.id),
                               "value": as_json(value), "error": code,
                               "message": i18n.message(code, language, label=label, **params)}
                    if child:
                        failure["row_id"] = str(row.id)
                    result.failures.append(failure)
            live = not ctx.soft_delete or row._mapping["deleted_at"] is None
            if unique and new is not None and live:
                seen.setdefault(json.dumps(_jsonable(new)), []).append(row.id)
        if write is not None:
            write(batch)
    result.duplicates = [{"value": json.loads(value), "count": len(ids),
                          "record_ids": [str(i) for i in ids[:5]]}
                         for value, ids in seen.items() if len(ids) > 1]
    return result


def _note_loss(losses: Losses, ctx: _Ctx, row: Any, key: str, old: Any, new: Any) -> None:
    """Add one lost value to its record's history entry."""
    if ctx.parent_key is None:
        losses.setdefault(row.id, {})[key] = {"old": old, "new": new}
        return
    change = losses.setdefault(row.parent_id, {}).setdefault(
        ctx.parent_key, {"old": [], "new": []})
    for side, value in (("old", old), ("new", new)):
        rows = change[side]
        entry = next((r for r in rows if r["id"] == str(row.id)), None)
        if entry is None:
            entry = {"id": str(row.id)}
            rows.append(entry)
        entry[key] = value


def _duplicates(connection: sa.Connection, ctx: _Ctx, table: str, column: str, sig: str
                ) -> list[dict[str, Any]]:
    found = ddl.duplicate_values(connection, table, column, ddl.type_from_sig(sig),
                                 soft_delete=ctx.soft_delete, limit=MAX_LISTED)
    return [{"value": _jsonable(value), "count": count, "record_ids": [str(i) for i in ids]}
            for value, count, ids in found]


def _refuse_duplicates(key: str, duplicates: list[dict[str, Any]]) -> None:
    if not duplicates:
        return
    listed = duplicates[:MAX_LISTED]
    raise DefinitionInvalid(
        f"field {key!r} cannot be unique: {len(duplicates)} value(s) are used by more than one "
        "live record; make them distinct first",
        errors=[ErrorItem(code="unique", field=key, message=f"duplicate values in {key!r}",
                          details={"duplicates": listed})],
        details={"field": key, "duplicates": listed})



# --- applying -----------------------------------------------------------------

class _Applier:
    def __init__(self, connection: sa.Connection, plan: EvolutionPlan, *, confirm: bool) -> None:
        self.conn = connection
        self.op = ddl.operations(connection)
        self.plan = plan
        self.confirm = confirm
        self.losses: Losses = {}

    def drop(self, step: Step) -> None:
        table = step.params["table"]
        names = step.params.get("drop", [])
        if not names:
            return
        present = {ix["name"] for ix in sa.inspect(self.conn).get_indexes(table)}
        for name in names:
            if name in present:
                self.op.drop_index(name, table_name=table)

    def create(self, step: Step) -> None:
        ddl.create_indexes(self.op, step.params.get("create", []))

    def require_confirmation(self, step: Step, destructive: bool) -> None:
        """The data changed since the dry run and the step became destructive."""
        if destructive and not step.destructive and not self.confirm:
            step.destructive = True
            raise ConfirmationRequired(
                f"{step.field}: existing data changed since the plan and the change is now "
                "destructive; review the plan and confirm", details=self.plan.as_dict())


def _apply_create_table(a: _Applier, step: Step) -> None:
    ddl.create_table(a.op, step.params["table"])


def _apply_add_field(a: _Applier, step: Step) -> None:
    p = step.params
    ddl.add_column(a.op, p["table"], p["key"], ddl.type_from_sig(p["sig"]))
    a.create(step)


def _apply_move(a: _Applier, step: Step) -> None:
    """rename_field, remove_field and restore_field: a column or table changes name."""
    p = step.params
    if p["storage"] == "column":
        a.drop(step)
        ddl.rename_column(a.op, p["table"], p["from"], p["to"])
    else:
        ddl.rename_table(a.op, a.conn, p["from"], p["to"])
    a.create(step)


def _apply_change_type(a: _Applier, step: Step) -> None:
    p = step.params
    table, key, ctx = p["table"], p["key"], p["ctx"]
    a.drop(step)
    in_place = p["old_sig"] == p["new_sig"]
    target = key if in_place else f"_t_{p['fid']}"
    if not in_place:
        ddl.add_column(a.op, table, target, ddl.type_from_sig(p["new_sig"]))
    stub = ddl.stub_table(table, {target: ddl.type_from_sig(p["new_sig"])})

    def write(batch: list[tuple[uuid.UUID, Any, Any]]) -> None:
        changed = [(rid, new) for rid, old, new in batch if not in_place or new != old]
        ddl.update_by_id(a.conn, stub, target, changed)

    scan = _scan(a.conn, ctx=ctx, table=table, column=key, sig=p["old_sig"],
                 rewrite=_converter(p["old_type"], p["definition"], a.plan.time_zone),
                 label=key, old_type=p["old_type"], write=write, losses=a.losses)
    a.require_confirmation(step, scan.failure_count > 0
                           or (not p["lossless"] and scan.with_values > 0))
    if not in_place:
        ddl.replace_column(a.op, table, key, target)
    if p["unique"]:
        _refuse_duplicates(key, _duplicates(a.conn, ctx, table, key, p["new_sig"]))
    a.create(step)


def _apply_remove_options(a: _Applier, step: Step) -> None:
    p = step.params
    f = p["definition"]
    stub = ddl.stub_table(p["table"], {p["key"]: ddl.type_from_sig(p["sig"])})

    def write(batch: list[tuple[uuid.UUID, Any, Any]]) -> None:
        ddl.update_by_id(a.conn, stub, p["key"], [(rid, new) for rid, old, new in batch
                                                   if new != old])

    rewrite = _option_rewrite(set(p["removed"]), multi=isinstance(f, fm.MultiSelectField),
                              allowed=", ".join(_option_values(f)[:20]))
    scan = _scan(a.conn, ctx=p["ctx"], table=p["table"], column=p["key"], sig=p["sig"],
                 rewrite=rewrite, label=p["key"], old_type=f.type, write=write,
                 losses=a.losses)
    a.require_confirmation(step, scan.failure_count > 0)


def _apply_change_target(a: _Applier, step: Step) -> None:
    p = step.params
    if p["storage"] == "join_table":
        a.require_confirmation(step, ddl.count_rows(a.conn, p["table"]) > 0)
        j = ddl.stub_table(p["table"], {"source_id": GUID, "target_id": GUID,
                                        "position": sa.Integer()})
        links: dict[uuid.UUID, list[str]] = {}
        for source, target in a.conn.execute(sa.select(j.c.source_id, j.c.target_id)
                                             .order_by(j.c.source_id, j.c.position)):
            links.setdefault(source, []).append(str(target))
        for source, targets in links.items():
            a.losses.setdefault(source, {})[step.field or ""] = {"old": targets, "new": None}
        a.conn.execute(sa.delete(j))
        return
    a.require_confirmation(step, ddl.count_values(a.conn, p["table"], p["key"]) > 0)
    ctx = p["ctx"]
    t = ddl.stub_table(p["table"], {p["key"]: GUID}, child=ctx.parent is not None)
    column = t.c[p["key"]]
    for row in a.conn.execute(sa.select(t).where(column.is_not(None))):
        _note_loss(a.losses, ctx, row, p["key"], str(row._mapping[p["key"]]), None)
    a.conn.execute(sa.update(t).where(column.is_not(None)).values({p["key"]: None}))


def _apply_add_index(a: _Applier, step: Step) -> None:
    p = step.params
    if p["unique"]:
        _refuse_duplicates(p["key"], _duplicates(a.conn, p["ctx"], p["table"], p["key"],
                                                 p["sig"]))
    a.create(step)


def _apply_drop_index(a: _Applier, step: Step) -> None:
    a.drop(step)


def _apply_nothing(a: _Applier, step: Step) -> None:
    """Report-only steps (warnings about existing data)."""


_HANDLERS: dict[str, Callable[[_Applier, Step], None]] = {
    "create_table": _apply_create_table,
    "add_child_table": _apply_create_table,
    "add_join_table": _apply_create_table,
    "add_field": _apply_add_field,
    "rename_field": _apply_move,
    "remove_field": _apply_move,
    "restore_field": _apply_move,
    "change_type": _apply_change_type,
    "remove_options": _apply_remove_options,
    "change_target": _apply_change_target,
    "add_index": _apply_add_index,
    "drop_index": _apply_drop_index,
    "check_required": _apply_nothing,
    "check_values": _apply_nothing,
}
assert set(_HANDLERS) == set(_TEXTS), "every step op needs a handler and a description"
