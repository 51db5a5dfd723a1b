"""Versioned storage of definitions.

A definition (form, flow, report, …) has one editable *draft* and a list of
immutable numbered *versions*. Publishing copies a validated body into a new
version with who, when and the diff from the previous one. Engines decide
what publishing means for them (the form engine evolves a table first) and
then call :func:`record_version` inside the same transaction.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from tangram.db import metadata, new_id
from tangram.db.types import GUID, JSONValue, UTCDateTime
from tangram.errors import Conflict, DefinitionInvalid, ErrorItem, NotFound
from tangram.metamodel.common import SHAPE_TAGS, json_path, model_schema
from tangram.metamodel.fields import AnyField
from tangram.metamodel.forms import App, Form

apps_table = sa.Table(
    "apps", metadata,
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("body", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", GUID, nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

definitions_table = sa.Table(
    "definitions", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("app", sa.String(63), sa.ForeignKey("apps.key", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("key", sa.String(63), nullable=False),
    sa.Column("draft", JSONValue, nullable=True),
    sa.Column("draft_updated_at", UTCDateTime(), nullable=True),
    sa.Column("draft_updated_by", GUID, nullable=True),
    sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("app", "kind", "key", name="uq_definitions_app_kind_key"),
)

definition_versions_table = sa.Table(
    "definition_versions", metadata,
    sa.Column("id", GUID, primary_key=True),
    sa.Column("definition_id", GUID, sa.ForeignKey("definitions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", JSONValue, nullable=False),
    sa.Column("diff", JSONValue, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("published_at", UTCDateTime(), nullable=False),
    sa.Column("published_by", GUID, nullable=True),
    sa.UniqueConstraint("definition_id", "version", name="uq_definition_versions_version"),
)

# kind -> pydantic model. Engines of later layers register their kinds here
# (flows, reports, dashboards) through register_kind().
DEFINITION_KINDS: dict[str, type[BaseModel]] = {"form": Form}
# name -> model or type published at GET /api/meta/schemas/{name}
SCHEMAS: dict[str, Any] = {"app": App, "form": Form, "field": AnyField}


def register_kind(kind: str, model: type[BaseModel]) -> None:
    DEFINITION_KINDS[kind] = model
    SCHEMAS[kind] = model


def json_schema(name: str) -> dict[str, Any]:
    if name not in SCHEMAS:
        raise NotFound(f"no schema named {name!r}; available: {', '.join(sorted(SCHEMAS))}")
    target = SCHEMAS[name]
    schema = (model_schema(target) if isinstance(target, type)
              and issubclass(target, BaseModel) else TypeAdapter(target).json_schema(by_alias=True))
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    schema.setdefault("$id", f"tangram:{name}")
    return schema


def errors_from_pydantic(exc: ValidationError, *, prefix: str = "",
                         body: Any = None) -> list[ErrorItem]:
    """Turn every pydantic error into an ErrorItem with a JSON path (``body``,
    the JSON that was validated, lets the path follow it exactly)."""
    items = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        items.append(ErrorItem(code=err["type"], message=msg,
                               path=prefix + json_path(_written_loc(err["loc"], body))))
    return items


def _written_loc(loc: tuple[Any, ...], body: Any) -> tuple[Any, ...]:
    """pydantic's location less the union tags it adds (a discriminated union
    adds the tag — a field type "text", a node type "start", a trigger kind —
    after the value's place), so the path points at what the author wrote."""
    out: list[Any] = []
    node = body
    for i, part in enumerate(loc):
        if part in SHAPE_TAGS:
            continue
        if isinstance(part, str) and isinstance(node, dict) and part not in node \
                and part in node.values() and (i < len(loc) - 1 or part in (
                    node.get("type"), node.get("kind"))):
            # The discriminator's value, not a key of the object (last, when a
            # check of the whole object failed: the path is the object's).
            continue
        if isinstance(node, dict) and part in (node.get("type"), node.get("kind")) \
                and loc[i + 1:i + 2] == (part,):
            continue  # a tag that is also the name of the object's key: node "action"
        if i > 0 and isinstance(loc[i - 1], int) and isinstance(part, str) \
                and part != "key" and _is_union_tag(part):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _is_union_tag(part: str) -> bool:
    from tangram.metamodel.fields import FIELD_MODELS

    return part in FIELD_MODELS or part.startswith("function-")


