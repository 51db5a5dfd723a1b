"""The records service: create, read, update, delete, restore, list, history.

Every write validates through the form's compiled validator, checks the
database-backed rules (linked records exist, unique values), writes the row,
its child rows, an audit entry and a record event — all in the caller's
transaction — and keeps rollups of dependent forms current.

Example::

    ctx = EngineContext(session=session, actor=actor)
    rec = create_record(ctx, app="crm", form="lead", data={"name": "张三"})
    rec = update_record(ctx, app="crm", form="lead", record_id=rec["id"],
                        changes={"status": "qualified"}, expected_version=rec["version"])
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.db.bulk import BulkInsert
from tangram.db.ids import new_ids
from tangram.db.upsert import increment_counter
from tangram.engines.access import AllowAll, FormAction
from tangram.engines.context import EngineContext
from tangram.engines.directory import (
    existing_department_ids,
    existing_user_ids,
    users_table,
)
from tangram.engines.expressions import EvalContext
from tangram.engines.forms import events, links, titles
from tangram.engines.forms.files import accepts, descriptor, file_rows
from tangram.engines.forms.fill import fill_linked
from tangram.engines.forms.query import (
    SYSTEM_COLUMNS,
    ListQuery,
    QueryContext,
    build_count,
    build_select,
)
from tangram.engines.forms.registry import FormRuntime, app_runtimes, get_runtime
from tangram.engines.forms.systables import (
    audit_log_table,
    autonumber_counters_table,
    file_links_table,
    form_tables_table,
)
from tangram.engines.forms.tables import FormTables
from tangram.engines.forms.validation import Outcome, rollup_value
from tangram.errors import (
    Conflict,
    ErrorItem,
    NotFound,
    PermissionDenied,
    RecordLocked,
    ValidationFailed,
)
from tangram.i18n import Msg, message
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

MAX_CASCADE_DEPTH = 8
# Records read at a time when publish recomputes stored formulas (with their
# sub-table rows): bounds the backfill's memory on large tables.
BACKFILL_BATCH = 500


@dataclass
class Prepared:
    """A validated write, ready to apply."""

    values: dict[str, Any]
    sub_rows: dict[str, list[dict[str, Any]]]
    multi: dict[str, list[uuid.UUID]] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers

def _eval_context(ctx: EngineContext) -> EvalContext:
    return EvalContext(now=ctx.now(), timezone=ctx.timezone)


def query_context(ctx: EngineContext, app: str, *, scoped: bool = True) -> QueryContext:
    """Query context of the actor: relation paths only see records in the
    actor's scope (``scoped=False`` for system computations such as rollups)."""
    def scope(tables: FormTables, alias: sa.FromClause) -> sa.ColumnElement[bool] | None:
        return ctx.policy.row_predicate(ctx.actor, app, tables.form.key,
                                        alias, "read")  # type: ignore[arg-type]

    def hidden(key: str) -> set[str]:  # left out of unknown-field messages
        return _hidden_and_readonly(ctx, get_runtime(ctx.session, app, key))[0]

    return QueryContext(resolve=lambda key: get_runtime(ctx.session, app, key).tables,
                        today=ctx.today(), timezone=ctx.timezone, now=ctx.now(),
                        scope=scope if scoped else None, hidden=hidden if scoped else None)


def _hidden_and_readonly(ctx: EngineContext, rt: FormRuntime) -> tuple[set[str], set[str]]:
    access = ctx.policy.field_access(ctx.actor, rt.app, rt.key)
    hidden = {k for k, v in access.items() if v == "hidden"}
    read_only = {k for k, v in access.items() if v == "read_only"}
    return hidden, read_only


def _check_writable_fields(ctx: EngineContext, rt: FormRuntime, keys: Iterable[str]) -> None:
    hidden, read_only = _hidden_and_readonly(ctx, rt)
    for key in keys:
        if key in hidden or key in read_only:
            f = rt.field(key)
            raise PermissionDenied(
                Msg("field_hidden_set" if key in hidden else "field_read_only_set", field=key,
                    label=f.label if f else key),
                details={"field": key})


def check_settable(ctx: EngineContext, rt: FormRuntime, path: str) -> None:
    """Raise PermissionDenied unless the actor may set field ``path`` (a key,
    or ``subtable.field``) by hand — what offering choices for it needs: the
    create or update right on the form, a field people fill in (not computed
    nor read-only), and not hidden or read-only for the actor."""
    if not {"create", "update"} & set(form_actions(ctx, rt.app, rt.key)):
        raise PermissionDenied(Msg("nothing_to_pick", form=rt.key), details={"field": path})
    top, _, sub = path.partition(".")
    plans = rt.validator.sub_tables[top].fields if sub and top in rt.validator.sub_tables \
        else rt.validator.fields
    plan = plans.get(sub or top)
    if plan is not None and plan.read_only:
        raise PermissionDenied(Msg("field_fixed", field=path), details={"field": path})
    _check_writable_fields(ctx, rt, [top])


