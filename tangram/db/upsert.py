"""Atomic counter increment and upserts: the statements whose syntax differs by dialect."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tangram.db.prepared import Prepared


def increment_counter(session: Session, table: sa.Table, keys: dict[str, Any], *,
                      column: str = "value", by: int = 1) -> int:
    """Add ``by`` to the counter row identified by ``keys`` (creating it at
    ``by``) and return the new value, atomically.

    ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` takes the row lock on
    PostgreSQL, so concurrent transactions queue on it and a rolled-back
    transaction gives its numbers back: no duplicates and no gaps on success.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(table).values(**keys, **{column: by}).on_conflict_do_update(
        index_elements=list(keys),
        set_={column: table.c[column] + by},
    )
    return int(session.execute(upsert.returning(table.c[column])).scalar_one())


def prepared_upsert(table: sa.Table, *, key: tuple[str, ...] = ("id",),
                    update: tuple[str, ...]) -> Prepared:
    """Insert full rows of ``table``, or update the ``update`` columns of
    those whose ``key`` exists — ``executemany`` it, so a step that creates
    some rows and changes others writes them in one round trip."""

    def build(dialect: str) -> Any:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        base = insert(table)
        return base.on_conflict_do_update(index_elements=list(key),
                                          set_={c: base.excluded[c] for c in update})

    return Prepared(build, column_keys=[c.name for c in table.c])
