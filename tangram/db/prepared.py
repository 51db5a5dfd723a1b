"""Statements run many times per second: compiled once, run on the driver.

SQLAlchemy's execution path (cache key, execution context, parameter and
result machinery) costs several times what the database itself does for the
small statements of a hot loop — a flow step runs a dozen of them. A
:class:`Prepared` statement is a Core construct compiled once per dialect by
SQLAlchemy's own compiler (bound parameters, quoting, casts — no SQL text is
built here); executing it only converts the parameters with the column
types' bind processors, calls the DBAPI cursor of the session's connection
(inside the session's transaction) and converts result columns with the
types' result processors.

    LOCK = Prepared(table.update().where(table.c.id == sa.bindparam("id"))
                    .values(version=table.c.version + 1).returning(*table.c))
    row = LOCK.first(session, {"id": some_id})

Only plain bound parameters are supported (no ``expanding`` IN lists, no
literal-execute parameters): those need SQLAlchemy's per-call compilation.

Several statements that do not need each other's results go to the database
together in a :class:`Batch`: on PostgreSQL one round trip (psycopg's
pipeline mode — the server still runs them in order, each seeing what the
ones before it did), on SQLite one after the other as usual. Results are read
after the batch:

    with Batch(session) as batch:
        locked = LOCK.send(batch, {"id": some_id})
        state = STATE.send(batch, {"id": some_id})
    row, rows = locked.first(), state.all()

Statements executed this way bypass SQLAlchemy's execution events (SQL
logging, statement counters); everything else about the transaction is the
session's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bound parameters, in the driver's order
    positional: bool
    defaults: dict[str, Any]  # values of the statement's own literals
    binds: dict[str, Processor]
    columns: tuple[str, ...]  # result column names
    results: tuple[Processor | None, ...]
    # (name, default, processor) per parameter, in the driver's order
    plan: tuple[tuple[str, Any, Processor | None], ...] = ()


class Prepared:
    """A Core statement compiled once per dialect and executed on the DBAPI cursor."""

    def __init__(self, statement: Executable | Callable[[str], Executable], *,
                 column_keys: Sequence[str] | None = None) -> None:
        # A callable builds the statement for a dialect name (e.g. an upsert,
        # whose construct differs by dialect).
        self.statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is not None:
            return found
        statement = self.statement if isinstance(self.statement, Executable) \
            else self.statement(dialect.name)
        compiled: Any = statement.compile(dialect=dialect,  # type: ignore[attr-defined]
                                          column_keys=self._column_keys)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("Prepared statements take plain bound parameters only")
        constructed = compiled.construct_params(_check=False)
        names = tuple(compiled.positiontup) if compiled.positional else tuple(constructed)
        processors = compiled._bind_processors
        result_columns = getattr(compiled, "_result_columns", None) or []
        defaults = {k: v for k, v in constructed.items() if v is not None}
        binds = {k: p for k, p in processors.items() if p is not None}
        found = _Compiled(
            sql=compiled.string, names=names, positional=compiled.positional,
            defaults=defaults, binds=binds,
            columns=tuple(entry[0] for entry in result_columns),
            results=tuple(entry[3].dialect_impl(dialect).result_processor(dialect, None)
                          for entry in result_columns),
            plan=tuple((n, defaults.get(n), binds.get(n)) for n in names))
        with self._lock:
            self._compiled[dialect.name] = found
        return found

    def _params(self, c: _Compiled, params: Mapping[str, Any]) -> Any:
        values: list[Any] = []
        append = values.append
        get = params.get
        for name, default, proc in c.plan:
            value = get(name, default)
            if value is not None and proc is not None:
                value = proc(value)
            append(value)
        return values if c.positional else dict(zip(c.names, values, strict=True))

    def send(self, batch: Batch, params: Mapping[str, Any] | None = None, *,
             many: Sequence[Mapping[str, Any]] | None = None) -> Result:
        """Queue the statement in ``batch`` (``many``: once per row); its
        result is read after the batch ends."""
        c = self._compile(batch.dialect)
        cursor = batch.cursor()
        if many is not None:
            cursor.executemany(c.sql, [self._params(c, row) for row in many])
        else:
            cursor.execute(c.sql, self._params(c, params or {}))
        result = Result(cursor, c, batch)
        if not batch.pipelined:
            result.fetch()
        return result

    # One statement is a batch of one: on PostgreSQL the transaction's BEGIN,
    # when this is its first statement, then travels with it (_queue_begin).
    def execute(self, session: Session, params: Mapping[str, Any] | None = None) -> int:
        """Run once; returns the number of rows the statement changed."""
        with Batch(session) as batch:
            result = self.send(batch, params)
        return result.rowcount

    def executemany(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with Batch(session) as batch:
            self.send(batch, many=rows)

    def all(self, session: Session, params: Mapping[str, Any] | None = None
            ) -> list[dict[str, Any]]:
        """Every result row as a dict of column name to value."""
        with Batch(session) as batch:
            result = self.send(batch, params)
        return result.all()

    def first(self, session: Session, params: Mapping[str, Any] | None = None
              ) -> dict[str, Any] | None:
        rows = self.all(session, params)
        return rows[0] if rows else None


_CONNECTION = "tangram.prepared.connection"


def _connection(session: Session) -> Any:
    """The session's connection, beginning its transaction if needed (looked
    up once per transaction: the session's own lookup costs more than a
    SQLite statement)."""
    transaction = session.get_transaction()
    held = session.info.get(_CONNECTION)
    if transaction is None or held is None or held[0] is not transaction:
        connection = session.connection()
        session.info[_CONNECTION] = (session.get_transaction(), connection)
        return connection
    return held[1]


class Result:
    """The outcome of a statement sent in a batch (read it after the batch)."""

    def __init__(self, cursor: Any, compiled: _Compiled, batch: Batch) -> None:
        self._cursor = cursor
        self._compiled = compiled
        self._batch = batch
        self._rows: list[dict[str, Any]] | None = None
        self._rowcount = -1

    def fetch(self) -> None:
        if self._rows is not None:
            return
        cursor, c = self._cursor, self._compiled
        raw = cursor.fetchall() if cursor.description is not None else []
        # After the rows: sqlite3 counts an UPDATE … RETURNING as it is read.
        self._rowcount = int(cursor.rowcount)
        self._rows = [{name: (proc(value) if proc is not None and value is not None
                              else value)
                       for name, proc, value in zip(c.columns, c.results, row, strict=True)}
                      for row in raw]

    def _ready(self) -> list[dict[str, Any]]:
        if self._batch.open:
            raise RuntimeError("read a batched statement's result after the batch")
        self.fetch()
        assert self._rows is not None
        return self._rows

    def all(self) -> list[dict[str, Any]]:
        return self._ready()

    def first(self) -> dict[str, Any] | None:
        rows = self._ready()
        return rows[0] if rows else None

    @property
    def rowcount(self) -> int:
        self._ready()
        return self._rowcount


class Batch:
    """Statements sent together (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        connection = _connection(session)
        self.dialect = connection.dialect
        self._driver: Any = connection.connection.driver_connection
        # psycopg 3 has a pipeline mode; sqlite3 runs in-process, where a
        # round trip costs nothing worth saving.
        self.pipelined = hasattr(self._driver, "pipeline")
        self._pipeline: contextlib.AbstractContextManager[Any] | None = None
        self._cursors: list[Any] = []
        self.open = False

    def cursor(self) -> Any:
        # In a pipeline each statement keeps its own cursor (its results come
        # at the end); otherwise results are read at once and one cursor does.
        if self._cursors and not self.pipelined:
            return self._cursors[0]
        cursor = self._driver.cursor()
        self._cursors.append(cursor)
        return cursor

    def __enter__(self) -> Batch:
        if self.pipelined:
            self._pipeline = self._driver.pipeline()
            _queue_begin(self._driver, self._pipeline.__enter__())
        self.open = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.open = False
        if self._pipeline is not None:
            # Leaving the pipeline waits for every result (and raises the
            # first error).
            self._pipeline.__exit__(*exc)


def _queue_begin(driver: Any, pipeline: Any) -> None:
    """Open the transaction with the batch's statements.

    psycopg sends the BEGIN of a transaction before its first statement and
    waits for it, in pipeline mode too — a round trip of its own. When the
    connection is idle and in the default transaction mode, the BEGIN is put
    in the pipeline ahead of the batch instead (its result is checked with
    the others'); psycopg then sees a transaction in progress and sends none.
    """
    from psycopg import pq

    if (driver.autocommit or driver.isolation_level is not None
            or driver.read_only is not None or driver.deferrable is not None
            or driver.pgconn.transaction_status != pq.TransactionStatus.IDLE):
        return
    driver.pgconn.send_query_params(b"BEGIN", None)
    pipeline.result_queue.append(None)