def _row_to_values(rt: FormRuntime, row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    """A database row -> Python values keyed by field key (+ system fields)."""
    out: dict[str, Any] = {k: row[k] for k in SYSTEM_COLUMNS if k in row}
    for key, compiled in rt.fields.items():
        if compiled.kind.storage == "column" and key in row:
            out[key] = compiled.kind.from_db(row[key])
    return out


def _load_children(ctx: EngineContext, rt: FormRuntime, ids: list[uuid.UUID],
                   keys: Iterable[str] | None = None) -> dict[uuid.UUID, dict[str, Any]]:
    """Sub-table rows and multi-relation ids for ``ids``, one query per table."""
    out: dict[uuid.UUID, dict[str, Any]] = {i: {} for i in ids}
    if not ids:
        return out
    wanted = set(keys) if keys is not None else None
    for key, table in rt.tables.children.items():
        if wanted is not None and key not in wanted:
            continue
        sub = rt.form.field(key)
        assert isinstance(sub, fm.SubTableField)
        kinds = {f.key: rt.validator.sub_tables[key].fields[f.key].compiled.kind
                 for f in sub.fields}
        for i in ids:
            out[i][key] = []
        rows = ctx.session.execute(sa.select(table).where(table.c.parent_id.in_(ids))
                                   .order_by(table.c.parent_id, table.c.position)).mappings()
        for r in rows:
            item = {"id": r["id"]}
            for fkey, kind in kinds.items():
                if fkey in r:
                    item[fkey] = kind.from_db(r[fkey])
            out[r["parent_id"]][key].append(item)
    for key, table in rt.tables.joins.items():
        if wanted is not None and key not in wanted:
            continue
        for i in ids:
            out[i][key] = []
        links = ctx.session.execute(sa.select(table.c.source_id, table.c.target_id)
                                   .where(table.c.source_id.in_(ids))
                                    .order_by(table.c.source_id, table.c.position))
        for link in links:
            out[link.source_id][key].append(link.target_id)
    return out


def fetch_record(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID, *, deleted: bool | None,
           lock: bool = False) -> dict[str, Any]:
    t = rt.table
    stmt = sa.select(t).where(t.c.id == record_id)
    if deleted is True:
        stmt = stmt.where(t.c.deleted_at.is_not(None))
    elif deleted is False:
        stmt = stmt.where(t.c.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(Msg("record_missing_deleted" if deleted else "record_missing",
                           record=record_id, form=rt.key))
    values = _row_to_values(rt, row)
    values.update(_load_children(ctx, rt, [record_id])[record_id])
    return values


def parse_id(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(Msg("record_id_invalid", value=value)) from None


# --------------------------------------------------------------------------- JSON output

def _display(ctx: EngineContext, rt: FormRuntime, records: list[dict[str, Any]]
             ) -> dict[tuple[str, uuid.UUID], str]:
    """Titles of linked records, users and departments (for lists and pickers),
    also those named in sub-table rows: one query per kind of target."""
    wanted: dict[str, set[uuid.UUID]] = defaultdict(set)

    def want(ref: Any, value: Any) -> None:
        if ref is not None and ref != "file" and value is not None:
            wanted[_title_reference(ref)].update(value if isinstance(value, list) else [value])

    sub_refs = _sub_table_references(rt)
    for rec in records:
        for key, compiled in rt.fields.items():
            want(compiled.reference, rec.get(key))
        for key, refs in sub_refs.items():
            for row in rec.get(key) or []:
                for sub_key, ref in refs.items():
                    want(ref, row.get(sub_key))
        for sys_key in ("owner", "created_by", "updated_by"):
            want("user", rec.get(sys_key))
    return titles.load_titles(ctx, rt.app, wanted)


def _title_reference(ref: str | tuple[str, str]) -> str:
    """The titles module's reference of a compiled field's ``reference``."""
    return ref if isinstance(ref, str) else titles.form_reference(ref[1])


def _sub_table_references(rt: FormRuntime) -> dict[str, dict[str, Any]]:
    """Per sub-table, its relation, user and department fields (key -> reference)."""
    out = {}
    for key, plan in rt.validator.sub_tables.items():
        refs = {k: p.compiled.reference for k, p in plan.fields.items()
                if p.compiled.reference not in (None, "file")}
        if refs:
            out[key] = refs
    return out


def _title_of(found: Mapping[tuple[str, uuid.UUID], str], ref: Any, value: Any) -> Any:
    """The ``_display`` entry of a reference value (a list for multi-relations)."""
    name = _title_reference(ref)
    if isinstance(value, list):
        return [found.get((name, v)) for v in value]
    return found.get((name, value))


def _target_runtime(ctx: EngineContext, rt: FormRuntime, target: str) -> FormRuntime | None:
    if target == rt.key:
        return rt
    try:
        return get_runtime(ctx.session, rt.app, target)
    except NotFound:
        return None


# The role actions of a form, in the order ``actions`` and ``_actions`` list them.
FORM_ACTIONS: tuple[FormAction, ...] = ("read", "create", "update", "delete", "restore",
                                        "export", "import", "print", "submit")
# Those that apply to one record (a record's ``_actions``).
RECORD_ACTIONS = frozenset({"read", "update", "delete", "restore", "print", "submit"})


def form_actions(ctx: EngineContext, app: str, form: str) -> list[str]:
    """The role actions the actor has on the form (on some of its records)."""
    out: list[str] = []
    for action in FORM_ACTIONS:
        try:
            ctx.policy.check_form_action(ctx.actor, app, form, action)
        except PermissionDenied:
            continue
        out.append(action)
    return out


@dataclass
class RecordActions:
    """What the actor may do on each record of a page: the record actions the
    form grants them, narrowed per record by each action's row scope and by
    the form's lock. Row scopes are evaluated in SQL — as extra columns of
    the page's SELECT (:meth:`columns`, :meth:`read_rows`) or in one query
    for all the records (:meth:`of_records`), never one per record.

    >>> actions = RecordActions.of_records(ctx, rt, [rec["id"]])
    >>> actions.of(rec, locked=False)
    ['read', 'update']
    """

    everywhere: list[str]  # allowed on every record the actor sees
    scoped: dict[str, sa.ColumnElement[bool]]  # action -> the rows it is allowed on
    lock_editable: bool  # the lock leaves some fields editable
    admin: bool  # a lock does not stop administrators
    allowed: dict[uuid.UUID, set[str]] = field(default_factory=dict)  # id -> scoped actions

    @classmethod
    def for_form(cls, ctx: EngineContext, rt: FormRuntime) -> RecordActions:
        everywhere, scoped = [], {}
        for action in form_actions(ctx, rt.app, rt.key):
            if action not in RECORD_ACTIONS:
                continue
            # Every record the actor is shown is one they may read.
            predicate = None if action == "read" else ctx.policy.row_predicate(
                ctx.actor, rt.app, rt.key, rt.table, action)  # type: ignore[arg-type]
            if predicate is None:
                everywhere.append(action)
            else:
                scoped[action] = predicate
        return cls(everywhere=everywhere, scoped=scoped,
                   lock_editable=bool(rt.form.lock and rt.form.lock.editable),
                   admin=ctx.actor.is_admin)

    @classmethod
    def of_records(cls, ctx: EngineContext, rt: FormRuntime,
                   ids: Sequence[uuid.UUID]) -> RecordActions:
        found = cls.for_form(ctx, rt)
        if found.scoped and ids:
            t = rt.table
            found.read_rows(ctx.session.execute(
                sa.select(t.c.id, *found.columns()).where(t.c.id.in_(ids))).mappings())
        return found

    def columns(self) -> list[sa.Label[int]]:
        return [sa.case((predicate, 1), else_=0).label(f"_may_{action}")
                for action, predicate in self.scoped.items()]

    def read_rows(self, rows: Iterable[sa.RowMapping]) -> None:
        for r in rows:
            self.allowed[r["id"]] = {a for a in self.scoped if r[f"_may_{a}"]}

    def of(self, rec: Mapping[str, Any], *, locked: bool | None) -> list[str]:
        granted = {*self.everywhere, *self.allowed.get(rec["id"], ())}
        in_bin = rec.get("deleted_at") is not None
        out: list[str] = []
        for action in FORM_ACTIONS:
            if action not in granted or action != "read" and in_bin != (action == "restore"):
                continue
            if locked and not self.admin and (
                    action == "delete" or action == "update" and not self.lock_editable):
                continue
            out.append(action)
        return out


def to_json(ctx: EngineContext, rt: FormRuntime, records: list[dict[str, Any]],
            *, fields: list[str] | None = None,
            actions: RecordActions | None = None) -> list[dict[str, Any]]:
    """Python records -> JSON, without the fields the actor may not see, with
    what the actor may do on each (``actions``: already worked out with the
    records' query, else one query here)."""
    hidden, _ = _hidden_and_readonly(ctx, rt)
    shown = _display(ctx, rt, records)
    sub_refs = _sub_table_references(rt)
    record_actions = actions or RecordActions.of_records(ctx, rt, [r["id"] for r in records])
    file_ids: set[uuid.UUID] = set()
    for key, compiled in rt.fields.items():
        if compiled.reference == "file":
            for rec in records:
                file_ids.update(rec.get(key) or [])
    files = file_rows(ctx, file_ids)
    wanted = set(fields) if fields else None
    # Whether a record is locked, for a client to offer editing or not (when
    # the record holds what the form's lock rule reads).
    lock_when = rt.validator.lock_when
    lock_fields = (lock_when.referenced_fields.get("record", set())
                   if lock_when is not None else None)
    out = []
    for rec in records:
        item: dict[str, Any] = {
            "id": str(rec["id"]), "version": rec.get("version"),
            "created_at": iso_utc(rec.get("created_at")),
            "updated_at": iso_utc(rec.get("updated_at")),
            "created_by": _str(rec.get("created_by")), "updated_by": _str(rec.get("updated_by")),
            "owner": _str(rec.get("owner")),
        }
        if rec.get("deleted_at") is not None:
            item["deleted_at"] = iso_utc(rec["deleted_at"])
        display: dict[str, Any] = {}
        for sys_key in ("owner", "created_by", "updated_by"):
            if rec.get(sys_key) and ("user", rec[sys_key]) in shown:
                display[sys_key] = shown[("user", rec[sys_key])]
        for key, compiled in rt.fields.items():
            if key in hidden or (wanted is not None and key not in wanted) or key not in rec:
                continue
            value = rec[key]
            if compiled.kind.storage == "child_table":
                item[key] = _json_value(rt, key, value)
                # Titles of sub-table links, by the row's path (lines[0].product),
                # as validation errors name them: the rows themselves stay
                # what a client may send back.
                for i, row in enumerate(value or []):
                    for sub_key, ref in sub_refs.get(key, {}).items():
                        if row.get(sub_key) is not None:
                            display[f"{key}[{i}].{sub_key}"] = _title_of(shown, ref,
                                                                         row[sub_key])
                continue
            if compiled.reference == "file":
                item[key] = [descriptor(files[f]) for f in (value or []) if f in files]
                continue
            item[key] = compiled.to_json(value)
            if compiled.reference is not None and value is not None:
                display[key] = _title_of(shown, compiled.reference, value)
        item["_display"] = display
        locked = (lock_reason(ctx, rt, rec) is not None
                  if lock_fields is not None and lock_fields <= rec.keys() else None)
        if locked is not None:
            item["_locked"] = locked
        item["_actions"] = record_actions.of(rec, locked=locked)
        out.append(item)
    return out


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------- validation

def _prepare(ctx: EngineContext, rt: FormRuntime, data: Mapping[str, Any], *,
             old: dict[str, Any] | None, allow_read_only: bool,
             user: Mapping[str, Any] | None = None,
             eval_context: EvalContext | None = None, fill: bool = True,
             given: Mapping[str, Any] | None = None) -> tuple[Prepared, Outcome]:
    if not isinstance(data, Mapping):
        raise ValidationFailed([ErrorItem(code="type", message="the record must be a JSON object")])
    given = data if given is None else given
    if fill:
        data = fill_linked(ctx, rt, [(data, old)])[0]
    outcome = rt.validator.validate(
        data, old=old, user=user if user is not None else ctx.actor.as_variables(),
        eval_context=eval_context or _eval_context(ctx), language=ctx.language,
        allow_read_only=allow_read_only, filled=_filled_keys(given, data))
    columns = rt.column_key_set
    prepared = Prepared(values={k: v for k, v in outcome.values.items() if k in columns},
                        sub_rows=outcome.sub_rows)
    if rt.tables.joins:
        prepared.multi = {k: outcome.values[k] or [] for k in rt.tables.joins
                          if k in outcome.values}
    return prepared, outcome


def _filled_keys(given: Mapping[str, Any], data: Mapping[str, Any]) -> frozenset[str]:
    """Top-level fields :func:`fill_linked` set (they may be read-only)."""
    if data is given:
        return frozenset()
    return frozenset(k for k in data if k not in given or given[k] in (None, "", [], {})
                     and given[k] != data[k])


def _check_references(ctx: EngineContext, rt: FormRuntime, outcome: Outcome,
                      errors: list[ErrorItem]) -> None:
    """Linked records, users, departments and files exist (one query per kind)."""
    for ref, by_id in outcome.references.items():
        ids = set(by_id)
        if ref == "user":
            found = existing_user_ids(ctx.session, ids)
            code = "user_missing"
        elif ref == "department":
            found = existing_department_ids(ctx.session, ids)
            code = "department_missing"
        elif ref == "file":
            # Only files the actor may read (their uploads, or attached to a
            # record they see): attaching another's file id would hand it over.
            rows = {i: r for i, r in file_rows(ctx, ids).items()
                    if file_readable(ctx, file_id=i, uploaded_by=r.uploaded_by)}
            found = set(rows)
            code = "file_missing"
            _check_files(ctx, rt, rows, by_id, errors)
        else:
            # In the actor's read scope, unless the field allows links outside it.
            found, by_id = links.narrow_refused(ctx, rt, _target_runtime(ctx, rt, ref[1]),
                                                by_id)
            code = "relation_missing"
        for ident in ids - found:
            for path in by_id[ident]:
                errors.append(_field_error(ctx, rt, path, code, value=str(ident)))


def _check_files(ctx: EngineContext, rt: FormRuntime, rows: Mapping[uuid.UUID, Any],
                 by_id: Mapping[uuid.UUID, list[str]], errors: list[ErrorItem]) -> None:
    for ident, paths in by_id.items():
        row = rows.get(ident)
        if row is None:
            continue
        for path in paths:
            f = field_at(rt, path)
            if not isinstance(f, fm.AttachmentField):
                continue
            if not accepts(f.accept, row.name, row.content_type):
                errors.append(_field_error(ctx, rt, path, "file_type", value=row.name,
                                           allowed=", ".join(f.accept)))
            elif row.size > f.max_size_mb * (1 << 20):
                errors.append(_field_error(ctx, rt, path, "file_size", limit=f.max_size_mb))


def field_at(rt: FormRuntime, path: str) -> fm.FieldBase | None:
    """The field a path names: ``phone``, ``lines[2].product`` (an error's
    field), ``rows[3].phone`` (a bulk row's) or ``lines.product`` (a picker's)."""
    path = re.sub(r"^rows\[\d+\]\.", "", path)
    match = re.fullmatch(r"(\w+)(?:\[\d+\])?\.(\w+)", path)
    if match:
        sub = rt.form.field(match.group(1))
        if isinstance(sub, fm.SubTableField):
            return next((f for f in sub.fields if f.key == match.group(2)), None)
        return None
    return rt.form.field(path)


def _field_error(ctx: EngineContext, rt: FormRuntime, path: str, code: str,
                 **params: Any) -> ErrorItem:
    f = field_at(rt, path)
    label = localize(f.label, ctx.language) if f else path
    return ErrorItem(field=path, code=code, message=message(code, ctx.language, label=label,
                                                            **params))


def _check_unique(ctx: EngineContext, rt: FormRuntime, values: Mapping[str, Any],
                  record_id: uuid.UUID | None, errors: list[ErrorItem]) -> None:
    t = rt.table
    for key, value in values.items():
        f = rt.form.field(key)
        if f is None or not f.unique or value is None or rt.fields[key].kind.storage != "column":
            continue
        stmt = sa.select(t.c.id).where(t.c[key] == value, t.c.deleted_at.is_(None)).limit(1)
        if record_id is not None:
            stmt = stmt.where(t.c.id != record_id)
        if ctx.session.execute(stmt).first() is not None:
            errors.append(_field_error(ctx, rt, key, "unique",
                                       value=rt.fields[key].to_json(value)))


def _db_checks(ctx: EngineContext, rt: FormRuntime, prepared: Prepared, outcome: Outcome,
               record_id: uuid.UUID | None) -> None:
    # Every problem of a save at once: the values that converted are looked
    # up even when others did not.
    errors = list(outcome.errors)
    _check_references(ctx, rt, outcome, errors)
    _check_unique(ctx, rt, prepared.values, record_id, errors)
    if errors:
        raise ValidationFailed(errors, language=ctx.language)


# --------------------------------------------------------------------------- computed

def autonumbers(ctx: EngineContext, rt: FormRuntime, f: fm.AutonumberField, *,
                count: int = 1, at: datetime | None = None) -> list[str]:
    """The next ``count`` numbers of autonumber ``f``, for the period of ``at``
    (default: now) — HT-2026-0007 for a contract of 2026."""
    local = (at or ctx.now()).astimezone(ZoneInfo(ctx.timezone))
    parts = {"YYYY": f"{local.year:04d}", "YY": f"{local.year % 100:02d}",
             "MM": f"{local.month:02d}", "DD": f"{local.day:02d}"}
    used = re.findall(r"\{(YYYY|YY|MM|DD)\}", f.pattern)
    period = "".join(parts[p] for p in used)
    last = increment_counter(ctx.session, autonumber_counters_table,
                             {"app": rt.app, "form": rt.key, "field_id": f.id or f.key,
                              "period": period}, by=count)
    out = []
    for n in range(last - count + 1, last + 1):
        def render(match: re.Match[str], _n: int = n) -> str:
            token = match.group(1)
            if token.startswith("seq"):
                width = int(token.split(":")[1]) if ":" in token else 0
                return f"{_n:0{width}d}"
            return parts[token]
        out.append(re.sub(r"\{([^}]+)\}", render, f.pattern))
    return out


_NUMBER_PARTS = {"YYYY": r"(\d{4})", "YY": r"(\d{2})", "MM": r"(\d{2})", "DD": r"(\d{2})"}


def number_counter(rt: FormRuntime, f: fm.AutonumberField,
                   number: Any) -> tuple[dict[str, Any], int] | None:
    """The counter a number of autonumber ``f`` was drawn from (its keys) and
    its sequence value: HT-2025-0007 → (…period 2025…, 7). None when
    ``number`` does not have ``f``'s pattern."""
    pattern, tokens = "", []
    for literal, token in re.findall(r"([^{]*)(?:\{([^}]+)\})?", f.pattern):
        pattern += re.escape(literal)
        if token in _NUMBER_PARTS or token.startswith("seq"):
            pattern += _NUMBER_PARTS.get(token, r"(\d+)")
            tokens.append(token)
    match = re.fullmatch(pattern, str(number)) if number is not None else None
    parts = list(zip(tokens, match.groups(), strict=True)) if match else []
    seq = [int(v) for t, v in parts if t.startswith("seq")]
    if not seq:
        return None
    return ({"app": rt.app, "form": rt.key, "field_id": f.id or f.key,
             "period": "".join(v for t, v in parts if not t.startswith("seq"))}, seq[-1])


def keep_number(ctx: EngineContext, rt: FormRuntime, f: fm.AutonumberField,
                number: str) -> bool:
    """Keep a number given to a record (an exported contract's HT-2025-0007 is
    a legal identifier): the counter of its period moves past it, so the
    next number of that period follows it and none repeats it. False (the
    counter unchanged) when ``number`` does not have ``f``'s pattern."""
    found = number_counter(rt, f, number)
    if found is None:
        return False
    keys, seq = found
    c = autonumber_counters_table
    current = ctx.session.execute(sa.select(c.c.value).where(
        *(c.c[k] == v for k, v in keys.items()))).scalar() or 0
    if seq > current:
        increment_counter(ctx.session, c, keys, by=seq - current)
    return True


def give_back_numbers(ctx: EngineContext, rt: FormRuntime, f: fm.AutonumberField,
                      numbers: Iterable[Any]) -> None:
    """Return numbers that were the last drawn from their counters and are no
    longer used (records renumbered for their own period in the same
    transaction), so the counter's next number follows the last one in use:
    no gap. Numbers that are not the top of their counter stay used."""
    by_counter: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for number in numbers:
        found = number_counter(rt, f, number)
        if found is not None:
            by_counter.setdefault(tuple(sorted(found[0].items())), []).append(found[1])
    c = autonumber_counters_table
    for keys, seqs in by_counter.items():
        where = [c.c[k] == v for k, v in keys]
        current = ctx.session.execute(sa.select(c.c.value).where(*where)).scalar() or 0
        if sorted(seqs) == list(range(current - len(seqs) + 1, current + 1)):
            ctx.session.execute(sa.update(c).where(*where).values(value=current - len(seqs)))


def _empty_rollups(rt: FormRuntime, prepared: Prepared) -> None:
    """A new record has no related records yet: counts and sums start at 0."""
    for f in rt.form.fields:
        if isinstance(f, fm.RollupField) and f.source.form and f.aggregate in ("count", "sum"):
            prepared.values[f.key] = rollup_value(f.aggregate, [], f.scale)


def bump_data_version(ctx: EngineContext, rt: FormRuntime) -> None:
    """Every write to a form moves its data version (report caches key on it)."""
    ft = form_tables_table
    ctx.session.execute(ft.update().where(ft.c.app == rt.app, ft.c.form == rt.key)
                        .values(data_version=ft.c.data_version + 1))


# --------------------------------------------------------------------------- writes

def _write_children(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID,
                    prepared: Prepared, *, replace: bool) -> None:
    for key, rows in prepared.sub_rows.items():
        table = rt.tables.children[key]
        kinds = {k: p.compiled.kind for k, p in rt.validator.sub_tables[key].fields.items()
                 if p.compiled.kind.storage == "column"}
        if replace:
            ctx.session.execute(table.delete().where(table.c.parent_id == record_id))
        if rows:
            params = []
            for position, row in enumerate(rows):
                row_id = row.get("id") or new_id()
                row["id"] = row_id
                params.append({"id": row_id, "parent_id": record_id, "position": position,
                               **{k: kind.to_db(row.get(k)) for k, kind in kinds.items()}})
            ctx.session.execute(table.insert(), params)
    for key, ids in prepared.multi.items():
        table = rt.tables.joins[key]
        if replace:
            ctx.session.execute(table.delete().where(table.c.source_id == record_id))
        if ids:
            ctx.session.execute(table.insert(), [
                {"source_id": record_id, "target_id": t, "position": i}
                for i, t in enumerate(ids)])


def _file_fields(rt: FormRuntime) -> tuple[list[str], dict[str, list[str]]]:
    """Attachment fields of the form, and of each sub-table."""
    own = [k for k, c in rt.fields.items() if c.reference == "file"]
    subs = {key: [k for k, p in plan.fields.items() if p.compiled.reference == "file"]
            for key, plan in rt.validator.sub_tables.items()}
    return own, {k: v for k, v in subs.items() if v}


def _sync_file_links(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID,
                     rec: Mapping[str, Any], changed: Iterable[str]) -> None:
    """Keep file_links current for the attachment fields this write changed."""
    own, subs = _file_fields(rt)
    keys = [k for k in changed if k in own or k in subs]
    if not keys:
        return
    fl = file_links_table
    ctx.session.execute(fl.delete().where(fl.c.app == rt.app, fl.c.form == rt.key,
                                          fl.c.record_id == record_id, fl.c.field.in_(keys)))
    links: set[tuple[uuid.UUID, str]] = set()
    for key in keys:
        if key in subs:
            for row in rec.get(key) or []:
                for sub_key in subs[key]:
                    links.update((fid, key) for fid in row.get(sub_key) or [])
        else:
            links.update((fid, key) for fid in rec.get(key) or [])
    if links:
        ctx.session.execute(fl.insert(), [
            {"file_id": fid, "app": rt.app, "form": rt.key, "record_id": record_id,
             "field": key} for fid, key in sorted(links, key=str)])


def file_readable(ctx: EngineContext, *, file_id: uuid.UUID, uploaded_by: uuid.UUID | None
                  ) -> bool:
    """Whether the actor may download a file: they uploaded it, or they may read
    a record it is attached to and see the attachment field there."""
    if ctx.actor.is_admin or (uploaded_by is not None and uploaded_by == ctx.actor.id):
        return True
    fl = file_links_table
    for link in ctx.session.execute(sa.select(fl).where(fl.c.file_id == file_id)):
        try:
            rec = get_record(ctx, app=link.app, form=link.form, record_id=link.record_id)
        except (NotFound, PermissionDenied):
            continue
        if link.field in rec:  # hidden fields are not in what get_record returns
            return True
    return False


def _column_params(rt: FormRuntime, values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rt.fields[k].kind.to_db(v) for k, v in values.items()}


def audit_change(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID, action: str,
           changes: dict[str, Any], source: str) -> None:
    ctx.session.execute(audit_log_table.insert(), {
        "id": new_id(), "app": rt.app, "form": rt.key, "record_id": record_id,
        "action": action, "changes": changes, "actor_id": ctx.actor.id, "at": ctx.now(),
        "source": source, "form_version": rt.version})


def _json_value(rt: FormRuntime, key: str, value: Any) -> Any:
    compiled = rt.fields.get(key)
    if compiled is None:
        return value
    if compiled.kind.storage == "child_table":
        plans = rt.validator.sub_tables[key].fields
        return [{"id": _str(r.get("id")),
                 **{k: p.compiled.to_json(r.get(k)) for k, p in plans.items()}}
                for r in (value or [])]
    return compiled.to_json(value)


class LazyRecordJson(Mapping[str, Any]):
    """A record's JSON, built on first access: events carry one per change, and
    most changes (bulk imports) have nobody reading it."""

    def __init__(self, rt: FormRuntime, rec: Mapping[str, Any]) -> None:
        self._rt, self._rec = rt, rec
        self._json: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._json is None:
            self._json = record_json(self._rt, self._rec)
        return self._json

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


def record_json(rt: FormRuntime, rec: Mapping[str, Any]) -> dict[str, Any]:
    """Full JSON of a record for events (no permission filtering: consumers apply it)."""
    out: dict[str, Any] = {k: _json_value(rt, k, rec.get(k)) for k in rt.fields if k in rec}
    for key in SYSTEM_COLUMNS:
        value = rec.get(key)
        out[key] = iso_utc(value) if key.endswith("_at") else (
            value if key == "version" else _str(value))
    return out


def create_record(ctx: EngineContext, *, app: str, form: str, data: Mapping[str, Any],
                  owner: uuid.UUID | None = None, source: str = "api",
                  allow_read_only: bool = False) -> dict[str, Any]:
    """Validate and insert one record; returns its JSON (as the actor sees it)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "create")
    _check_writable_fields(ctx, rt, data.keys())
    rec = _insert(ctx, rt, data, owner=owner, source=source, allow_read_only=allow_read_only)
    return to_json(ctx, rt, [_latest(ctx, rt, rec)])[0]


_WRITTEN = "tangram.records.written"


def note_written(ctx: EngineContext, record_id: uuid.UUID, version: int) -> None:
    """Remember the version a write in this transaction gave a record."""
    ctx.session.info.setdefault(_WRITTEN, {})[record_id] = version


def written_version(ctx: EngineContext, record_id: uuid.UUID, default: int) -> int:
    """The version the last write of this transaction gave the record (``default``
    when none did)."""
    return int(ctx.session.info.get(_WRITTEN, {}).get(record_id, default))


def _latest(ctx: EngineContext, rt: FormRuntime, rec: dict[str, Any]) -> dict[str, Any]:
    """``rec``, or the record read again if a later write of the same
    transaction changed it meanwhile (a flow started by this write set its
    owner or a field): the caller gets what was stored, and a version it can
    send back without a 409."""
    if written_version(ctx, rec["id"], rec["version"]) == rec["version"]:
        return rec
    return fetch_record(ctx, rt, rec["id"], deleted=False)


def _insert(ctx: EngineContext, rt: FormRuntime, data: Mapping[str, Any], *,
            owner: uuid.UUID | None, source: str, allow_read_only: bool) -> dict[str, Any]:
    prepared, outcome = _prepare(ctx, rt, data, old=None, allow_read_only=allow_read_only)
    _db_checks(ctx, rt, prepared, outcome, None)
    record_id = new_id()
    now = ctx.now()
    for f in rt.form.fields:
        if isinstance(f, fm.AutonumberField):
            prepared.values[f.key] = autonumbers(ctx, rt, f)[0]
    _empty_rollups(rt, prepared)
    system = {"id": record_id, "created_at": now, "created_by": ctx.actor.id,
              "updated_at": now, "updated_by": ctx.actor.id,
              "owner": owner if owner is not None else ctx.actor.id, "version": 1}
    ctx.session.execute(rt.table.insert(), {**system, **_column_params(rt, prepared.values)})
    _write_children(ctx, rt, record_id, prepared, replace=False)
    rec = {**system, **prepared.values, **prepared.sub_rows, **prepared.multi}
    _sync_file_links(ctx, rt, record_id, rec, rec.keys())
    for key, compiled in rt.fields.items():
        rec.setdefault(key, [] if compiled.kind.storage != "column" else None)
    rec_json = LazyRecordJson(rt, rec)
    # No audit row for a create: who and when are the record's own immutable
    # created_at/created_by, its values the record itself (every later update
    # entry keeps the old value). record_history() shows the creation entry.
    events.emit(ctx, app=rt.app, form=rt.key, record_id=record_id, event="created",
                changed_fields=[k for k in rt.fields if rec.get(k) not in (None, [])],
                record=rec_json, old=None, source=source)
    bump_data_version(ctx, rt)
    _refresh_dependents(ctx, rt, None, rec, depth=0)
    return rec


def get_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
               deleted: bool = False, also: FormAction | None = None) -> dict[str, Any]:
    """The record as the actor sees it; ``also``: the actor must also be allowed
    that action on it (e.g. ``submit``: a role allows it on the form and the
    record is in that grant's scope)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    rec = fetch_record(ctx, rt, parse_id(record_id), deleted=deleted)
    ctx.policy.check_row(ctx.actor, app, form, rec, "read")
    if also is not None:
        ctx.policy.check_form_action(ctx.actor, app, form, also)
        ctx.policy.check_row(ctx.actor, app, form, rec, also)
    return to_json(ctx, rt, [rec])[0]


def update_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                  changes: Mapping[str, Any], expected_version: int | None,
                  source: str = "api", allow_read_only: bool = False) -> dict[str, Any]:
    """Partial update with optimistic locking: a stale ``expected_version``
    raises Conflict (409) and changes nothing."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "update")
    _check_writable_fields(ctx, rt, changes.keys())
    rec = _update(ctx, rt, parse_id(record_id), changes, expected_version=expected_version,
                  source=source, allow_read_only=allow_read_only, depth=0)
    return to_json(ctx, rt, [_latest(ctx, rt, rec)])[0]


def check_version(row: Mapping[str, Any], expected_version: int | None) -> None:
    """409 when the client's copy of a record (its ``version``) is stale."""
    if expected_version is not None and row["version"] != expected_version:
        raise Conflict(Msg("record_stale", record=row["id"], current=row["version"],
                           yours=expected_version),
                       details={"current_version": row["version"]})


# Changes a person makes by hand — the API, a file import, and what their
# delete does through on-delete rules: what a form's lock rule refuses. Flows,
# rollups and package installs change locked records as the system.
MANUAL_SOURCES = frozenset({"api", "import", "history", "cascade", "set_null"})


def lock_reason(ctx: EngineContext, rt: FormRuntime, rec: Mapping[str, Any]) -> str | None:
    """Why the stored record ``rec`` is locked by its form's lock rule (""
    when the rule gives no message), or None when it is not locked."""
    if rt.validator.lock_when is None:
        return None
    why = rt.validator.locked(rec, user=ctx.actor.as_variables(),
                              eval_context=_eval_context(ctx))
    if why == "" and rt.form.lock is not None and rt.form.lock.message:
        return localize(rt.form.lock.message, ctx.language)
    return why


def _given_changes(rt: FormRuntime, old: Mapping[str, Any], changes: Mapping[str, Any]
                   ) -> list[str]:
    """The keys of ``changes`` whose value differs from the stored one (a value
    that does not convert counts as a change; its error comes later)."""
    out = []
    for key, value in changes.items():
        compiled = rt.fields.get(key)
        if compiled is None or compiled.kind.storage != "column":
            out.append(key)
            continue
        try:
            same = (compiled.convert(value) if value is not None else None) == old.get(key)
        except Exception:  # noqa: BLE001 - any refusal: the validation below names it
            same = False
        if not same:
            out.append(key)
    return out


def _check_lock(ctx: EngineContext, rt: FormRuntime, old: Mapping[str, Any],
                changed: Iterable[str] | None, source: str) -> None:
    """Refuse a manual change (``changed`` fields; None: a delete) of a locked
    record, unless the actor is a platform administrator or every changed
    field is one the lock leaves editable."""
    lock = rt.form.lock
    if lock is None or source not in MANUAL_SOURCES or ctx.actor.is_admin:
        return
    # Computed fields follow the fields they are computed from.
    plans = rt.validator.fields
    fields = None if changed is None else sorted(
        k for k in set(changed) - set(lock.editable) if k in plans and not plans[k].computed)
    if fields == []:
        return
    why = lock_reason(ctx, rt, old)
    if why is None:
        return
    reason = Msg("reason_suffix", reason=why) if why else ""
    text = (Msg("record_locked_delete", record=old["id"], reason=reason) if fields is None
            else Msg("record_locked_change", record=old["id"], fields=", ".join(fields),
                     reason=reason))
    raise RecordLocked(text, details={"record_id": str(old["id"]), "fields": fields,
                                "editable": list(lock.editable)})


def _update(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID,
            changes: Mapping[str, Any], *, expected_version: int | None, source: str,
            allow_read_only: bool, depth: int) -> dict[str, Any]:
    old = fetch_record(ctx, rt, record_id, deleted=False, lock=True)
    ctx.policy.check_row(ctx.actor, rt.app, rt.key, old, "update")
    check_version(old, expected_version)
    if rt.form.lock is not None:  # a locked record says so before its values are judged
        _check_lock(ctx, rt, old, _given_changes(rt, old, changes), source)
    prepared, outcome = _prepare(ctx, rt, changes, old=old, allow_read_only=allow_read_only)
    _db_checks(ctx, rt, prepared, outcome, record_id)
    changed_cols = {k: v for k, v in prepared.values.items() if old.get(k) != v}
    changed_subs = {k: rows for k, rows in prepared.sub_rows.items()
                    if _rows_changed(old.get(k) or [], rows)}
    changed_multi = {k: ids for k, ids in prepared.multi.items() if (old.get(k) or []) != ids}
    if not (changed_cols or changed_subs or changed_multi):
        return old
    _check_lock(ctx, rt, old, [*changed_cols, *changed_subs, *changed_multi], source)
    now = ctx.now()
    t = rt.table
    result = ctx.session.execute(
        t.update().where(t.c.id == record_id, t.c.version == old["version"])
        .values(**_column_params(rt, changed_cols), updated_at=now, updated_by=ctx.actor.id,
                version=old["version"] + 1))
    if cast(sa.CursorResult[Any], result).rowcount != 1:  # lost a race with a concurrent writer
        raise Conflict(Msg("record_changed", record=record_id))
    _write_children(ctx, rt, record_id, Prepared(values={}, sub_rows=changed_subs,
                                                 multi=changed_multi), replace=True)
    new = {**old, **changed_cols, **changed_subs, **changed_multi, "updated_at": now,
           "updated_by": ctx.actor.id, "version": old["version"] + 1}
    note_written(ctx, record_id, new["version"])
    _sync_file_links(ctx, rt, record_id, new, [*changed_cols, *changed_subs])
    old_json, new_json = LazyRecordJson(rt, old), LazyRecordJson(rt, new)
    changed = [*changed_cols, *changed_subs, *changed_multi]
    audit_change(ctx, rt, record_id, "update",
           {k: {"old": old_json.get(k), "new": new_json.get(k)} for k in changed}, source)
    events.emit(ctx, app=rt.app, form=rt.key, record_id=record_id, event="updated",
                changed_fields=changed, record=new_json, old=old_json, source=source)
    bump_data_version(ctx, rt)
    _refresh_dependents(ctx, rt, old, new, depth=depth)
    return new


def _rows_changed(old_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]]) -> bool:
    if len(old_rows) != len(new_rows):
        return True
    return any({k: v for k, v in a.items() if k != "id"} != {k: v for k, v in b.items()
                                                             if k != "id"}
               or (b.get("id") is not None and a.get("id") != b.get("id"))
               for a, b in zip(old_rows, new_rows, strict=True))


def delete_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                  expected_version: int | None = None, source: str = "api") -> None:
    """Soft delete (to the recycle bin), applying on-delete rules of relations
    that point here: restrict refuses, set_null clears, cascade deletes."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "delete")
    _delete(ctx, rt, parse_id(record_id), expected_version=expected_version, source=source,
            depth=0)


def _referrers(ctx: EngineContext, rt: FormRuntime) -> list[tuple[FormRuntime, fm.RelationField]]:
    out = []
    for other in app_runtimes(ctx.session, rt.app).values():
        for f in other.form.fields:
            if isinstance(f, fm.RelationField) and f.target == rt.key:
                out.append((other, f))
    return out


def _delete(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID, *,
            expected_version: int | None, source: str, depth: int) -> None:
    if depth > MAX_CASCADE_DEPTH:
        raise Conflict("cascading delete goes deeper than 8 levels; delete in steps")
    old = fetch_record(ctx, rt, record_id, deleted=False, lock=True)
    ctx.policy.check_row(ctx.actor, rt.app, rt.key, old, "delete")
    if expected_version is not None and old["version"] != expected_version:
        raise Conflict(Msg("record_changed", record=record_id),
                       details={"current_version": old["version"]})
    _check_lock(ctx, rt, old, None, source)
    for other, f in _referrers(ctx, rt):
        ot = other.table
        ids = [r.id for r in ctx.session.execute(
            sa.select(ot.c.id).where(ot.c[f.key] == record_id, ot.c.deleted_at.is_(None)))]
        if other.key == rt.key:
            ids = [i for i in ids if i != record_id]
        if not ids:
            continue
        if f.on_delete == "restrict":
            raise Conflict(
                Msg("delete_restricted", count=len(ids), form=other.form.label, field=f.key,
                    field_label=f.label),
                details={"form": other.key, "field": f.key, "count": len(ids),
                         "record_ids": [str(i) for i in ids[:20]]})
        for ident in ids:
            if f.on_delete == "cascade":
                _delete(ctx, other, ident, expected_version=None, source="cascade",
                        depth=depth + 1)
            else:
                _update(ctx, other, ident, {f.key: None}, expected_version=None,
                        source="set_null", allow_read_only=True, depth=depth + 1)
    now = ctx.now()
    t = rt.table
    ctx.session.execute(t.update().where(t.c.id == record_id).values(
        deleted_at=now, updated_at=now, updated_by=ctx.actor.id, version=old["version"] + 1))
    old_json = LazyRecordJson(rt, old)
    audit_change(ctx, rt, record_id, "delete", {}, source)
    events.emit(ctx, app=rt.app, form=rt.key, record_id=record_id, event="deleted",
                changed_fields=[], record=LazyRecordJson(rt, {**old, "deleted_at": now}),
                old=old_json,
                source=source)
    bump_data_version(ctx, rt)
    _refresh_dependents(ctx, rt, old, None, depth=depth)


def restore_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                   source: str = "api") -> dict[str, Any]:
    """Bring a record back from the recycle bin (its unique values are re-checked)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "restore")
    rid = parse_id(record_id)
    old = fetch_record(ctx, rt, rid, deleted=True, lock=True)
    ctx.policy.check_row(ctx.actor, app, form, old, "restore")
    errors: list[ErrorItem] = []
    _check_unique(ctx, rt, {k: old.get(k) for k in rt.fields}, rid, errors)
    if errors:
        raise Conflict("cannot restore: " + "; ".join(e.message for e in errors),
                       errors=errors)
    now = ctx.now()
    t = rt.table
    ctx.session.execute(t.update().where(t.c.id == rid).values(
        deleted_at=None, updated_at=now, updated_by=ctx.actor.id, version=old["version"] + 1))
    new = {**old, "deleted_at": None, "updated_at": now, "updated_by": ctx.actor.id,
           "version": old["version"] + 1}
    audit_change(ctx, rt, rid, "restore", {}, source)
    events.emit(ctx, app=rt.app, form=rt.key, record_id=rid, event="restored",
                changed_fields=[], record=LazyRecordJson(rt, new), old=None, source=source)
    bump_data_version(ctx, rt)
    _refresh_dependents(ctx, rt, None, new, depth=0)
    return to_json(ctx, rt, [new])[0]


