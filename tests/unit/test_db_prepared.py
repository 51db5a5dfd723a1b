"""Prepared statements and the RETURNING subquery construct, compiled without
a database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tangram.db.prepared import Prepared
from tangram.db.returning import returned_subquery

meta = sa.MetaData()
parent = sa.Table("parent", meta, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("key", sa.String(10)), sa.Column("n", sa.Integer))
child = sa.Table("child", meta, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("parent_key", sa.String(10)))

LOCK = (parent.update().where(parent.c.id == sa.bindparam("pid"))
        .values(n=parent.c.n + 1)
        .returning(parent.c.id, returned_subquery(
            sa.select(sa.func.count(child.c.id)).where(child.c.parent_key == parent.c.key)
        ).label("children")))


def test_a_returned_subquery_keeps_qualified_names_on_sqlite():
    sql = str(LOCK.compile(dialect=sqlite.dialect()))
    assert "RETURNING id, (SELECT count(child.id) AS count_1" in sql
    assert "WHERE child.parent_key = parent.\"key\")" in sql


def test_a_returned_subquery_on_postgresql():
    sql = str(LOCK.compile(dialect=postgresql.dialect()))
    assert "RETURNING parent.id, (SELECT count(child.id)" in sql


def test_prepared_orders_parameters_for_the_driver_and_keeps_literals():
    prepared = Prepared(sa.select(parent.c.id).where(parent.c.key == sa.bindparam("k"),
                                                     parent.c.n == 3))
    compiled = prepared._compile(sqlite.dialect())
    assert compiled.sql.endswith("WHERE parent.\"key\" = ? AND parent.n = ?")
    assert prepared._params(compiled, {"k": "a"}) == ["a", 3]
    named = prepared._compile(postgresql.dialect())
    assert prepared._params(named, {"k": "a"}) == {"k": "a", "n_1": 3}


def test_prepared_refuses_expanding_parameters():
    prepared = Prepared(sa.select(parent.c.id).where(parent.c.id.in_([1, 2])))
    with pytest.raises(ValueError, match="plain bound parameters"):
        prepared._compile(sqlite.dialect())
