"""Compile a form definition into SQLAlchemy tables.

A form gets one table (``r_<app>__<form>``) with typed columns and the system
columns; each sub-table field a child table; each multi-relation field a join
table. Names come only from validated keys (and a hash suffix when long), and
SQLAlchemy quotes them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tangram.db.types import GUID, UTCDateTime
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.metamodel import fields as fm
from tangram.metamodel.common import check_key
from tangram.metamodel.forms import Form

MAX_IDENTIFIER = 55  # PostgreSQL allows 63; keep room for index prefixes


def bounded_name(*parts: str, prefix: str = "r_") -> str:
    for part in parts:
        check_key(part)
    name = prefix + "__".join(parts)
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def system_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", GUID, primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", GUID, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", GUID, nullable=True),
        sa.Column("owner", GUID, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
    ]


def field_column(f: fm.FieldBase) -> sa.Column[Any] | None:
    kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
    col_type = kind.column_type(f)
    if col_type is None:
        return None
    return sa.Column(f.key, col_type, nullable=True)


def field_indexes(table_name: str, f: fm.FieldBase, *, soft_delete: bool = True
                  ) -> list[sa.Index]:
    """Indexes a field needs, unattached (name, columns and options)."""
    kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
    if kind.storage != "column":
        return []
    out = []
    where = sa.text("deleted_at IS NULL") if soft_delete else None
    if f.unique and kind.supports_unique:
        # Unique among live records: a record in the recycle bin does not block
        # its value (restoring it re-checks uniqueness).
        kwargs: dict[str, Any] = {"unique": True}
        if where is not None:
            kwargs.update(sqlite_where=where, postgresql_where=where)
        out.append(sa.Index(index_name(table_name, f.key, "uq"), f.key, **kwargs))
    elif f.indexed or f.type in ("relation", "user", "department", "autonumber"):
        out.append(sa.Index(index_name(table_name, f.key, "ix"), f.key))
    return out


def index_name(table_name: str, column: str, kind: str) -> str:
    """The index's name: unique in the database (index names are global),
    readable, at most 63 characters. ``kind_table_column`` alone is not
    unique — keys may hold underscores, so (payment, plan_contract) and
    (payment_plan, contract) would share one — hence a digest of the pair."""
    digest = hashlib.sha1(f"{table_name}.{column}".encode(),
                          usedforsecurity=False).hexdigest()
    name = f"{kind}_{table_name}_{column}_{digest[:8]}"
    if len(name) <= 63:
        return name
    return f"{kind}_{digest[:16]}_{column[:40]}"


def legacy_index_name(table_name: str, column: str, kind: str) -> str:
    """The name indexes were given before :func:`index_name` added its digest
    (databases made then still have them; schema changes drop either)."""
    name = f"{kind}_{table_name}_{column}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"{kind}_{digest}_{column[:30]}"


@dataclass
class FormTables:
    """The tables of one form version."""

    app: str
    form: Form
    table: sa.Table
    children: dict[str, sa.Table] = field(default_factory=dict)  # sub-table key -> table
    joins: dict[str, sa.Table] = field(default_factory=dict)  # multi-relation key -> table

    def all_tables(self) -> list[sa.Table]:
        return [self.table, *self.children.values(), *self.joins.values()]


def child_table_name(table_name: str, field_key: str) -> str:
    name = f"{table_name}__{field_key}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def build_child_table(md: sa.MetaData, table_name: str, sub: fm.SubTableField) -> sa.Table:
    name = child_table_name(table_name, sub.key)
    cols: list[Any] = [
        sa.Column("id", GUID, primary_key=True),
        sa.Column("parent_id", GUID, nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
    ]
    for f in sub.fields:
        col = field_column(f)
        if col is not None:
            cols.append(col)
    for f in sub.fields:
        cols.extend(field_indexes(name, f, soft_delete=False))
    return sa.Table(name, md, *cols)


def build_join_table(md: sa.MetaData, table_name: str, f: fm.MultiRelationField) -> sa.Table:
    name = child_table_name(table_name, f.key)
    return sa.Table(
        name, md,
        sa.Column("source_id", GUID, primary_key=True),
        sa.Column("target_id", GUID, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Index(index_name(name, "target_id", "ix"), "target_id"),
    )


def build_tables(app: str, form: Form, *, table_name: str | None = None,
                 metadata: sa.MetaData | None = None) -> FormTables:
    """Tables for ``form`` (not created; see the evolution module)."""
    md = metadata if metadata is not None else sa.MetaData()
    name = table_name or bounded_name(app, form.key)
    cols: list[Any] = system_columns()
    for f in form.fields:
        col = field_column(f)
        if col is not None:
            cols.append(col)
    # (owner, id): an "own records" list pages by id within one owner's rows
    # straight from the index instead of filtering a walk of the whole table.
    cols.append(sa.Index(index_name(name, "owner", "ix"), "owner", "id"))
    cols.append(sa.Index(index_name(name, "deleted_at", "ix"), "deleted_at"))
    for f in form.fields:
        cols.extend(field_indexes(name, f))
    table = sa.Table(name, md, *cols)
    result = FormTables(app=app, form=form, table=table)
    for f in form.fields:
        if isinstance(f, fm.SubTableField):
            result.children[f.key] = build_child_table(md, name, f)
        elif isinstance(f, fm.MultiRelationField):
            result.joins[f.key] = build_join_table(md, name, f)
    return result