# --------------------------------------------------------------------------- rollups

def _rollup_dependents(ctx: EngineContext, rt: FormRuntime
                       ) -> list[tuple[FormRuntime, fm.RollupField]]:
    """Rollup fields (of any form of the app) that aggregate records of ``rt``."""
    out = []
    for parent in app_runtimes(ctx.session, rt.app).values():
        for f in parent.form.fields:
            if isinstance(f, fm.RollupField) and f.source.form == rt.key:
                out.append((parent, f))
    return out


def _refresh_dependents(ctx: EngineContext, rt: FormRuntime, old: Mapping[str, Any] | None,
                        new: Mapping[str, Any] | None, *, depth: int) -> None:
    """Recompute rollups of other forms that aggregate ``rt`` through a
    relation, for the parent(s) before and after this change."""
    _refresh_parents(ctx, rt, [r for r in (old, new) if r is not None], depth=depth)


def _refresh_parents(ctx: EngineContext, rt: FormRuntime, recs: Sequence[Mapping[str, Any]], *,
                     depth: int) -> None:
    if depth > MAX_CASCADE_DEPTH:
        return
    by_parent: dict[str, tuple[FormRuntime, list[fm.RollupField]]] = {}
    for parent, f in _rollup_dependents(ctx, rt):
        by_parent.setdefault(parent.key, (parent, []))[1].append(f)
    for parent, rollups in by_parent.values():
        # All of a parent's rollups over this form change in one update (one
        # version, one history entry), whichever relation they go through.
        parent_ids: set[uuid.UUID] = {r[f.source.via] for f in rollups for r in recs
                                      if f.source.via and r.get(f.source.via) is not None}
        for pid in sorted(parent_ids):
            _recompute_rollups(ctx, parent, rollups, rt, pid, depth=depth + 1)


