"""The bulk INSERT path (multi-row VALUES on SQLite, COPY on PostgreSQL)
stores exactly what SQLAlchemy's own executemany stores, on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tangram.db.bulk import BulkInsert
from tangram.db.ids import new_id, new_ids
from tangram.db.types import GUID, ExactDecimal, JSONValue, UTCDateTime
from tangram.engines.forms import records
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.query import ListQuery
from tests.factories import World, form_body
from tests.unit.test_validation import CASES

NASTY_TEXT = "引号' \"双\" \\ back\tslash\nnew line \r\x01 %s %(x)s ? ); DROP TABLE t; --"


def _table(name: str) -> sa.Table:
    md = sa.MetaData()
    return sa.Table(
        name, md,
        sa.Column("id", GUID, primary_key=True),
        sa.Column("at", UTCDateTime),
        sa.Column("amount", ExactDecimal(18, 2)),
        sa.Column("doc", JSONValue),
        sa.Column("day", sa.Date),
        sa.Column("clock", sa.Time),
        sa.Column("flag", sa.Boolean),
        sa.Column("n", sa.BigInteger),
        sa.Column("note", sa.Text),
        sa.Column("code", sa.String(20), unique=True),
        sa.Column("who", GUID),
    )


def _rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({
            "id": new_id(), "at": datetime(2026, 1, 1, 8, i % 60, tzinfo=UTC),
            "amount": Decimal(f"-{i}.05") if i % 2 else Decimal("123456789012.34"),
            "doc": {"k": ["值", i, None, {"deep": True}]} if i % 3 else None,
            "day": date(2026, 2, 1 + i % 28), "clock": time(9, i % 60),
            "flag": [True, False, None][i % 3], "n": 2 ** 62 + i if i % 2 else -i,
            "note": NASTY_TEXT if i % 2 else None, "code": f"c{i}", "who": None,
        })
    return rows


def _dump(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def test_stores_what_sqlalchemy_stores_for_every_column_type(engine):
    ours, theirs = _table("bulk_ours"), _table("bulk_theirs")
    ours.create(engine)
    theirs.create(engine)
    rows = _rows(25)
    who = uuid.uuid4()
    bulk = BulkInsert(ours, list(ours.c.keys()), engine.dialect, batch=["who"])
    bulk.rows_per_statement = 4  # several statements, the last one short
    with engine.begin() as conn:
        bulk.execute(conn, {"who": who}, rows)
        conn.execute(theirs.insert(), [{**r, "who": who} for r in rows])
    assert _dump(engine, ours) == _dump(engine, theirs)
    assert len(_dump(engine, ours)) == 25
    with engine.connect() as conn:
        assert conn.execute(sa.select(ours.c.note).where(ours.c.code == "c1")).scalar() \
            == NASTY_TEXT


def test_missing_values_are_null_and_converters_run_first(engine):
    table = _table("bulk_missing")
    table.create(engine)
    bulk = BulkInsert(table, ["id", "code", "amount"], engine.dialect,
                      convert={"amount": lambda v: Decimal(v) * 2})
    ids = new_ids(2)
    with engine.begin() as conn:
        bulk.execute(conn, {}, [{"id": ids[0], "code": "a", "amount": "1.25"}, {"id": ids[1]}])
    assert [(r[0], r[2], r[9]) for r in _dump(engine, table)] == [
        (ids[0], Decimal("2.50"), "a"), (ids[1], None, None)]


def test_a_unique_violation_is_an_integrity_error_and_the_batch_is_not_kept(engine):
    table = _table("bulk_unique")
    table.create(engine)
    bulk = BulkInsert(table, ["id", "code"], engine.dialect)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        bulk.execute(conn, {}, [{"id": new_id(), "code": "same"},
                                {"id": new_id(), "code": "same"}])
    assert _dump(engine, table) == []


def test_unknown_columns_are_refused():
    with pytest.raises(ValueError, match="no column"):
        BulkInsert(_table("t"), ["id", "nope"], sa.create_engine("sqlite://").dialect)


def test_ids_increase_across_single_and_batch_calls():
    ids = [new_id(), *new_ids(500), new_id(), *new_ids(3)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {uuid.RFC_4122}


def test_bulk_create_stores_what_single_creates_store_for_every_field_type(engine):
    """Every column-stored field type without a database reference, with each
    valid input of the validation cases, bulk-created and created one by one:
    the same JSON comes back."""
    world = World(engine)
    fields, row = [], {}
    for i, (definition, valid, _invalid) in enumerate(CASES):
        kind = FIELD_KINDS[definition["type"]]
        if kind.storage != "column" or kind.computed or definition["type"] in {
                "user", "department", "relation", "attachment"}:
            continue
        for j, (raw, _expected) in enumerate(valid):
            key = f"f{i}_{j}"
            fields.append({**definition, "key": key})
            row[key] = raw
    assert len(fields) > 30
    world.publish(form_body("every", *fields))
    bulk = world.run(records.bulk_create, app="demo", form="every", rows=[row, row])
    single = world.run(records.create_record, app="demo", form="every", data=row)
    items = world.run(records.list_records, app="demo", form="every",
                      query=ListQuery(limit=10))["items"]
    by_id = {r["id"]: r for r in items}
    system = {"id", "created_at", "updated_at", "version", "created_by", "updated_by",
              "owner", "deleted_at"}
    want = {k: v for k, v in by_id[single["id"]].items() if k not in system}
    for made in bulk:
        got = {k: v for k, v in by_id[made["id"]].items() if k not in system}
        assert got == want
