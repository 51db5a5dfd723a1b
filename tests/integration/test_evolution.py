"""Form-table evolution on SQLite and PostgreSQL: publishing creates and
evolves record tables, keeps data across renames and removals, converts types
with a dry run first, and changes nothing unless everything succeeds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.db import new_id
from tangram.engines.forms import evolution
from tangram.engines.forms.ddl import field_index
from tangram.engines.forms.evolution import (
    EvolutionPlan,
    apply_evolution,
    load_state,
    plan_evolution,
    purge_field,
)
from tangram.engines.forms.systables import form_tables_table
from tangram.engines.forms.tables import (
    build_tables,
    field_indexes,
    index_name,
    legacy_index_name,
)
from tangram.errors import ConfirmationRequired, Conflict, DefinitionInvalid, NotFound
from tangram.metamodel.forms import Form

APP = "crm"
NOW = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


# --- factories ----------------------------------------------------------------

def fld(key: str, type_: str = "text", *, id: str | None = None, **options: Any
        ) -> dict[str, Any]:
    return {"type": type_, "key": key, "id": id or f"id_{key}", "label": {"en": key},
            **options}


def form(*fields: dict[str, Any], key: str = "deal") -> Form:
    return Form.model_validate({"key": key, "label": {"en": key}, "fields": list(fields)})


def publish(engine: Engine, old: Form | None, new: Form, *, confirm: bool = False
            ) -> EvolutionPlan:
    with engine.begin() as conn:
        state = load_state(conn, app=APP, form=new.key)
        plan = plan_evolution(conn, app=APP, old=old, new=new, state=state)
        apply_evolution(conn, plan, confirm_destructive=confirm,
                        version=state.version + 1 if state else 1)
    return plan


def dry_run(engine: Engine, old: Form | None, new: Form) -> EvolutionPlan:
    with engine.begin() as conn:
        return plan_evolution(conn, app=APP, old=old, new=new,
                              state=load_state(conn, app=APP, form=new.key))


def insert(engine: Engine, f: Form, *rows: dict[str, Any], deleted: bool = False
           ) -> list[uuid.UUID]:
    table = build_tables(APP, f).table
    ids = []
    with engine.begin() as conn:
        for row in rows:
            rid = new_id()
            conn.execute(sa.insert(table).values(
                id=rid, created_at=NOW, updated_at=NOW,
                deleted_at=NOW if deleted else None, **row))
            ids.append(rid)
    return ids


def insert_children(engine: Engine, f: Form, sub_key: str, parent: uuid.UUID,
                    *rows: dict[str, Any]) -> list[uuid.UUID]:
    table = build_tables(APP, f).children[sub_key]
    ids = []
    with engine.begin() as conn:
        for position, row in enumerate(rows):
            rid = new_id()
            conn.execute(sa.insert(table).values(id=rid, parent_id=parent, position=position,
                                                 **row))
            ids.append(rid)
    return ids


def values(engine: Engine, f: Form, key: str, *, sub: str | None = None) -> dict[uuid.UUID, Any]:
    tables = build_tables(APP, f)
    table = tables.children[sub] if sub else tables.table
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.id, table.c[key])).all())


def columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def index_names(engine: Engine, table: str) -> set[str]:
    return {ix["name"] for ix in sa.inspect(engine).get_indexes(table)}


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's columns, indexes and rows: 'exactly as before'."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:  # one connection: SQLite takes the lock up front
        inspector = sa.inspect(conn)
        for name in sorted(inspector.get_table_names()):
            cols = inspector.get_columns(name)
            rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
            out[name] = {
                "columns": [(c["name"], str(c["type"])) for c in cols],
                "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                                  for ix in inspector.get_indexes(name)),
                "rows": sorted(repr(tuple(r)) for r in rows),
            }
    return out


def step(plan: EvolutionPlan, op: str) -> evolution.Step:
    found = [s for s in plan.steps if s.op == op]
    assert len(found) == 1, [s.op for s in plan.steps]
    return found[0]


TABLE = "r_crm__deal"


# --- creation -----------------------------------------------------------------

def test_new_form_creates_main_child_and_join_tables(engine: Engine) -> None:
    f = form(fld("code", unique=True), fld("amount", "decimal"),
             fld("account", "relation", target="account"),
             fld("lines", "sub_table", fields=[fld("product"), fld("qty", "integer",
                                                                   indexed=True)]),
             fld("contacts", "multi_relation", target="contact"))
    plan = publish(engine, None, f)

    assert [s.op for s in plan.steps] == ["create_table", "add_child_table", "add_join_table"]
    assert not plan.destructive
    assert {"code", "amount", "account", "id", "deleted_at"} <= columns(engine, TABLE)
    assert {index_name(TABLE, "code", "uq"),
            index_name(TABLE, "account", "ix")} <= index_names(engine, TABLE)
    assert {"product", "qty", "parent_id"} <= columns(engine, "r_crm__deal__lines")
    assert index_name("r_crm__deal__lines", "qty", "ix") in index_names(
        engine, "r_crm__deal__lines")
    assert {"source_id", "target_id"} <= columns(engine, "r_crm__deal__contacts")
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and state.version == 1 and state.retired == []
    layout = state.layout["fields"]
    assert layout["id_code"] == {"key": "code", "type": "text", "column_sig": "text",
                                 "storage": "column", "table": None, "unique": True,
                                 "indexed": False}
    assert layout["id_amount"]["column_sig"] == "decimal(18,2)"
    assert layout["id_account"]["indexed"] and layout["id_account"]["target"] == "account"
    assert layout["id_lines"]["table"] == "r_crm__deal__lines"
    assert layout["id_lines"]["children"]["id_qty"]["indexed"]
    assert layout["id_contacts"]["storage"] == "join_table"


def test_ddl_inside_the_transaction_rolls_back(engine: Engine) -> None:
    """SQLite included: the engine takes transaction control from pysqlite."""
    f = form(fld("name"))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        plan = plan_evolution(conn, app=APP, old=None, new=f, state=None)
        apply_evolution(conn, plan, confirm_destructive=False, version=1)
        assert TABLE in sa.inspect(conn).get_table_names()
        raise RuntimeError("publish failed after the table was created")
    assert TABLE not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert load_state(conn, app=APP, form="deal") is None


# --- add, rename ----------------------------------------------------------------

def test_add_field_adds_nullable_column_and_index(engine: Engine) -> None:
    v1 = form(fld("name"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"name": "Acme"})
    v2 = form(fld("name"), fld("stage", "select", indexed=True,
                               options=[{"value": "won", "label": {"en": "Won"}}]),
              fld("amount", "currency", precision=12, scale=2))
    plan = publish(engine, v1, v2)

    assert [s.op for s in plan.steps] == ["add_field", "add_field"]
    assert not plan.destructive
    assert values(engine, v2, "stage") == {rid: None}
    assert index_name("r_crm__deal", "stage", "ix") in index_names(engine, TABLE)
    insert(engine, v2, {"name": "B", "amount": Decimal("12.34")})
    assert Decimal("12.34") in values(engine, v2, "amount").values()


def test_rename_keeps_data_and_renames_indexes(engine: Engine) -> None:
    v1 = form(fld("name", unique=True), fld("note"))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"name": "Acme", "note": "x"}, {"name": "Beta", "note": "y"})
    v2 = form(fld("title", id="id_name", unique=True), fld("note"))
    plan = publish(engine, v1, v2)

    assert [s.op for s in plan.steps] == ["rename_field"]
    assert not plan.destructive
    assert values(engine, v2, "title") == {ids[0]: "Acme", ids[1]: "Beta"}
    assert "name" not in columns(engine, TABLE)
    assert index_name("r_crm__deal", "title", "uq") in index_names(engine, TABLE)
    assert index_name("r_crm__deal", "name", "uq") not in index_names(engine, TABLE)
    with pytest.raises(sa.exc.IntegrityError):
        insert(engine, v2, {"title": "Acme"})


def test_swapping_two_keys_keeps_each_fields_data(engine: Engine) -> None:
    v1 = form(fld("a", id="A"), fld("b", id="B"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"a": "from A", "b": "from B"})
    v2 = form(fld("b", id="A"), fld("a", id="B"))
    publish(engine, v1, v2)
    assert values(engine, v2, "b") == {rid: "from A"}
    assert values(engine, v2, "a") == {rid: "from B"}


# --- type changes -----------------------------------------------------------------

def test_integer_to_decimal_is_lossless(engine: Engine) -> None:
    v1 = form(fld("qty", "integer"))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"qty": 5}, {"qty": -12}, {"qty": None})
    v2 = form(fld("qty", "decimal", precision=18, scale=2))
    plan = publish(engine, v1, v2)

    change = step(plan, "change_type")
    assert not change.destructive and change.affected_rows == 2 and change.failure_count == 0
    assert values(engine, v2, "qty") == {ids[0]: Decimal("5.00"), ids[1]: Decimal("-12.00"),
                                         ids[2]: None}


def test_decimal_scale_2_to_4_keeps_exact_values(engine: Engine, backend: str) -> None:
    v1 = form(fld("price", "decimal", precision=18, scale=2))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"price": Decimal("12.34")}, {"price": Decimal("-0.01")})
    v2 = form(fld("price", "decimal", precision=18, scale=4))
    plan = publish(engine, v1, v2)

    assert not step(plan, "change_type").destructive
    assert values(engine, v2, "price") == {ids[0]: Decimal("12.34"), ids[1]: Decimal("-0.01")}
    if backend == "sqlite":  # the scaled integers were rewritten, not reinterpreted
        with engine.connect() as conn:
            raw = conn.execute(sa.text(f"SELECT price FROM {TABLE} ORDER BY price")).scalars()
            assert list(raw) == [-100, 123400]


def test_decimal_scale_4_to_2_is_narrowing(engine: Engine) -> None:
    v1 = form(fld("price", "decimal", precision=18, scale=4))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"price": Decimal("1.2300")}, {"price": Decimal("1.2345")})
    v2 = form(fld("price", "decimal", precision=18, scale=2))
    plan = dry_run(engine, v1, v2)
    change = step(plan, "change_type")
    assert change.destructive and change.failure_count == 1
    assert change.failures[0]["record_id"] == str(ids[1])
    assert change.failures[0]["error"] == "scale"
    publish(engine, v1, v2, confirm=True)
    assert values(engine, v2, "price") == {ids[0]: Decimal("1.23"), ids[1]: None}


def test_text_to_integer_lists_failures_and_needs_confirmation(engine: Engine) -> None:
    v1 = form(fld("code"), fld("name"))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"code": "12"}, {"code": " 7 "}, {"code": "abc"},
                 {"code": "1.5"}, {"code": None})
    v2 = form(fld("code", "integer"), fld("name"))

    before = snapshot(engine)
    plan = dry_run(engine, v1, v2)
    assert snapshot(engine) == before
    change = step(plan, "change_type")
    assert change.destructive and change.affected_rows == 4 and change.failure_count == 2
    assert {f["record_id"] for f in change.failures} == {str(ids[2]), str(ids[3])}
    assert {f["value"] for f in change.failures} == {"abc", "1.5"}
    report = plan.as_dict()
    assert report["destructive"] and report["steps"][0]["failure_count"] == 2

    with pytest.raises(ConfirmationRequired) as refused:
        publish(engine, v1, v2)
    assert refused.value.details["steps"][0]["op"] == "change_type"
    assert snapshot(engine) == before

    publish(engine, v1, v2, confirm=True)
    assert values(engine, v2, "code") == {ids[0]: 12, ids[1]: 7, ids[2]: None, ids[3]: None,
                                          ids[4]: None}
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and state.layout["fields"]["id_code"]["column_sig"] == "bigint"


def test_date_to_datetime_uses_midnight_in_the_organization_zone(engine: Engine) -> None:
    v1 = form(fld("signed", "date"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"signed": datetime(2026, 3, 1).date()})
    v2 = form(fld("signed", "datetime"))
    plan = publish(engine, v1, v2)
    assert not plan.destructive
    assert values(engine, v2, "signed") == {rid: datetime(2026, 2, 28, 16, 0, tzinfo=UTC)}


def test_type_change_into_unique_refuses_values_that_collide(engine: Engine) -> None:
    v1 = form(fld("mail"))
    publish(engine, None, v1)
    insert(engine, v1, {"mail": "A@x.com"}, {"mail": "a@x.com"})
    with pytest.raises(DefinitionInvalid) as refused:
        dry_run(engine, v1, form(fld("mail", "email", unique=True)))
    assert refused.value.details["duplicates"][0]["value"] == "a@x.com"


def test_removed_select_option_in_use_is_destructive(engine: Engine) -> None:
    opts = [{"value": v, "label": {"en": v}} for v in ("new", "won", "lost")]
    v1 = form(fld("stage", "select", options=opts),
              fld("tags", "multi_select", options=opts))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"stage": "lost", "tags": ["won", "lost"]},
                 {"stage": "won", "tags": ["new"]})
    v2 = form(fld("stage", "select", options=opts[:2]),
              fld("tags", "multi_select", options=opts[:2]))
    plan = dry_run(engine, v1, v2)
    removals = [s for s in plan.steps if s.op == "remove_options"]
    assert [(s.field, s.affected_rows, s.destructive) for s in removals] == [
        ("stage", 1, True), ("tags", 1, True)]
    publish(engine, v1, v2, confirm=True)
    assert values(engine, v2, "stage") == {ids[0]: None, ids[1]: "won"}
    assert values(engine, v2, "tags") == {ids[0]: ["won"], ids[1]: ["new"]}


def test_changing_a_relation_target_clears_links_after_confirmation(engine: Engine) -> None:
    v1 = form(fld("account", "relation", target="account"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"account": new_id()})
    v2 = form(fld("account", "relation", target="partner"))
    change = step(dry_run(engine, v1, v2), "change_target")
    assert change.destructive and change.affected_rows == 1
    with pytest.raises(ConfirmationRequired):
        publish(engine, v1, v2)
    publish(engine, v1, v2, confirm=True)
    assert values(engine, v2, "account") == {rid: None}


# --- removal, purge, restore ---------------------------------------------------

def test_remove_keeps_data_until_purged(engine: Engine) -> None:
    v1 = form(fld("name"), fld("note", indexed=True))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"name": "a", "note": "keep me"}, {"name": "b"})
    v2 = form(fld("name"))

    remove = step(dry_run(engine, v1, v2), "remove_field")
    assert remove.destructive and remove.affected_rows == 1
    with pytest.raises(ConfirmationRequired):
        publish(engine, v1, v2)
    publish(engine, v1, v2, confirm=True)

    assert "note" not in columns(engine, TABLE) and "x_id_note" in columns(engine, TABLE)
    assert index_name("r_crm__deal", "note", "ix") not in index_names(engine, TABLE)
    with engine.connect() as conn:
        kept = dict(conn.execute(sa.text(f"SELECT id, x_id_note FROM {TABLE}")).all())
        state = load_state(conn, app=APP, form="deal")
    assert "keep me" in kept.values()
    assert state is not None and state.retired == [{
        "field_id": "id_note", "key": "note", "type": "text", "column_sig": "text",
        "storage": "column", "removed_in_version": 2, "parent": None,
        "column": "x_id_note", "table": TABLE}]

    with engine.begin() as conn:
        with pytest.raises(NotFound):
            purge_field(conn, app=APP, form="deal", field_id="id_name")
        assert purge_field(conn, app=APP, form="deal", field_id="id_note") == 1
    assert "x_id_note" not in columns(engine, TABLE)
    assert values(engine, v2, "name") == {ids[0]: "a", ids[1]: "b"}
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and state.retired == []


def test_re_adding_a_removed_field_restores_its_data(engine: Engine) -> None:
    v1 = form(fld("name"), fld("note", indexed=True))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"name": "a", "note": "kept"})
    v2 = form(fld("name"))
    publish(engine, v1, v2, confirm=True)
    v3 = form(fld("name"), fld("remark", id="id_note", indexed=True))
    plan = publish(engine, v2, v3)
    assert [s.op for s in plan.steps] == ["restore_field", "add_index"]
    assert values(engine, v3, "remark") == {rid: "kept"}
    assert index_name("r_crm__deal", "remark", "ix") in index_names(engine, TABLE)
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and state.retired == []


# --- unique, indexes, required ---------------------------------------------------

def test_unique_over_live_duplicates_is_refused_with_the_values(engine: Engine) -> None:
    v1 = form(fld("code"))
    publish(engine, None, v1)
    ids = insert(engine, v1, {"code": "A"}, {"code": "A"}, {"code": "B"})
    insert(engine, v1, {"code": "B"}, deleted=True)  # the recycle bin does not count
    v2 = form(fld("code", unique=True))
    with pytest.raises(DefinitionInvalid) as refused:
        dry_run(engine, v1, v2)
    (dup,) = refused.value.details["duplicates"]
    assert dup["value"] == "A" and dup["count"] == 2
    assert set(dup["record_ids"]) == {str(ids[0]), str(ids[1])}

    with engine.begin() as conn:
        conn.execute(sa.update(build_tables(APP, v1).table)
                     .where(sa.column("id") == ids[1]).values(code="C"))
    plan = publish(engine, v1, v2)
    assert [s.op for s in plan.steps] == ["add_index"]
    assert index_name("r_crm__deal", "code", "uq") in index_names(engine, TABLE)


def test_index_toggles_and_required_warning(engine: Engine) -> None:
    v1 = form(fld("name"), fld("city", indexed=True))
    publish(engine, None, v1)
    insert(engine, v1, {"name": "a"}, {"name": ""}, {"name": None}, {"name": "x", "city": "b"})
    v2 = form(fld("name", required=True, indexed=True), fld("city"))
    plan = publish(engine, v1, v2)
    assert [s.op for s in plan.steps] == ["add_index", "check_required", "drop_index"]
    assert step(plan, "check_required").affected_rows == 2
    assert not plan.destructive
    assert index_name("r_crm__deal", "name", "ix") in index_names(engine, TABLE)
    assert index_name("r_crm__deal", "city", "ix") not in index_names(engine, TABLE)


def test_field_index_mirrors_field_indexes() -> None:
    f = form(fld("a", unique=True), fld("b", indexed=True), fld("c", "relation", target="x"),
             fld("d"))
    for field in f.fields:
        for soft_delete in (True, False):
            expected = field_indexes(TABLE, field, soft_delete=soft_delete)
            flags = {"unique": any(i.unique for i in expected),
                     "indexed": any(not i.unique for i in expected)}
            got = field_index(TABLE, field.key, soft_delete=soft_delete, **flags)
            assert [(i.name, i.unique, i.dialect_kwargs.get("sqlite_where") is not None)
                    for i in expected] == (
                [] if got is None else
                [(got.name, got.unique, got.dialect_kwargs.get("sqlite_where") is not None)])


# --- sub-tables ----------------------------------------------------------------

def lines(*subfields: dict[str, Any], key: str = "lines") -> dict[str, Any]:
    return fld(key, "sub_table", id="id_lines", fields=list(subfields))


def test_sub_table_fields_add_rename_remove(engine: Engine) -> None:
    child = "r_crm__deal__lines"
    v1 = form(fld("name"), lines(fld("product"), fld("qty", "integer")))
    publish(engine, None, v1)
    (parent,) = insert(engine, v1, {"name": "a"})
    rows = insert_children(engine, v1, "lines", parent, {"product": "p1", "qty": 2},
                           {"product": "p2", "qty": 3})

    v2 = form(fld("name"), lines(fld("item", id="id_product", indexed=True),
                                 fld("qty", "integer"), fld("price", "decimal")))
    plan = publish(engine, v1, v2)
    assert [s.op for s in plan.steps] == ["rename_field", "add_index", "add_field"]
    assert values(engine, v2, "item", sub="lines") == {rows[0]: "p1", rows[1]: "p2"}
    assert index_name("r_crm__deal__lines", "item", "ix") in index_names(engine, child)

    v3 = form(fld("name"), lines(fld("item", id="id_product", indexed=True),
                                 fld("price", "decimal")))
    remove = step(dry_run(engine, v2, v3), "remove_field")
    assert remove.destructive and remove.affected_rows == 2
    publish(engine, v2, v3, confirm=True)
    assert "x_id_qty" in columns(engine, child) and "qty" not in columns(engine, child)

    # rename the sub-table itself: the child table follows, data and kept columns too
    v4 = form(fld("name"), lines(fld("item", id="id_product", indexed=True),
                                 fld("price", "decimal"), key="items"))
    publish(engine, v3, v4)
    assert child not in sa.inspect(engine).get_table_names()
    assert values(engine, v4, "item", sub="items") == {rows[0]: "p1", rows[1]: "p2"}
    assert index_name("r_crm__deal__items", "item", "ix") in index_names(
        engine, "r_crm__deal__items")
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None
    assert state.retired[0]["table"] == "r_crm__deal__items"
    with engine.begin() as conn:
        assert purge_field(conn, app=APP, form="deal", field_id="id_qty") == 2
    assert "x_id_qty" not in columns(engine, "r_crm__deal__items")


def test_sub_table_type_change_converts_child_rows(engine: Engine) -> None:
    v1 = form(fld("name"), lines(fld("qty")))
    publish(engine, None, v1)
    (parent,) = insert(engine, v1, {"name": "a"})
    rows = insert_children(engine, v1, "lines", parent, {"qty": "3"}, {"qty": "three"})
    v2 = form(fld("name"), lines(fld("qty", "integer")))
    change = step(dry_run(engine, v1, v2), "change_type")
    assert change.failures == [{"record_id": str(parent), "row_id": str(rows[1]),
                                "value": "three", "error": "type",
                                "message": "qty must be an integer"}]
    publish(engine, v1, v2, confirm=True)
    assert values(engine, v2, "qty", sub="lines") == {rows[0]: 3, rows[1]: None}


def test_removed_sub_table_is_kept_and_its_key_can_be_reused(engine: Engine) -> None:
    v1 = form(fld("name"), lines(fld("product")))
    publish(engine, None, v1)
    (parent,) = insert(engine, v1, {"name": "a"})
    insert_children(engine, v1, "lines", parent, {"product": "p1"})
    v2 = form(fld("name"))
    publish(engine, v1, v2, confirm=True)
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None
    kept_table = state.retired[0]["table"]
    assert kept_table in sa.inspect(engine).get_table_names()

    # a new sub-table with the same key gets a fresh table (no name left behind)
    v3 = form(fld("name"), fld("lines", "sub_table", id="other", fields=[fld("sku")]))
    publish(engine, v2, v3)
    assert columns(engine, "r_crm__deal__lines") >= {"sku", "parent_id"}
    with engine.begin() as conn:
        assert purge_field(conn, app=APP, form="deal", field_id="id_lines") == 1
    assert kept_table not in sa.inspect(engine).get_table_names()


# --- all or nothing ----------------------------------------------------------------

def test_failure_in_the_middle_of_apply_leaves_everything_as_before(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = form(fld("name", unique=True), fld("code"), fld("old"),
              lines(fld("product")))
    publish(engine, None, v1)
    (parent,) = insert(engine, v1, {"name": "a", "code": "12", "old": "o"})
    insert_children(engine, v1, "lines", parent, {"product": "p"})
    v2 = form(fld("title", id="id_name", unique=True), fld("code", "integer"),
              lines(fld("item", id="id_product"), key="items"), fld("added"))
    plan = dry_run(engine, v1, v2)
    assert [s.op for s in plan.steps] == [
        "remove_field", "rename_field", "rename_field", "change_type", "rename_field",
        "add_field"]

    def boom(applier: Any, step: Any) -> None:
        raise RuntimeError("disk full")

    before = snapshot(engine)
    monkeypatch.setitem(evolution._HANDLERS, "add_field", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(engine, v1, v2, confirm=True)
    assert snapshot(engine) == before


def test_plan_is_a_dry_run(engine: Engine) -> None:
    v1 = form(fld("name"), fld("code"), lines(fld("product")))
    publish(engine, None, v1)
    insert(engine, v1, {"name": "a", "code": "x"})
    before = snapshot(engine)
    plan = dry_run(engine, v1, form(fld("label", id="id_name", unique=True),
                                    fld("code", "integer"), fld("new")))
    assert plan.destructive
    assert snapshot(engine) == before


def test_a_stale_plan_is_refused(engine: Engine) -> None:
    v1 = form(fld("name"))
    publish(engine, None, v1)
    stale = dry_run(engine, v1, form(fld("name"), fld("a")))
    publish(engine, v1, form(fld("name"), fld("b")))
    with pytest.raises(Conflict), engine.begin() as conn:
        apply_evolution(conn, stale, confirm_destructive=False, version=3)


def test_fields_without_ids_are_refused(engine: Engine) -> None:
    f = Form.model_validate({"key": "deal", "label": {"en": "d"},
                             "fields": [{"type": "text", "key": "a", "label": {"en": "a"}}]})
    with pytest.raises(DefinitionInvalid), engine.begin() as conn:
        plan_evolution(conn, app=APP, old=None, new=f, state=None)


def test_form_tables_row_records_version_and_layout(engine: Engine) -> None:
    v1 = form(fld("name"))
    publish(engine, None, v1)
    publish(engine, v1, form(fld("name"), fld("extra")))
    with engine.connect() as conn:
        row = conn.execute(sa.select(form_tables_table)).one()
    assert (row.table_name, row.version) == (TABLE, 2)
    assert set(row.layout["fields"]) == {"id_name", "id_extra"}


# --- more paths -------------------------------------------------------------------

def test_rename_and_type_change_in_one_publish(engine: Engine) -> None:
    v1 = form(fld("qty"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"qty": "42"})
    v2 = form(fld("quantity", "integer", id="id_qty", unique=True))
    plan = publish(engine, v1, v2, confirm=True)
    assert [s.op for s in plan.steps] == ["rename_field", "change_type"]
    assert values(engine, v2, "quantity") == {rid: 42}
    assert index_name("r_crm__deal", "quantity", "uq") in index_names(engine, TABLE)
    assert "_t_id_qty" not in columns(engine, TABLE)


def test_re_adding_a_removed_sub_table_restores_its_rows(engine: Engine) -> None:
    v1 = form(fld("name"), lines(fld("product", indexed=True), fld("qty", "integer")))
    publish(engine, None, v1)
    (parent,) = insert(engine, v1, {"name": "a"})
    rows = insert_children(engine, v1, "lines", parent, {"product": "p1", "qty": 1})
    v2 = form(fld("name"), lines(fld("product", indexed=True)))
    publish(engine, v1, v2, confirm=True)  # qty kept inside the child table
    v3 = form(fld("name"))
    publish(engine, v2, v3, confirm=True)  # the whole sub-table kept
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and len(state.retired) == 2
    assert "r_crm__deal__lines" not in sa.inspect(engine).get_table_names()

    v4 = form(fld("name"), lines(fld("product", indexed=True), fld("qty", "integer")))
    plan = publish(engine, v3, v4)
    assert [s.op for s in plan.steps] == ["restore_field", "restore_field", "add_index"]
    assert values(engine, v4, "product", sub="lines") == {rows[0]: "p1"}
    assert values(engine, v4, "qty", sub="lines") == {rows[0]: 1}
    assert index_name("r_crm__deal__lines", "product", "ix") in index_names(
        engine, "r_crm__deal__lines")
    with engine.connect() as conn:
        state = load_state(conn, app=APP, form="deal")
    assert state is not None and state.retired == []


def test_multi_relation_rename_keeps_links_and_new_target_clears_them(engine: Engine) -> None:
    v1 = form(fld("name"), fld("contacts", "multi_relation", target="contact"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"name": "a"})
    join = build_tables(APP, v1).joins["contacts"]
    with engine.begin() as conn:
        conn.execute(sa.insert(join).values(source_id=rid, target_id=new_id(), position=0))
    v2 = form(fld("name"), fld("people", "multi_relation", id="id_contacts", target="contact"))
    publish(engine, v1, v2)
    assert "r_crm__deal__contacts" not in sa.inspect(engine).get_table_names()
    assert index_name("r_crm__deal__people", "target_id", "ix") in index_names(
        engine, "r_crm__deal__people")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM r_crm__deal__people")).scalar() == 1

    v3 = form(fld("name"), fld("people", "multi_relation", id="id_contacts", target="lead"))
    change = step(dry_run(engine, v2, v3), "change_target")
    assert change.destructive and change.affected_rows == 1
    publish(engine, v2, v3, confirm=True)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM r_crm__deal__people")).scalar() == 0


def test_tightened_rules_are_a_warning_not_a_change(engine: Engine) -> None:
    v1 = form(fld("code"))
    publish(engine, None, v1)
    (long_id, _) = insert(engine, v1, {"code": "ABCDEF"}, {"code": "AB"})
    v2 = form(fld("code", max_length=3))
    plan = publish(engine, v1, v2)
    warning = step(plan, "check_values")
    assert not plan.destructive and warning.failure_count == 1
    assert warning.failures[0]["record_id"] == str(long_id)
    assert "ABCDEF" in values(engine, v2, "code").values()


def test_a_change_of_storage_is_refused(engine: Engine) -> None:
    v1 = form(fld("contact", "relation", target="contact"))
    publish(engine, None, v1)
    with pytest.raises(DefinitionInvalid, match="stored differently"):
        dry_run(engine, v1, form(fld("contact", "multi_relation", target="contact")))


def test_multi_select_clears_to_sql_null(engine: Engine) -> None:
    opts = [{"value": v, "label": {"en": v}} for v in ("a", "b")]
    v1 = form(fld("tags", "multi_select", options=opts))
    publish(engine, None, v1)
    insert(engine, v1, {"tags": ["b"]})
    publish(engine, v1, form(fld("tags", "multi_select", options=opts[:1])), confirm=True)
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {TABLE} WHERE tags IS NULL")
                            ).scalar() == 1


def test_unchanged_form_plans_nothing(engine: Engine) -> None:
    v1 = form(fld("name", unique=True), lines(fld("product")),
              fld("contacts", "multi_relation", target="contact"))
    publish(engine, None, v1)
    plan = publish(engine, v1, v1)
    assert plan.steps == [] and not plan.destructive


def test_a_new_field_id_on_an_old_key_does_not_inherit_the_data(engine: Engine) -> None:
    v1 = form(fld("note", id="old"))
    publish(engine, None, v1)
    (rid,) = insert(engine, v1, {"note": "old data"})
    v2 = form(fld("note", id="new", type_="integer"))
    plan = publish(engine, v1, v2, confirm=True)
    assert [s.op for s in plan.steps] == ["remove_field", "add_field"]
    assert values(engine, v2, "note") == {rid: None}
    assert "x_old" in columns(engine, TABLE)


def test_the_report_is_json(engine: Engine) -> None:
    import json

    v1 = form(fld("code"), fld("when", "date"))
    publish(engine, None, v1)
    insert(engine, v1, {"code": "x", "when": datetime(2026, 1, 1).date()})
    plan = dry_run(engine, v1, form(fld("code", "decimal"), fld("when", "time")))
    report = json.loads(json.dumps(plan.as_dict()))
    assert [s["op"] for s in report["steps"]] == ["change_type", "change_type"]
    assert report["steps"][0]["description"]["zh"].startswith("字段 code")
    assert report["steps"][1]["failures"][0]["value"] == "2026-01-01"


def test_index_names_of_forms_whose_keys_run_together_do_not_collide(engine: Engine) -> None:
    # (payment, plan_contract) and (payment_plan, contract) once gave both
    # indexes the name ix_r_crm__payment_plan_contract: the second form's
    # table could not be created.
    payment = form(fld("plan_contract", "relation", target="x"), key="payment")
    plan = form(fld("contract", "relation", target="x"), key="payment_plan")
    publish(engine, None, payment)
    publish(engine, None, plan)
    assert index_name("r_crm__payment", "plan_contract", "ix") in index_names(
        engine, "r_crm__payment")
    assert index_name("r_crm__payment_plan", "contract", "ix") in index_names(
        engine, "r_crm__payment_plan")


def test_an_index_under_its_older_name_is_still_dropped(engine: Engine) -> None:
    # Databases made before index names had a digest keep the older names;
    # removing the index finds it under either.
    v1 = form(fld("name"), fld("note", indexed=True))
    publish(engine, None, v1)
    new, old = index_name(TABLE, "note", "ix"), legacy_index_name(TABLE, "note", "ix")
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP INDEX "{new}"'))
        conn.execute(sa.text(f'CREATE INDEX "{old}" ON "{TABLE}" (note)'))
    publish(engine, v1, form(fld("name"), fld("note")))
    assert not {new, old} & index_names(engine, TABLE)