def rollup_expression(ctx: EngineContext, parent: FormRuntime, f: fm.RollupField,
                      child: FormRuntime) -> sa.ScalarSelect[Any]:
    """SQL aggregate of ``f`` over ``child`` rows, correlated to the parent table."""
    ct = child.table
    via = f.source.via
    assert via is not None
    aggregates: dict[str, Callable[..., Any]] = {
        "count": sa.func.count, "sum": sa.func.sum, "avg": sa.func.avg, "min": sa.func.min,
        "max": sa.func.max}
    agg = aggregates[f.aggregate]
    column = ct.c.id if f.aggregate == "count" else ct.c[f.field]  # type: ignore[index]
    stmt = sa.select(agg(column)).where(ct.c[via] == parent.table.c.id,
                                        ct.c.deleted_at.is_(None))
    if f.filter:
        from tangram.engines.forms.query import compile_filter

        cond = compile_filter(f.filter, tables=child.tables,
                              qctx=query_context(ctx, parent.app, scoped=False))
        if cond is not None:
            stmt = stmt.where(cond)
    return stmt.scalar_subquery()


def _recompute_rollups(ctx: EngineContext, parent: FormRuntime, rollups: list[fm.RollupField],
                       child: FormRuntime, parent_id: uuid.UUID, *, depth: int) -> None:
    pt = parent.table
    row = ctx.session.execute(
        sa.select(*(pt.c[f.key] for f in rollups),
                  *(rollup_expression(ctx, parent, f, child).label(f"fresh_{i}")
                    for i, f in enumerate(rollups)))
        .where(pt.c.id == parent_id, pt.c.deleted_at.is_(None))).first()
    if row is None:
        return
    changes: dict[str, Any] = {}
    for i, f in enumerate(rollups):
        fresh = _rollup_result(f, row[len(rollups) + i])
        if fresh != row[i]:
            changes[f.key] = fresh
    if changes:
        # The platform keeps rollups current, not the writer: whoever may write
        # a child row (finance recording a payment) moves its parent's rollup,
        # whether or not they may update the parent (a contract). Audited as
        # theirs, source "rollup".
        system = dataclasses.replace(ctx, policy=AllowAll())
        _update(system, parent, parent_id, changes, expected_version=None, source="rollup",
                allow_read_only=True, depth=depth)