def parse_definition(kind: str, body: Any, *, prefix: str = "") -> BaseModel:
    """Validate ``body`` as a definition of ``kind``; every error at once."""
    model = DEFINITION_KINDS.get(kind)
    if model is None:
        raise NotFound(f"unknown definition kind {kind!r}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise DefinitionInvalid(f"the {kind} definition is not valid",
                                errors=errors_from_pydantic(exc, prefix=prefix,
                                                            body=body)) from exc


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class DefinitionRow:
    id: uuid.UUID
    app: str
    kind: str
    key: str
    draft: dict[str, Any] | None
    latest_version: int


# --- apps ------------------------------------------------------------------

def create_app(session: Session, *, app: App, user_id: uuid.UUID | None, now: datetime) -> App:
    if session.execute(sa.select(apps_table.c.key).where(apps_table.c.key == app.key)).first():
        raise Conflict(f"an app with key {app.key!r} already exists")
    session.execute(apps_table.insert().values(key=app.key, body=dump(app), created_at=now,
                                               created_by=user_id, updated_at=now))
    return app


def update_app(session: Session, *, app: App, now: datetime) -> App:
    result = session.execute(apps_table.update().where(apps_table.c.key == app.key)
                             .values(body=dump(app), updated_at=now))
    if cast(sa.CursorResult[Any], result).rowcount == 0:
        raise NotFound(f"app {app.key!r} does not exist")
    return app


def get_app(session: Session, key: str) -> App:
    row = session.execute(sa.select(apps_table.c.body).where(apps_table.c.key == key)).first()
    if row is None:
        raise NotFound(f"app {key!r} does not exist")
    return App.model_validate(row.body)


def list_apps(session: Session) -> list[App]:
    rows = session.execute(sa.select(apps_table.c.body).order_by(apps_table.c.key)).all()
    return [App.model_validate(r.body) for r in rows]


# --- drafts and versions ------------------------------------------------------

def _row(r: Any) -> DefinitionRow:
    return DefinitionRow(id=r.id, app=r.app, kind=r.kind, key=r.key, draft=r.draft,
                         latest_version=r.latest_version)


def find_definition(session: Session, *, app: str, kind: str, key: str,
                    lock: bool = False) -> DefinitionRow | None:
    t = definitions_table
    stmt = sa.select(t).where(t.c.app == app, t.c.kind == kind, t.c.key == key)
    if lock:
        stmt = stmt.with_for_update()
    r = session.execute(stmt).first()
    return _row(r) if r else None


def get_definition(session: Session, *, app: str, kind: str, key: str,
                   lock: bool = False) -> DefinitionRow:
    row = find_definition(session, app=app, kind=kind, key=key, lock=lock)
    if row is None:
        raise NotFound(f"{kind} {key!r} does not exist in app {app!r}")
    return row


def list_definitions(session: Session, *, app: str, kind: str) -> list[DefinitionRow]:
    t = definitions_table
    rows = session.execute(sa.select(t).where(t.c.app == app, t.c.kind == kind)
                           .order_by(t.c.key)).all()
    return [_row(r) for r in rows]


