"""A correlated subquery in a RETURNING clause, the same on every backend.

SQLite's RETURNING names columns without their table, and SQLAlchemy's
SQLite compiler passes that to everything inside the clause — so a
subquery that joins other tables and refers to the updated row renders
ambiguous names (``ON id = definition_id``). :func:`returned_subquery`
compiles its subquery with qualified names wherever it stands.

    stmt = table.update().values(...).returning(
        *table.c, returned_subquery(lookup.where(other.c.key == table.c.key)).label("x"))
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class ReturnedSubquery(ColumnElement[Any]):
    inherit_cache = True
    _traverse_internals = [("element", InternalTraversal.dp_clauseelement)]

    def __init__(self, element: sa.ScalarSelect[Any]) -> None:
        self.element = element
        self.type = element.type


@compiles(ReturnedSubquery)
def _compile(element: ReturnedSubquery, compiler: Any, **kw: Any) -> str:
    kw.pop("include_table", None)
    return str(compiler.process(element.element, **kw))


def returned_subquery(select: sa.Select[Any]) -> ReturnedSubquery:
    """``select`` as a scalar subquery that keeps qualified column names in RETURNING."""
    return ReturnedSubquery(select.scalar_subquery())