def recompute_all_rollups(ctx: EngineContext, *, app: str, form: str,
                          keys: Iterable[str] | None = None,
                          changed: set[str] | None = None) -> int:
    """Backfill the rollups over other forms of ``form`` — all of them, or the
    ``keys`` given — in every live record (after publishing a new or changed
    rollup field, or after a backfill changed the values they aggregate).
    Reads :data:`BACKFILL_BATCH` records at a time, writes only the records
    whose rollups change (no history, event or new version) and returns how
    many did; the keys of the rollups that changed are added to ``changed``."""
    rt = get_runtime(ctx.session, app, form)
    wanted = None if keys is None else set(keys)
    rollups = [f for f in rt.form.fields
               if isinstance(f, fm.RollupField) and f.source.form
               and (wanted is None or f.key in wanted)]
    if not rollups:
        return 0
    t = rt.table
    # Typed as the aggregated column (decimals are scaled integers on SQLite).
    fresh_columns = [
        rollup_expression(ctx, rt, f, get_runtime(ctx.session, app, cast(str, f.source.form)))
        .label(f"fresh_{i}") for i, f in enumerate(rollups)]
    updated = 0
    last: uuid.UUID | None = None
    while True:
        stmt = (sa.select(t.c.id, *(t.c[f.key] for f in rollups), *fresh_columns)
                .where(t.c.deleted_at.is_(None)).order_by(t.c.id).limit(BACKFILL_BATCH))
        if last is not None:
            stmt = stmt.where(t.c.id > last)
        rows = ctx.session.execute(stmt).all()
        if not rows:
            break
        params = []
        for row in rows:
            fresh = {f.key: _rollup_result(f, row[1 + len(rollups) + i])
                     for i, f in enumerate(rollups)}
            moved = {f.key for i, f in enumerate(rollups) if fresh[f.key] != row[1 + i]}
            if moved:
                params.append({"_id": row[0], **_column_params(rt, fresh)})
                if changed is not None:
                    changed |= moved
        if params:
            ctx.session.execute(t.update().where(t.c.id == sa.bindparam("_id")), params)
            updated += len(params)
        last = rows[-1][0]
    return updated


