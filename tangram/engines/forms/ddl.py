"""Small DDL/DML helpers for form-table evolution, on alembic ``Operations``.

Everything here runs on the caller's connection, inside the caller's
transaction: PostgreSQL DDL is transactional, and so is SQLite's once pysqlite
no longer manages transactions (our engine issues ``BEGIN IMMEDIATE`` itself).

The two dialect differences that matter are kept here:

- SQLite cannot alter or drop most columns in place: column replacement and
  drops go through alembic's batch mode (``recreate="auto"``), which copies
  the table on SQLite and emits plain ``ALTER TABLE`` on PostgreSQL.
- PostgreSQL keeps a renamed table's primary-key index under the old name
  (``<old>_pkey``); a new table with the old name would then collide, so the
  index is renamed along with the table.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import DDLCompiler

from tangram.db.types import GUID, ExactDecimal, UTCDateTime
from tangram.engines.forms.tables import index_name

BATCH_SIZE = 500

# Column signatures: a dialect-neutral string per physical column type, stored
# in the form layout so that evolution knows what exists without reflection
# (a scale change of an ExactDecimal is a data conversion on SQLite).
_SIGNATURES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "text": sa.Text,
    "bigint": sa.BigInteger,
    "integer": sa.Integer,
    "boolean": sa.Boolean,
    "date": sa.Date,
    "time": sa.Time,
    "datetime": UTCDateTime,
    "uuid": lambda: GUID,
    # none_as_null: a value cleared by evolution becomes SQL NULL, not JSON null
    "json": lambda: sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True),
                                                             "postgresql"),
}
_DECIMAL_SIG = re.compile(r"^decimal\((\d+),(\d+)\)$")


def column_sig(col_type: sa.types.TypeEngine[Any]) -> str:
    """``ExactDecimal(18, 2)`` → ``"decimal(18,2)"``, ``BigInteger()`` → ``"bigint"``."""
    if isinstance(col_type, ExactDecimal):
        return f"decimal({col_type.precision},{col_type.scale})"
    checks: list[tuple[type[Any], str]] = [
        (UTCDateTime, "datetime"), (sa.Uuid, "uuid"), (sa.JSON, "json"),
        (sa.BigInteger, "bigint"), (sa.Integer, "integer"), (sa.Boolean, "boolean"),
        (sa.DateTime, "datetime"), (sa.Date, "date"), (sa.Time, "time"), (sa.Text, "text"),
    ]
    for cls, sig in checks:
        if isinstance(col_type, cls):
            return sig
    if isinstance(col_type, sa.types.TypeDecorator):
        return column_sig(col_type.impl_instance)
    raise ValueError(f"no column signature for {col_type!r}")


def type_from_sig(sig: str) -> sa.types.TypeEngine[Any]:
    match = _DECIMAL_SIG.match(sig)
    if match:
        return ExactDecimal(int(match.group(1)), int(match.group(2)))
    return _SIGNATURES[sig]()


def decimal_sig(sig: str | None) -> tuple[int, int] | None:
    """``"decimal(18,2)"`` → ``(18, 2)``; anything else → None."""
    match = _DECIMAL_SIG.match(sig or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def operations(connection: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(connection))


# --- tables -----------------------------------------------------------------

def create_table(op: Operations, table: sa.Table) -> None:
    """The table and its indexes (alembic's create op leaves indexes out)."""
    op.invoke(ops.CreateTableOp.from_table(table))
    for index in table.indexes:
        op.invoke(ops.CreateIndexOp.from_index(index))


def create_indexes(op: Operations, indexes: Sequence[sa.Index]) -> None:
    for index in indexes:
        op.invoke(ops.CreateIndexOp.from_index(index))


def rename_table(op: Operations, connection: sa.Connection, old: str, new: str) -> None:
    """Rename a table after dropping its secondary indexes (index names are
    global and embed the table name; the caller recreates what it needs)."""
    inspector = sa.inspect(connection)
    for index in inspector.get_indexes(old):
        if index["name"]:
            op.drop_index(index["name"], table_name=old)
    pk_name = inspector.get_pk_constraint(old).get("name")
    op.rename_table(old, new)
    if connection.dialect.name == "postgresql" and pk_name:
        op.execute(RenameIndex(pk_name, f"{new}_pkey"[:63]))


def drop_table(op: Operations, name: str) -> None:
    op.drop_table(name)


class RenameIndex(sa.schema.ExecutableDDLElement):
    """``ALTER INDEX … RENAME TO …`` (PostgreSQL only; SQLite has no such statement)."""

    inherit_cache = False

    def __init__(self, old: str, new: str) -> None:
        self.old = old
        self.new = new


@compiles(RenameIndex, "postgresql")
def _rename_index_pg(element: RenameIndex, compiler: DDLCompiler, **kw: Any) -> str:
    quote = compiler.preparer.quote
    return f"ALTER INDEX {quote(element.old)} RENAME TO {quote(element.new)}"


# --- columns ----------------------------------------------------------------

def add_column(op: Operations, table: str, name: str, col_type: sa.types.TypeEngine[Any]
               ) -> None:
    op.add_column(table, sa.Column(name, col_type, nullable=True))


def rename_column(op: Operations, table: str, old: str, new: str) -> None:
    # SQLite has RENAME COLUMN since 3.25; alembic renders it without batch mode.
    op.alter_column(table, old, new_column_name=new)


def drop_column(op: Operations, table: str, name: str) -> None:
    with op.batch_alter_table(table, recreate="auto") as batch:
        batch.drop_column(name)


def replace_column(op: Operations, table: str, old: str, replacement: str) -> None:
    """Drop ``old`` and give ``replacement`` its name, in one table copy on SQLite."""
    with op.batch_alter_table(table, recreate="auto") as batch:
        batch.drop_column(old)
        batch.alter_column(replacement, new_column_name=old)


def field_index(table: str, key: str, *, unique: bool, indexed: bool, soft_delete: bool
                ) -> sa.Index | None:
    """The index of one field column, bound to a stub table so alembic can create it.

    Mirrors ``tables.field_indexes`` (a test keeps them equal), but is driven by
    the layout's flags, so the index that exists can be rebuilt without the old
    definition.
    """
    if not unique and not indexed:
        return None
    kwargs: dict[str, Any] = {"unique": unique}
    if unique and soft_delete:
        where = sa.text("deleted_at IS NULL")
        kwargs.update(sqlite_where=where, postgresql_where=where)
    index = sa.Index(index_name(table, key, "uq" if unique else "ix"), key, **kwargs)
    sa.Table(table, sa.MetaData(), sa.Column(key), index)
    return index


# --- data -------------------------------------------------------------------

def stub_table(name: str, columns: dict[str, sa.types.TypeEngine[Any]], *,
               child: bool = False, soft_delete: bool = False) -> sa.Table:
    """A Table object with just the columns a query needs, correctly typed."""
    cols: list[sa.Column[Any]] = [sa.Column("id", GUID, primary_key=True)]
    if child:
        cols.append(sa.Column("parent_id", GUID))
    if soft_delete:
        cols.append(sa.Column("deleted_at", UTCDateTime()))
    cols.extend(sa.Column(key, col_type) for key, col_type in columns.items())
    return sa.Table(name, sa.MetaData(), *cols)


def iter_rows(connection: sa.Connection, table: sa.Table, column: str
              ) -> Iterator[Sequence[sa.Row[Any]]]:
    """Rows with a value in ``column``, in id order, a batch at a time (keyset
    paging, so rows updated meanwhile are neither skipped nor seen twice)."""
    col = table.c[column]
    last: uuid.UUID | None = None
    while True:
        query = sa.select(*table.c).where(col.is_not(None)).order_by(table.c.id)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = connection.execute(query.limit(BATCH_SIZE)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def update_by_id(connection: sa.Connection, table: sa.Table, column: str,
                 values: Sequence[tuple[uuid.UUID, Any]]) -> None:
    """``UPDATE table SET column = value WHERE id = …`` as one executemany."""
    if not values:
        return
    stmt = (sa.update(table).where(table.c.id == sa.bindparam("_evo_id"))
            .values({column: sa.bindparam("_evo_value", type_=table.c[column].type)}))
    connection.execute(stmt, [{"_evo_id": rid, "_evo_value": v} for rid, v in values])


def _scalar(connection: sa.Connection, query: sa.Select[Any]) -> int:
    return int(connection.execute(query).scalar_one())


def count_values(connection: sa.Connection, table: str, column: str) -> int:
    """Rows with a value in ``column``."""
    t = sa.table(table, sa.column(column))
    return _scalar(connection, sa.select(sa.func.count()).select_from(t)
                   .where(t.c[column].is_not(None)))


def count_rows(connection: sa.Connection, table: str, *, live_only: bool = False) -> int:
    t = sa.table(table, sa.column("deleted_at"))
    query = sa.select(sa.func.count()).select_from(t)
    if live_only:
        query = query.where(t.c.deleted_at.is_(None))
    return _scalar(connection, query)


def owner_column(storage: str) -> str:
    """The column of a child or join table that points at the owning record."""
    return "parent_id" if storage == "child_table" else "source_id"


def count_owners(connection: sa.Connection, table: str, storage: str) -> int:
    """Records that have rows in a child or join table."""
    t = sa.table(table, sa.column(owner_column(storage)))
    return _scalar(connection, sa.select(sa.func.count(sa.distinct(t.c[owner_column(storage)]))))


def count_empty(connection: sa.Connection, table: str, column: str,
                col_type: sa.types.TypeEngine[Any], *, soft_delete: bool) -> int:
    """Live rows without a value (NULL, or an empty text)."""
    stub = stub_table(table, {column: col_type}, soft_delete=soft_delete)
    col = stub.c[column]
    empty = sa.or_(col.is_(None), col == "") if isinstance(col_type, sa.Text) else col.is_(None)
    query = sa.select(sa.func.count()).select_from(stub).where(empty)
    if soft_delete:
        query = query.where(stub.c.deleted_at.is_(None))
    return _scalar(connection, query)


def count_without_rows(connection: sa.Connection, main: str, table: str, storage: str) -> int:
    """Live records of ``main`` with no row in the child or join ``table``."""
    owner = owner_column(storage)
    m = sa.table(main, sa.column("id"), sa.column("deleted_at"))
    t = sa.table(table, sa.column(owner))
    return _scalar(connection, sa.select(sa.func.count()).select_from(m).where(
        m.c.deleted_at.is_(None), ~sa.exists().where(t.c[owner] == m.c.id)))


def duplicate_values(connection: sa.Connection, table: str, column: str,
                     col_type: sa.types.TypeEngine[Any], *, soft_delete: bool, limit: int
                     ) -> list[tuple[Any, int, list[uuid.UUID]]]:
    """Values held by more than one (live) row: (value, count, a few row ids)."""
    stub = stub_table(table, {column: col_type}, soft_delete=soft_delete)
    col = stub.c[column]
    live = [stub.c.deleted_at.is_(None)] if soft_delete else []
    query = (sa.select(col, sa.func.count()).where(col.is_not(None), *live).group_by(col)
             .having(sa.func.count() > 1).limit(limit))
    out = []
    for value, count in connection.execute(query).all():
        ids = connection.execute(sa.select(stub.c.id).where(col == value, *live)
                                 .order_by(stub.c.id).limit(5)).scalars()
        out.append((value, int(count), list(ids)))
    return out
