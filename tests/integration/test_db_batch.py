"""Batches of prepared statements inside the session's transaction, on both
databases: a batch that opens the transaction (on PostgreSQL its BEGIN goes
in the pipeline with the statements) is rolled back and committed with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tangram.db.prepared import Batch, Prepared

meta = sa.MetaData()
items = sa.Table("batch_items", meta, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(20), nullable=False))

INSERT = Prepared(items.insert().values(id=sa.bindparam("id"), name=sa.bindparam("name")))
COUNT = Prepared(sa.select(sa.func.count().label("n")).select_from(items))


@pytest.fixture
def sessions(engine: sa.Engine) -> Iterator[sessionmaker[Session]]:
    meta.create_all(engine)
    yield sessionmaker(engine)
    meta.drop_all(engine)


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(items)).scalar_one())


def test_a_batch_that_opens_the_transaction_is_rolled_back_with_it(sessions):
    with sessions() as s:
        with Batch(s) as batch:
            INSERT.send(batch, {"id": 1, "name": "a"})
            counted = COUNT.send(batch)
        assert counted.first() == {"n": 1}  # the batch sees its own writes
        s.rollback()
    assert _count(sessions) == 0
    with sessions() as s:
        INSERT.execute(s, {"id": 2, "name": "b"})
        s.execute(items.insert().values(id=3, name="c"))  # the same transaction
        s.rollback()
    assert _count(sessions) == 0


def test_a_batch_that_opens_the_transaction_commits_with_it(sessions):
    with sessions.begin() as s:
        with Batch(s) as batch:
            INSERT.send(batch, many=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        s.execute(items.insert().values(id=3, name="c"))
    assert _count(sessions) == 3


def test_an_error_in_a_batch_that_opened_the_transaction_leaves_nothing(sessions, engine):
    with sessions() as s:
        INSERT.execute(s, {"id": 1, "name": "a"})
        s.commit()
    # Batched statements run on the driver: its own error class.
    refused = pytest.raises(engine.dialect.loaded_dbapi.IntegrityError)
    with refused, sessions.begin() as s, Batch(s) as batch:
        INSERT.send(batch, {"id": 2, "name": "b"})
        INSERT.send(batch, {"id": 1, "name": "again"})
    assert _count(sessions) == 1
    with sessions.begin() as s:  # the connection is usable again
        INSERT.execute(s, {"id": 5, "name": "e"})
    assert _count(sessions) == 2