def _rollup_result(f: fm.RollupField, value: Any) -> Any:
    """A rollup's value as the database aggregated it, at the rollup's scale:
    the database's sum/avg may carry more decimals (or none, for 0); a sum
    over nothing is 0."""
    if f.aggregate != "count" and f.result_type == "number":
        return rollup_value("sum", [] if value is None else [value], f.scale) \
            if f.aggregate == "sum" or value is not None else None
    return value


def backfill_dependent_rollups(ctx: EngineContext, rt: FormRuntime, changed: set[str]) -> None:
    """After a backfill changed the stored values of fields ``changed`` of
    ``rt``, recompute the rollups of other forms that aggregate one of them
    (or filter on one), then those forms' formulas (and the forms above them
    in turn), for every parent record, as the backfill does: only changed
    records written, no history or events, data version moved where values
    changed. Stops when nothing changes; at most :data:`MAX_CASCADE_DEPTH`
    levels (forms rolling each other up in a cycle)."""
    pending: dict[str, tuple[FormRuntime, set[str]]] = {rt.key: (rt, set(changed))}
    for _ in range(MAX_CASCADE_DEPTH):
        following: dict[str, tuple[FormRuntime, set[str]]] = {}
        for child, fields in pending.values():
            by_parent: dict[str, tuple[FormRuntime, list[str]]] = {}
            for parent, f in _rollup_dependents(ctx, child):
                reads = ({f.field} if f.field else set()) | filter_fields(f.filter)
                if reads & fields:
                    by_parent.setdefault(parent.key, (parent, []))[1].append(f.key)
            for parent, keys in by_parent.values():
                moved: set[str] = set()
                if not recompute_all_rollups(ctx, app=parent.app, form=parent.key, keys=keys,
                                             changed=moved):
                    continue
                bump_data_version(ctx, parent)
                # The parent's formulas over the rollups (recompute_formulas
                # moves the data version again if they change).
                recompute_formulas(ctx, parent, changed=moved)
                following.setdefault(parent.key, (parent, set()))[1].update(moved)
        if not following:
            return
        pending = following


# --------------------------------------------------------------------------- reads

def filter_paths(spec: Any) -> set[str]:
    """Field paths a filter reads (``amount``, ``account.industry``)."""
    out: set[str] = set()
    if isinstance(spec, dict):
        if "field" in spec and isinstance(spec["field"], str):
            out.add(spec["field"])
        for key in ("and", "or"):
            parts = spec.get(key)
            for part in parts if isinstance(parts, list) else []:
                out |= filter_paths(part)
        if "not" in spec:
            out |= filter_paths(spec["not"])
    return out


def filter_fields(spec: Any) -> set[str]:
    """Top-level field keys a filter reads."""
    return {path.split(".")[0] for path in filter_paths(spec)}


def _check_path_visible(ctx: EngineContext, rt: FormRuntime, path: str) -> None:
    """Refuse reading, filtering or sorting on a field hidden from the actor, at
    any step of a relation path (``account.credit_limit`` when credit_limit is
    hidden)."""
    if not path_visible(ctx, rt, path):
        raise PermissionDenied(Msg("field_hidden_read", field=path), details={"field": path})


def path_visible(ctx: EngineContext, rt: FormRuntime, path: str) -> bool:
    """Whether no step of the field path (``account.industry``) is hidden from
    the actor (an unknown step is for the query compiler to report)."""
    current: FormRuntime | None = rt
    for step in path.split("."):
        if current is None:
            return True
        hidden, _ = _hidden_and_readonly(ctx, current)
        if step in hidden:
            return False
        f = current.form.field(step)
        current = (_target_runtime(ctx, current, f.target)
                   if isinstance(f, fm.RelationField) else None)
    return True


def viewer_tables(ctx: EngineContext, rt: FormRuntime) -> FormTables:
    """The form's tables as the actor's queries see them: without the fields
    hidden from the actor — an unknown-field message lists only what they may
    see, the default sort skips hidden fields, and the search does not look
    in them (finding a record by a hidden value would give the value away)."""
    hidden, _ = _hidden_and_readonly(ctx, rt)
    if not hidden:
        return rt.tables
    form = rt.form.model_copy(update={
        "fields": [f for f in rt.form.fields if f.key not in hidden],
        "default_sort": [s for s in rt.form.default_sort if s.lstrip("-") not in hidden],
        "search_fields": [k for k in rt.form.search_fields if k not in hidden],
        "title_field": None if rt.form.title_field in hidden else rt.form.title_field})
    return dataclasses.replace(rt.tables, form=form)