def _assign_field_ids(body: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """Give every field a stable id: keep the id a field already had (matched
    by id, else by key in the previous body), else mint a new one."""
    prev_ids: dict[tuple[str, ...], str] = {}

    def collect(fields: list[dict[str, Any]], scope: tuple[str, ...]) -> None:
        for f in fields:
            if f.get("id"):
                prev_ids[scope + (f["key"],)] = f["id"]
            if isinstance(f.get("fields"), list):
                collect(f["fields"], scope + (f["key"],))

    def assign(fields: list[dict[str, Any]], scope: tuple[str, ...]) -> None:
        for f in fields:
            if not isinstance(f, dict) or "key" not in f:
                continue
            if not f.get("id"):
                f["id"] = prev_ids.get(scope + (f["key"],)) or "f" + secrets.token_hex(6)
            if isinstance(f.get("fields"), list):
                assign(f["fields"], scope + (f["key"],))

    if previous and isinstance(previous.get("fields"), list):
        collect(previous["fields"], ())
    if isinstance(body.get("fields"), list):
        assign(body["fields"], ())


def save_draft(session: Session, *, app: str, kind: str, key: str, body: dict[str, Any],
               user_id: uuid.UUID | None, now: datetime,
               check: Callable[[BaseModel], None] | None = None) -> DefinitionRow:
    """Validate and store the draft of a definition (creating the definition)."""
    get_app(session, app)
    if body.get("key", key) != key:
        raise DefinitionInvalid("the body's key does not match the URL", errors=[ErrorItem(
            code="key_mismatch", path="$.key",
            message=f"key is {body.get('key')!r} but the definition is {key!r}")])
    body = {**body, "key": key}
    existing = find_definition(session, app=app, kind=kind, key=key, lock=True)
    if kind == "form":
        previous = existing.draft if existing else None
        if existing and existing.latest_version:
            previous = {"fields": (existing.draft or {}).get("fields", []) + get_version(
                session, existing, existing.latest_version)["body"].get("fields", [])}
        _assign_field_ids(body, previous)
    model = parse_definition(kind, body)
    if check:
        check(model)
    stored = dump(model)
    t = definitions_table
    if existing is None:
        def_id = new_id()
        session.execute(t.insert().values(id=def_id, app=app, kind=kind, key=key, draft=stored,
                                          draft_updated_at=now, draft_updated_by=user_id,
                                          latest_version=0, created_at=now))
        return DefinitionRow(def_id, app, kind, key, stored, 0)
    session.execute(t.update().where(t.c.id == existing.id).values(
        draft=stored, draft_updated_at=now, draft_updated_by=user_id))
    return DefinitionRow(existing.id, app, kind, key, stored, existing.latest_version)


def get_version(session: Session, definition: DefinitionRow, version: int) -> dict[str, Any]:
    v = definition_versions_table
    r = session.execute(sa.select(v).where(v.c.definition_id == definition.id,
                                           v.c.version == version)).first()
    if r is None:
        raise NotFound(f"{definition.kind} {definition.key!r} has no version {version}")
    return {"version": r.version, "body": r.body, "diff": r.diff, "note": r.note,
            "published_at": r.published_at, "published_by": r.published_by}


def list_versions(session: Session, definition: DefinitionRow) -> list[dict[str, Any]]:
    v = definition_versions_table
    rows = session.execute(sa.select(v.c.version, v.c.diff, v.c.note, v.c.published_at,
                                     v.c.published_by)
                           .where(v.c.definition_id == definition.id)
                           .order_by(v.c.version.desc())).all()
    return [dict(r._mapping) for r in rows]


def latest_body(session: Session, *, app: str, kind: str, key: str) -> dict[str, Any] | None:
    """Body of the newest published version, or None if never published."""
    d = find_definition(session, app=app, kind=kind, key=key)
    if d is None or d.latest_version == 0:
        return None
    return get_version(session, d, d.latest_version)["body"]


def record_version(session: Session, *, definition: DefinitionRow, body: dict[str, Any],
                   user_id: uuid.UUID | None, now: datetime, note: str | None = None) -> int:
    """Store ``body`` as the next immutable version. Call with the definition
    row locked (``get_definition(lock=True)``) so two publishes cannot take
    the same number."""
    previous = (get_version(session, definition, definition.latest_version)["body"]
                if definition.latest_version else {})
    number = definition.latest_version + 1
    session.execute(definition_versions_table.insert().values(
        id=new_id(), definition_id=definition.id, version=number, body=body,
        diff=json_diff(previous, body), note=note, published_at=now, published_by=user_id))
    session.execute(definitions_table.update().where(definitions_table.c.id == definition.id)
                    .values(latest_version=number))
    return number


def json_diff(old: Any, new: Any, path: str = "$") -> list[dict[str, Any]]:
    """A readable structural diff. Lists of objects with a ``key`` are matched
    by key (so reordering fields is one 'moved', not a wall of changes)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[dict[str, Any]] = []
        for k in sorted(set(old) | set(new)):
            if k not in new:
                out.append({"op": "remove", "path": f"{path}.{k}", "old": old[k]})
            elif k not in old:
                out.append({"op": "add", "path": f"{path}.{k}", "new": new[k]})
            else:
                out.extend(json_diff(old[k], new[k], f"{path}.{k}"))
        return out
    if (isinstance(old, list) and isinstance(new, list)
            and all(isinstance(x, dict) and "key" in x for x in old + new)):
        old_by = {x["key"]: x for x in old}
        new_by = {x["key"]: x for x in new}
        out = []
        for k in old_by:
            if k not in new_by:
                out.append({"op": "remove", "path": f"{path}[{k}]", "old": old_by[k]})
        for k, item in new_by.items():
            if k not in old_by:
                out.append({"op": "add", "path": f"{path}[{k}]", "new": item})
            else:
                out.extend(json_diff(old_by[k], item, f"{path}[{k}]"))
        if [k for k in old_by if k in new_by] != [k for k in new_by if k in old_by]:
            out.append({"op": "reorder", "path": path, "new": list(new_by)})
        return out
    if old != new:
        return [{"op": "change", "path": path, "old": old, "new": new}]
    return []
