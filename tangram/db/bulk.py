"""Bulk INSERT for rows the caller already holds as column values.

SQLAlchemy's ``connection.execute(table.insert(), rows)`` builds a parameter
dict per row and runs every column's bind processor through generic
machinery, then the driver sends one INSERT per row; for imports of millions
of rows that costs more than the database does. :class:`BulkInsert` writes
multi-row ``INSERT ... VALUES (...), (...)`` statements instead (one per
thousand rows), with every value a bound parameter: table and column names
are quoted by the dialect's identifier preparer, values never enter the SQL
text. A row becomes driver parameters through one precomputed function per
column (the caller's value conversion fused with the column type's bind
processor); columns whose value is the same for the whole batch (timestamps,
the acting user) are converted once per batch, not once per row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Convert = Callable[[Any], Any]
#: Placeholder of one bound value, by DBAPI paramstyle (sqlite3: qmark;
#: psycopg: pyformat, which also takes positional %s).
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
#: Bound parameters per statement: SQLite's default limit is 32,766 and
#: PostgreSQL's protocol allows 65,535; stay well inside both.
MAX_PARAMS = 30_000
MAX_ROWS = 1_000
#: Rows per statement on PostgreSQL (arrays: one parameter per column).
MAX_ROWS_UNNEST = 5_000


def _fuse(first: Convert | None, second: Convert | None) -> Convert | None:
    if first is None:
        return second
    if second is None:
        return first
    return lambda v: second(first(v))


class BulkInsert:
    """``INSERT INTO table (columns...) VALUES ...`` for one dialect, executed many times.

    ``convert`` maps a column to a function applied to the caller's value
    before the column type's own bind processing (e.g. a field kind's
    ``to_db``). ``batch`` names the columns whose value is given once per
    :meth:`execute` call.
    """

    def __init__(self, table: sa.Table, columns: Sequence[str], dialect: Dialect, *,
                 batch: Sequence[str] = (), convert: Mapping[str, Convert] | None = None
                 ) -> None:
        convert = convert or {}
        unknown = [c for c in columns if c not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {unknown}")
        self.batch_columns = frozenset(batch)
        processors: dict[str, Convert | None] = {}
        for name in columns:
            column_type = table.c[name].type
            bind = column_type.dialect_impl(dialect).bind_processor(dialect)
            processors[name] = _fuse(convert.get(name), bind)
        self._names = list(columns)
        self._processors = processors
        quote = dialect.identifier_preparer
        target = f"INSERT INTO {quote.format_table(table)} " \
                 f"({', '.join(quote.quote(c) for c in columns)}) "
        self._row_names = [c for c in columns if c not in self.batch_columns]
        self._copy: str | None = None
        if dialect.name == "postgresql":
            # COPY: the fastest way in; the driver encodes each value.
            self._copy = f"COPY {quote.format_table(table)} " \
                         f"({', '.join(quote.quote(c) for c in columns)}) FROM STDIN"
            self.rows_per_statement = MAX_ROWS_UNNEST
            return
        marker = _MARKERS.get(dialect.paramstyle)
        if marker is None:
            raise ValueError(f"unsupported DBAPI paramstyle {dialect.paramstyle!r}")
        self._prefix = f"{target}VALUES "
        self._group = f"({', '.join([marker] * len(columns))})"
        # Rows per statement: within the driver's limit on bound parameters.
        self.rows_per_statement = max(1, min(MAX_ROWS, MAX_PARAMS // len(columns)))
        self._sql: dict[int, str] = {}

    def _values_sql(self, rows: int) -> str:
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self._prefix + ", ".join([self._group] * rows)
        return text

    def _batch(self, batch_values: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name in self.batch_columns:
            proc, value = self._processors[name], batch_values[name]
            out[name] = proc(value) if proc is not None and value is not None else value
        return out

    def _rows(self, names: Sequence[str], rows: Sequence[Mapping[str, Any]],
              fixed: Mapping[str, Any]) -> list[list[Any]]:
        """Each row's driver-ready values for ``names`` (``fixed`` ones as given)."""
        processors = self._processors
        converted = [(i, proc) for i, name in enumerate(names) if name not in fixed
                     and (proc := processors[name]) is not None]
        constant = [(i, fixed[name]) for i, name in enumerate(names) if name in fixed]
        # One C-level lookup of every column per row; rows lacking a column
        # (None) take the slower per-key path.
        getter = operator.itemgetter(*names) if len(names) > 1 else \
            (lambda row: (row[names[0]],))
        out: list[list[Any]] = []
        append = out.append
        for row in rows:
            try:
                values = list(getter(row))
            except KeyError:
                values = [row.get(name) for name in names]
            for i, value in constant:
                values[i] = value
            for i, proc in converted:
                value = values[i]
                if value is not None:
                    values[i] = proc(value)
            append(values)
        return out

    def execute(self, connection: sa.Connection, batch_values: Mapping[str, Any],
                rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (mappings of column values) with ``batch_values``
        filling the batch columns of every row."""
        if not rows:
            return
        fixed = self._batch(batch_values)
        step = self.rows_per_statement
        if self._copy is not None:
            values = self._rows(self._names, rows, fixed)
            dbapi = connection.dialect.loaded_dbapi
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                with cursor, cursor.copy(self._copy) as copy:
                    for row in values:
                        copy.write_row(row)
            except dbapi.Error as exc:  # as SQLAlchemy raises for its own statements
                raise sa.exc.DBAPIError.instance(self._copy, None, exc, dbapi.Error,
                                                 dialect=connection.dialect) from exc
            return
        for start in range(0, len(rows), step):
            chunk = self._rows(self._names, rows[start:start + step], fixed)
            flat = tuple(value for row in chunk for value in row)
            connection.exec_driver_sql(self._values_sql(len(chunk)), flat)