def list_records(ctx: EngineContext, *, app: str, form: str, query: ListQuery
                 ) -> dict[str, Any]:
    """One page of records the actor may see; ``next_cursor`` for the next page.
    Naming a hidden field (to read, filter or sort) is refused (403)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "restore" if query.deleted else "read")
    named = filter_paths(query.filter) | {s.lstrip("-") for s in query.sort}
    if isinstance(query.fields, list):
        named |= {k for k in query.fields if isinstance(k, str)}
    for path in sorted(named):
        _check_path_visible(ctx, rt, path)
    qctx = query_context(ctx, app)
    tables = viewer_tables(ctx, rt)
    scope = ctx.policy.row_predicate(ctx.actor, app, form, rt.table, "read")
    stmt, cursor_of = build_select(query, tables=tables, qctx=qctx, scope=scope)
    actions = RecordActions.for_form(ctx, rt)
    # What the lock reads, whatever ``fields`` asks (and hidden or not): each
    # record says whether it is locked, and its _actions follow.
    lock_when = rt.validator.lock_when
    lock_columns = [rt.table.c[k] for k in sorted(lock_when.referenced_fields.get("record", ()))
                    if k in rt.table.c and k not in stmt.selected_columns] if lock_when else []
    rows = list(ctx.session.execute(
        stmt.add_columns(*lock_columns, *actions.columns())).mappings())
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    actions.read_rows(rows)
    records = [_row_to_values(rt, r) for r in rows]
    nested = [k for k, c in rt.fields.items() if c.kind.storage != "column"
              and (query.fields is None or k in query.fields)]
    if nested and records:
        children = _load_children(ctx, rt, [r["id"] for r in records], nested)
        for rec in records:
            rec.update(children[rec["id"]])
    result: dict[str, Any] = {
        "items": to_json(ctx, rt, records, fields=query.fields, actions=actions),
        "next_cursor": cursor_of(rows[-1]) if has_more and rows else None,
    }
    if query.include_total:
        result["total"] = ctx.session.execute(
            build_count(query, tables=tables, qctx=qctx, scope=scope)).scalar_one()
    return result


def record_history(ctx: EngineContext, *, app: str, form: str, record_id: Any
                   ) -> list[dict[str, Any]]:
    """Audit entries of one record, newest first, without hidden fields."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    rid = parse_id(record_id)
    rec = fetch_record(ctx, rt, rid, deleted=None)
    ctx.policy.check_row(ctx.actor, app, form, rec, "read")
    hidden, _ = _hidden_and_readonly(ctx, rt)
    a = audit_log_table
    rows = ctx.session.execute(
        sa.select(a, users_table.c.display_name)
        .outerjoin(users_table, users_table.c.id == a.c.actor_id)
        .where(a.c.app == app, a.c.form == form, a.c.record_id == rid)
        .order_by(a.c.at.desc(), a.c.id.desc())).mappings()
    entries = [{"id": str(r["id"]), "action": r["action"], "at": iso_utc(r["at"]),
                "actor_id": _str(r["actor_id"]), "actor_name": r["display_name"],
                "source": r["source"], "form_version": r["form_version"],
                "changes": {k: v for k, v in (r["changes"] or {}).items() if k not in hidden}}
               for r in rows]
    creator = rec.get("created_by")
    creator_name = (_display(ctx, rt, [{"owner": creator}]).get(("user", creator))
                    if creator else None)
    entries.append({"id": None, "action": "create", "at": iso_utc(rec["created_at"]),
                    "actor_id": _str(creator), "actor_name": creator_name,
                    "source": None, "form_version": None, "changes": {}})
    return entries


# --------------------------------------------------------------------------- bulk

