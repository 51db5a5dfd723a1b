"""Compiled forms, cached per process.

A ``FormRuntime`` is everything the engine needs to serve one published form
version: tables, compiled validator, field kinds. Runtimes are cached keyed by
the database, form and the *id of the published version row*; every request
first reads that id (one indexed query), so a process notices a newer version
published by another process before it serves a stale one.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.forms.fieldtypes import CompiledField
from tangram.engines.forms.systables import form_tables_table
from tangram.engines.forms.tables import FormTables, build_tables
from tangram.engines.forms.validation import RecordValidator, compile_validator
from tangram.errors import NotFound
from tangram.metamodel import fields as fm
from tangram.metamodel.forms import Form
from tangram.metamodel.storage import definition_versions_table, definitions_table


@dataclass
class FormRuntime:
    app: str
    key: str
    version: int
    version_id: uuid.UUID
    form: Form
    tables: FormTables
    validator: RecordValidator
    fields: dict[str, CompiledField] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kinds = {k: c.kind for k, c in self.fields.items()}
        self.column_keys: tuple[str, ...] = tuple(
            k for k, kind in kinds.items() if kind.storage == "column")
        self.column_key_set = frozenset(self.column_keys)
        # Only kinds whose stored form differs from the Python value.
        from tangram.engines.forms.fieldtypes import FieldKind

        self.db_converters = {k: kinds[k].to_db for k in self.column_keys
                              if type(kinds[k]).to_db is not FieldKind.to_db}
        # Compiled bulk INSERTs by dialect name (tangram.engines.forms.records).
        self.bulk_inserts: dict[str, Any] = {}
        # What each computed field reads (tangram.engines.forms.derived), once.
        self.derived_sources: dict[str, list[tuple[str | None, str]]] | None = None

    @property
    def table(self) -> sa.Table:
        return self.tables.table

    @property
    def title_field(self) -> str | None:
        return self.form.effective_title_field

    def field(self, key: str) -> fm.FieldBase | None:
        return self.form.field(key)


_cache: dict[tuple[str, uuid.UUID], FormRuntime] = {}
_lock = threading.Lock()


def _db_key(session: Session) -> str:
    bind = session.get_bind()
    return str(bind.engine.url) if hasattr(bind, "engine") else str(bind)


def _build(app: str, key: str, version: int, version_id: uuid.UUID, body: dict[str, Any],
           table_name: str) -> FormRuntime:
    form = Form.model_validate(body)
    tables = build_tables(app, form, table_name=table_name)
    validator = compile_validator(form)
    compiled = {k: p.compiled for k, p in validator.fields.items()}
    return FormRuntime(app=app, key=key, version=version, version_id=version_id, form=form,
                       tables=tables, validator=validator, fields=compiled)


def _published_rows(session: Session, app: str, form: str | None) -> list[Any]:
    ft, d, v = form_tables_table, definitions_table, definition_versions_table
    stmt = (sa.select(ft.c.form, ft.c.version, ft.c.table_name, v.c.id.label("version_id"))
            .join(d, sa.and_(d.c.app == ft.c.app, d.c.kind == "form", d.c.key == ft.c.form))
            .join(v, sa.and_(v.c.definition_id == d.c.id, v.c.version == ft.c.version))
            .where(ft.c.app == app))
    if form is not None:
        stmt = stmt.where(ft.c.form == form)
    return list(session.execute(stmt).all())


def _runtime_for(session: Session, app: str, row: Any) -> FormRuntime:
    cache_key = (_db_key(session), row.version_id)
    runtime = _cache.get(cache_key)
    if runtime is not None:
        return runtime
    body = session.execute(sa.select(definition_versions_table.c.body)
                           .where(definition_versions_table.c.id == row.version_id)).scalar_one()
    runtime = _build(app, row.form, row.version, row.version_id, body, row.table_name)
    with _lock:
        _cache[cache_key] = runtime
    return runtime


def get_runtime(session: Session, app: str, form: str) -> FormRuntime:
    """The runtime of the newest published version of ``app.form``."""
    rows = _published_rows(session, app, form)
    if not rows:
        raise NotFound(f"form {form!r} of app {app!r} does not exist or is not published")
    return _runtime_for(session, app, rows[0])


_SESSION_KEY = "tangram.app_runtimes"


def app_runtimes(session: Session, app: str) -> dict[str, FormRuntime]:
    """Runtimes of every published form of ``app`` (for relations and rollups).

    Remembered for the rest of the session (one request or job), so a bulk
    write does not look them up per record; publishing forgets them."""
    per_session = session.info.setdefault(_SESSION_KEY, {})
    if app not in per_session:
        per_session[app] = {row.form: _runtime_for(session, app, row)
                            for row in _published_rows(session, app, None)}
    result: dict[str, FormRuntime] = per_session[app]
    return result


def forget_session_runtimes(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)


def runtime_at_version(session: Session, app: str, form: str, version: int) -> Form:
    """The definition of an older version (history views)."""
    d, v = definitions_table, definition_versions_table
    body = session.execute(
        sa.select(v.c.body).join(d, d.c.id == v.c.definition_id)
        .where(d.c.app == app, d.c.kind == "form", d.c.key == form, v.c.version == version)
    ).scalar_one_or_none()
    if body is None:
        raise NotFound(f"form {form!r} has no version {version}")
    return Form.model_validate(body)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