def bulk_create(ctx: EngineContext, *, app: str, form: str, rows: Sequence[Mapping[str, Any]],
                source: str = "api", allow_read_only: bool = False,
                keep_numbers: bool = False) -> list[dict[str, Any]]:
    """Create many records in one transaction: all or nothing. Every row is
    validated; errors carry the row index (``rows[3].phone``). With
    ``keep_numbers`` (a package's exported records) an autonumber a row gives
    is kept and its period's counter moves past it (see :func:`keep_number`)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "create")
    if len(rows) > 5000:
        raise ValidationFailed([ErrorItem(code="max_rows", field="rows",
                                          message="at most 5000 rows per bulk request")])
    prepared_rows = _prepare_bulk(ctx, rt, rows, allow_read_only=allow_read_only)
    return _insert_many(ctx, rt, prepared_rows, source=source, keep_numbers=keep_numbers)


def _prepare_bulk(ctx: EngineContext, rt: FormRuntime, rows: Sequence[Mapping[str, Any]], *,
                  allow_read_only: bool) -> list[Prepared]:
    _check_writable_fields(ctx, rt, {k for data in rows if isinstance(data, Mapping)
                                     for k in data})
    prepared_rows, row_errors = check_new_rows(ctx, rt, rows, allow_read_only=allow_read_only)
    errors = [_prefixed(e, i) for i, errs in sorted(row_errors.items()) for e in errs]
    if errors:
        raise ValidationFailed(errors, message=f"{len(errors)} error(s) in "
                               f"{len(row_errors)} row(s); nothing was saved")
    return [p for p in prepared_rows if p is not None]


def check_new_rows(ctx: EngineContext, rt: FormRuntime, rows: Sequence[Mapping[str, Any]], *,
                   allow_read_only: bool = False, known_free: Iterable[str] = ()
                   ) -> tuple[list[Prepared | None], dict[int, list[ErrorItem]]]:
    """Validate rows to create, each on its own: ``(prepared, errors by row index)``.

    Every rule of :func:`create_record` applies — linked records exist (in the
    actor's read scope), unique values are free in the table and among the
    rows — with one query per kind for all rows. A row with errors has
    ``None`` in ``prepared``; its errors carry plain field paths (``phone``).
    Nothing is written (imports write the good rows with :func:`insert_rows`).
    ``known_free`` names unique fields the caller has just looked up (an
    import's duplicate rule): their values are not looked up again.

    >>> prepared, errors = check_new_rows(ctx, rt, [{"name": "a"}, {"phone": "x"}])
    >>> sorted(errors)
    [1]
    """
    errors: dict[int, list[ErrorItem]] = defaultdict(list)
    prepared_rows: list[Prepared | None] = []
    merged = Outcome(values={}, errors=[])
    seen_unique: dict[str, dict[Any, int]] = defaultdict(dict)
    unique_keys = [f.key for f in rt.form.fields if f.unique
                   and rt.fields[f.key].kind.storage == "column"]
    user, eval_context = ctx.actor.as_variables(), _eval_context(ctx)
    filled_rows = fill_linked(ctx, rt, [(data, None) for data in rows])
    for i, (given, data) in enumerate(zip(rows, filled_rows, strict=True)):
        prepared, outcome = _prepare(ctx, rt, data, old=None, allow_read_only=allow_read_only,
                                     user=user, eval_context=eval_context, fill=False,
                                     given=given)
        if outcome.errors:
            errors[i].extend(outcome.errors)
            prepared_rows.append(None)
            continue
        prepared_rows.append(prepared)
        for ref, by_id in outcome.references.items():
            bucket = merged.references.setdefault(ref, {})
            for ident, paths in by_id.items():
                bucket.setdefault(ident, []).extend(f"rows[{i}].{p}" for p in paths)
        for key in unique_keys:
            value = prepared.values.get(key)
            if value is None:
                continue
            if value in seen_unique[key]:
                errors[i].append(_field_error(ctx, rt, key, "unique",
                                              value=rt.fields[key].to_json(value)))
            else:
                seen_unique[key][value] = i
    ref_errors: list[ErrorItem] = []
    _check_references(ctx, rt, merged, ref_errors)
    for e in ref_errors:
        match = re.match(r"rows\[(\d+)\]\.(.*)", e.field or "")
        assert match is not None
        e.field = match.group(2)
        errors[int(match.group(1))].append(e)
    t = rt.table
    skip = set(known_free)
    for key in unique_keys:
        if key in skip:
            continue
        values = list(seen_unique[key])
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            for r in ctx.session.execute(sa.select(t.c[key]).where(
                    t.c[key].in_(chunk), t.c.deleted_at.is_(None))):
                errors[seen_unique[key][r[0]]].append(_field_error(
                    ctx, rt, key, "unique", value=rt.fields[key].to_json(r[0])))
    for i in errors:
        prepared_rows[i] = None
    return prepared_rows, dict(errors)


def insert_rows(ctx: EngineContext, rt: FormRuntime, prepared_rows: list[Prepared], *,
                source: str) -> list[uuid.UUID]:
    """Insert rows checked by :func:`check_new_rows` (events, rollups and data
    version as :func:`bulk_create`); returns their ids in order."""
    return [uuid.UUID(r["id"]) for r in _insert_many(ctx, rt, prepared_rows, source=source)]


def check_changes(ctx: EngineContext, rt: FormRuntime, old: Mapping[str, Any],
                  changes: Mapping[str, Any]) -> list[ErrorItem]:
    """Every error :func:`update_record` would raise for ``changes`` to the
    record ``old`` (a value dict as :func:`find_records` returns), without writing."""
    prepared, outcome = _prepare(ctx, rt, changes, old=dict(old), allow_read_only=False)
    errors = list(outcome.errors)
    if not errors:
        _check_references(ctx, rt, outcome, errors)
        _check_unique(ctx, rt, prepared.values, old["id"], errors)
    changed = [k for k, v in prepared.values.items() if old.get(k) != v]
    try:  # as the import's run will (a preview must not promise what it refuses)
        lock_when = rt.validator.lock_when
        if changed and lock_when is not None:
            stored = old if lock_when.referenced_fields.get("record", set()) <= old.keys() \
                else find_records(ctx, rt, "id", [old["id"]])[0]
            _check_lock(ctx, rt, stored, changed, "import")
    except RecordLocked as exc:
        errors.append(ErrorItem(code=exc.code, message=exc.message, details=exc.details))
    return errors


def apply_changes(ctx: EngineContext, rt: FormRuntime, record_id: uuid.UUID,
                  changes: Mapping[str, Any], *, source: str) -> None:
    """Update one record as :func:`update_record` does (row scope, validation,
    audit, events), without reading it back as JSON. Raises like it."""
    _update(ctx, rt, record_id, changes, expected_version=None, source=source,
            allow_read_only=False, depth=0)


def find_records(ctx: EngineContext, rt: FormRuntime, key: str, values: Iterable[Any], *,
                 columns: Sequence[str] | None = None, scope: FormAction | None = None
                 ) -> list[dict[str, Any]]:
    """Live records whose column ``key`` is one of ``values`` (any scope, or
    the actor's ``scope`` for that action), as value dicts with system fields
    — or only ``id`` and ``columns`` when given; one query per 500 values."""
    t = rt.table
    wanted = list(dict.fromkeys(values))
    selected: Any = [t] if columns is None else [t.c.id, *(t.c[c] for c in columns)]
    predicate = (ctx.policy.row_predicate(ctx.actor, rt.app, rt.key, t, scope)
                 if scope is not None else None)
    out: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        stmt = sa.select(*selected).where(t.c[key].in_(chunk), t.c.deleted_at.is_(None))
        rows = ctx.session.execute(stmt if predicate is None else stmt.where(predicate))
        out.extend(_row_to_values(rt, r) for r in rows.mappings())
    return out


def _prefixed(e: ErrorItem, i: int) -> ErrorItem:
    return ErrorItem(code=e.code, message=e.message,
                     field=f"rows[{i}].{e.field}" if e.field else f"rows[{i}]",
                     details={**e.details, "row": i})


_BATCH_COLUMNS = ("created_at", "created_by", "updated_at", "updated_by", "version")


def _bulk_insert(ctx: EngineContext, rt: FormRuntime) -> BulkInsert:
    """The compiled bulk INSERT of ``rt``'s table for the session's dialect
    (built once per form version and database)."""
    dialect = ctx.session.get_bind().dialect
    cached = rt.bulk_inserts.get(dialect.name)
    if cached is None:
        cached = rt.bulk_inserts[dialect.name] = BulkInsert(
            rt.table, ["id", "owner", *_BATCH_COLUMNS, *rt.column_keys], dialect,
            batch=_BATCH_COLUMNS, convert=rt.db_converters)
    return cached


def _insert_many(ctx: EngineContext, rt: FormRuntime, prepared_rows: list[Prepared], *,
                 source: str, keep_numbers: bool = False) -> list[dict[str, Any]]:
    now = ctx.now()
    auto = [f for f in rt.form.fields if isinstance(f, fm.AutonumberField)]
    numbers: dict[str, dict[int, str]] = {}
    for f in auto:
        kept = {i: p.values[f.key] for i, p in enumerate(prepared_rows)
                if keep_numbers and p.values.get(f.key)}
        for number in kept.values():  # before numbering the others: no duplicates
            keep_number(ctx, rt, f, str(number))
        missing = [i for i in range(len(prepared_rows)) if i not in kept]
        numbers[f.key] = dict(zip(missing, autonumbers(ctx, rt, f, count=len(missing))
                                  if missing else [], strict=True))
    has_form_rollups = any(isinstance(f, fm.RollupField) and f.source.form
                           for f in rt.form.fields)
    actor_id = ctx.actor.id
    batch = {"created_at": now, "created_by": actor_id, "updated_at": now,
             "updated_by": actor_id, "version": 1}
    empty = dict.fromkeys(rt.column_keys)  # every field present, as in single creates
    records: list[dict[str, Any]] = []
    for i, (prepared, record_id) in enumerate(zip(prepared_rows, new_ids(len(prepared_rows)),
                                                  strict=True)):
        for key, nums in numbers.items():
            if i in nums:
                prepared.values[key] = nums[i]
        if has_form_rollups:
            _empty_rollups(rt, prepared)
        rec: dict[str, Any] = {**empty, "id": record_id, "owner": actor_id, **batch,
                               **prepared.values}
        if prepared.sub_rows or prepared.multi:
            rec.update(prepared.sub_rows)
            rec.update(prepared.multi)
        records.append(rec)
    _bulk_insert(ctx, rt).execute(ctx.session.connection(), batch, records)
    has_files = any(_file_fields(rt))
    for rec, prepared in zip(records, prepared_rows, strict=True):
        if prepared.sub_rows or prepared.multi:
            _write_children(ctx, rt, rec["id"], prepared, replace=False)
        if has_files:
            _sync_file_links(ctx, rt, rec["id"], rec, rec.keys())
    events.emit_bulk(ctx, app=rt.app, form=rt.key, event="created", source=source,
                     record_ids=[rec["id"] for rec in records], items=lambda: [
        (rec["id"], [k for k, v in prepared.values.items() if v is not None]
         + [k for k in (*prepared.sub_rows, *prepared.multi) if rec.get(k)],
         LazyRecordJson(rt, rec), None)
        for rec, prepared in zip(records, prepared_rows, strict=True)])
    _refresh_parents(ctx, rt, records, depth=0)
    bump_data_version(ctx, rt)
    return [{"id": str(rec["id"]), "version": 1} for rec in records]


def bulk_update(ctx: EngineContext, *, app: str, form: str, items: Sequence[Mapping[str, Any]],
                source: str = "api") -> list[dict[str, Any]]:
    """Update many records (each ``{"id", "version", "changes"}``), all or nothing."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "update")
    errors: list[ErrorItem] = []
    results: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            changes = item.get("changes") or {}
            _check_writable_fields(ctx, rt, changes.keys())
            results.append(_update(ctx, rt, parse_id(item.get("id")), changes,
                                   expected_version=item.get("version"), source=source,
                                   allow_read_only=False, depth=0))
        except ValidationFailed as exc:
            errors.extend(_prefixed(e, i) for e in exc.errors)
        except (NotFound, Conflict) as exc:
            errors.append(ErrorItem(code=exc.code, message=exc.message, field=f"rows[{i}]",
                                    details={"row": i}))
    if errors:
        # The caller's transaction is rolled back by the raise: all or nothing.
        raise ValidationFailed(errors, message=f"{len(errors)} error(s); nothing was saved")
    return to_json(ctx, rt, results)


def recompute_formulas(ctx: EngineContext, rt: FormRuntime, *, batch: int | None = None,
                       changed: set[str] | None = None) -> int:
    """Recompute the stored computed values of every live record — record
    formulas, sub-table rollups and the rows' formula columns, in the
    validator's dependency order — after such a field was added or changed
    (publish). Reads ``batch`` records (and their rows) at a time, writes back
    only the records and rows whose values changed, and returns how many
    records changed (their own values or rows). Values only: no history entry,
    event or new record version (a recomputation, not an edit); the form's data
    version moves when anything changed, so cached reports refresh. The keys
    of the record-level values that changed are added to ``changed``."""
    formulas = rt.validator.stored_computed
    row_formulas = {key: [k for k in plan.formulas
                          if plan.fields[k].compiled.kind.storage == "column"]
                    for key, plan in rt.validator.sub_tables.items()}
    row_formulas = {key: keys for key, keys in row_formulas.items() if keys}
    if not formulas and not row_formulas:
        return 0
    size = batch or BACKFILL_BATCH
    t = rt.table
    eval_ctx = _eval_context(ctx)
    user = ctx.actor.as_variables()
    updated = 0
    last: uuid.UUID | None = None
    while True:
        stmt = sa.select(t).where(t.c.deleted_at.is_(None)).order_by(t.c.id).limit(size)
        if last is not None:
            stmt = stmt.where(t.c.id > last)
        rows = list(ctx.session.execute(stmt).mappings())
        if not rows:
            break
        records = [_row_to_values(rt, r) for r in rows]
        children = _load_children(ctx, rt, [r["id"] for r in records])
        params = []
        row_params: dict[str, list[dict[str, Any]]] = {key: [] for key in row_formulas}
        for rec in records:
            rec_id = rec["id"]
            rec.update(children[rec_id])
            outcome = rt.validator.validate({}, old=rec, user=user, eval_context=eval_ctx,
                                            language=ctx.language, recompute=True)
            fresh = {k: outcome.values.get(k, rec.get(k)) for k in formulas}
            moved = {k for k in formulas if fresh[k] != rec.get(k)}
            if changed is not None:
                changed |= moved
            any_changed = bool(moved)
            if any_changed:
                params.append({"_id": rec_id, **_column_params(rt, fresh)})
            for key, keys in row_formulas.items():
                any_changed |= _changed_row_formulas(rt, key, keys, rec.get(key) or [],
                                                     outcome.sub_rows.get(key) or [],
                                                     row_params[key])
            updated += any_changed
        if params:
            ctx.session.execute(
                t.update().where(t.c.id == sa.bindparam("_id")),
                params)
        for key, changes in row_params.items():
            if changes:
                table = rt.tables.children[key]
                ctx.session.execute(table.update().where(table.c.id == sa.bindparam("_id")),
                                    changes)
        last = rows[-1]["id"]
    if updated:
        bump_data_version(ctx, rt)
    return updated


def _changed_row_formulas(rt: FormRuntime, key: str, keys: list[str],
                          stored: list[dict[str, Any]], fresh: list[dict[str, Any]],
                          out: list[dict[str, Any]]) -> bool:
    """Append to ``out`` the update parameters (``_id`` and the formula
    columns ``keys``) of each row of sub-table ``key`` whose recomputed
    formula values differ from the stored ones; True if any did."""
    plans = rt.validator.sub_tables[key].fields
    before = {row["id"]: row for row in stored}
    found = False
    for row in fresh:
        old = before.get(row.get("id"))
        if old is None or all(row.get(k) == old.get(k) for k in keys):
            continue
        out.append({"_id": old["id"],
                    **{k: plans[k].compiled.kind.to_db(row.get(k)) for k in keys}})
        found = True
    return found


def backfill_autonumbers(ctx: EngineContext, rt: FormRuntime, field_keys: Iterable[str]) -> int:
    """Number existing records for newly added autonumber fields, in creation
    order, with the period of each record's creation date."""
    t = rt.table
    count = 0
    for key in field_keys:
        f = rt.form.field(key)
        assert isinstance(f, fm.AutonumberField)
        rows = ctx.session.execute(sa.select(t.c.id, t.c.created_at)
                                   .where(t.c[key].is_(None)).order_by(t.c.id)).all()
        params = [{"_id": r.id, key: autonumbers(ctx, rt, f, at=r.created_at)[0]} for r in rows]
        if params:
            ctx.session.execute(t.update().where(t.c.id == sa.bindparam("_id")), params)
        count += len(params)
    return count
